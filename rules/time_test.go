package rules

import (
	"fmt"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Issue 9 §8: windows use the events' own times. For every stateful kind:
// one event stamped an hour late in an otherwise normal stream, a step
// backwards, and a stream whose stamps are all zero (pcapfix writes such
// files; the zero time.Time of an event without a time too).

const (
	late = time.Hour
)

// stream builds events: f(i) is the i-th event's time.
func stream(n int, mk func(i int) plcwatch.Event) []plcwatch.Event {
	evs := make([]plcwatch.Event, n)
	for i := range evs {
		evs[i] = mk(i)
	}
	return evs
}

// withLate stamps event i of evs an hour late.
func withLate(evs []plcwatch.Event, i int) []plcwatch.Event {
	evs[i].Time = evs[i].Time.Add(late)
	return evs
}

var zeroTimes = map[string]time.Time{"epoch": time.Unix(0, 0).UTC(), "zero time.Time": {}}

func TestThresholdTimes(t *testing.T) {
	set := loadText(t, `
rules:
  - id: five-writes
    title: five writes within 10s
    severity: low
    match: {op: write}
    threshold: {count: 5, window: 10s}
    fold: 0s
`)
	every := func(step time.Duration) func(int) plcwatch.Event {
		return func(i int) plcwatch.Event { return wireEvent(t0.Add(time.Duration(i)*step), 6) }
	}
	t.Run("benign pace never fires, a late stamp in it neither", func(t *testing.T) {
		// One write every 3 s: at most 4 in any 10 s.
		_, r := run(t, set, withLate(stream(40, every(3*time.Second)), 20))
		if n := len(r.alerts); n != 0 {
			t.Errorf("%d alerts on a benign stream with one late stamp", n)
		}
	})
	t.Run("a late stamp does not stop counting", func(t *testing.T) {
		// 4 writes, one stamped late, then 5 within 4 s: the 5 fire.
		evs := withLate(stream(10, every(time.Second)), 4)
		_, r := run(t, set, evs)
		if n := len(r.alerts); n != 1 || !r.alerts[0].Time.Equal(t0.Add(9*time.Second)) {
			t.Errorf("%d alerts %v, want one at the ninth write", n, times(r))
		}
	})
	t.Run("a step back is a new start, not inside the window", func(t *testing.T) {
		// 4 writes at t0+100 s.., then 4 at t0..: never 5 within 10 s.
		evs := append(stream(4, func(i int) plcwatch.Event { return wireEvent(t0.Add(100*time.Second+time.Duration(i)*time.Second), 6) }),
			stream(4, every(time.Second))...)
		if _, r := run(t, set, evs); len(r.alerts) != 0 {
			t.Errorf("alerts %v: a step back was counted inside the window", times(r))
		}
	})
	t.Run("a little out of order counts", func(t *testing.T) {
		// t0+2, t0+1, t0+3, t0+0, t0+4: five within 4 s.
		var evs []plcwatch.Event
		for _, s := range []int{2, 1, 3, 0, 4} {
			evs = append(evs, wireEvent(t0.Add(time.Duration(s)*time.Second), 6))
		}
		if _, r := run(t, set, evs); len(r.alerts) != 1 {
			t.Errorf("%d alerts, want 1", len(r.alerts))
		}
	})
	for name, z := range zeroTimes {
		t.Run("all stamps "+name, func(t *testing.T) {
			evs := stream(10, func(int) plcwatch.Event { return wireEvent(z, 6) })
			if _, r := run(t, set, evs); len(r.alerts) != 2 {
				t.Errorf("%d alerts, want 2: ten writes at one time are twice five within 10 s", len(r.alerts))
			}
		})
	}
}

func TestRateTimes(t *testing.T) {
	// Counts above 64 are kept per sub-window: "the >64-count path took old
	// events for now".
	set := loadText(t, `
rules:
  - id: flood
    title: 100 requests within 1s
    severity: low
    threshold: {count: 100, window: 1s}
    fold: 0s
`)
	poll := func(start time.Time, perSecond, n int) []plcwatch.Event {
		return stream(n, func(i int) plcwatch.Event {
			return wireEvent(start.Add(time.Duration(i)*time.Second/time.Duration(perSecond)), 3)
		})
	}
	t.Run("benign polling with a late stamp", func(t *testing.T) {
		// 50 requests a second for 20 s.
		if _, r := run(t, set, withLate(poll(t0, 50, 1000), 500)); len(r.alerts) != 0 {
			t.Errorf("%d alerts on benign polling with one late stamp", len(r.alerts))
		}
	})
	t.Run("a step back is a new start", func(t *testing.T) {
		// 60 requests within a second at t0+60 s, then 60 within a second at t0.
		evs := append(poll(t0.Add(time.Minute), 100, 60), poll(t0, 100, 60)...)
		if _, r := run(t, set, evs); len(r.alerts) != 0 {
			t.Errorf("%d alerts: events of a minute ago were counted as now", len(r.alerts))
		}
	})
	t.Run("a flood fires", func(t *testing.T) {
		if _, r := run(t, set, poll(t0, 500, 500)); len(r.alerts) != 5 {
			t.Errorf("%d alerts, want 5 (500 requests within 1 s)", len(r.alerts))
		}
	})
	for name, z := range zeroTimes {
		t.Run("all stamps "+name, func(t *testing.T) {
			if _, r := run(t, set, events(poll(z, 1, 250)).zeroed(z)); len(r.alerts) != 2 {
				t.Errorf("%d alerts, want 2", len(r.alerts))
			}
		})
	}
}

type events []plcwatch.Event

func (evs events) zeroed(z time.Time) []plcwatch.Event {
	for i := range evs {
		evs[i].Time = z
	}
	return evs
}

func TestDistinctTimes(t *testing.T) {
	set := loadText(t, `
rules:
  - id: unit-scan
    title: 10 units within a minute
    severity: low
    threshold: {count: 10, window: 1m, distinct: unit}
    fold: 0s
  - id: node-sweep
    title: 10 nodes within a minute
    severity: low
    threshold: {count: 10, window: 1m, distinct: node}
    fold: 0s
`)
	scan := func(at func(i int) time.Time, n int) []plcwatch.Event {
		return stream(n, func(i int) plcwatch.Event {
			ev := wireEvent(at(i), 3)
			ev.Unit = uint8(i + 1)
			ev.Node = fmt.Sprintf("ns=2;i=%d", i)
			return ev
		})
	}
	for name, z := range zeroTimes {
		t.Run("a scan with all stamps "+name+" is seen", func(t *testing.T) {
			if _, r := run(t, set, scan(func(int) time.Time { return z }, 30)); r.byRule()["unit-scan"] != 3 || r.byRule()["node-sweep"] != 3 {
				t.Errorf("alerts %v, want 3 of each", r.byRule())
			}
		})
	}
	t.Run("a late stamp costs one window, not the rest", func(t *testing.T) {
		evs := withLate(scan(func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }, 30), 5)
		// Units 1-5, the late one, then 7-30: 24 in the window after it.
		if _, r := run(t, set, evs); r.byRule()["unit-scan"] != 2 || r.byRule()["node-sweep"] != 2 {
			t.Errorf("alerts %v, want 2 of each", r.byRule())
		}
	})
	t.Run("a step back is a new start", func(t *testing.T) {
		// Units 1-6 at t0+10 min, units 7-12 at t0: never 10 in one window.
		evs := scan(func(i int) time.Time {
			if i < 6 {
				return t0.Add(10 * time.Minute)
			}
			return t0
		}, 12)
		if _, r := run(t, set, evs); len(r.alerts) != 0 {
			t.Errorf("alerts %v across a step back", r.byRule())
		}
	})
}

