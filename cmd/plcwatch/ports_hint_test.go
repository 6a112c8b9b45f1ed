package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoPDUsNamesTheBusyPorts: a capture of a plant on a port not decoded
// gave "pdus=0 events=0" and no hint (issue 12: a plant on 5520). Replay
// and rules test now name the TCP ports that carried the traffic and the
// flag to give; with that port, the PDUs are there and the hint is not.
// rules test --config takes the ports (and rules) from a configuration as
// replay does, and a flag wins over it.
func TestNoPDUsNamesTheBusyPorts(t *testing.T) {
	dir := t.TempDir()
	cfg := func(port string) string {
		path := filepath.Join(dir, "plcwatch-"+port+".yaml")
		text := "site: s\ngateway: g\nrules: {paths: [" + filepath.Join(mustAbs(t, "../../configs/rules")) + "]}\ncapture: {modbus_ports: [" + port + "]}\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const hint = "its TCP traffic is on port 502 ("
	for _, tc := range []struct {
		name string
		args []string
		want bool // the hint
	}{
		{"replay, wrong port", []string{"replay", "--pcap", example, "--modbus-ports", "1502"}, true},
		{"replay, right port", []string{"replay", "--pcap", example, "--modbus-ports", "502"}, false},
		{"rules test, wrong port", []string{"rules", "test", "--rules", "../../configs/rules", "--pcap", example, "--modbus-ports", "5520"}, true},
		{"rules test, default port", []string{"rules", "test", "--rules", "../../configs/rules", "--pcap", example}, false},
		{"rules test --config, wrong port", []string{"rules", "test", "--config", cfg("5520"), "--pcap", example}, true},
		{"rules test --config, right port", []string{"rules", "test", "--config", cfg("502"), "--pcap", example}, false},
		{"rules test --config, the flag wins", []string{"rules", "test", "--config", cfg("5520"), "--pcap", example, "--modbus-ports", "502"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := plcwatch(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			got := strings.Contains(errOut, hint)
			if got != tc.want {
				t.Fatalf("hint %v, want %v:\n%s", got, tc.want, errOut)
			}
			if tc.want {
				for _, s := range []string{" pdus=0 ", "--modbus-ports 502 or --opcua-ports 502", "no Modbus/TCP or OPC UA message on the ports decoded (Modbus "} {
					if !strings.Contains(errOut, s) {
						t.Errorf("no %q in:\n%s", s, errOut)
					}
				}
			} else if strings.Contains(errOut, " pdus=0 ") {
				t.Errorf("no PDUs on the right port:\n%s", errOut)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestConfigCheckResultOnStdout: config check's "ok" went to stderr while
// its problems go to stdout; the result is now on stdout either way, the
// exit code unchanged.
func TestConfigCheckResultOnStdout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plcwatch.yaml")
	text := "site: s\ngateway: g\nrules: {paths: [" + mustAbs(t, "../../configs/rules") + "]}\nspool: {dir: spool}\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := plcwatch(t, "config", "check", "--offline", path)
	if code != 0 || !strings.HasPrefix(out, path+": ok (") || strings.Contains(errOut, ": ok") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
