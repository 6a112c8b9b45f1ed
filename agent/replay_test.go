package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/rules"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// TestReplayStages: with rules, replay hands requests to them the moment
// they are complete on the wire, as the daemon does, and the event stream
// still shows one event per request.
func TestReplayStages(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	c := w.Conn(netip.MustParseAddrPort("192.0.2.10:49152"), netip.MustParseAddrPort("192.0.2.20:502"), t0, 1)
	c.Handshake()
	c.Send(pcapgen.ToServer, pcapgen.MBAP(1, 1, 6, 0, 9, 0, 42)) // answered
	c.Send(pcapgen.ToClient, pcapgen.MBAP(1, 1, 6, 0, 9, 0, 42))
	c.Send(pcapgen.ToServer, pcapgen.MBAP(2, 1, 8, 0, 4, 0, 0)) // force listen only: never answered
	c.Time = c.Time.Add(6 * time.Second)
	c.Send(pcapgen.ToServer, pcapgen.MBAP(3, 1, 3, 0, 0, 0, 1))
	c.Send(pcapgen.ToClient, pcapgen.MBAP(3, 1, 3, 2, 0, 7))
	w.Flush()
	pcap := filepath.Join(dir, "c.pcap")
	os.WriteFile(pcap, buf.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(`rules:
  - {id: listen-only, title: t, severity: high, match: {function: 8, subfunction: 4}, fold: 0s}
  - {id: unanswered, title: t, severity: low, match: {unanswered: timeout}, fold: 0s}
  - {id: writes, title: t, severity: high, match: {op: write}, fold: 0s}
`), 0o644)
	set, err := rules.Load(filepath.Join(dir, "r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	replay := func(opts agent.ReplayOptions) (events, alerts []map[string]any) {
		var out bytes.Buffer
		if _, err := agent.Replay(context.Background(), pcap, opts, &out); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if _, ok := m["rule"]; ok {
				alerts = append(alerts, m)
			} else {
				events = append(events, m)
			}
		}
		return events, alerts
	}
	plain, _ := replay(agent.ReplayOptions{Events: true})
	events, alerts := replay(agent.ReplayOptions{Events: true, Rules: set})
	if len(events) != 3 || len(plain) != 3 {
		t.Fatalf("%d events with rules, %d without: want one per request, 3", len(events), len(plain))
	}
	for i := range events {
		a, _ := json.Marshal(events[i])
		b, _ := json.Marshal(plain[i])
		if !bytes.Equal(a, b) {
			t.Errorf("event %d differs with rules:\n%s\n%s", i, a, b)
		}
	}
	var ids []string
	for _, a := range alerts {
		ids = append(ids, a["rule"].(map[string]any)["id"].(string))
	}
	// The listen-only alert is raised when its request is complete, before
	// the timeout that gives up on it; each rule fires once per request.
	if got := strings.Join(ids, " "); got != "writes listen-only unanswered" {
		t.Errorf("alerts %s, want writes listen-only unanswered", got)
	}
}