func TestHeldTimes(t *testing.T) {
	set := loadText(t, `
rules:
  - id: hot
    title: above 90 for 30s
    severity: low
    match: {source: poll}
    when: value > 90
    for: 30s
`)
	hot := func(at func(i int) time.Time, n int) []plcwatch.Event {
		return stream(n, func(i int) plcwatch.Event { return pollEvent(at(i), 95) })
	}
	second := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	t.Run("a late stamp does not complete a hold", func(t *testing.T) {
		// Hot from t0, one event stamped an hour late at 10 s, on to 35 s:
		// the hold starts again after the jump and the step back.
		_, r := run(t, set, withLate(hot(second, 36), 10))
		if len(r.alerts) != 0 {
			t.Errorf("alerts at %v: a late stamp completed a hold", times(r))
		}
		_, r = run(t, set, withLate(hot(second, 60), 10))
		if len(r.alerts) != 1 || !r.alerts[0].Time.Equal(t0.Add(41*time.Second)) {
			t.Errorf("alerts at %v, want one at t0+41s (30 s after the step back)", times(r))
		}
	})
	t.Run("a step back starts the hold again", func(t *testing.T) {
		evs := append(hot(func(i int) time.Time { return t0.Add(time.Hour + time.Duration(i)*time.Second) }, 20), hot(second, 31)...)
		_, r := run(t, set, evs)
		if len(r.alerts) != 1 || !r.alerts[0].Time.Equal(t0.Add(30*time.Second)) {
			t.Errorf("alerts at %v, want one at t0+30s", times(r))
		}
	})
	t.Run("a slow poll still holds", func(t *testing.T) {
		// One value a minute: each interval is over the hold, none is a jump.
		_, r := run(t, set, hot(func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }, 5))
		if len(r.alerts) != 1 || !r.alerts[0].Time.Equal(t0.Add(time.Minute)) {
			t.Errorf("alerts at %v, want one at t0+1m", times(r))
		}
	})
	for name, z := range zeroTimes {
		t.Run("all stamps "+name, func(t *testing.T) {
			// No time passes: nothing held for 30 s.
			if _, r := run(t, set, hot(func(int) time.Time { return z }, 100)); len(r.alerts) != 0 {
				t.Errorf("%d alerts with no time passing", len(r.alerts))
			}
		})
	}
}

