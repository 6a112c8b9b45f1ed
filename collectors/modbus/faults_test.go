package modbus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

var transports = []string{"tcp", "rtu-over-tcp"}

// statuses returns the status events among evs.
func statuses(evs []plcwatch.Event) []plcwatch.Event {
	var out []plcwatch.Event
	for _, ev := range evs {
		if ev.Op == plcwatch.OpStatus {
			out = append(out, ev)
		}
	}
	return out
}

// TestEveryExceptionCodeIsAnAnswer: a device answers each exception code
// 1-255 (one tag each) and values for one more tag. Every code is an
// answer: the tag is bad with that exception and no value, the device
// stays up (one up event, never down), and the cycle goes on to the last
// tag. simonvetter/modbus turned 7 and 12-255 into errors without a code,
// which made the device flap every cycle (issue 9 §7).
func TestEveryExceptionCodeIsAnAnswer(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			srv := newRawDevice(t, transport == "rtu-over-tcp", func(q query) reply {
				if q.addr < 2*256 {
					return exception(q, uint8(q.addr/2))
				}
				return registers(q)
			})
			d := Device{Name: "nak", Transport: transport, Address: srv.addr(), Timeout: time.Second,
				Retries: intp(1), Backoff: time.Millisecond}
			for code := 1; code <= 255; code++ {
				d.Tags = append(d.Tags, Tag{Name: fmt.Sprintf("x%d", code), Table: "holding", Address: intp(2 * code)})
			}
			d.Tags = append(d.Tags, Tag{Name: "ok", Table: "holding", Address: intp(600)})
			p := mustPoller(t, d, Options{})
			var rec recorder
			for range 2 {
				p.cycle(context.Background(), rec.emit)
			}
			evs := rec.take()
			if st := statuses(evs); len(st) != 1 || st[0].Quality != "up" {
				t.Fatalf("status events %+v, want the device up once", st)
			}
			seen := map[string]int{}
			for _, ev := range evs {
				if ev.Op == plcwatch.OpStatus {
					continue
				}
				seen[ev.Tag]++
				if ev.Tag == "ok" {
					if ev.Quality != "good" || ev.Value != 1600 {
						t.Errorf("ok: %+v, want 1600: the cycle goes on after every exception", ev)
					}
					continue
				}
				var code int
				fmt.Sscanf(ev.Tag, "x%d", &code)
				if ev.Quality != "bad" || int(ev.Exception) != code || ev.Error != exceptionText(uint8(code)) || ev.HasValue() {
					t.Errorf("%s: quality %s exception %d error %q value %v, want bad, exception %d, no value",
						ev.Tag, ev.Quality, ev.Exception, ev.Error, ev.Value, code)
				}
				if j := string(ev.AppendJSON(nil)); !strings.Contains(j, `"value":null,"raw":null`) {
					t.Errorf("%s: JSON %s, want value and raw null", ev.Tag, j)
				}
			}
			if len(seen) != 256 {
				t.Errorf("%d tags got events, want 256", len(seen))
			}
			for tag, n := range seen {
				if n != 2 {
					t.Errorf("%s: %d events in 2 cycles", tag, n)
				}
			}
			// 5 (acknowledge) and 6 (busy) are retried once each.
			if st := p.Stats(); !st.Up || st.FailedCycles != 0 || st.Exceptions != 2*257 || st.Timeouts != 0 {
				t.Errorf("stats %+v, want up, no failed cycle, %d exceptions", st, 2*257)
			}
			if got := exceptionText(7); got != "negative acknowledge" {
				t.Errorf("exception 7 is %q", got)
			}
		})
	}
}

