package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestReplayOPCUANonStandardPort replays a capture of OPC UA on tcp/48010:
// nothing without --opcua-ports, every request with it.
func TestReplayOPCUANonStandardPort(t *testing.T) {
	const pcap = "../../testdata/pcaps/opcua/icsnpp_open62541_client-server_mainloop-not-localhost-non-standard-port.pcap"
	code, out, errOut := plcwatch(t, "replay", "--pcap", pcap, "--events")
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("without --opcua-ports: exit %d, events %q, %s", code, out, errOut)
	}
	code, out, errOut = plcwatch(t, "replay", "--pcap", pcap, "--events", "--opcua-ports", "48010")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	writes := 0
	for _, l := range lines {
		var ev struct {
			Protocol, Service, Node, User string
			Value                         *float64
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if ev.Protocol != "opcua" {
			t.Errorf("protocol %q", ev.Protocol)
		}
		if ev.Service == "WriteRequest" {
			writes++
			if ev.Node != "ns=1;s=the.answer" || ev.Value == nil || ev.User != "user1" {
				t.Errorf("write: %s", l)
			}
		}
	}
	if writes != 2 {
		t.Errorf("%d writes, want 2", writes)
	}
	// The summary counts one event per request, as the lines are.
	m := regexp.MustCompile(`events=(\d+)`).FindStringSubmatch(errOut)
	if m == nil || m[1] != strconv.Itoa(len(lines)) {
		t.Errorf("summary %q for %d event lines", errOut, len(lines))
	}
}

// TestSimPcapOPCUA writes a synthetic OPC UA capture and replays it.
func TestSimPcapOPCUA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "opcua.pcap")
	code, _, errOut := plcwatch(t, "sim", "pcap", "-protocol", "opcua", "-o", path, "-packets", "3000", "-conns", "4")
	if code != 0 || !strings.Contains(errOut, "writes=") {
		t.Fatalf("sim pcap: exit %d: %s", code, errOut)
	}
	code, out, errOut := plcwatch(t, "replay", "--pcap", path, "--events")
	if code != 0 || !strings.Contains(errOut, "malformed=0") {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	services := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct{ Service, Malformed, Unanswered string }
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Malformed != "" || (ev.Unanswered != "" && ev.Unanswered != "eof") {
			t.Errorf("%s", l)
		}
		services[ev.Service]++
	}
	for _, s := range []string{"ReadRequest", "PublishRequest", "WriteRequest", "CallRequest", "ActivateSessionRequest"} {
		if services[s] == 0 {
			t.Errorf("no %s in %v", s, services)
		}
	}
	if code, _, _ := plcwatch(t, "sim", "pcap", "-protocol", "profinet", "-o", path); code != 2 {
		t.Errorf("unknown protocol: exit %d, want 2", code)
	}
}
