package rules

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

var (
	imgServer = netip.MustParseAddrPort("10.0.1.1:502")
	imgHMI    = netip.MustParseAddrPort("10.0.0.9:40000")
)

// imgPoll is a polled holding register tag "sp" at address 10 of unit 1.
func imgPoll(at time.Time, reg uint16) plcwatch.Event {
	ev := plcwatch.Event{Time: at, Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpRead,
		Device: "plc", Server: imgServer, Unit: 1, Function: 3, Table: plcwatch.TableHolding, Address: 10, Count: 1,
		Tag: "sp", Quality: "good", Value: float64(reg) / 10, Raw: float64(reg)}
	ev.Response.SetWord(reg)
	return ev
}

// imgWrite is an FC 16 write of regs from address addr, answered with exc.
func imgWrite(at time.Time, addr uint16, exc uint8, regs ...uint16) plcwatch.Event {
	ev := plcwatch.Event{Time: at, Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpWrite,
		Client: imgHMI, Server: imgServer, Unit: 1, Function: 16, Table: plcwatch.TableHolding, Address: addr,
		Count: uint16(len(regs)), Exception: exc, Conn: 1}
	w := make([]byte, 2*len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(w[2*i:], r)
	}
	ev.Values.SetWords(w)
	return ev
}

// imgRead is an FC 3 read response of regs from address addr.
func imgRead(at time.Time, addr uint16, regs ...uint16) plcwatch.Event {
	ev := imgWrite(at, addr, 0, regs...)
	ev.Op, ev.Function, ev.Response, ev.Values = plcwatch.OpRead, 3, ev.Values, plcwatch.Values{}
	return ev
}

func tenthsDecoder(device, tag string) Decoder {
	return func(w []byte) (float64, bool) {
		if len(w) != 2 {
			return 0, false
		}
		return float64(binary.BigEndian.Uint16(w)) / 10, true
	}
}

