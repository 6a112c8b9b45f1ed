package rules

import (
	"math"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// The default set must catch the attack families it names with margin, and
// raise one alert (or a handful) per activity (issue 9 §9, §10).

func defaultSet(t *testing.T) *Set {
	t.Helper()
	set, err := Load("../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestDefaultsCatchTheirFamilies(t *testing.T) {
	set := defaultSet(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name   string
		events func() []plcwatch.Event
		want   map[string]int // rule -> alerts, at most this many and at least one
	}{
		{"coil brute force: 50 toggles of one coil in 2 s", func() []plcwatch.Event {
			var evs []plcwatch.Event
			for i := 0; i < 50; i++ {
				ev := wireEvent(at(time.Duration(i)*40*time.Millisecond), 5)
				ev.Address = 7
				ev.Values.SetBit(i%2 == 0)
				evs = append(evs, ev)
			}
			return evs
		}, map[string]int{"modbus-output-toggled": 2}},
		{"a slower brute force: 50 toggles in 10 s", func() []plcwatch.Event {
			var evs []plcwatch.Event
			for i := 0; i < 50; i++ {
				ev := wireEvent(at(time.Duration(i)*200*time.Millisecond), 5)
				ev.Values.SetBit(i%2 == 0)
				evs = append(evs, ev)
			}
			return evs
		}, map[string]int{"modbus-output-toggled": 2}},
		{"a write flood of one value: 100 in 1 s", func() []plcwatch.Event {
			var evs []plcwatch.Event
			for i := 0; i < 100; i++ {
				evs = append(evs, wireEvent(at(time.Duration(i)*10*time.Millisecond), 6))
			}
			return evs
		}, map[string]int{"modbus-write-burst": 2}},
		{"one reserved function code", func() []plcwatch.Event {
			return []plcwatch.Event{wireEvent(t0, 90)}
		}, map[string]int{"modbus-reserved-function": 1}},
		{"a function code sweep", func() []plcwatch.Event {
			var evs []plcwatch.Event
			for fc := 0; fc < 128; fc++ {
				if fc == 8 || fc == 43 {
					continue
				}
				ev := wireEvent(at(time.Duration(fc)*500*time.Millisecond), uint8(fc))
				if modbusReserved(uint8(fc)) {
					ev.Exception = 1
				}
				evs = append(evs, ev)
			}
			return evs
		}, map[string]int{"modbus-reserved-function": 3, "modbus-function-code-scan": 3, "modbus-exception-storm": 3, "modbus-write-burst": 0}},
		{"a unit id sweep with device identification", func() []plcwatch.Event {
			var evs []plcwatch.Event
			for u := 1; u <= 30; u++ {
				ev := wireEvent(at(time.Duration(u)*100*time.Millisecond), 43)
				ev.Op, ev.Unit, ev.SubFunction, ev.HasSub = plcwatch.OpIdentify, uint8(u), 14, true
				evs = append(evs, ev)
			}
			return evs
		}, map[string]int{"modbus-device-identification": 2, "modbus-unit-id-scan": 2}},
		{"force listen only, never answered", func() []plcwatch.Event {
			ev := wireEvent(t0, 8)
			ev.SubFunction, ev.Unanswered = 4, plcwatch.UnansweredTimeout
			return split(ev)
		}, map[string]int{"modbus-force-listen-only": 1}},
		{"a polled device goes down", func() []plcwatch.Event {
			return []plcwatch.Event{{Time: t0, Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpStatus,
				Device: "boiler", Quality: "down", Error: "dial tcp 10.0.0.3:502: connect: connection refused"}}
		}, map[string]int{"poll-device-down": 1}},
		{"a tag bad for two minutes", func() []plcwatch.Event {
			var evs []plcwatch.Event
			for s := 0; s <= 120; s += 5 {
				ev := pollEvent(at(time.Duration(s)*time.Second), math.NaN())
				ev.Exception, ev.Error = 2, "exception 2 (illegal data address)"
				evs = append(evs, ev)
			}
			return evs
		}, map[string]int{"poll-tag-bad": 1}},
		{"an OPC UA value frozen at its source", func() []plcwatch.Event {
			var evs []plcwatch.Event
			for s := 0; s <= 120; s += 10 {
				ev := pollEvent(at(time.Duration(s)*time.Second), 42)
				ev.Protocol, ev.ValueType = plcwatch.ProtoOPCUA, "Double"
				ev.ServerTime = at(time.Duration(s) * time.Second)
				ev.SourceTime = t0.Add(-time.Hour)
				evs = append(evs, ev)
			}
			return evs
		}, map[string]int{"poll-value-stale": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r := run(t, set, tt.events())
			got := r.byRule()
			for id, most := range tt.want {
				if most == 0 {
					if got[id] != 0 {
						t.Errorf("%s raised %d alerts, want none", id, got[id])
					}
					continue
				}
				if got[id] < 1 || got[id] > most {
					t.Errorf("%s raised %d alerts, want 1 to %d (all: %v)", id, got[id], most, got)
				}
			}
		})
	}
}

// modbusReserved: what modbus-reserved-function matches.
func modbusReserved(fc uint8) bool {
	switch {
	case fc == 0, fc == 9, fc == 10, fc == 13, fc == 14, fc == 18, fc == 19, fc >= 25 && fc <= 42, fc >= 44:
		return true
	}
	return false
}

// TestDefaultsQuietOnBenignPolling: healthy polling, re-asserted coils and
// a good tag raise nothing.
func TestDefaultsQuietOnBenignPolling(t *testing.T) {
	set := defaultSet(t)
	var evs []plcwatch.Event
	for i := 0; i < 2000; i++ {
		at := t0.Add(time.Duration(i) * 40 * time.Millisecond) // 25 requests a second
		ev := wireEvent(at, 3)
		if i%2 == 0 {
			ev = wireEvent(at, 5) // a master re-asserting a coil, 12.5 times a second
			ev.Values.SetBit(true)
		}
		evs = append(evs, ev)
		if i%25 == 0 {
			evs = append(evs, pollEvent(at, 20.5))
		}
	}
	if _, r := run(t, set, evs); len(r.alerts) != 0 {
		t.Errorf("alerts on benign polling: %v", r.byRule())
	}
}

// TestUnitsOfAGatewayDownFold: the units of one gateway going down are one
// alert at once and one with the other units.
func TestUnitsOfAGatewayDownFold(t *testing.T) {
	set := defaultSet(t)
	var evs []plcwatch.Event
	for u := 1; u <= 3; u++ {
		evs = append(evs, plcwatch.Event{Time: t0.Add(time.Duration(u) * time.Second), Source: plcwatch.Poll,
			Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpStatus, Device: "gw", Unit: uint8(u), Quality: "down",
			Error: "timed out: no answer within 1s", Value: math.NaN()})
	}
	_, r := run(t, set, evs)
	if len(r.alerts) != 2 || r.alerts[1].Count != 2 || string(r.alerts[1].Activity.Units.AppendText(nil)) != "1-3" {
		t.Fatalf("alerts %v (%d), want one at once and one for units 2-3 with activity units 1-3", r.byRule(), len(r.alerts))
	}
}
