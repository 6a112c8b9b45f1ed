package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// brokenConfigs are configurations "run" refuses, each for a different
// reason; "config check" must refuse them with the same problems
// (issue 9: deploy/plcwatch.service relies on config check as
// ExecStartPre).
func brokenConfigs(t *testing.T, busy string) map[string]string {
	return map[string]string{
		"keys, types and ranges": "rules: {paths: [rules]}\nspool: {dir: spool, max_bytes: 12}\nqueue: lots\nmqtt: {brokerz: [x], heartbeat: 1ns}\nhttp: {listen: \"off\"}\n",
		"syntax":                 "rules: {paths: [rules]\nhttp: {listen: \"off\"}\n",
		"rules":                  "rules: {paths: [rules, bad.yaml, nowhere, \"*.rules\"]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"]}\n",
		"interface":              "rules: {paths: [rules]}\ncapture: {interfaces: [nosuch0]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"]}\n",
		"port in use":            "rules: {paths: [rules]}\nspool: {dir: spool}\nhttp: {listen: \"" + busy + "\"}\nmqtt: {embedded: {listen: \"" + busy + "\"}}\n",
		"password file":          "rules: {paths: [rules]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"], password_file: nope}\n",
		"network-facing":         "rules: {paths: [rules]}\nspool: {dir: spool}\nhttp: {listen: \"0.0.0.0:0\", pprof: true}\nmqtt: {embedded: {listen: \"0.0.0.0:0\"}}\n",
		"paths written":          "rules: {paths: [rules]}\nspool: {dir: /proc/nope}\nevent_log: {path: /proc/nope/e.jsonl}\nalert_log: {path: rules}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"]}\n",
		"topic names":            "site: a/b\ngateway: \"gw+\"\nrules: {paths: [rules]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"], topic_prefix: \"x/\\0/y\"}\n",
		"baseline":               "rules: {paths: [rules], baseline_file: rules}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"]}\n",
	}
}

// setupDir writes rules (one good, one bad) and a damaged baseline into
// dir (a damaged baseline is a warning: the "baseline" case names a
// folder, which cannot be read as one).
func setupDir(t *testing.T, dir string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "rules"), 0o755)
	for name, text := range map[string]string{
		"rules/r.yaml": "rules:\n  - {id: w, title: writes, severity: low, match: {op: write}}\n",
		"bad.yaml":     "rules:\n  - {id: x, title: t, severity: loud, match: {op: write}}\n",
		"bad.json":     "{",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// problemLines are the file:line:col: lines of an output.
func problemLines(out, dir string) []string {
	var ps []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, dir) {
			ps = append(ps, strings.TrimPrefix(l, dir))
		}
	}
	slices.Sort(ps)
	return ps
}

// TestCheckAndRunAgree feeds broken configurations to "config check" and
// to "run": both exit 1, with the same problems, one per line.
func TestCheckAndRunAgree(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, config := range brokenConfigs(t, busy.Addr().String()) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			setupDir(t, dir)
			path := filepath.Join(dir, "plcwatch.yaml")
			os.WriteFile(path, []byte(config), 0o644)
			code, out, errOut := plcwatch(t, "config", "check", path)
			checked := problemLines(out, dir)
			if code != 1 || len(checked) == 0 || errOut != "" {
				t.Fatalf("config check: exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			code, out, errOut = plcwatch(t, "run", "--config", path)
			ran := problemLines(errOut, dir)
			if code != 1 || out != "" || !strings.Contains(errOut, "has problems; nothing was started") {
				t.Fatalf("run: exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			if !slices.Equal(checked, ran) {
				t.Errorf("config check:\n%s\nrun:\n%s", strings.Join(checked, "\n"), strings.Join(ran, "\n"))
			}
			for _, l := range checked {
				if strings.Contains(l, `\n`) || strings.Contains(l, "cannot unmarshal") {
					t.Errorf("not one problem a line, or in Go's terms: %s", l)
				}
			}
		})
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds plcwatch once, for tests that run it as another user.
func binary(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "plcwatch-cli")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "plcwatch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
		os.Chmod(dir, 0o755)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestCheckSeesMissingPrivilege: without CAP_NET_RAW, capture cannot
// start, and config check says so before run does.
func TestCheckSeesMissingPrivilege(t *testing.T) {
	if os.Geteuid() != 0 {
		// This user lacks the privilege: the agent package's Check test
		// sees the problem directly.
		t.Skip("drops root's capabilities with setpriv: needs root (CI runs as root)")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal("setpriv (util-linux) is needed to drop capabilities")
	}
	bin := binary(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // testing's folder for this test
	os.Chmod(dir, 0o755)
	setupDir(t, dir)
	os.Mkdir(filepath.Join(dir, "spool"), 0o755)
	os.Chmod(filepath.Join(dir, "spool"), 0o777)
	path := filepath.Join(dir, "plcwatch.yaml")
	os.WriteFile(path, []byte("rules: {paths: [rules]}\ncapture: {interfaces: [lo]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"]}\n"), 0o644)
	asNobody := func(args ...string) (int, string) {
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", bin}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	want := path + `:2:24: capture.interfaces[0]: interface "lo": `
	for _, args := range [][]string{{"config", "check", path}, {"run", "--config", path}} {
		code, out := asNobody(args...)
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "CAP_NET_RAW") {
			t.Errorf("%v as nobody: exit %d:\n%s", args, code, out)
		}
	}
	// As root, the same file is fine: the result on stdout, as problems
	// are.
	if code, out, errOut := plcwatch(t, "config", "check", path); code != 0 || !strings.HasPrefix(out, path+": ok (") || strings.Contains(errOut, ": ok (") {
		t.Errorf("as root: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
