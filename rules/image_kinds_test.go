package rules

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// kindTag describes a polled tag of a non-numeric or multi-register kind,
// for TestCorrelationKinds: how a poll, a wire write and a wire read
// response of it look.
type kindTag struct {
	name  string
	poll  func(at time.Time, regs ...uint16) plcwatch.Event
	write func(at time.Time, regs ...uint16) plcwatch.Event
	read  func(at time.Time, regs ...uint16) plcwatch.Event
	a, b  []uint16 // two register contents
}

func words(regs []uint16) []byte {
	w := make([]byte, 2*len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(w[2*i:], r)
	}
	return w
}

// stringTag is a string tag of 4 registers at holding 4, as the poller
// emits it: no value (null), its text, its registers.
var stringTag = kindTag{name: "string",
	poll: func(at time.Time, regs ...uint16) plcwatch.Event {
		ev := imgPoll(at, 0)
		ev.Address, ev.Count, ev.Tag, ev.Value, ev.Raw = 4, uint16(len(regs)), "label", plcwatch.NoValue, plcwatch.NoValue
		ev.Text = string(words(regs))
		ev.Response.SetWords(words(regs))
		return ev
	},
	write: func(at time.Time, regs ...uint16) plcwatch.Event { return imgWrite(at, 4, 0, regs...) },
	read:  func(at time.Time, regs ...uint16) plcwatch.Event { return imgRead(at, 4, regs...) },
	a:     []uint16{0x4142, 0x4344, 0x4546, 0x4748}, b: []uint16{0x5a5a, 0x4344, 0x5858, 0x4748}}

// coilTag is a coil at address 0: one bit.
var coilTag = kindTag{name: "coil",
	poll: func(at time.Time, regs ...uint16) plcwatch.Event {
		ev := imgPoll(at, 0)
		ev.Table, ev.Function, ev.Address, ev.Tag, ev.Value, ev.Raw = plcwatch.TableCoil, 1, 0, "run", float64(regs[0]), float64(regs[0])
		ev.Response = plcwatch.Values{}
		ev.Response.SetBit(regs[0] != 0)
		return ev
	},
	write: func(at time.Time, regs ...uint16) plcwatch.Event {
		ev := imgWrite(at, 0, 0)
		ev.Table, ev.Function, ev.Count = plcwatch.TableCoil, 5, 1
		ev.Values.SetBit(regs[0] != 0)
		return ev
	},
	read: func(at time.Time, regs ...uint16) plcwatch.Event {
		ev := imgRead(at, 0)
		ev.Table, ev.Function, ev.Count = plcwatch.TableCoil, 1, 1
		ev.Response.SetBit(regs[0] != 0)
		return ev
	},
	a: []uint16{0}, b: []uint16{1}}

// TestCorrelationKinds: the default correlation rules decide in register
// form for every kind of tag — a string (no engineering value), a coil —
// and a read of part of a multi-register tag is compared on what it read.
func TestCorrelationKinds(t *testing.T) {
	set, err := Load("../configs/rules/correlation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	for _, k := range []kindTag{stringTag, coilTag} {
		steady := func(evs ...plcwatch.Event) []plcwatch.Event {
			out := []plcwatch.Event{k.poll(s(0), k.a...), k.read(s(1), k.a...)}
			for i := 1; i <= 4; i++ {
				out = append(out, k.poll(s(10*i), k.a...))
			}
			return append(out, evs...)
		}
		cases := []struct {
			name string
			evs  []plcwatch.Event
			want string
		}{
			{"change without write", steady(k.poll(s(50), k.b...), k.poll(s(60), k.b...)), "correlation-change-without-write"},
			{"change by a captured write", steady(k.write(s(45), k.b...), k.poll(s(50), k.b...), k.poll(s(60), k.b...)), ""},
			{"write not taken", steady(k.write(s(45), k.b...), k.poll(s(50), k.a...), k.poll(s(60), k.a...), k.poll(s(70), k.a...)), "correlation-write-not-taken"},
			{"view differs", steady(k.read(s(41), k.b...), k.read(s(46), k.b...), k.poll(s(50), k.a...), k.read(s(52), k.b...)), "correlation-view-differs"},
			{"view agrees", steady(k.read(s(41), k.a...), k.read(s(46), k.a...), k.poll(s(50), k.a...), k.read(s(52), k.a...)), ""},
			// A write that took for one poll, then undone by a path the
			// capture does not see (docs/correlation.md).
			{"write undone by a hidden path", steady(k.write(s(45), k.b...), k.poll(s(50), k.b...), k.poll(s(60), k.a...), k.poll(s(70), k.a...)), "correlation-change-without-write"},
		}
		for _, c := range cases {
			t.Run(k.name+"/"+c.name, func(t *testing.T) {
				e, r := newTestEngine(set)
				for i := range c.evs {
					e.Process(&c.evs[i])
				}
				e.Close()
				got := r.byRule()
				if (c.want == "" && len(got) != 0) || (c.want != "" && (len(got) != 1 || got[c.want] != 1)) {
					t.Fatalf("alerts %v, want %q", got, c.want)
				}
			})
		}
	}
}