func TestImage(t *testing.T) {
	s := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	type check func(t *testing.T, evs []plcwatch.Event)
	cases := []struct {
		name  string
		evs   []plcwatch.Event
		check check
	}{
		{"change without write is found one cycle late",
			[]plcwatch.Event{imgPoll(s(0), 100), imgRead(s(1), 0, 1), imgPoll(s(10), 100), imgPoll(s(20), 100), imgPoll(s(30), 100), imgPoll(s(40), 250), imgPoll(s(50), 250)},
			func(t *testing.T, evs []plcwatch.Event) {
				evs = evs[3:]
				for i, want := range []bool{false, false, false, true} {
					if evs[i].Unwritten != want {
						t.Errorf("poll %d: unwritten %v, want %v", i, evs[i].Unwritten, want)
					}
				}
				if evs[3].Cycle != 10*time.Second {
					t.Errorf("cycle %v", evs[3].Cycle)
				}
			}},
		{"not on a captured link: no change without write",
			[]plcwatch.Event{imgPoll(s(0), 100), imgPoll(s(10), 100), imgPoll(s(20), 100), imgPoll(s(30), 100), imgPoll(s(40), 250), imgPoll(s(50), 250)},
			func(t *testing.T, evs []plcwatch.Event) {
				if evs[5].Unwritten {
					t.Error("unwritten for a server the capture never saw")
				}
			}},
		{"a value that moves is no setpoint",
			[]plcwatch.Event{imgPoll(s(0), 100), imgRead(s(1), 0, 1), imgPoll(s(10), 101), imgPoll(s(20), 101), imgPoll(s(30), 103), imgPoll(s(40), 250), imgPoll(s(50), 250)},
			func(t *testing.T, evs []plcwatch.Event) {
				for i := range evs {
					if evs[i].Unwritten {
						t.Errorf("event %d: unwritten", i)
					}
				}
			}},
		{"a captured write explains the change, even handed over after the poll",
			[]plcwatch.Event{imgPoll(s(0), 100), imgRead(s(1), 0, 1), imgPoll(s(10), 100), imgPoll(s(20), 100), imgPoll(s(30), 100), imgPoll(s(40), 250), imgWrite(s(35), 10, 0, 250), imgPoll(s(50), 250)},
			func(t *testing.T, evs []plcwatch.Event) {
				evs = evs[3:]
				if evs[4].Unwritten || evs[2].Unwritten {
					t.Errorf("unwritten after a captured write")
				}
				if !evs[4].Written || evs[4].Writer != imgHMI.Addr() || evs[4].WrittenValue != 25 {
					t.Errorf("written %v writer %v value %v", evs[4].Written, evs[4].Writer, evs[4].WrittenValue)
				}
				if evs[4].WriteCycles != 0 {
					t.Errorf("write cycles %d after the write took", evs[4].WriteCycles)
				}
			}},
		{"a rejected write is not taken",
			[]plcwatch.Event{imgPoll(s(0), 100), imgWrite(s(1), 9, 2, 7, 500), imgPoll(s(10), 100), imgPoll(s(20), 100), imgPoll(s(30), 100)},
			func(t *testing.T, evs []plcwatch.Event) {
				for i, want := range []uint16{0, 0, 1, 2, 3} {
					if evs[i].WriteCycles != want {
						t.Errorf("event %d: write cycles %d, want %d", i, evs[i].WriteCycles, want)
					}
				}
				if !evs[2].Written || evs[3].Written {
					t.Errorf("written: %v %v, want true false", evs[2].Written, evs[3].Written)
				}
			}},
		{"a read response that differs from the poll, for how long",
			[]plcwatch.Event{imgPoll(s(0), 100), imgPoll(s(10), 100), imgRead(s(11), 9, 1, 999, 3), imgRead(s(25), 10, 999), imgPoll(s(20), 100), imgRead(s(26), 10, 100)},
			func(t *testing.T, evs []plcwatch.Event) {
				r := evs[2]
				if r.PolledTag != "sp" || r.Polled != 10 || r.Viewed != 99.9 || r.PolledAge != time.Second || r.ViewDiffers != 0 {
					t.Errorf("first differing read: %+v", r)
				}
				if evs[3].ViewDiffers != 14*time.Second {
					t.Errorf("view differs %v, want 14s", evs[3].ViewDiffers)
				}
				if evs[5].ViewDiffers != 0 || evs[5].Viewed != 10 {
					t.Errorf("agreeing read: differs %v viewed %v", evs[5].ViewDiffers, evs[5].Viewed)
				}
			}},
		{"other servers, units and addresses are not joined",
			func() []plcwatch.Event {
				w1 := imgWrite(s(5), 10, 0, 7)
				w1.Unit = 2
				w2 := imgWrite(s(5), 11, 0, 7)
				w3 := imgWrite(s(5), 10, 0, 7)
				w3.Server = netip.MustParseAddrPort("10.0.1.2:502")
				r := imgRead(s(6), 10, 7)
				r.Table = plcwatch.TableInput
				return []plcwatch.Event{imgPoll(s(0), 1), w1, w2, w3, r, imgPoll(s(10), 1)}
			}(),
			func(t *testing.T, evs []plcwatch.Event) {
				if evs[5].Written || evs[5].Writer.IsValid() || evs[4].PolledTag != "" {
					t.Errorf("joined across servers, units, addresses or tables: %+v", evs[5])
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := NewEngine(&Set{}, Options{Decoder: tenthsDecoder}, func(*plcwatch.Alert) {})
			for i := range c.evs {
				e.Process(&c.evs[i])
			}
			c.check(t, c.evs)
		})
	}
}

func TestImageBounded(t *testing.T) {
	e := NewEngine(&Set{}, Options{MaxImage: 2}, func(*plcwatch.Alert) {})
	for a := uint16(0); a < 5; a++ {
		ev := imgPoll(t0, 1)
		ev.Address, ev.Tag = a, "t"+string(rune('a'+a))
		e.Process(&ev)
	}
	if e.ImageSize() != 2 || e.ImageFull() != 3 {
		t.Fatalf("size %d full %d, want 2 and 3", e.ImageSize(), e.ImageFull())
	}
}

// BenchmarkImageWire is the process image's cost on the wire path: a
// write and a read response of a server with 1,000 polled tags, and a
// request to a server not polled.
func BenchmarkImageWire(b *testing.B) {
	im := newImage(0, tenthsDecoder)
	for a := uint16(0); a < 1000; a++ {
		ev := imgPoll(t0, a)
		ev.Address, ev.Tag = a, "t"
		im.observe(&ev, 1)
	}
	other := imgWrite(t0, 500, 0, 1)
	other.Server = netip.MustParseAddrPort("10.0.1.2:502")
	evs := []plcwatch.Event{imgWrite(t0, 500, 0, 42, 43), imgRead(t0, 500, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), other}
	for _, c := range []struct {
		name string
		ev   *plcwatch.Event
	}{{"write", &evs[0]}, {"read10", &evs[1]}, {"unpolled", &evs[2]}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				im.observe(c.ev, int64(i)+2)
			}
		})
	}
}