func TestChangeTimes(t *testing.T) {
	set := loadText(t, `
rules:
  - id: changed
    title: changed by more than 5
    severity: low
    match: {source: poll}
    change: {delta: 5}
    fold: 0s
  - id: toggled
    title: a coil toggled 10 times within 10s
    severity: low
    match: {source: wire, op: write, table: coil}
    change: {count: 10, window: 10s}
    fold: 0s
`)
	values := []float64{10, 12, 20, 21, 30, 30, 40}
	mk := func(at func(i int) time.Time) []plcwatch.Event {
		evs := stream(len(values), func(i int) plcwatch.Event { return pollEvent(at(i), values[i]) })
		for i := range 40 {
			ev := wireEvent(at(i).Add(time.Duration(i)*100*time.Millisecond), 5)
			ev.Values.SetBit(i%2 == 0)
			evs = append(evs, ev)
		}
		return evs
	}
	second := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	cases := map[string]func(int) time.Time{
		"in order":   second,
		"late stamp": func(i int) time.Time { return second(i).Add(map[bool]time.Duration{true: late}[i == 3]) },
		"step back":  func(i int) time.Time { return second(i).Add(map[bool]time.Duration{true: time.Hour}[i < 3]) },
	}
	for name, z := range zeroTimes {
		cases["all stamps "+name] = func(int) time.Time { return z }
	}
	for name, at := range cases {
		t.Run(name, func(t *testing.T) {
			// Value changes do not depend on time: 10→20→30→40 alert.
			_, r := run(t, set, mk(at))
			if got := r.byRule()["changed"]; got != 3 {
				t.Errorf("changed: %d alerts, want 3", got)
			}
			if got := r.byRule()["toggled"]; got < 1 {
				t.Errorf("toggled: %d alerts, want at least 1 (39 changes)", got)
			}
		})
	}
}

func TestBaselineTimes(t *testing.T) {
	set := loadText(t, `
rules:
  - id: new-function
    title: function never seen
    severity: low
    baseline: {learn: 10m, key: [client, function]}
    fold: 0s
`)
	mk := func(at func(i int) time.Time) []plcwatch.Event {
		// Learn FC 3 for 20 minutes of events, then FC 16 (new) at the end.
		evs := stream(21, func(i int) plcwatch.Event { return wireEvent(at(i), 3) })
		return append(evs, wireEvent(at(21), 16))
	}
	minute := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	t.Run("in order", func(t *testing.T) {
		if _, r := run(t, set, mk(minute)); len(r.alerts) != 1 {
			t.Errorf("%d alerts, want 1", len(r.alerts))
		}
	})
	t.Run("a late stamp in learning is judged by its own time", func(t *testing.T) {
		// A known tuple stamped late raises nothing, and the events after
		// it are still learning: FC 16 at minute 5 is learned quietly.
		evs := stream(10, func(i int) plcwatch.Event { return wireEvent(minute(i), 3) })
		evs[3].Time = evs[3].Time.Add(late)
		evs = append(evs, wireEvent(minute(5), 16))
		if _, r := run(t, set, evs); len(r.alerts) != 0 {
			t.Errorf("%d alerts during learning", len(r.alerts))
		}
	})
	t.Run("a step back before learning began is learning", func(t *testing.T) {
		evs := append(mk(minute), wireEvent(t0.Add(-time.Hour), 5))
		if _, r := run(t, set, evs); len(r.alerts) != 1 {
			t.Errorf("%d alerts, want 1 (FC 16 only)", len(r.alerts))
		}
	})
	for name, z := range zeroTimes {
		t.Run("all stamps "+name, func(t *testing.T) {
			// No time passes: learning never ends, nothing alerts.
			if _, r := run(t, set, mk(func(int) time.Time { return z })); len(r.alerts) != 0 {
				t.Errorf("%d alerts though learning never ended", len(r.alerts))
			}
		})
	}
}

