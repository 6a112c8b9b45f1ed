package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/collectors/opcua"
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
	if !strings.Contains(out, `        - {name: "urn:plcwatch:sim.Double", node: "nsu=urn:plcwatch:sim;s=Double"}  # Double`) {
		t.Errorf("--config:\n%s", out)
	}
	// A valid configuration once rules are added.
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "rules"), 0o755)
	os.WriteFile(filepath.Join(dir, "rules", "r.yaml"), []byte("rules:\n  - id: any-write\n    title: a write\n    severity: high\n    match: {op: write}\n"), 0o644)
	cfg := "rules: {paths: [rules]}\n" + out
	os.WriteFile(filepath.Join(dir, "plcwatch.yaml"), []byte(cfg), 0o644)
	code, out, errOut = plcwatch(t, "config", "check", "--offline", filepath.Join(dir, "plcwatch.yaml"))
	if code != 0 {
		t.Fatalf("config check of the printed section: exit %d\n%s%s\n%s", code, out, errOut, cfg)
	}
	// A wrong command line is exit 2; a server that is not there, 1.
	if code, _, _ := plcwatch(t, "opcua", "browse"); code != 2 {
		t.Errorf("no --endpoint: exit %d", code)
	}
	if code, _, _ := plcwatch(t, "opcua", "browse", "--endpoint", "opc.tcp://127.0.0.1:1", "--timeout", "2s"); code != 1 {
		t.Errorf("nothing there: exit %d", code)
	}
}

// TestOPCUABrowseConfigConnectsAsTheBrowseDid: --config prints the
// security the browse used, never auto (issue 10: a browse that auto
// resolved to None printed auto, which run resolved to Basic256Sha256),
// the --password-file and --pki given, and the printed configuration
// passes config check and browses the server with the same security.
func TestOPCUABrowseConfigConnectsAsTheBrowseDid(t *testing.T) {
	s, err := opcuasim.New(opcuasim.Config{Users: map[string]string{"op": "pw-1"}})
	if err != nil {
		t.Fatal(err)
	}
	s.Add("Level", 71.5)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dir := t.TempDir()
	pw, pki := filepath.Join(dir, "op.pw"), filepath.Join(dir, "pki")
	os.WriteFile(pw, []byte("pw-1\n"), 0o600)
	code, out, errOut := plcwatch(t, "opcua", "browse", "--endpoint", s.Endpoint(), "--config", "--pki", pki, "--username", "op", "--password-file", pw)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"  pki: {dir: " + strconv.Quote(pki) + "}\n", "      security: {policy: None, mode: None}\n",
		"      auth: {username: \"op\", password_file: " + strconv.Quote(pw) + "}\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "auto") || strings.Contains(out, "CHANGE-ME") {
		t.Errorf("auto or CHANGE-ME in:\n%s", out)
	}
	os.Mkdir(filepath.Join(dir, "rules"), 0o755)
	os.WriteFile(filepath.Join(dir, "rules", "r.yaml"), []byte("rules:\n  - id: any-write\n    title: a write\n    severity: high\n    match: {op: write}\n"), 0o644)
	path := filepath.Join(dir, "plcwatch.yaml")
	os.WriteFile(path, []byte("rules: {paths: [rules]}\n"+out), 0o644)
	if code, out, errOut := plcwatch(t, "config", "check", "--offline", path); code != 0 {
		t.Fatalf("config check: exit %d\n%s%s", code, out, errOut)
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opcua.OpenPKI(cfg.OPCUA.PKI)
	if err != nil {
		t.Fatal(err)
	}
	var used opcua.Security
	if _, err := opcua.Browse(context.Background(), cfg.OPCUA.Devices[0], opcua.Options{PKI: p}, opcua.BrowseOptions{Used: &used}); err != nil {
		t.Fatal(err)
	}
	if used != (opcua.Security{Policy: "None", Mode: "None"}) || cfg.OPCUA.Devices[0].Security != used {
		t.Errorf("configured %+v, used %+v", cfg.OPCUA.Devices[0].Security, used)
	}
}