// TestMalformedAnswersAreBadTags: answers that are this request's but not
// well formed make its tags bad with the reason; the device answered, so it
// stays up.
func TestMalformedAnswersAreBadTags(t *testing.T) {
	tests := []struct {
		name  string
		rtu   bool
		pdu   []byte
		error string
		code  uint8
	}{
		{"exception code 0", false, []byte{0x83, 0}, "exception 0 (not defined by the Modbus specification)", 0},
		{"exception code 0 rtu", true, []byte{0x83, 0}, "exception 0 (not defined by the Modbus specification)", 0},
		{"exception without its code", false, []byte{0x83}, "exception response without its exception code", 0},
		{"exception with trailing bytes", false, []byte{0x83, 4, 0, 0}, "server device failure", 4},
		{"short", false, []byte{3, 1, 0}, "response of 1 bytes to a read of 1 registers (want 2)", 0},
		{"byte count disagrees with length", false, []byte{3, 4, 0, 1}, "response of 4 bytes to a read of 1 registers (want 2)", 0},
		{"other function", false, []byte{4, 2, 0, 1}, "answered with function code 4 to function code 3", 0},
		{"other function rtu", true, []byte{4, 2, 0, 1}, "", 0}, // RTU: another read's answer, discarded
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawDevice(t, tc.rtu, func(q query) reply {
				if q.addr == 0 {
					return reply{pdu: tc.pdu}
				}
				return registers(q)
			})
			transport := "tcp"
			if tc.rtu {
				transport = "rtu-over-tcp"
			}
			d := Device{Name: "odd", Transport: transport, Address: srv.addr(), Timeout: 200 * time.Millisecond, Retries: intp(0),
				Tags: []Tag{{Name: "a", Table: "holding", Address: intp(0)}, {Name: "b", Table: "holding", Address: intp(5)}}}
			p := mustPoller(t, d, Options{})
			var rec recorder
			p.cycle(context.Background(), rec.emit)
			got := rec.tags()
			if tc.error == "" { // discarded: no answer, the unit is down, b waits
				if ev, ok := got["a"]; ok {
					t.Errorf("a: %+v, want no event (no answer)", ev)
				}
				return
			}
			if ev := got["a"]; ev.Quality != "bad" || ev.Error != tc.error || ev.Exception != tc.code || ev.HasValue() {
				t.Errorf("a: quality %s error %q exception %d value %v, want bad %q %d", ev.Quality, ev.Error, ev.Exception, ev.Value, tc.error, tc.code)
			}
			if ev := got["b"]; ev.Quality != "good" || ev.Value != 1005 {
				t.Errorf("b: %+v", ev)
			}
			if st := p.Stats(); !st.Up {
				t.Errorf("stats %+v: the device answered", st)
			}
		})
	}
}

// TestWrongTransactionIDIsSaid: a device that answers with another
// transaction id than the request's is reported as doing so, not as
// "request timed out" (issue 9 §2); an answer with another id before the
// right one is set aside and counted.
func TestWrongTransactionIDIsSaid(t *testing.T) {
	srv := newRawDevice(t, false, func(q query) reply {
		r := registers(q)
		switch q.addr {
		case 0:
			wrong := q.tid + 100
			r.tid = &wrong
		case 7:
			r.before = [][]byte{mbapFrame(q.tid-1, q.unit, []byte{3, 2, 0xde, 0xad})}
		}
		return r
	})
	d := Device{Name: "tid", Address: srv.addr(), Timeout: 100 * time.Millisecond, Retries: intp(0),
		Tags: []Tag{{Name: "a", Table: "holding", Address: intp(0)}}}
	p := mustPoller(t, d, Options{})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	evs := rec.take()
	if len(evs) != 1 || evs[0].Quality != "down" ||
		!strings.HasSuffix(evs[0].Error, "device answered with transaction id 101 for request 1: response discarded") {
		t.Fatalf("events %+v, want the device down saying which transaction id it answered with", evs)
	}

	d.Tags = []Tag{{Name: "first", Table: "holding", Address: intp(3)}, {Name: "b", Table: "holding", Address: intp(7)}}
	p = mustPoller(t, d, Options{})
	p.cycle(context.Background(), rec.emit)
	if ev := rec.tags()["b"]; ev.Quality != "good" || ev.Value != 1007 {
		t.Errorf("b after a late answer to the request before: %+v", ev)
	}
	if st := p.Stats(); st.Discarded != 1 || st.Timeouts != 0 {
		t.Errorf("stats %+v, want one response discarded", st)
	}
}

