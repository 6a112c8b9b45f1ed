package runner_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/runner"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// TestSchedule runs a scenario four times as fast as written: each actor
// fires at its times (at, every, for), from its own address, and the
// process moves.
func TestSchedule(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.16:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := scenario.Parse("t.yaml", []byte(`
duration: 6s
plants:
  - name: plc
    listen: `+addr+`
    points:
      - {name: v, table: holding, address: 0, ramp: {from: 0, to: 600, over: 6s}}
      - {name: sp, table: holding, address: 1}
actors:
  - {name: always, from: 127.0.0.20, target: plc, do: hmi, every: 1s, reads: [v]}
  - {name: window, from: 127.0.0.21, target: plc, do: hmi, at: 1s, every: 1s, for: 3s, reads: [v], point: sp, values: [1, 2]}
  - {name: once, from: 127.0.0.66, target: plc, do: identify, at: 2s}
`))
	if err != nil {
		t.Fatal(err)
	}
	fired := map[string][]time.Duration{}
	var model *plant.Model
	err = runner.Run(context.Background(), s, runner.Options{
		Speed:   4,
		Started: func(p map[string]*plant.Plant) { model = p["plc"].Model },
		OnAction: func(a runner.Action) {
			if a.Err != nil {
				t.Errorf("%s", a)
			}
			if a.Client.Addr().String() != s.Actor(a.Actor).From {
				t.Errorf("%s: from %s", a.Actor, a.Client)
			}
			fired[a.Actor] = append(fired[a.Actor], a.At)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]time.Duration{
		"always": {0, time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second},
		"window": {time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second},
		"once":   {2 * time.Second},
	} {
		got := fired[name]
		if len(got) != len(want) {
			t.Errorf("%s fired at %v, want %v", name, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s fired at %v, want %v", name, got, want)
				break
			}
		}
	}
	// The process ran (scenario time, four times the wall clock's), and
	// the last write of window (its 4th firing: values[3 % 2]) stayed.
	if v := model.Value("v"); v < 300 {
		t.Errorf("ramp at %g after the scenario", v)
	}
	if v := model.Value("sp"); v != 2 {
		t.Errorf("sp = %g, want 2", v)
	}
}

// TestActionLine: the action log printed OPC UA clients as port 0
// ("ua-hmi 127.0.0.22:0 -> mixer") and the scheduled time of a late
// action as if it fired then.
func TestActionLine(t *testing.T) {
	for _, tc := range []struct {
		a    runner.Action
		want string
	}{
		{runner.Action{At: 2 * time.Second, Actual: 2*time.Second + 30*time.Millisecond, Actor: "hmi", Target: "tank-plc", Server: "127.0.0.10:5020",
			Client: netip.MustParseAddrPort("127.0.0.20:43207"), Did: "read level"},
			"  2.0s hmi 127.0.0.20:43207 -> tank-plc 127.0.0.10:5020: read level"},
		{runner.Action{At: 2 * time.Second, Actual: 2 * time.Second, Actor: "ua-hmi", Target: "mixer", Server: "127.0.0.12:4841",
			Client: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.22"), 0), Did: "read Speed"},
			"  2.0s ua-hmi 127.0.0.22 -> mixer 127.0.0.12:4841: read Speed"},
		{runner.Action{At: 26 * time.Second, Actual: 26*time.Second + 400*time.Millisecond, Actor: "brute-force", Target: "tank-plc", Server: "127.0.0.10:5020",
			Client: netip.MustParseAddrPort("127.0.0.70:40000"), Did: "toggled pump"},
			" 26.4s (due 26.0s) brute-force 127.0.0.70:40000 -> tank-plc 127.0.0.10:5020: toggled pump"},
		{runner.Action{At: time.Second, Actual: time.Second, Actor: "x", Target: "tank-plc", Server: "127.0.0.10:5020", Err: errors.New("connection refused")},
			"  1.0s x - -> tank-plc 127.0.0.10:5020:  (connection refused)"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