// TestCorrelationDefaults runs configs/rules/correlation.yaml on the
// process image's three stories, and on their harmless twins.
func TestCorrelationDefaults(t *testing.T) {
	set, err := Load("../configs/rules/correlation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	steady := func(evs ...plcwatch.Event) []plcwatch.Event {
		out := []plcwatch.Event{imgPoll(s(0), 100), imgRead(s(1), 10, 100)}
		for i := 1; i <= 4; i++ {
			out = append(out, imgPoll(s(10*i), 100))
		}
		return append(out, evs...)
	}
	honest := func(ev plcwatch.Event) plcwatch.Event {
		ev.Client = netip.MustParseAddrPort("10.0.0.9:40001")
		return ev
	}
	// A tank filling: polled every 10 s at 100, 110, ... 200; a client
	// reads it 5 s after each poll, shown view(i).
	ramp := func(view func(i int) uint16) []plcwatch.Event {
		var out []plcwatch.Event
		for i := 0; i <= 10; i++ {
			out = append(out, imgPoll(s(10*i), uint16(100+10*i)), imgRead(s(10*i+5), 10, view(i)))
		}
		return out
	}
	cases := []struct {
		name string
		evs  []plcwatch.Event
		want map[string]int
	}{
		{"changed by a path the capture does not see", steady(imgPoll(s(50), 300), imgPoll(s(60), 300)),
			map[string]int{"correlation-change-without-write": 1}},
		{"changed by a captured write", steady(imgWrite(s(45), 10, 0, 300), imgPoll(s(50), 300), imgPoll(s(60), 300)), map[string]int{}},
		{"write refused", steady(imgWrite(s(45), 10, 4, 300), imgPoll(s(50), 100), imgPoll(s(60), 100), imgPoll(s(70), 100), imgPoll(s(80), 100)),
			map[string]int{"correlation-write-not-taken": 1}},
		{"write overridden", steady(imgWrite(s(45), 10, 0, 300), imgPoll(s(50), 120), imgPoll(s(60), 120), imgPoll(s(70), 120)),
			map[string]int{"correlation-write-not-taken": 1}},
		{"view differs for longer than a cycle", steady(imgRead(s(41), 10, 555), imgRead(s(46), 10, 555), imgPoll(s(50), 100), imgRead(s(52), 10, 555)),
			map[string]int{"correlation-view-differs": 1}},
		{"an honest connection's reads do not hide a deceived one's", steady(imgRead(s(41), 10, 555), honest(imgRead(s(42), 10, 100)),
			imgRead(s(46), 10, 555), honest(imgRead(s(48), 10, 100)), imgPoll(s(50), 100), imgRead(s(52), 10, 555)),
			map[string]int{"correlation-view-differs": 1}},
		{"view differs for a moment", steady(imgRead(s(41), 10, 555), imgPoll(s(50), 555), imgRead(s(52), 10, 555)), map[string]int{}},
		{"a moving process read between polls", ramp(func(i int) uint16 { return uint16(105 + 10*i) }), map[string]int{}},
		// Nine reads differ for longer than a cycle (25 s to 105 s): the
		// default 30 s fold makes them three alerts.
		{"a moving process shown a false value", ramp(func(int) uint16 { return 555 }), map[string]int{"correlation-view-differs": 3}},
		{"view within tolerance", steady(imgRead(s(41), 10, 101), imgRead(s(46), 10, 101), imgPoll(s(50), 100), imgRead(s(52), 10, 101)), map[string]int{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, r := newTestEngine(set)
			e.opts.Decoder = tenthsDecoder
			e.image.decoder = tenthsDecoder
			for i := range c.evs {
				e.Process(&c.evs[i])
			}
			e.Close()
			got := r.byRule()
			if len(got) != len(c.want) {
				t.Fatalf("alerts %v, want %v", got, c.want)
			}
			for id, n := range c.want {
				if got[id] != n {
					t.Fatalf("alerts %v, want %v", got, c.want)
				}
			}
		})
	}
}

