package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Issue 9 §10: one activity, one alert. A sweep varies the function codes,
// units or addresses; the rule's fold fields name the actor, so the sweep
// is one alert at once and one with its count and what it touched.

const foldRules = `
rules:
  - id: reserved
    title: reserved function
    severity: high
    match: {function: [0, 9-10, 13-14, 18-19, 25-42, 44-127]}
    fold: {window: 1m, by: [client, server]}
  - id: identify
    title: identification
    severity: low
    match: {op: identify}
  - id: fc-scan
    title: illegal function exceptions
    severity: medium
    match: {exception: [1]}
    threshold: {count: 5, window: 1m, by: [client, server]}
  - id: every-write
    title: every write, unfolded
    severity: low
    match: {op: write}
    fold: 0s
  - id: writes-30s
    title: writes folded for 30s
    severity: low
    match: {op: write}
    fold: 30s
`

func TestFoldASweep(t *testing.T) {
	set := loadText(t, foldRules)
	var evs []plcwatch.Event
	// A function code sweep: 0-127 once each, 10 ms apart, illegal
	// function for all but the public ones.
	for fc := 0; fc < 128; fc++ {
		ev := wireEvent(t0.Add(time.Duration(fc)*10*time.Millisecond), uint8(fc))
		if fc > 24 {
			ev.Exception = 1
		}
		evs = append(evs, ev)
	}
	// A unit id sweep: FC 43/14 to units 1-30.
	for u := 1; u <= 30; u++ {
		ev := wireEvent(t0.Add(5*time.Second+time.Duration(u)*10*time.Millisecond), 43)
		ev.Op, ev.Unit, ev.SubFunction, ev.HasSub = plcwatch.OpIdentify, uint8(u), 14, true
		evs = append(evs, ev)
	}
	// Writes to registers 100-199, one a second for 40 s, after the sweep's
	// writes (FC 5, 6, 15, 16).
	for i := 0; i < 40; i++ {
		ev := wireEvent(t0.Add(10*time.Second+time.Duration(i)*time.Second), 6)
		ev.Address = uint16(100 + i*99/39)
		evs = append(evs, ev)
	}
	_, r := run(t, set, evs)
	if got, want := fmt.Sprint(r.byRule()), "map[every-write:44 fc-scan:2 identify:2 reserved:2 writes-30s:3]"; got != want {
		t.Errorf("alerts per rule %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(r.counts()), "map[every-write:44 fc-scan:20 identify:30 reserved:109 writes-30s:44]"; got != want {
		t.Errorf("events per rule %s, want %s", got, want)
	}
	act := map[string]string{}
	for _, a := range r.alerts {
		if a.Count > 1 {
			var doc struct {
				Activity json.RawMessage `json:"activity"`
			}
			if err := json.Unmarshal(a.AppendJSON(nil), &doc); err != nil {
				t.Fatal(err)
			}
			if act[a.Rule.ID] == "" {
				act[a.Rule.ID] = string(doc.Activity)
			}
		}
	}
	want := map[string]string{
		"reserved": `{"first":"2026-03-02T09:00:00.000000000Z","last":"2026-03-02T09:00:01.270000000Z","events":109,"functions":"0,9-10,13-14,18-19,25-42,44-127","units":"1","clients":["10.0.0.9"]}`,
		"identify": `{"first":"2026-03-02T09:00:05.010000000Z","last":"2026-03-02T09:00:05.300000000Z","events":30,"functions":"43","units":"1-30","clients":["10.0.0.9"]}`,
		"fc-scan":  `{"first":"2026-03-02T09:00:00.290000000Z","last":"2026-03-02T09:00:01.270000000Z","events":99,"functions":"29-127","units":"1","clients":["10.0.0.9"]}`,
	}
	for id, w := range want {
		if act[id] != w {
			t.Errorf("%s activity\n got %s\nwant %s", id, act[id], w)
		}
	}
	if a := act["writes-30s"]; !strings.Contains(a, `"functions":"5-6,15-16","units":"1","tables":["coil","holding"],"addresses":"0-150"`) {
		t.Errorf("writes activity %s: want the address range", a)
	}
}

// TestOneReservedRequestAlertsAtOnce: folding never delays the first alert.
func TestOneReservedRequestAlertsAtOnce(t *testing.T) {
	set := loadText(t, foldRules)
	e, r := newTestEngine(set)
	ev := wireEvent(t0, 90)
	e.Process(&ev)
	if len(r.alerts) != 1 || r.alerts[0].Rule.ID != "reserved" || r.alerts[0].Count != 1 {
		t.Fatalf("alerts %v, want one reserved-function alert at once", r.byRule())
	}
}

func TestFoldSpecLoads(t *testing.T) {
	set := loadText(t, foldRules+`
  - id: threshold-own-fold
    title: t
    severity: low
    threshold: {count: 2, window: 1s, by: [server]}
    fold: {by: [server, unit]}
`)
	want := map[string]string{
		"reserved":           "1m0s [client server]",
		"identify":           "1m0s [client server device tag]",
		"fc-scan":            "1m0s [client server]",
		"every-write":        "0s [client server device tag]",
		"writes-30s":         "30s [client server device tag]",
		"threshold-own-fold": "1m0s [server unit]",
	}
	for _, r := range set.Rules {
		if got := fmt.Sprintf("%s %v", r.fold.window, r.fold.by); got != want[r.ID] {
			t.Errorf("%s: fold %s, want %s", r.ID, got, want[r.ID])
		}
	}
}
