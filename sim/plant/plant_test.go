package plant_test

import (
	"context"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/sim/actors"
	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// model parses a one-plant scenario whose points are given in YAML.
func model(t *testing.T, points string) *plant.Model {
	t.Helper()
	s, err := scenario.Parse("test.yaml", []byte("plants:\n  - name: p\n    listen: 127.0.0.10:5020\n    points:\n"+points))
	if err != nil {
		t.Fatal(err)
	}
	return plant.NewModel(&s.Plants[0], s.Seed)
}

// run steps m n times by dt and returns the named point's values after
// each step.
func run(m *plant.Model, name string, n int, dt time.Duration) []float64 {
	out := make([]float64, n)
	for i := range out {
		m.Step(dt)
		out[i] = m.Value(name)
	}
	return out
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestDynamics steps each dynamic on the deterministic clock and checks
// what the process must do.
func TestDynamics(t *testing.T) {
	t.Run("constant", func(t *testing.T) {
		m := model(t, "      - {name: v, table: holding, address: 0, constant: 42}\n")
		if m.Value("v") != 42 {
			t.Fatalf("initial %g", m.Value("v"))
		}
		m.Image.SetHolding(0, 7) // a client writes: the process puts it back
		if got := run(m, "v", 1, time.Second)[0]; got != 42 {
			t.Errorf("after a step %g", got)
		}
	})
	t.Run("ramp", func(t *testing.T) {
		m := model(t, "      - {name: v, table: holding, address: 0, ramp: {from: 10, to: 20, over: 10s}}\n")
		got := run(m, "v", 12, time.Second)
		if got[0] != 11 || got[4] != 15 || got[9] != 20 || got[11] != 20 {
			t.Errorf("ramp %v", got)
		}
		m = model(t, "      - {name: v, table: holding, address: 0, ramp: {from: 0, to: 10, over: 10s, repeat: true}}\n")
		if got := run(m, "v", 12, time.Second); got[8] != 9 || got[10] != 1 {
			t.Errorf("repeating ramp %v", got)
		}
	})
	t.Run("sine", func(t *testing.T) {
		m := model(t, "      - {name: v, table: input, address: 0, scale: 0.1, sine: {mean: 50, amplitude: 10, period: 40s}}\n")
		got := run(m, "v", 40, time.Second)
		if !near(got[9], 60, 0.05) || !near(got[19], 50, 0.05) || !near(got[29], 40, 0.05) {
			t.Errorf("sine at 10, 20, 30 s: %g %g %g", got[9], got[19], got[29])
		}
	})
	t.Run("walk", func(t *testing.T) {
		pts := "      - {name: v, table: holding, address: 0, walk: {start: 50, step: 5, min: 40, max: 60}}\n"
		a, b := run(model(t, pts), "v", 200, time.Second), run(model(t, pts), "v", 200, time.Second)
		moved := 0
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("the same seed walked apart at step %d: %g %g", i, a[i], b[i])
			}
			if a[i] < 40 || a[i] > 60 {
				t.Fatalf("walked out of 40..60: %g", a[i])
			}
			if i > 0 && a[i] != a[i-1] {
				moved++
			}
			if i > 0 && math.Abs(a[i]-a[i-1]) > 5.5 {
				t.Fatalf("step of %g", a[i]-a[i-1])
			}
		}
		if moved < 150 {
			t.Errorf("moved %d times in 200 steps", moved)
		}
	})
	t.Run("tank follows its pump", func(t *testing.T) {
		m := model(t, "      - {name: level, table: holding, address: 0, scale: 0.1, tank: {level: 50, pump: pump, inflow: 3, outflow: 1}}\n"+
			"      - {name: pump, table: coil, address: 0, value: 1}\n")
		if got := run(m, "level", 10, time.Second); !near(got[9], 70, 0.01) {
			t.Errorf("pump on: 50 + 10 s × (3−1) = 70, got %g", got[9])
		}
		m.Image.SetCoil(0, false) // a client stops the pump
		if got := run(m, "level", 80, time.Second); !near(got[9], 60, 0.01) || got[79] != 0 {
			t.Errorf("pump off: falls 1/s to 0, got %g then %g", got[9], got[79])
		}
	})
	t.Run("tank level control and a setpoint write", func(t *testing.T) {
		m := model(t, "      - {name: level, table: holding, address: 0, scale: 0.1, tank: {level: 50, pump: pump, inflow: 3, outflow: 1, setpoint: sp, band: 2}}\n"+
			"      - {name: pump, table: coil, address: 0}\n"+
			"      - {name: sp, table: holding, address: 100, value: 50}\n")
		for _, v := range run(m, "level", 300, 100*time.Millisecond) {
			if v < 47 || v > 53 {
				t.Fatalf("level left 50 ± band under control: %g", v)
			}
		}
		m.Image.SetHolding(100, 95) // an attacker's setpoint
		got := run(m, "level", 400, 100*time.Millisecond)
		// 45 % at 2 %/s: above 90 within 25 s, then held at 95 ± band.
		for i, v := range got[250:] {
			if v < 92.5 || v > 97.5 {
				t.Fatalf("the level should follow the setpoint to 95: %g at %d", v, 250+i)
			}
		}
	})
	t.Run("lag", func(t *testing.T) {
		m := model(t, "      - {name: temp, table: input, address: 0, scale: 0.1, lag: {setpoint: sp, start: 20, tau: 10s}}\n"+
			"      - {name: sp, table: holding, address: 0, value: 80}\n")
		got := run(m, "temp", 30, time.Second)
		// 1 − e^-1 of the way after one time constant.
		if !near(got[9], 20+60*(1-math.Exp(-1)), 0.1) || got[29] < 76 || got[29] > 80 {
			t.Errorf("lag after 10 s %g, 30 s %g", got[9], got[29])
		}
	})
	t.Run("alarm", func(t *testing.T) {
		m := model(t, "      - {name: level, table: holding, address: 0, ramp: {from: 80, to: 100, over: 20s}}\n"+
			"      - {name: high, table: discrete, address: 0, alarm: {of: level, above: 90}}\n"+
			"      - {name: low, table: coil, address: 1, alarm: {of: level, below: 85}}\n")
		if m.Value("high") != 0 || m.Value("low") != 1 {
			t.Fatal("initial alarms")
		}
		high := run(m, "high", 20, time.Second)
		if high[9] != 0 || high[10] != 1 || m.Value("low") != 0 {
			t.Errorf("high alarm %v, low %g", high, m.Value("low"))
		}
	})
}

