package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyRules copies configs/rules into dir/rules, leaving out the files
// named in without.
func copyRules(t *testing.T, dir string, without ...string) {
	t.Helper()
	files, _ := filepath.Glob("../../configs/rules/*.yaml")
	os.MkdirAll(filepath.Join(dir, "rules"), 0o755)
	for _, f := range files {
		skip := false
		for _, w := range without {
			skip = skip || filepath.Base(f) == w
		}
		if skip {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "rules", filepath.Base(f)), b, 0o644)
	}
}

// disableRules turns off every rule of dir/rules/file (enabled: false).
func disableRules(t *testing.T, dir, file string) {
	t.Helper()
	path := filepath.Join(dir, "rules", file)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := strings.ReplaceAll(string(b), "\n    severity:", "\n    enabled: false\n    severity:")
	if off == string(b) {
		t.Fatalf("%s: no rule to disable", path)
	}
	os.WriteFile(path, []byte(off), 0o644)
}

// TestSimCheck: sim check of the control scenario holds against the
// default rules, and fails (exit 1, naming each expectation) when the
// rules it expects are disabled — live (as root: the agent itself beside
// the scenario) and offline (the recording alone). Removed, they are no
// rules at all: the expectations naming them are refused before the run.
func TestSimCheck(t *testing.T) {
	scenario := "../../configs/scenarios/control.yaml"
	for _, c := range []struct {
		name    string
		args    []string
		without []string
		disable string
		code    int
		want    []string
		stderr  []string
	}{
		{"default rules", nil, nil, "", exitOK, []string{"ok     modbus-force-listen-only from listen-only: at least 1; raised 1", "all 4 expectations held"}, nil},
		{"modbus-control.yaml disabled", nil, nil, "modbus-control.yaml", exitFail, []string{
			"FAILED modbus-force-listen-only from listen-only: at least 1; raised 0",
			"3 of 4 expectations failed"}, nil},
		{"modbus-control.yaml removed", []string{"--offline"}, []string{"modbus-control.yaml"}, "", exitFail, nil, []string{
			`control.yaml:18:12: expect[1].rule: "modbus-force-listen-only": no rule has this id`}},
		{"modbus-control.yaml disabled, offline", []string{"--offline"}, nil, "modbus-control.yaml", exitFail, []string{
			"FAILED modbus-force-listen-only from listen-only: at least 1; raised 0",
			"FAILED modbus-restart-communications from restart: at least 1; raised 0",
			"FAILED modbus-reserved-function from umas: at least 1; raised 0",
			"ok     * from hmi: at most 0; raised 0",
			"3 of 4 expectations failed"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			copyRules(t, dir, c.without...)
			if c.disable != "" {
				disableRules(t, dir, c.disable)
			}
			cfg := filepath.Join(dir, "plcwatch.yaml")
			os.WriteFile(cfg, []byte("rules: {paths: [rules]}\n"), 0o644)
			var out, errb bytes.Buffer
			args := append([]string{"sim", "check", "--scenario", scenario, "--config", cfg, "--speed", "2"}, c.args...)
			code := run(context.Background(), args, &out, &errb)
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, out.String(), errb.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("missing %q in\n%s", w, out.String())
				}
			}
			for _, w := range c.stderr {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("missing %q in\n%s", w, errb.String())
				}
			}
		})
	}
}

// TestSimCheckOPCUA: every OPC UA attack of configs/scenarios/opcua.yaml
// raises its default rule, attributed to its actor, through the recording
// proxy in front of the OPC UA plant.
func TestSimCheckOPCUA(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"sim", "check", "--scenario", "../../configs/scenarios/opcua.yaml", "--config", "../../configs/plcwatch.yaml", "--speed", "2"}, &out, &errb)
	if code != exitOK || !strings.Contains(out.String(), "all 7 expectations held") {
		t.Errorf("exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestSimScenarioProblems: a broken scenario is refused with its problems
// at file:line:col, exit 1.
func TestSimScenarioProblems(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"sim", "--scenario", "../../sim/scenario/testdata/bad.yaml"}, &out, &errb)
	if code != exitFail || !strings.Contains(errb.String(), "bad.yaml:15:5: unknown key \"pointt\" in actors[0] (did you mean \"point\"?)") {
		t.Errorf("exit %d\n%s", code, errb.String())
	}
	if code := run(context.Background(), []string{"sim", "check", "--scenario", "x.yaml"}, &out, &errb); code != exitUsage {
		t.Errorf("sim check without --config: exit %d", code)
	}
}