// TestLateAnswerOnAKeptConnection: over Modbus/TCP a timeout keeps a
// connection that has answered this cycle; the answer that comes late is
// recognised by its transaction id and set aside, never taken for the
// next request's.
func TestLateAnswerOnAKeptConnection(t *testing.T) {
	var mu sync.Mutex
	slow := true
	srv := newRawDevice(t, false, func(q query) reply {
		r := registers(q)
		mu.Lock()
		defer mu.Unlock()
		if q.addr == 50 && slow {
			slow = false
			r.delay = 300 * time.Millisecond
		}
		return r
	})
	d := Device{Name: "late", Address: srv.addr(), Timeout: 100 * time.Millisecond, Retries: intp(0), Tags: []Tag{
		{Name: "a", Table: "holding", Address: intp(1)},
		{Name: "b", Table: "holding", Address: intp(50)},
	}}
	p := mustPoller(t, d, Options{})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	if ev := rec.tags()["b"]; ev.Quality != "bad" || !strings.Contains(ev.Error, "timed out") {
		t.Fatalf("b: %+v, want bad: no answer in time while a answered", ev)
	}
	time.Sleep(300 * time.Millisecond) // b's answer (1050) arrives meanwhile
	for range 2 {
		p.cycle(context.Background(), rec.emit)
	}
	for _, ev := range rec.take() {
		if ev.Tag == "a" && ev.Value != 1001 || ev.Tag == "b" && ev.Value != 1050 {
			t.Errorf("%s read %v (%s)", ev.Tag, ev.Value, ev.Quality)
		}
	}
	if _, conns := srv.queries(); conns != 1 {
		t.Errorf("%d connections, want 1: kept after the timeout", conns)
	}
	if st := p.Stats(); st.Discarded != 1 || st.Timeouts != 1 {
		t.Errorf("stats %+v, want the late answer set aside", st)
	}
}

// TestUnitsBehindOneGateway: tags on units 1-3 behind one address, one unit
// silent. The units that answer keep reporting every cycle; the silent one
// goes down once (no flapping) and costs one timeout a cycle, not one per
// request; over TCP the connection is kept (influxdata/telegraf#11785,
// issue 9 §7).
func TestUnitsBehindOneGateway(t *testing.T) {
	for _, transport := range transports {
		for _, silent := range []uint8{1, 3} {
			t.Run(fmt.Sprintf("%s/unit %d silent", transport, silent), func(t *testing.T) {
				srv := newRawDevice(t, transport == "rtu-over-tcp", func(q query) reply {
					if q.unit == silent {
						return reply{silent: true}
					}
					r := registers(q)
					r.pdu[2] += q.unit // unit 2 reads 1000+addr+512, unit 3 1000+addr+768: who answered
					return r
				})
				d := Device{Name: "gw", Transport: transport, Address: srv.addr(), Timeout: 100 * time.Millisecond,
					Retries: intp(1), Backoff: time.Millisecond}
				for u := 1; u <= 3; u++ {
					for _, a := range []int{0, 10} {
						d.Tags = append(d.Tags, Tag{Name: fmt.Sprintf("u%d_%d", u, a), Unit: intp(u), Table: "holding", Address: intp(a)})
					}
				}
				p := mustPoller(t, d, Options{})
				var rec recorder
				p.cycle(context.Background(), rec.emit)
				_, conns1 := srv.queries()
				const cycles = 4
				for range cycles - 1 {
					p.cycle(context.Background(), rec.emit)
				}
				evs := rec.take()
				st := statuses(evs)
				if len(st) != 3 {
					t.Errorf("status events %+v, want 3: two units up, the silent one down, once each", st)
				}
				for _, ev := range st {
					if (ev.Unit == silent) != (ev.Quality == "down") {
						t.Errorf("unit %d %s: %s", ev.Unit, ev.Quality, ev.Error)
					}
					if ev.Unit == silent && !strings.Contains(ev.Error, fmt.Sprintf("(unit %d): timed out", silent)) {
						t.Errorf("unit %d down: %q", silent, ev.Error)
					}
				}
				values := map[string]int{}
				for _, ev := range evs {
					if ev.Tag == "" {
						continue
					}
					values[ev.Tag]++
					var u, a int
					fmt.Sscanf(ev.Tag, "u%d_%d", &u, &a)
					if u == int(silent) {
						t.Errorf("%s: an event from the silent unit: %+v", ev.Tag, ev)
					} else if want := float64(1000 + a + 256*u); ev.Quality != "good" || ev.Value != want || int(ev.Unit) != u {
						t.Errorf("%s: %v (%s), want %v from unit %d", ev.Tag, ev.Value, ev.Quality, want, u)
					}
				}
				if len(values) != 4 {
					t.Errorf("tags read %v, want the 4 of the answering units", values)
				}
				for tag, n := range values {
					if n != cycles {
						t.Errorf("%s: %d values in %d cycles", tag, n, cycles)
					}
				}
				qs, conns := srv.queries()
				toSilent := 0
				for _, q := range qs {
					if q.unit == silent {
						toSilent++
					}
				}
				if toSilent != 2*cycles {
					t.Errorf("%d requests to the silent unit in %d cycles, want 2 a cycle (its first read and one retry; its second read waits)", toSilent, cycles)
				}
				if transport == "tcp" && conns != conns1 {
					t.Errorf("%d connections after the first cycle, %d after %d: a silent unit must not cost the others a reconnection", conns1, conns, cycles)
				}
				s := p.Stats()
				if !s.Up || s.FailedCycles != cycles || len(s.Units) != 3 {
					t.Errorf("stats %+v, want the device up, every cycle failed for the silent unit", s)
				}
				for _, u := range s.Units {
					if u.Up == (u.Unit == silent) || !u.Known {
						t.Errorf("unit stats %+v", u)
					}
				}
			})
		}
	}
}

