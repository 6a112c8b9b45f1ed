package actors_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/sim/actors"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// served starts a plant on a free port of 127.0.0.15.
func served(t *testing.T) (*scenario.Scenario, *plant.Plant) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.15:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := scenario.Parse("t.yaml", []byte(`
plants:
  - name: plc
    listen: `+addr+`
    points:
      - {name: pump, table: coil, address: 0}
      - {name: sp, table: holding, address: 100, scale: 0.1, value: 50}
      - {name: temp, table: input, address: 3, scale: 0.1, value: 21.5}
      - {name: alarm, table: discrete, address: 7, value: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plant.Start(&s.Plants[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return s, p
}

// TestActions drives every action from its own source address against a
// served plant, records it, and decodes the recording with the capture
// engine: the requests must be on the wire as sent, from that address,
// with the TCP streams in order (the engine reassembles by sequence
// number), and the plant must have done what a write asks.
func TestActions(t *testing.T) {
	s, p := served(t)
	pl := &s.Plants[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	rec := actors.NewRecorder(w, false)

	type want struct {
		fc, sub uint8
		op      plcwatch.Op
		n       int // events at least
	}
	cases := []struct {
		name string
		from string
		do   func(c *actors.Client) error
		want want
	}{
		{"hmi", "127.0.0.20", func(c *actors.Client) error {
			if v, err := actors.Read(ctx, c, 1, pl.Point("temp")); err != nil || v != 21.5 {
				return errors.Join(err, errors.New("temp read "+strconv.FormatFloat(v, 'g', -1, 64)))
			}
			if v, err := actors.Read(ctx, c, 1, pl.Point("alarm")); err != nil || v != 1 {
				return errors.Join(err, errors.New("alarm read"))
			}
			return actors.Poll(ctx, c, 1, []*scenario.Point{pl.Point("sp"), pl.Point("pump")}, pl.Point("sp"), 55)
		}, want{fc: 6, op: plcwatch.OpWrite, n: 1}},
		{"write", "127.0.0.69", func(c *actors.Client) error { return actors.Write(ctx, c, 1, pl.Point("pump"), 1) }, want{fc: 5, op: plcwatch.OpWrite, n: 1}},
		{"brute force", "127.0.0.70", func(c *actors.Client) error { return actors.BruteForce(ctx, c, 1, pl.Point("pump"), 20) }, want{fc: 5, op: plcwatch.OpWrite, n: 20}},
		{"force listen only", "127.0.0.71", func(c *actors.Client) error { return actors.Diagnostic(ctx, c, 1, actors.ForceListenOnlyMode) }, want{fc: 8, sub: 4, op: plcwatch.OpDiagnostic, n: 1}},
		{"restart", "127.0.0.72", func(c *actors.Client) error { return actors.Diagnostic(ctx, c, 1, actors.RestartCommunications) }, want{fc: 8, sub: 1, op: plcwatch.OpDiagnostic, n: 1}},
		{"identify", "127.0.0.66", func(c *actors.Client) error { return actors.Identify(ctx, c, 1) }, want{fc: 43, sub: 14, op: plcwatch.OpIdentify, n: 1}},
		{"unit scan", "127.0.0.67", func(c *actors.Client) error { return actors.UnitScan(ctx, c, 1, 12) }, want{fc: 3, op: plcwatch.OpRead, n: 12}},
		{"function scan", "127.0.0.68", func(c *actors.Client) error { return actors.FunctionScan(ctx, c, 1, []int{41, 42, 44}) }, want{fc: 44, n: 1}},
		{"user-defined 90", "127.0.0.73", func(c *actors.Client) error { return actors.Function(ctx, c, 1, 90, []byte{0, 2}) }, want{fc: 90, n: 1}},
	}
	for _, c := range cases {
		cl, err := actors.Dial(ctx, netip.MustParseAddr(c.from), pl.Listen, rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := cl.Local().Addr().String(); got != c.from {
			t.Errorf("%s: dialled from %s, want %s", c.name, got, c.from)
		}
		if err := c.do(cl); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		cl.Close()
	}
	if got := p.Model.Value("sp"); got != 55 {
		t.Errorf("the HMI wrote sp = 55; the plant has %g", got)
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}

	_, port, _ := net.SplitHostPort(pl.Listen)
	n, _ := strconv.Atoi(port)
	cfg := capture.Config{ModbusPorts: []uint16{uint16(n)}}
	cfg.Defaults()
	var events []plcwatch.Event
	e := capture.NewEngine(cfg, func(ev *plcwatch.Event) { events = append(events, *ev) })
	if err := capture.Read(ctx, &buf, e); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Modbus.Malformed > 0 {
		t.Errorf("malformed: %+v", st.Modbus)
	}
	for _, c := range cases {
		got := 0
		for _, ev := range events {
			if ev.Client.Addr().String() != c.from || ev.Function != c.want.fc {
				continue
			}
			if c.want.sub != 0 && uint8(ev.SubFunction) != c.want.sub {
				continue
			}
			if c.want.op != 0 && ev.Op != c.want.op {
				t.Errorf("%s: op %s, want %s", c.name, ev.Op, c.want.op)
			}
			if ev.Unanswered != "" {
				t.Errorf("%s: FC %d unanswered (%s): the recording lost the answer", c.name, ev.Function, ev.Unanswered)
			}
			got++
		}
		if got < c.want.n {
			t.Errorf("%s: %d events of FC %d from %s in the recording, want %d", c.name, got, c.want.fc, c.from, c.want.n)
		}
	}
	// The unit scan addressed 12 units.
	units := map[uint8]bool{}
	for _, ev := range events {
		if ev.Client.Addr().String() == "127.0.0.67" {
			units[ev.Unit] = true
		}
	}
	if len(units) != 12 {
		t.Errorf("unit scan: %d units on the wire", len(units))
	}
}
