// Package plant runs a scenario's simulated devices: a Modbus/TCP server
// (sim/modbussim, on simonvetter/modbus) per plant, whose registers and
// coils move with the process dynamics of the scenario file — constant,
// ramp, sine, random walk, a tank level following its pump, a temperature
// lagging its setpoint, an alarm bit from a threshold. A Model steps on a
// clock it is given (Step), so that tests drive it deterministically; Run
// steps it on the wall clock.
package plant

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch/sim/modbussim"
	"github.com/plcwatch/plcwatch/sim/opcuasim"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// Model is one plant's process: its points, their dynamics' state, and the
// register image they live in.
type Model struct {
	Plant *scenario.Plant
	Image *modbussim.Image // a Modbus plant's tables
	OPCUA *opcuasim.Server // an OPC UA plant's server (not started until Start)
	t     time.Duration    // process time since the start
	state map[string]float64
	rng   *rand.Rand
}

// NewModel builds a plant's image with its points' initial values; seed
// makes random walks repeatable.
func NewModel(p *scenario.Plant, seed uint64) *Model {
	m, _ := newModel(p, seed, "")
	return m
}

// newModel builds the model of a plant that will serve on listen
// (host:port; an OPC UA server needs it before its variables are added).
func newModel(p *scenario.Plant, seed uint64, listen string) (*Model, error) {
	m := &Model{Plant: p, state: map[string]float64{}, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	if p.Protocol == "opcua" {
		host, port, _ := net.SplitHostPort(listen)
		n, _ := strconv.Atoi(port)
		srv, err := opcuasim.New(opcuasim.Config{Host: host, Port: n, Anonymous: true, Users: p.Users})
		if err != nil {
			return nil, fmt.Errorf("plant %q: %w", p.Name, err)
		}
		m.OPCUA = srv
		for i := range p.Points {
			pt := &p.Points[i]
			if err := srv.Add(pt.Name, typed(pt, pt.Value)); err != nil {
				return nil, fmt.Errorf("plant %q: point %q: %w", p.Name, pt.Name, err)
			}
		}
		for _, meth := range p.Methods {
			pt, v := p.Point(meth.Point), meth.Value
			srv.AddMethod(meth.Name, func([]*ua.Variant) ([]*ua.Variant, ua.StatusCode) {
				m.Set(pt, v)
				return nil, ua.StatusOK
			})
		}
	} else {
		m.Image = &modbussim.Image{}
	}
	for i := range p.Points {
		pt := &p.Points[i]
		v := pt.Value
		switch {
		case pt.Constant != nil:
			v = *pt.Constant
		case pt.Ramp != nil:
			v = pt.Ramp.From
		case pt.Sine != nil:
			v = pt.Sine.Mean
		case pt.Walk != nil:
			v = pt.Walk.Start
		case pt.Tank != nil:
			v = pt.Tank.Level
		case pt.Lag != nil:
			v = pt.Lag.Start
		}
		m.state[pt.Name] = v
		m.Set(pt, v)
	}
	for i := range p.Points {
		if a := p.Points[i].Alarm; a != nil {
			m.Set(&p.Points[i], m.alarm(a))
		}
	}
	return m, nil
}

// typed is v as an OPC UA variable of pt's type holds it.
func typed(pt *scenario.Point, v float64) any {
	switch pt.Type {
	case "Boolean":
		return v >= 0.5
	case "Int32":
		return int32(math.Max(math.MinInt32, math.Min(math.MaxInt32, math.Round(v))))
	}
	return v
}

// Time is the process time since the start.
func (m *Model) Time() time.Duration { return m.t }

// Value reads a point's engineering value from the image: what a client
// reads (and what a client last wrote, for points without a dynamic).
func (m *Model) Value(name string) float64 {
	pt := m.Plant.Point(name)
	if pt == nil {
		return math.NaN()
	}
	if m.OPCUA != nil {
		v, _, _ := m.OPCUA.Value(name)
		switch x := v.(type) {
		case float64:
			return x
		case int32:
			return float64(x)
		case bool:
			return b2f(x)
		}
		return math.NaN()
	}
	return Read(m.Image, pt)
}

// Read is a point's engineering value in img.
func Read(img *modbussim.Image, pt *scenario.Point) float64 {
	switch pt.Table {
	case "coil":
		return b2f(img.Coil(pt.Address))
	case "discrete":
		return b2f(img.Discrete(pt.Address))
	case "input":
		return float64(img.Input(pt.Address)) * pt.Scale
	}
	return float64(img.Holding(pt.Address)) * pt.Scale
}

// Set stores a point's engineering value into the image: registers hold
// round(v / scale), clamped to 0..65535; bits are on when v ≥ 0.5.
func (m *Model) Set(pt *scenario.Point, v float64) {
	if m.OPCUA != nil {
		m.OPCUA.Set(pt.Name, typed(pt, v))
		return
	}
	switch pt.Table {
	case "coil":
		m.Image.SetCoil(pt.Address, v >= 0.5)
	case "discrete":
		m.Image.SetDiscrete(pt.Address, v >= 0.5)
	case "input":
		m.Image.SetInput(pt.Address, Raw(pt, v))
	default:
		m.Image.SetHolding(pt.Address, Raw(pt, v))
	}
}

// Raw is the register value of engineering value v.
func Raw(pt *scenario.Point, v float64) uint16 {
	return uint16(math.Max(0, math.Min(65535, math.Round(v/pt.Scale))))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Step advances the process by dt: every dynamic moves its point, in the
// order of the file, then alarms are computed from the new values.
func (m *Model) Step(dt time.Duration) {
	m.t += dt
	sec := dt.Seconds()
	for i := range m.Plant.Points {
		pt := &m.Plant.Points[i]
		v, ok := m.state[pt.Name], true
		switch {
		case pt.Constant != nil:
			v = *pt.Constant
		case pt.Ramp != nil:
			r := pt.Ramp
			f := m.t.Seconds() / r.Over.Seconds()
			if r.Repeat {
				f -= math.Floor(f)
			}
			v = r.From + (r.To-r.From)*math.Min(f, 1)
		case pt.Sine != nil:
			s := pt.Sine
			v = s.Mean + s.Amplitude*math.Sin(2*math.Pi*m.t.Seconds()/s.Period.Seconds())
		case pt.Walk != nil:
			w := pt.Walk
			v = math.Max(w.Min, math.Min(w.Max, v+w.Step*(2*m.rng.Float64()-1)))
		case pt.Tank != nil:
			t := pt.Tank
			pump := m.Plant.Point(t.Pump)
			if t.Setpoint != "" {
				// The PLC's level control: on/off around the setpoint.
				sp := m.Value(t.Setpoint)
				switch {
				case v < sp-t.Band:
					m.Set(pump, 1)
				case v > sp+t.Band:
					m.Set(pump, 0)
				}
			}
			in := 0.0
			if Read(m.Image, pump) >= 0.5 {
				in = t.Inflow
			}
			v = math.Max(t.Min, math.Min(t.Max, v+(in-t.Outflow)*sec))
		case pt.Lag != nil:
			l := pt.Lag
			sp := m.Value(l.Setpoint)
			v += (sp - v) * (1 - math.Exp(-sec/l.Tau.Seconds()))
		default:
			ok = false
		}
		if ok {
			m.state[pt.Name] = v
			m.Set(pt, v)
		}
	}
	for i := range m.Plant.Points {
		if a := m.Plant.Points[i].Alarm; a != nil {
			m.Set(&m.Plant.Points[i], m.alarm(a))
		}
	}
}

func (m *Model) alarm(a *scenario.Alarm) float64 {
	v := m.Value(a.Of)
	if a.Above != nil {
		return b2f(v > *a.Above)
	}
	return b2f(v < *a.Below)
}

// Plant is a running plant: its model served over Modbus/TCP or OPC UA.
type Plant struct {
	Model  *Model
	server *modbussim.Server
}

// Start serves the plant on its listen address.
func Start(p *scenario.Plant, seed uint64) (*Plant, error) {
	return StartAt(context.Background(), p, seed, p.Listen)
}

// StartAt serves the plant on listen instead of its own address (a
// recording proxy takes that one). For OPC UA, a port of 0 is a free one:
// Addr says which.
func StartAt(ctx context.Context, p *scenario.Plant, seed uint64, listen string) (*Plant, error) {
	m, err := newModel(p, seed, listen)
	if err != nil {
		return nil, err
	}
	if m.OPCUA != nil {
		if err := m.OPCUA.Start(ctx); err != nil {
			return nil, fmt.Errorf("plant %q: %w", p.Name, err)
		}
		return &Plant{Model: m}, nil
	}
	s, err := modbussim.Serve(listen, m.Image, nil)
	if err != nil {
		return nil, fmt.Errorf("plant %q: %w", p.Name, err)
	}
	return &Plant{Model: m, server: s}, nil
}

// Addr is where the plant serves (host:port).
func (p *Plant) Addr() string {
	if p.Model.OPCUA != nil {
		u := strings.TrimPrefix(p.Model.OPCUA.Endpoint(), "opc.tcp://")
		return u
	}
	return p.server.Addr
}

// Run steps the process every tick of the wall clock, speed times as fast
// (speed 1: real time), until ctx ends.
func (p *Plant) Run(ctx context.Context, tick time.Duration, speed float64) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.Model.Step(time.Duration(float64(tick) * speed))
		}
	}
}

// Close stops serving.
func (p *Plant) Close() error {
	if p.Model.OPCUA != nil {
		return p.Model.OPCUA.Close()
	}
	return p.server.Close()
}