// TestViewPartial: a read of the first register of a polled float32 is
// compared with it; one that agrees is not.
func TestViewPartial(t *testing.T) {
	set, err := Load("../configs/rules/correlation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	f32 := func(at time.Time) plcwatch.Event {
		ev := imgPoll(at, 0)
		ev.Count, ev.Tag, ev.Value = 2, "temp", 21.5
		ev.Response.SetWords(words([]uint16{0x41ac, 0x0000}))
		return ev
	}
	steady := func(evs ...plcwatch.Event) []plcwatch.Event {
		out := []plcwatch.Event{f32(s(0))}
		for i := 1; i <= 4; i++ {
			out = append(out, f32(s(10*i)))
		}
		return append(out, evs...)
	}
	for _, c := range []struct {
		name string
		evs  []plcwatch.Event
		want int
	}{
		{"first register differs", steady(imgRead(s(41), 10, 0x4248), imgRead(s(46), 10, 0x4248), f32(s(50)), imgRead(s(52), 10, 0x4248)), 1},
		{"second register differs, read with the one after", steady(imgRead(s(41), 11, 1, 7), imgRead(s(46), 11, 1, 7), f32(s(50)), imgRead(s(52), 11, 1, 7)), 1},
		{"first register agrees", steady(imgRead(s(41), 10, 0x41ac), imgRead(s(46), 10, 0x41ac), f32(s(50)), imgRead(s(52), 10, 0x41ac)), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, r := newTestEngine(set)
			for i := range c.evs {
				e.Process(&c.evs[i])
			}
			e.Close()
			if got := r.byRule(); got["correlation-view-differs"] != c.want || len(got) > 1 {
				t.Fatalf("alerts %v, want %d correlation-view-differs", got, c.want)
			}
			if c.want == 1 && c.evs[len(c.evs)-1].PolledTag != "temp" {
				t.Fatalf("polled tag %q", c.evs[len(c.evs)-1].PolledTag)
			}
		})
	}
}

// TestCorrelationBitTag: a bit tag (type bit: bit 0 of holding 10) shares
// its register with other bits: they change without it changing, and a
// write that sets its bit took even when the device moved the others.
func TestCorrelationBitTag(t *testing.T) {
	set, err := Load("../configs/rules/correlation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	bit0 := func(device, tag string) Decoder {
		return func(w []byte) (float64, bool) {
			if len(w) != 2 {
				return 0, false
			}
			return float64(w[1] & 1), true
		}
	}
	poll := func(at time.Time, reg uint16) plcwatch.Event {
		ev := imgPoll(at, reg)
		ev.Tag, ev.Value, ev.Raw = "flag", float64(reg&1), float64(reg&1)
		return ev
	}
	steady := func(evs ...plcwatch.Event) []plcwatch.Event {
		out := []plcwatch.Event{poll(s(0), 0x0100), imgRead(s(1), 10, 0x0100)}
		for i := 1; i <= 4; i++ {
			out = append(out, poll(s(10*i), 0x0100))
		}
		return append(out, evs...)
	}
	for _, c := range []struct {
		name string
		evs  []plcwatch.Event
		want string
	}{
		{"other bits change", steady(poll(s(50), 0x0300), poll(s(60), 0x0300)), ""},
		{"its bit changes", steady(poll(s(50), 0x0101), poll(s(60), 0x0101)), "correlation-change-without-write"},
		{"a write of its bit took, other bits moved", steady(imgWrite(s(45), 10, 0, 0x0101), poll(s(50), 0x0001), poll(s(60), 0x0001), poll(s(70), 0x0001)), ""},
		{"a write of its bit not taken", steady(imgWrite(s(45), 10, 0, 0x0101), poll(s(50), 0x0100), poll(s(60), 0x0100), poll(s(70), 0x0100)), "correlation-write-not-taken"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, r := newTestEngine(set)
			e.opts.Decoder, e.image.decoder = bit0, bit0
			for i := range c.evs {
				e.Process(&c.evs[i])
			}
			e.Close()
			got := r.byRule()
			if (c.want == "" && len(got) != 0) || (c.want != "" && (len(got) != 1 || got[c.want] != 1)) {
				t.Fatalf("alerts %v, want %q", got, c.want)
			}
		})
	}
}