// TestGatewayAnswersForAMissingUnit: a gateway answers exception 11 for a
// unit that does not answer on its serial side (the simulator's Gateway,
// served by simonvetter/modbus): an answer, per tag, like any exception.
func TestGatewayAnswersForAMissingUnit(t *testing.T) {
	one, two := &modbussim.Image{}, &modbussim.Image{}
	one.SetHolding(0, 11)
	two.SetHolding(0, 22)
	srv, err := modbussim.ServeGateway(freeAddr(t), modbussim.Gateway{1: one, 2: two}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := Device{Name: "gw", Address: srv.Addr, Retries: intp(0), Tags: []Tag{
		{Name: "a", Unit: intp(1), Table: "holding", Address: intp(0)},
		{Name: "b", Unit: intp(2), Table: "holding", Address: intp(0)},
		{Name: "c", Unit: intp(3), Table: "holding", Address: intp(0)},
	}}
	p := mustPoller(t, d, Options{})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	got := rec.tags()
	if got["a"].Value != 11 || got["b"].Value != 22 {
		t.Errorf("a %+v b %+v", got["a"], got["b"])
	}
	if ev := got["c"]; ev.Quality != "bad" || ev.Exception != 11 || ev.Error != "gateway target device failed to respond" {
		t.Errorf("c: %+v", ev)
	}
}

// logBuffer collects a logger's records as text.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMergedReadOverAHole: tags at registers 0, 1 and 2 merge into one
// read; register 1 does not exist, so the device refuses the read with
// exception 2. The read is split, each tag gets its own answer in the same
// cycle, the split is kept (three reads a cycle from then on) and said
// once in the log (issue 9 §7).
func TestMergedReadOverAHole(t *testing.T) {
	img := &modbussim.Image{}
	img.SetHolding(0, 100, 101, 102, 103, 104, 105)
	img.Unmap(modbussim.HoldingRegisters, 1, 1)
	srv, err := modbussim.Serve(freeAddr(t), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	proxy := newFCRecorder(t, srv.Addr)
	var logs logBuffer
	d := Device{Name: "holey", Address: proxy.ln.Addr().String(), Retries: intp(0), Tags: []Tag{
		{Name: "r0", Table: "holding", Address: intp(0)},
		{Name: "r1", Table: "holding", Address: intp(1)},
		{Name: "r2", Table: "holding", Address: intp(2)},
		{Name: "r3", Table: "holding", Address: intp(3), Type: "uint32"},
	}}
	p := mustPoller(t, d, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if p.Reads() != 1 {
		t.Fatalf("%d reads planned, want the 4 tags merged into 1", p.Reads())
	}
	var rec recorder
	const cycles = 3
	for range cycles {
		p.cycle(context.Background(), rec.emit)
	}
	n := map[string]int{}
	for _, ev := range rec.take() {
		if ev.Tag == "" {
			continue
		}
		n[ev.Tag]++
		switch ev.Tag {
		case "r1":
			if ev.Quality != "bad" || ev.Exception != 2 || ev.HasValue() {
				t.Errorf("r1: %+v, want bad with exception 2", ev)
			}
		case "r3":
			if ev.Quality != "good" || ev.Value != 103<<16|104 {
				t.Errorf("r3: %+v", ev)
			}
		default:
			if want := map[string]float64{"r0": 100, "r2": 102}[ev.Tag]; ev.Quality != "good" || ev.Value != want {
				t.Errorf("%s: %+v, want %v", ev.Tag, ev, want)
			}
		}
	}
	for _, tag := range []string{"r0", "r1", "r2", "r3"} {
		if n[tag] != cycles {
			t.Errorf("%s: %d events in %d cycles", tag, n[tag], cycles)
		}
	}
	if p.Reads() != 3 || p.Stats().PlannedReads != 3 {
		t.Errorf("%d reads a cycle after the split, want 3 (r0; r1; r2 with r3)", p.Reads())
	}
	codes, _ := proxy.seen()
	// Cycle 1: the merged read, its halves (r0+r1, r2+r3), r0+r1's
	// halves (r0, r1); then 3 a cycle.
	if want := 5 + 3*(cycles-1); len(codes) != want {
		t.Errorf("%d requests, want %d", len(codes), want)
	}
	if c := strings.Count(logs.String(), "reading its tags apart"); c != 1 {
		t.Errorf("the split logged %d times, want once:\n%s", c, logs.String())
	}
}

// TestMergedReadRefusedEverywhere: when every part of a refused read is
// refused too (the whole range is absent), the read stays whole rather
// than becoming a request per tag.
func TestMergedReadRefusedEverywhere(t *testing.T) {
	srv := serveGoldens(t, nil)
	d := Device{Name: "absent", Address: srv.Addr, Retries: intp(0)}
	for i := range 8 {
		d.Tags = append(d.Tags, Tag{Name: fmt.Sprintf("t%d", i), Table: "holding", Address: intp(modbussim.Size + i)})
	}
	p := mustPoller(t, d, Options{})
	var rec recorder
	for range 2 {
		p.cycle(context.Background(), rec.emit)
	}
	for _, ev := range rec.take() {
		if ev.Tag != "" && (ev.Quality != "bad" || ev.Exception != 2) {
			t.Errorf("%+v", ev)
		}
	}
	if p.Reads() != 1 {
		t.Errorf("%d reads, want 1", p.Reads())
	}
}

// TestReadingsThatAreNoValue: NaN and infinite float readings, exceptions
// and strings carry no number: value null in events and telemetry, with
// the reason (issue 9 §8).
func TestReadingsThatAreNoValue(t *testing.T) {
	srv := serveGoldens(t, nil)
	srv.Image.SetHolding(0, 0x7fc0, 0, 0x7f80, 0, 0xff80, 0, 0x41bd, 0x999a) // NaN, +Inf, -Inf, 23.7
	srv.Image.SetHolding(10, 0x4f4b)
	var tele []byte
	d := Device{Name: "nan", Address: srv.Addr, Retries: intp(0), Tags: []Tag{
		{Name: "nan", Table: "holding", Address: intp(0), Type: "float32"},
		{Name: "inf", Table: "holding", Address: intp(2), Type: "float32"},
		{Name: "neginf", Table: "holding", Address: intp(4), Type: "float32"},
		{Name: "ok", Table: "holding", Address: intp(6), Type: "float32"},
		{Name: "text", Table: "holding", Address: intp(10), Type: "string", Length: 1},
		{Name: "gone", Table: "holding", Address: intp(modbussim.Size)},
	}}
	p := mustPoller(t, d, Options{Telemetry: func(_ string, b []byte) { tele = append(tele[:0], b...) }})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	got := rec.tags()
	for tag, why := range map[string]string{"nan": "NaN", "inf": "+Inf", "neginf": "-Inf", "gone": "illegal data address"} {
		ev := got[tag]
		if ev.Quality != "bad" || ev.Error != why || ev.HasValue() || !math.IsNaN(ev.Raw) {
			t.Errorf("%s: quality %s error %q value %v raw %v, want bad %q without a value", tag, ev.Quality, ev.Error, ev.Value, ev.Raw, why)
		}
		if j := string(ev.AppendJSON(nil)); !strings.Contains(j, `"value":null,"raw":null`) {
			t.Errorf("%s: %s", tag, j)
		}
	}
	if ev := got["ok"]; ev.Quality != "good" || ev.Value != 23.7 || ev.Raw != 23.7 {
		t.Errorf("ok: value %v raw %v, want 23.7 (float32's shortest form)", ev.Value, ev.Raw)
	}
	if ev := got["text"]; ev.Quality != "good" || ev.Text != "OK" || ev.HasValue() {
		t.Errorf("text: %+v, want OK and no number", ev)
	}
	var doc struct {
		Units map[string]string
		Tags  map[string]map[string]any
	}
	if err := json.Unmarshal(tele, &doc); err != nil {
		t.Fatalf("%v: %s", err, tele)
	}
	if tag := doc.Tags["nan"]; tag["value"] != nil || tag["raw"] != nil || tag["quality"] != "bad" || tag["error"] != "NaN" {
		t.Errorf("telemetry nan: %v", tag)
	}
	if tag := doc.Tags["gone"]; tag["value"] != nil || tag["exception"] != 2.0 {
		t.Errorf("telemetry gone: %v", tag)
	}
	if tag := doc.Tags["text"]; tag["value"] != nil || tag["raw"] != nil || tag["text"] != "OK" || tag["quality"] != "good" {
		t.Errorf("telemetry text: %v, want its text (issue 10)", tag)
	}
	if tag := doc.Tags["ok"]; tag["value"] != 23.7 {
		t.Errorf("telemetry ok: %v", tag)
	}
	if !bytes.Contains(tele, []byte(`"value":23.7,"raw":23.7`)) {
		t.Errorf("telemetry %s, want 23.7 printed as such", tele)
	}
	if doc.Units["1"] != "up" {
		t.Errorf("telemetry units %v", doc.Units)
	}
}

// TestReadyAfterTheFirstCycle: Ready closes when the first cycle has
// ended, and from then on Stats say whether the device is up.
func TestReadyAfterTheFirstCycle(t *testing.T) {
	srv := serveGoldens(t, nil)
	srv.Image.Delay.Store(int64(50 * time.Millisecond))
	d := Device{Name: "r", Address: srv.Addr, Interval: time.Hour, Tags: []Tag{{Name: "v", Table: "holding", Address: intp(0)}}}
	p := mustPoller(t, d, Options{})
	if st := p.Stats(); st.Known || st.Up {
		t.Fatalf("before the first cycle: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx, func(*plcwatch.Event) {}); close(done) }()
	<-p.Ready()
	if st := p.Stats(); !st.Known || !st.Up || st.Cycles != 1 {
		t.Errorf("after Ready: %+v", st)
	}
	cancel()
	<-done

	p = mustPoller(t, d, Options{}) // stopped before its first cycle ends
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	p.Run(ctx, func(*plcwatch.Event) {})
	<-p.Ready()
}