// TestAssetEventsMatch: op asset events reach the rules whatever function
// the request that revealed them had, and the default new-writer rule
// fires for a writer first seen after its week of learning.
func TestAssetEventsMatch(t *testing.T) {
	set, err := Load("../configs/rules/correlation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	asset := func(at time.Time, client string) plcwatch.Event {
		ev := imgWrite(at, 1, 0, 1)
		ev.Op, ev.Asset, ev.Client = plcwatch.OpAsset, plcwatch.AssetWriter, netip.MustParseAddrPort(client)
		return ev
	}
	_, r := run(t, set, []plcwatch.Event{
		asset(t0, "10.0.0.9:4000"),
		asset(t0.Add(169*time.Hour), "10.0.0.66:4000"),
	})
	if got := r.byRule(); len(got) != 1 || got["inventory-new-writer"] != 1 {
		t.Fatalf("alerts %v, want one inventory-new-writer", got)
	}
}

// TestAssetEventsOnlyForAssetRules: a rule that does not ask for op asset
// never sees the inventory's events, though they carry the function of the
// request that revealed them.
func TestAssetEventsOnlyForAssetRules(t *testing.T) {
	set := loadText(t, `rules:
  - id: diagnostics
    title: Any FC 8
    severity: low
    match: {function: 8}
    fold: 0s
`)
	ev := wireEvent(t0, 8)
	asset := ev
	asset.Op, asset.Asset = plcwatch.OpAsset, plcwatch.AssetClient
	if _, r := run(t, set, []plcwatch.Event{asset, ev}); r.byRule()["diagnostics"] != 1 {
		t.Fatalf("alerts %v, want one for the request alone", r.byRule())
	}
	if set.WantsAssets() {
		t.Error("WantsAssets for a set without op asset")
	}
}

// TestImageNodes: the OPC UA half joins polls and wire reads and writes by
// server address and node id.
func TestImageNodes(t *testing.T) {
	s := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	srv := netip.MustParseAddrPort("10.0.1.5:4840")
	poll := func(at time.Time, v float64) plcwatch.Event {
		return plcwatch.Event{Time: at, Source: plcwatch.Poll, Protocol: plcwatch.ProtoOPCUA, Op: plcwatch.OpRead,
			Device: "ua", Server: srv, Node: "ns=2;s=Tank.Setpoint", Tag: "setpoint", Value: v, Raw: v, Quality: "good", ValueType: "Double"}
	}
	wire := func(at time.Time, op plcwatch.Op, v float64, status uint32) plcwatch.Event {
		ev := plcwatch.Event{Time: at, Source: plcwatch.Wire, Protocol: plcwatch.ProtoOPCUA, Op: op, Client: imgHMI,
			Server: srv, Node: "ns=2;s=Tank.Setpoint", Attribute: 13, Status: status, ValueType: "Double", Value: plcwatch.NoValue}
		if op == plcwatch.OpWrite {
			ev.Values.SetFloats([]float64{v})
		} else {
			ev.Response.SetFloats([]float64{v})
		}
		return ev
	}
	evs := []plcwatch.Event{
		poll(s(0), 40), wire(s(1), plcwatch.OpRead, 40, 0), poll(s(10), 40), poll(s(20), 40), poll(s(30), 40),
		wire(s(31), plcwatch.OpWrite, 55, 0x801F0000), // BadUserAccessDenied: refused
		poll(s(40), 40), wire(s(41), plcwatch.OpRead, 99, 0), poll(s(50), 40), wire(s(52), plcwatch.OpRead, 99, 0),
	}
	e := NewEngine(&Set{}, Options{}, func(*plcwatch.Alert) {})
	for i := range evs {
		e.Process(&evs[i])
	}
	if p := evs[6]; !p.Written || p.Writer != imgHMI.Addr() || p.WrittenValue != 55 || p.WriteCycles != 1 {
		t.Errorf("poll after a refused write: written %v writer %v value %v cycles %d", p.Written, p.Writer, p.WrittenValue, p.WriteCycles)
	}
	if r := evs[1]; r.PolledTag != "setpoint" || r.Polled != 40 || r.Viewed != 40 || r.ViewDiffers != 0 {
		t.Errorf("agreeing read: %+v", r)
	}
	if r := evs[9]; r.Viewed != 99 || r.Polled != 40 || r.ViewDiffers != 11*time.Second {
		t.Errorf("differing read: viewed %v polled %v differs %v", r.Viewed, r.Polled, r.ViewDiffers)
	}
}