func TestFoldTimes(t *testing.T) {
	set := loadText(t, `
rules:
  - id: write
    title: any write
    severity: low
    match: {op: write}
    fold: {window: 1m, by: [client, server]}
`)
	second := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	t.Run("a late stamp does not hold a fold open", func(t *testing.T) {
		// Writes every second for 3 minutes, one stamped an hour late.
		evs := withLate(stream(180, func(i int) plcwatch.Event { return wireEvent(second(i), 6) }), 30)
		e, r := newTestEngine(set)
		for i := range evs {
			e.Process(&evs[i])
		}
		// Before Close: every fold whose minute ended went out.
		var folded int
		for _, a := range r.alerts {
			folded += a.Count
		}
		if folded < 120 {
			t.Errorf("only %d of 180 writes alerted before the end: a fold stayed open (alerts at %v)", folded, times(r))
		}
		e.Close()
		if got := r.counts()["write"]; got != 180 {
			t.Errorf("alerts stand for %d writes, want 180", got)
		}
		if len(r.alerts) > 9 {
			t.Errorf("%d alerts for 3 minutes of writes: want a handful", len(r.alerts))
		}
	})
	t.Run("a step back opens a new fold", func(t *testing.T) {
		evs := append(stream(10, func(i int) plcwatch.Event { return wireEvent(second(i).Add(time.Hour), 6) }),
			stream(10, func(i int) plcwatch.Event { return wireEvent(second(i), 6) })...)
		_, r := run(t, set, evs)
		if got := r.counts()["write"]; got != 20 || len(r.alerts) != 4 {
			t.Errorf("%d alerts standing for %d writes, want 4 for 20", len(r.alerts), got)
		}
	})
	for name, z := range zeroTimes {
		t.Run("all stamps "+name, func(t *testing.T) {
			_, r := run(t, set, stream(50, func(int) plcwatch.Event { return wireEvent(z, 6) }))
			if len(r.alerts) != 2 || r.alerts[1].Count != 49 {
				t.Errorf("alerts %d, want the first and one for the 49 others", len(r.alerts))
			}
		})
	}
}

func TestScheduleTimes(t *testing.T) {
	set := loadText(t, `
rules:
  - id: write
    title: write outside maintenance
    severity: low
    match: {op: write}
    schedule: {mute: ["daily 08:00-17:00"]}
    fold: 0s
`)
	// t0 is 09:00: muted. One write stamped an hour late (10:00) is muted
	// too; one stamped at 20:00 is judged at 20:00; the rest stay muted.
	evs := stream(10, func(i int) plcwatch.Event { return wireEvent(t0.Add(time.Duration(i)*time.Second), 6) })
	evs[3].Time = evs[3].Time.Add(late)
	evs[6].Time = evs[6].Time.Add(11 * time.Hour)
	evs = append(evs, wireEvent(t0.Add(-2*time.Hour), 6)) // a step back to 07:00
	_, r := run(t, set, evs)
	if got := times(r); fmt.Sprint(got) != "[20:00:06 07:00:00]" {
		t.Errorf("alerts at %v, want [20:00:06 07:00:00]", got)
	}
	for name, z := range zeroTimes {
		t.Run("all stamps "+name, func(t *testing.T) {
			// Midnight (UTC) of the zero time: outside the mute window.
			if _, r := run(t, set, stream(3, func(int) plcwatch.Event { return wireEvent(z, 6) })); len(r.alerts) != 3 {
				t.Errorf("%d alerts, want 3", len(r.alerts))
			}
		})
	}
}

func times(r *raised) []string {
	var out []string
	for _, a := range r.alerts {
		out = append(out, a.Time.UTC().Format("15:04:05"))
	}
	return out
}
