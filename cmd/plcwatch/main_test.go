package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// plcwatch runs the CLI in-process and returns its exit code and output.
func plcwatch(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const example = "../../testdata/pcaps/modbus/icsnpp_modbus_example.pcap"

func TestReplayEventsAndSummary(t *testing.T) {
	code, out, errOut := plcwatch(t, "replay", "--pcap", example, "--events", "--format", "jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 24 {
		t.Errorf("%d event lines, want 24 (one per request)", len(lines))
	}
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		for _, k := range []string{"time", "source", "protocol", "op", "client", "server", "tid", "unit", "function", "exception", "malformed"} {
			if _, ok := ev[k]; !ok {
				t.Errorf("event lacks %q: %s", k, l)
			}
		}
	}
	summary := regexp.MustCompile(`^replay: packets=100 bytes=\d+ pdus=48 events=24 malformed=2 flows=2 alerts=0 drops=0 elapsed=\S+ packets/s=\d+$`)
	if !summary.MatchString(strings.TrimSpace(errOut)) {
		t.Errorf("summary line: %q", errOut)
	}
}

// TestReplayUndecodedIsVisible: a capture of a link type plcwatch does not
// decode (147 in its header) read as "pdus=0 events=0", exit 0, nothing
// else. The packets are counted in the summary line with one warning that
// names the link type, and bad IP headers are counted too (docs/inputs.md).
func TestReplayUndecodedIsVisible(t *testing.T) {
	const files = "../../collectors/capture/testdata/files/"
	for _, tc := range []struct {
		file, summary, warning string
	}{
		{"linktype-147.pcap", ` pdus=0 events=0 .* unknown_link=152$`,
			"plcwatch replay: warning: " + files + "linktype-147.pcap: 152 packets of link type 147 skipped: plcwatch does not decode that link type (docs/inputs.md lists those it does)\n"},
		{"short-ip.pcap", ` undecodable=1$`, ""},
	} {
		for _, cmd := range []struct{ name, args string }{{"replay", "replay"}, {"rules test", "rules test --rules ../../configs/rules"}} {
			code, _, errOut := plcwatch(t, append(strings.Fields(cmd.args), "--pcap", files+tc.file)...)
			summary := regexp.MustCompile(`(?m)^replay: packets=.*` + tc.summary)
			want := strings.Replace(tc.warning, "plcwatch replay:", "plcwatch "+cmd.name+":", 1)
			if code != 0 || !summary.MatchString(errOut) || strings.Count(errOut, "warning:") != strings.Count(want, "warning:") || !strings.Contains(errOut, want) {
				t.Errorf("%s %s: exit %d, stderr:\n%s", cmd.name, tc.file, code, errOut)
			}
		}
	}
}

func TestReplayWithRules(t *testing.T) {
	code, out, errOut := plcwatch(t, "replay", "--pcap", "../../testdata/pcaps/modbus/iti_modbus_test_data_part1.pcap", "--rules", "../../configs/rules", "--site", "plant-a", "--gateway", "gw-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var forceListen int
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var a struct {
			Schema, Site, Gateway string
			Rule                  struct{ ID string }
			Count                 int
		}
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if a.Schema != "plcwatch.alert/v1" || a.Site != "plant-a" || a.Gateway != "gw-1" {
			t.Errorf("alert header: %s", l)
		}
		if a.Rule.ID == "modbus-force-listen-only" {
			forceListen += a.Count
		}
	}
	if forceListen != 3 {
		t.Errorf("force listen only: %d events in alerts, want 3", forceListen)
	}
	// Columns are as wide as the longest rule id: match the numbers, not the spaces.
	if !regexp.MustCompile(`modbus-force-listen-only +3 +2 `).MatchString(errOut) || !strings.Contains(errOut, "alerts=") {
		t.Errorf("hits table or summary missing:\n%s", errOut)
	}
}

