package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch/sim/opcuasim"
)

// TestOPCUABrowse: plcwatch opcua browse finds the simulated server's
// variables with their types and values, and --config prints them as a
// device entry that config check takes.
func TestOPCUABrowse(t *testing.T) {
	s, err := opcuasim.New(opcuasim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range opcuasim.Builtins() {
		s.Add(b.Name, b.Value)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	code, out, errOut := plcwatch(t, "opcua", "browse", "--endpoint", s.Endpoint(), "--depth", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"urn:plcwatch:sim  Object  ns=1;i=85", "  Double  Variable  ns=1;s=Double  Double = 6.125",
		"  String  Variable  ns=1;s=String  String = running", "  DoubleArray  Variable  ns=1;s=DoubleArray  Double[] = [0.5 1.5 2.5 3.5]"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("browse lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = plcwatch(t, "opcua", "browse", "--endpoint", s.Endpoint(), "--security", "None", "--config")
	if code != 0 {
		t.Fatalf("--config: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `- {name: "urn:plcwatch:sim.Double", node: "nsu=urn:plcwatch:sim;s=Double"}  # Double`) {
		t.Errorf("--config:\n%s", out)
	}
	// Pasted under opcua.devices, the entry is a valid configuration.
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("rules: {paths: [rules]}\nopcua:\n  pki: {dir: pki}\n  devices:\n")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "#") {
			cfg.WriteString("    " + l + "\n")
		}
	}
	os.WriteFile(filepath.Join(dir, "plcwatch.yaml"), []byte(cfg.String()), 0o644)
	os.Mkdir(filepath.Join(dir, "rules"), 0o755)
	os.WriteFile(filepath.Join(dir, "rules", "r.yaml"), []byte("rules:\n  - id: any-write\n    title: a write\n    severity: high\n    match: {op: write}\n"), 0o644)
	code, out, errOut = plcwatch(t, "config", "check", "--offline", filepath.Join(dir, "plcwatch.yaml"))
	if code != 0 {
		t.Fatalf("config check of the pasted entry: exit %d\n%s%s\n%s", code, out, errOut, cfg.String())
	}
	// A wrong command line is exit 2; a server that is not there, 1.
	if code, _, _ := plcwatch(t, "opcua", "browse"); code != 2 {
		t.Errorf("no --endpoint: exit %d", code)
	}
	if code, _, _ := plcwatch(t, "opcua", "browse", "--endpoint", "opc.tcp://127.0.0.1:1", "--timeout", "2s"); code != 1 {
		t.Errorf("nothing there: exit %d", code)
	}
}
