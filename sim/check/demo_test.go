package check_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/rules"
	"github.com/plcwatch/plcwatch/sim/check"
	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/runner"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// demoConfig writes configs/demo into dir as make demo does, with free
// ports and live capture on lo.
func demoConfig(t *testing.T, dir string) string {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "demo"), 0o755)
	os.MkdirAll(filepath.Join(dir, "rules"), 0o755)
	files, _ := filepath.Glob("../../configs/rules/*.yaml")
	for _, f := range append(files, "../../configs/demo/rules.yaml", "../../configs/demo/plcwatch.yaml") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, "rules", filepath.Base(f))
		if strings.Contains(f, "configs/demo/") {
			to = filepath.Join(dir, "demo", filepath.Base(f))
		}
		if filepath.Base(f) == "plcwatch.yaml" {
			s := strings.NewReplacer("127.0.0.1:18830", mqtttest.FreeAddr(t), "127.0.0.1:19108", mqtttest.FreeAddr(t),
				"capture:\n", "capture:\n  interfaces: [lo]\n").Replace(string(b))
			b = []byte(s)
		}
		os.WriteFile(to, b, 0o644)
	}
	return filepath.Join(dir, "demo", "plcwatch.yaml")
}

// TestDemo runs the demo scenario headless, twice as fast, watched by the
// daemon (agent.New on configs/demo: polling both PLCs, capturing live on
// lo), recording its traffic. Every attack raises its alert, from the
// attacker's address, at its action; the HMI and the operator raise none;
// the safety rule fires once the intruder's setpoint has driven the tank
// out of its band; and the recording, replayed offline through the same
// rules (what plcwatch rules test does), raises the same wire alerts.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s scenario")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("live capture on lo needs root (CI runs as root)")
		}
		t.Skip("live capture on lo needs root")
	}
	dir := t.TempDir()
	path := demoConfig(t, dir)
	cfg, err := agent.Check(path, agent.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Load("../../configs/scenarios/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const speed = 2
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	started := make(chan struct{})
	var actions []runner.Action
	pcap := filepath.Join(dir, "demo.pcap")
	recCtx, stopRec := context.WithCancel(context.Background())
	recDone := make(chan error, 1)
	go func() {
		recDone <- check.Record(recCtx, s, pcap, runner.Options{
			Speed: speed,
			Hold:  time.Hour, // until the agent has stopped: no device-down at the end
			Started: func(map[string]*plant.Plant) {
				go func() { agentDone <- a.Run(agentCtx) }()
				// Ready: the capture is open and the first polls are done.
				for i := 0; i < 600; i++ {
					if addr := a.HTTPAddr(); addr != "" {
						if r, err := http.Get("http://" + addr + "/readyz"); err == nil {
							r.Body.Close()
							if r.StatusCode == 200 {
								break
							}
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
				close(started)
			},
			OnAction: func(x runner.Action) { actions = append(actions, x) },
		})
	}()
	// Record failing before the plants start (an address taken by another
	// program) never calls Started: say why, rather than wait forever.
	select {
	case <-started:
	case err := <-recDone:
		t.Fatalf("the scenario stopped before its plants started: %v", err)
	}
	// The scenario, then two poll intervals.
	time.Sleep(time.Duration(float64(s.Duration)/speed) + 2*time.Second)
	stopAgent()
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	stopRec()
	if err := <-recDone; err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(cfg.Alerts.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	live, err := check.Attribute(s, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range check.Compare(s, live) {
		if !r.OK() {
			t.Errorf("live: %s; raised %d", r.Expect, r.Got)
		}
	}
	// At the attacker's action: not before it, and within 5 s of it (the
	// unit and function scans need their 10th and 5th request).
	first := map[string]runner.Action{}
	for _, x := range actions {
		if x.Err != nil && x.At < s.Duration-time.Second {
			t.Errorf("action failed: %s", x)
		}
		if _, ok := first[x.Actor]; !ok {
			first[x.Actor] = x
		}
	}
	var safety []check.Alert
	for _, al := range live {
		if al.Rule.ID == "demo-tank-level-high" {
			safety = append(safety, al)
		}
		if al.Actor == "" || al.Count > 1 {
			continue // poll alerts; folded follow-ups
		}
		at, _ := time.Parse(time.RFC3339Nano, al.Time)
		x := first[al.Actor]
		if at.Before(x.Time.Add(-time.Second)) || at.After(x.Time.Add(5*time.Second)) {
			t.Errorf("%s from %s at %s, the actor acted at %s", al.Rule.ID, al.Actor, at.Format(time.StampMilli), x.Time.Format(time.StampMilli))
		}
	}
	if len(safety) != 1 {
		t.Fatalf("want one demo-tank-level-high, got %d", len(safety))
	}
	if at, _ := time.Parse(time.RFC3339Nano, safety[0].Time); at.Before(first["intruder"].Time) {
		t.Errorf("the safety alert came before the intruder's write")
	}
	if v := safety[0].Event.Value; v == nil || *v <= 90 {
		t.Errorf("safety alert on level %v", v)
	}

	// Offline: the recording through replay and the same rules.
	set, err := rules.Load(cfg.Rules.Paths...)
	if err != nil {
		t.Fatal(err)
	}
	opts := cfg.ReplayOptions(agent.ReplayOptions{Rules: set}, func(string) bool { return false })
	var out bytes.Buffer
	if _, err := agent.Replay(context.Background(), pcap, opts, &out); err != nil {
		t.Fatal(err)
	}
	offline, err := check.Attribute(s, &out)
	if err != nil {
		t.Fatal(err)
	}
	pairs := func(as []check.Alert) []string {
		var p []string
		for _, al := range as {
			if al.Event.Source == "wire" && al.Actor != "" {
				p = append(p, al.Rule.ID+" from "+al.Actor)
			}
		}
		slices.Sort(p)
		return slices.Compact(p)
	}
	if l, o := pairs(live), pairs(offline); !slices.Equal(l, o) {
		t.Errorf("live and offline differ:\nlive    %q\noffline %q", l, o)
	}
}
