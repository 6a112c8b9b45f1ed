package rules

import (
	"net/netip"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// loadText loads one rule file given as text.
func loadText(t *testing.T, text string) *Set {
	t.Helper()
	set, err := Load(writeRules(t, map[string]string{"r.yaml": text}))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// raised is what a test engine raised: copies of the alerts, in order.
type raised struct{ alerts []plcwatch.Alert }

func (r *raised) byRule() map[string]int {
	m := map[string]int{}
	for _, a := range r.alerts {
		m[a.Rule.ID]++
	}
	return m
}

// counts sums the events the alerts of each rule stand for.
func (r *raised) counts() map[string]int {
	m := map[string]int{}
	for _, a := range r.alerts {
		m[a.Rule.ID] += a.Count
	}
	return m
}

func newTestEngine(set *Set) (*Engine, *raised) {
	r := &raised{}
	e := NewEngine(set, Options{Site: "s", Gateway: "g"}, func(a *plcwatch.Alert) { r.alerts = append(r.alerts, *a) })
	return e, r
}

// run evaluates evs in order, then closes the engine.
func run(t *testing.T, set *Set, evs []plcwatch.Event) (*Engine, *raised) {
	t.Helper()
	e, r := newTestEngine(set)
	for i := range evs {
		e.Process(&evs[i])
	}
	e.Close()
	return e, r
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// wireEvent is a Modbus request from 10.0.0.9 to 10.0.1.1:502, unit 1.
func wireEvent(at time.Time, fc uint8) plcwatch.Event {
	ev := plcwatch.Event{Time: at, Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Function: fc, Unit: 1,
		Client: netip.MustParseAddrPort("10.0.0.9:40000"), Server: netip.MustParseAddrPort("10.0.1.1:502"), Conn: 1,
		Device: "10.0.1.1:502"}
	switch fc {
	case 1, 2, 3, 4:
		ev.Op = plcwatch.OpRead
		ev.Table = []plcwatch.Table{0, plcwatch.TableCoil, plcwatch.TableDiscrete, plcwatch.TableHolding, plcwatch.TableInput}[fc]
		ev.Count = 1
	case 5, 15:
		ev.Op, ev.Table, ev.Count = plcwatch.OpWrite, plcwatch.TableCoil, 1
		ev.Values.SetBit(false)
	case 6, 16:
		ev.Op, ev.Table, ev.Count = plcwatch.OpWrite, plcwatch.TableHolding, 1
		ev.Values.SetWord(0)
	case 8:
		ev.Op, ev.HasSub = plcwatch.OpDiagnostic, true
	default:
		ev.Op = plcwatch.OpOther
	}
	return ev
}

// pollEvent is a polled value of tag "t" of device "d".
func pollEvent(at time.Time, v float64) plcwatch.Event {
	q := "good"
	if v != v {
		q = "bad"
	}
	return plcwatch.Event{Time: at, Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpRead,
		Device: "d", Tag: "t", Value: v, Raw: v, Quality: q, Function: 3, Table: plcwatch.TableHolding, Unit: 1}
}

// split turns a whole event into the two a pairing dissector emits (issue
// 9 §4): the request as soon as it is complete, without anything the
// response tells, then the full event. Events that are emitted once
// (orphans, framing errors, polls) come back as they are.
func split(ev plcwatch.Event) []plcwatch.Event {
	if ev.Source != plcwatch.Wire || ev.Orphan || (ev.Malformed != "" && ev.Function == 0 && ev.Op == plcwatch.OpOther) {
		return []plcwatch.Event{ev}
	}
	req := ev
	req.Stage = plcwatch.StageRequest
	req.Exception, req.RTT, req.Unanswered, req.Objects = 0, 0, "", nil
	req.Response.Reset()
	req.Status, req.StatusName = 0, ""
	if len(req.Malformed) >= len(responsePrefix) && req.Malformed[:len(responsePrefix)] == responsePrefix {
		req.Malformed = ""
	}
	resp := ev
	resp.Stage = plcwatch.StageResponse
	return []plcwatch.Event{req, resp}
}
