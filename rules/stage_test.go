package rules

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// Issue 9 §4: alerts never wait for a response. A rule that does not look
// at the response fires on the StageRequest event; one that does waits for
// StageResponse; nothing fires twice for one request.

const stageRules = `
rules:
  - id: listen-only
    title: FC 8/4
    severity: high
    match: {function: 8, subfunction: 4}
  - id: any-exception
    title: exception
    severity: low
    match: {exception: true}
  - id: read-without-exception
    title: a read answered normally
    severity: info
    match: {function: 3, exception: false}
  - id: slow
    title: slow answer
    severity: low
    when: rtt_ms > 100
  - id: unanswered
    title: unanswered write
    severity: low
    match: {op: write, unanswered: [timeout]}
  - id: write
    title: any write
    severity: low
    match: {op: write}
  - id: malformed
    title: malformed request or response
    severity: low
    match: {malformed: true}
  - id: malformed-or-fc90
    title: malformed, or FC 90
    severity: low
    when: malformed != "" or function == 90
  - id: exceptions-by-code
    title: two exceptions with the same code
    severity: low
    match: {exception: true}
    threshold: {count: 2, window: 1m, by: [client, exception]}
  - id: writes-counted
    title: three writes
    severity: low
    match: {op: write}
    threshold: {count: 3, window: 1m}
`

func TestStageRequestAndResponse(t *testing.T) {
	set := loadText(t, stageRules)
	stage := map[string]string{}
	for _, r := range set.Rules {
		stage[r.ID] = r.Stage()
	}
	want := map[string]string{"listen-only": "request", "any-exception": "response", "read-without-exception": "response",
		"slow": "response", "unanswered": "response", "write": "request", "malformed": "request", "malformed-or-fc90": "request",
		"exceptions-by-code": "response", "writes-counted": "request"}
	if !maps.Equal(stage, want) {
		t.Errorf("stages %v\nwant   %v", stage, want)
	}

	type alert struct {
		rule  string
		stage plcwatch.Stage
	}
	tests := []struct {
		name string
		ev   func() plcwatch.Event
		want []alert
	}{
		{"force listen only fires on the request, never on its timeout", func() plcwatch.Event {
			ev := wireEvent(t0, 8)
			ev.SubFunction = 4
			ev.Unanswered = plcwatch.UnansweredTimeout
			return ev
		}, []alert{{"listen-only", plcwatch.StageRequest}}},
		{"an exception fires only on the response", func() plcwatch.Event {
			ev := wireEvent(t0, 3)
			ev.Exception = 2
			return ev
		}, []alert{{"any-exception", plcwatch.StageResponse}}},
		{"exception false waits for the response", func() plcwatch.Event {
			return wireEvent(t0, 3)
		}, []alert{{"read-without-exception", plcwatch.StageResponse}}},
		{"rtt waits for the response", func() plcwatch.Event {
			ev := wireEvent(t0, 4)
			ev.RTT = 200 * time.Millisecond
			return ev
		}, []alert{{"slow", plcwatch.StageResponse}}},
		{"a write fires at once, its timeout later", func() plcwatch.Event {
			ev := wireEvent(t0, 6)
			ev.Unanswered = plcwatch.UnansweredTimeout
			return ev
		}, []alert{{"write", plcwatch.StageRequest}, {"unanswered", plcwatch.StageResponse}}},
		{"a malformed request fires once, on the request", func() plcwatch.Event {
			ev := wireEvent(t0, 3)
			ev.Malformed = "PDU shorter than its function needs"
			return ev
		}, []alert{{"malformed", plcwatch.StageRequest}, {"malformed-or-fc90", plcwatch.StageRequest}, {"read-without-exception", plcwatch.StageResponse}}},
		{"a malformed response fires once, on the response", func() plcwatch.Event {
			ev := wireEvent(t0, 3)
			ev.Malformed = "response: byte count disagrees with quantity"
			return ev
		}, []alert{{"read-without-exception", plcwatch.StageResponse}, {"malformed", plcwatch.StageResponse}, {"malformed-or-fc90", plcwatch.StageResponse}}},
		{"FC 90 with a malformed response: the rule matched the request, once", func() plcwatch.Event {
			ev := wireEvent(t0, 90)
			ev.Malformed = "response: PDU longer than its function needs"
			return ev
		}, []alert{{"malformed-or-fc90", plcwatch.StageRequest}, {"malformed", plcwatch.StageResponse}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []alert
			e := NewEngine(set, Options{}, func(a *plcwatch.Alert) { got = append(got, alert{a.Rule.ID, a.Event.Stage}) })
			for _, ev := range split(tt.ev()) {
				e.Process(&ev)
			}
			e.Close()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("alerts %v\nwant   %v", got, tt.want)
			}
		})
	}
}

// TestStagesAlertLikeWholeEvents runs real captures through rule sets of
// every kind twice: as whole events, and split in two stages the way a
// pairing dissector emits them, the response held back behind the next
// request (pipelining). Every rule must raise the same alerts for the same
// events: none lost, none twice.
func TestStagesAlertLikeWholeEvents(t *testing.T) {
	sets := map[string]*Set{"stage rules": loadText(t, stageRules+moreKinds)}
	def, err := Load("../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	sets["default set"] = def
	caps, _ := filepath.Glob("../testdata/pcaps/modbus/*.pcap")
	if len(caps) == 0 {
		t.Fatal("no captures in testdata/pcaps/modbus")
	}
	for _, path := range caps {
		var whole []plcwatch.Event
		var cfg capture.Config
		cfg.Defaults()
		if err := capture.ReadFile(context.Background(), path, capture.NewEngine(cfg, func(ev *plcwatch.Event) {
			if ev.Stage != plcwatch.StageRequest { // once the dissector emits stages itself, keep one event per request
				whole = append(whole, *ev)
			}
		})); err != nil {
			t.Fatal(err)
		}
		var staged []plcwatch.Event
		var held []plcwatch.Event
		for _, ev := range whole {
			parts := split(ev)
			staged = append(staged, parts[0])
			staged = append(staged, held...)
			held = parts[1:]
		}
		staged = append(staged, held...)
		for name, set := range sets {
			t.Run(filepath.Base(path)+"/"+name, func(t *testing.T) {
				ew, rw := run(t, set, whole)
				es, rs := run(t, set, staged)
				if !maps.Equal(rw.counts(), rs.counts()) {
					t.Errorf("events alerted per rule:\n whole  %v\n staged %v", rw.counts(), rs.counts())
				}
				hw, hs := ew.Hits(), es.Hits()
				for i := range hw {
					if hw[i].Matched != hs[i].Matched {
						t.Errorf("%s: matched %d events whole, %d staged", hw[i].ID, hw[i].Matched, hs[i].Matched)
					}
				}
			})
		}
	}
}

// moreKinds adds the stateful kinds to stageRules.
const moreKinds = `
  - id: unit-scan
    title: units
    severity: low
    match: {orphan: false}
    threshold: {count: 3, window: 1m, distinct: unit}
  - id: flood
    title: many requests
    severity: low
    threshold: {count: 100, window: 1s}
  - id: written-value-changed
    title: a written value changed
    severity: low
    match: {op: write}
    change: any
  - id: new-function
    title: a function never seen
    severity: low
    baseline: {learn: 1s}
  - id: exception-held
    title: exceptions for a while
    severity: low
    when: exception != 0
    for: 1s
`
