package rules_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/rules"
)

var update = flag.Bool("update", false, "rewrite testdata/*/want.jsonl from what the rules raise")

// TestGolden runs every case in testdata/<case>/: rules.yaml evaluated over
// events.jsonl or over the capture named in pcap.txt, the alerts compared
// with want.jsonl. A case named *-silent must raise nothing and one named
// *-fires must raise something, so a golden file cannot quietly lose its
// point.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/rules.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, rulesFile := range cases {
		dir := filepath.Dir(rulesFile)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			got := runCase(t, dir)
			switch {
			case strings.HasSuffix(name, "-silent") && len(got) > 0:
				t.Fatalf("a silent case raised %d alerts:\n%s", len(got), strings.Join(got, "\n"))
			case strings.HasSuffix(name, "-fires") && len(got) == 0:
				t.Fatal("a firing case raised nothing")
			}
			want := filepath.Join(dir, "want.jsonl")
			text := strings.Join(got, "\n")
			if len(got) > 0 {
				text += "\n"
			}
			if *update {
				if err := os.WriteFile(want, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test ./rules -run TestGolden -update to write it)", err)
			}
			if string(b) != text {
				t.Errorf("alerts differ from %s:\n got:\n%s\n want:\n%s", want, text, b)
			}
		})
	}
}

// runCase evaluates one case and returns its alerts as JSON lines.
func runCase(t *testing.T, dir string) []string {
	set, err := rules.Load(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	eng := rules.NewEngine(set, rules.Options{Site: "plant-a", Gateway: "gw-1"}, func(a *plcwatch.Alert) {
		if a.Count < 1 || a.Rule.ID == "" || a.ID == "" {
			t.Errorf("alert without count, rule or id: %s", a.AppendJSON(nil))
		}
		got = append(got, string(a.AppendJSON(nil)))
	})
	if ref, err := os.ReadFile(filepath.Join(dir, "pcap.txt")); err == nil {
		var cfg capture.Config
		cfg.Defaults()
		e := capture.NewEngine(cfg, eng.Process)
		path := filepath.Join("..", strings.TrimSpace(string(ref)))
		if err := capture.ReadFile(context.Background(), path, e); err != nil {
			t.Fatal(err)
		}
	} else {
		f, err := os.Open(filepath.Join(dir, "events.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var ev plcwatch.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			eng.Process(&ev)
		}
	}
	eng.Close()
	return got
}