// TestOPCUAModel: the same dynamics move an OPC UA server's variables, of
// their own types, and a method call sets its point.
func TestOPCUAModel(t *testing.T) {
	s, err := scenario.Parse("test.yaml", []byte(`plants:
  - name: p
    protocol: opcua
    listen: 127.0.0.18:4840
    points:
      - {name: Setpoint, value: 80}
      - {name: Temperature, lag: {setpoint: Setpoint, start: 20, tau: 10s}}
      - {name: Batches, type: Int32, ramp: {from: 0, to: 10, over: 10s}}
      - {name: Hot, type: Boolean, alarm: {of: Temperature, above: 50}}
      - {name: Running, type: Boolean, value: 1}
    methods:
      - {name: Stop, point: Running, value: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	m := plant.NewModel(&s.Plants[0], 1)
	run(m, "Temperature", 10, time.Second)
	if v := m.Value("Temperature"); !near(v, 20+60*(1-math.Exp(-1)), 0.01) {
		t.Errorf("Temperature %g", v)
	}
	if v, _, _ := m.OPCUA.Value("Batches"); v != int32(10) {
		t.Errorf("Batches %#v, want int32 10", v)
	}
	if v, _, _ := m.OPCUA.Value("Hot"); v != true {
		t.Errorf("Hot %#v", v)
	}
	if m.Value("Running") != 1 {
		t.Fatal("Running")
	}
	// Served (on a free port), the method stops the mixer.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := plant.StartAt(ctx, &s.Plants[0], 1, "127.0.0.18:0")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := actors.OPCUAConnect(ctx, netip.MustParseAddr("127.0.0.20"), "opc.tcp://"+p.Addr(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if st, err := actors.OPCUACall(ctx, c, actors.ObjectsFolder, actors.NodeID("Stop")); err != nil || st != 0 {
		t.Fatalf("call Stop: %v %v", st, err)
	}
	if p.Model.Value("Running") != 0 {
		t.Error("Stop did not stop it")
	}
}
