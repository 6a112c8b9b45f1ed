package rules

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Issue 9 §8: a value that is not there never compares as 0, and values
// are compared as the numbers they stand for (98.6, not 98.60000000000001).

func TestMissingValueNeverComparesAsZero(t *testing.T) {
	set := loadText(t, `
rules:
  - id: low
    title: below 5
    severity: low
    when: value < 5
    fold: 0s
  - id: not-five
    title: anything but 5
    severity: low
    when: value != 5
    fold: 0s
  - id: raw-low
    title: raw below 5
    severity: low
    when: not (raw >= 5)
    fold: 0s
  - id: missing
    title: no value
    severity: low
    when: not has_value
    fold: 0s
  - id: missing-or-low
    title: no value, or below 5
    severity: low
    when: not has_value or value < 5
    fold: 0s
`)
	nan := math.NaN()
	bad := pollEvent(t0, nan) // a bad tag, a NaN reading
	bad.Error = "exception 2"
	status := plcwatch.Event{Time: t0, Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpStatus, Device: "d", Quality: "down"}
	write := wireEvent(t0, 6) // Value is 0 and there is no tag: a wire event has no value
	tests := []struct {
		name string
		ev   plcwatch.Event
		want map[string]int
	}{
		{"bad tag", bad, map[string]int{"missing": 1, "missing-or-low": 1}},
		{"device status", status, map[string]int{"missing": 1, "missing-or-low": 1}},
		{"wire write", write, map[string]int{"missing": 1, "missing-or-low": 1}},
		{"value 0", pollEvent(t0, 0), map[string]int{"low": 1, "not-five": 1, "raw-low": 1, "missing-or-low": 1}},
		{"value 7", pollEvent(t0, 7), map[string]int{"not-five": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, r := run(t, set, []plcwatch.Event{tt.ev})
			got := r.byRule()
			if len(got) != len(tt.want) {
				t.Errorf("alerts %v, want %v", got, tt.want)
			}
			for k, n := range tt.want {
				if got[k] != n {
					t.Errorf("alerts %v, want %v", got, tt.want)
				}
			}
			for _, h := range e.Hits() {
				if h.Errors != 0 {
					t.Errorf("%s: %d expression errors", h.ID, h.Errors)
				}
			}
		})
	}
}

func TestRoundedComparisons(t *testing.T) {
	set := loadText(t, `
rules:
  - id: exactly
    title: value is 23.7
    severity: low
    when: value == 23.7
    fold: 0s
  - id: exactly-98.6
    title: value is 98.6
    severity: low
    when: value == 98.6 and raw == 98.6
    fold: 0s
  - id: moved
    title: moved by more than 0.3
    severity: low
    match: {source: poll}
    change: {delta: 0.3}
    fold: 0s
`)
	v := func(x float64) plcwatch.Event { return pollEvent(t0, x) }
	_, r := run(t, set, []plcwatch.Event{
		v(237 * 0.1), // 23.700000000000003
		v(986 * 0.1), // 98.60000000000001
	})
	if got := r.byRule(); got["exactly"] != 1 || got["exactly-98.6"] != 1 {
		t.Errorf("alerts %v: 237 × 0.1 is 23.7 and 986 × 0.1 is 98.6", got)
	}
	// 23.4 to 23.7 is a change of 0.3, not 0.3000000000000007: no alert.
	// Then 23.4 to 23.8 is 0.4: an alert, said as 0.4.
	_, r = run(t, set, []plcwatch.Event{v(234 * 0.1), v(237 * 0.1), v(234 * 0.1), v(238 * 0.1)})
	if n := r.byRule()["moved"]; n != 1 {
		t.Fatalf("%d change alerts, want 1", n)
	}
	for _, a := range r.alerts {
		if a.Rule.ID == "moved" && a.Message != "value changed from 23.4 to 23.8 (by 0.4)" {
			t.Errorf("message %q", a.Message)
		}
	}
}

func TestMissingValueInChangeAndHold(t *testing.T) {
	set := loadText(t, `
rules:
  - id: changed
    title: changed
    severity: low
    match: {source: poll}
    change: any
    fold: 0s
  - id: hot
    title: above 90 for 10s
    severity: low
    match: {source: poll}
    when: value > 90
    for: 10s
`)
	nan := math.NaN()
	at := func(s int, v float64) plcwatch.Event { return pollEvent(t0.Add(time.Duration(s)*time.Second), v) }
	t.Run("a missing value is not a change", func(t *testing.T) {
		_, r := run(t, set, []plcwatch.Event{at(0, 10), at(1, nan), at(2, 10), at(3, nan), at(4, 20)})
		var msgs []string
		for _, a := range r.alerts {
			if a.Rule.ID == "changed" {
				msgs = append(msgs, a.Message)
			}
		}
		if strings.Join(msgs, "|") != "value changed from 10 to 20 (by 10)" {
			t.Errorf("change alerts %q", msgs)
		}
	})
	t.Run("a missing value neither starts nor ends a hold", func(t *testing.T) {
		var evs []plcwatch.Event
		for s := 0; s < 5; s++ {
			evs = append(evs, at(s, nan)) // missing: no hold starts
		}
		for s := 5; s <= 20; s++ {
			v := 95.0
			if s >= 8 && s <= 11 {
				v = nan // missing in the middle: the hold goes on
			}
			evs = append(evs, at(s, v))
		}
		_, r := run(t, set, evs)
		if got := times(r); len(got) != 1 || got[0] != "09:00:15" {
			t.Errorf("hold alerts at %v, want one at 09:00:15 (10 s after 09:00:05)", got)
		}
	})
}

func TestRound15(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{
		{986 * 0.1, 98.6}, {237 * 0.1, 23.7}, {0.1 + 0.2, 0.3}, {-986 * 0.1, -98.6},
		{1e20, 1e20}, {123456789012345678, 123456789012345678}, {1e-30, 1e-30}, {0, 0},
		{float64(float32(23.7)), 23.7000007629395},
	} {
		if got := round15(tt.in); got != tt.want {
			t.Errorf("round15(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := round15(math.NaN()); got == got {
		t.Error("NaN must stay NaN")
	}
	if d := roundedDiff(23.7, 23.4); d != 0.3 {
		t.Errorf("23.7 - 23.4 = %v, want 0.3", d)
	}
}