func TestRulesLint(t *testing.T) {
	if code, out, _ := plcwatch(t, "rules", "lint", "../../configs/rules"); code != 0 || out != "" {
		t.Errorf("the default rules: exit %d, %s", code, out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - id: x\n    title: t\n    severity: low\n    match: {client: 10.0.0.0/33}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := plcwatch(t, "rules", "lint", bad)
	if code != 1 || !strings.HasPrefix(out, bad+":5:21: client \"10.0.0.0/33\"") {
		t.Errorf("exit %d, output %q", code, out)
	}
	if code, _, _ := plcwatch(t, "rules", "lint"); code != 2 {
		t.Errorf("lint with no path: exit %d, want 2", code)
	}
}

func TestRulesTestOnEvents(t *testing.T) {
	code, out, errOut := plcwatch(t, "rules", "test", "--rules", "../../rules/testdata/when-fires/rules.yaml",
		"--events", "../../rules/testdata/when-fires/events.jsonl")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"setpoint-out-of-bounds"`) {
		t.Errorf("exit %d, alerts %q, %s", code, out, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nonsense"}, {"replay"}, {"replay", "--pcap", example, "--format", "csv"}} {
		if code, _, _ := plcwatch(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := plcwatch(t, "replay", "--pcap", "/nonexistent.pcap"); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, %s", code, errOut)
	}
	if code, out, _ := plcwatch(t, "version"); code != 0 || !strings.HasPrefix(out, "plcwatch ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

// TestReplayWithConfigNamesDevices: with --config, wire events to a
// configured device's address carry its name, a unit's asset wins, and
// rules on device names fire (issue 9).
func TestReplayWithConfigNamesDevices(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(`rules:
  - {id: plc-1-writes, title: writes to plc-1, severity: high, match: {device: plc-1, op: write}}
  - {id: meter-writes, title: writes to the meter, severity: high, match: {device: meter, op: write}}
`), 0o644)
	cfg := filepath.Join(dir, "plcwatch.yaml")
	os.WriteFile(cfg, []byte(`site: plant-b
gateway: gw-9
rules: {paths: [rules.yaml]}
modbus:
  devices:
    - {name: plc-1, address: "127.0.0.1:502", unit: 4, tags: [{name: t, register: 40001}]}
assets:
  - {name: meter, address: "127.0.0.1:502", unit: 6, tags: {zone: z1}}
`), 0o644)
	code, out, errOut := plcwatch(t, "replay", "--pcap", example, "--config", cfg, "--events")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	devices := map[string]string{}
	counts := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v struct {
			Device, Server, Site string
			Unit                 int
			Rule                 struct{ ID string }
			Event                struct{ Device string }
			Count                int
			DeviceTags           map[string]string `json:"device_tags"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if v.Rule.ID == "" {
			devices[fmt.Sprintf("%s/%d", v.Server, v.Unit)] = v.Device
			continue
		}
		counts[v.Rule.ID] += v.Count
		if v.Site != "plant-b" || (v.Rule.ID == "meter-writes" && v.DeviceTags["zone"] != "z1") || (v.Rule.ID == "plc-1-writes" && v.DeviceTags != nil) {
			t.Errorf("alert: %s", l)
		}
	}
	for k, want := range map[string]string{"127.0.0.1:502/4": "plc-1", "127.0.0.1:502/6": "meter", "127.0.0.1:502/7": "plc-1", "3.15.227.20:502/0": "3.15.227.20:502"} {
		if devices[k] != want {
			t.Errorf("%s: device %q, want %q", k, devices[k], want)
		}
	}
	if counts["plc-1-writes"] != 6 || counts["meter-writes"] != 3 {
		t.Errorf("alerts per rule (events counted): %v, want plc-1-writes 6, meter-writes 3", counts)
	}
	// Without --config, the address.
	_, out, _ = plcwatch(t, "replay", "--pcap", example, "--events")
	if strings.Contains(out, `"plc-1"`) {
		t.Error("names without a configuration")
	}
}
