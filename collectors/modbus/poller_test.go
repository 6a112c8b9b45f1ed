package modbus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/sim/modbussim"
	"github.com/plcwatch/plcwatch/sim/pki"
)

// freeAddr returns a 127.0.0.1 address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// recorder keeps the events a poller emits.
type recorder struct {
	mu  sync.Mutex
	evs []plcwatch.Event
}

func (r *recorder) emit(ev *plcwatch.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, *ev)
	r.mu.Unlock()
}

func (r *recorder) take() []plcwatch.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	return evs
}

func (r *recorder) tags() map[string]plcwatch.Event {
	out := map[string]plcwatch.Event{}
	for _, ev := range r.take() {
		if ev.Tag != "" {
			out[ev.Tag] = ev
		}
	}
	return out
}

func intp(v int) *int { return &v }

// mustPoller defaults and validates d, and returns its poller.
func mustPoller(t testing.TB, d Device, opts Options) *Poller {
	t.Helper()
	d.Defaults()
	if errs := d.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	p, err := New(d, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// goldenDevice lays every golden out in holding registers from 100, one
// unused register between neighbours (max_gap 1 merges them), and returns
// the device and what the image must hold.
func goldenDevice(t testing.TB, addr string) (Device, map[int][]uint16) {
	d := Device{Name: "golden", Address: addr, Interval: time.Second, Timeout: time.Second, MaxGap: 1, Retries: intp(0)}
	image := map[int][]uint16{}
	at := 100
	for i, g := range goldens {
		regs := g.registers(t)
		d.Tags = append(d.Tags, Tag{Name: g.name(i), Table: "holding", Address: intp(at), Type: g.typ,
			ByteOrder: g.order, Bit: g.bit, Length: g.length})
		image[at] = regs
		at += len(regs) + 1
	}
	// One of each bit table, a scaled input register in the 1-based form,
	// and a tag with its own unit.
	d.Tags = append(d.Tags,
		Tag{Name: "coil_7", Table: "coil", Address: intp(7)},
		Tag{Name: "discrete_3", Register: "10004"},
		Tag{Name: "level", Register: "30011", Type: "int16", Scale: new(0.1), Offset: -5, UOM: "%"},
	)
	d.Defaults()
	if errs := d.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	return d, image
}

func checkGoldenEvents(t *testing.T, d Device, got map[string]plcwatch.Event) {
	t.Helper()
	for i, g := range goldens {
		ev, ok := got[g.name(i)]
		if !ok {
			t.Errorf("%s: no event", g.name(i))
			continue
		}
		if ev.Quality != "good" || !g.rawIs(ev.Raw) || ev.Text != g.text {
			t.Errorf("%s: raw %v text %q quality %s (%s), want %v %q", g.name(i), ev.Raw, ev.Text, ev.Quality, ev.Error, g.want, g.text)
		}
		if g.typ != "string" && ev.Value != g.want {
			t.Errorf("%s: value %v, want %v (scale 1)", g.name(i), ev.Value, g.want)
		}
		if ev.Source != plcwatch.Poll || ev.Protocol != plcwatch.ProtoModbus || ev.Op != plcwatch.OpRead ||
			ev.Device != d.Name || ev.Function != 3 || ev.Table != plcwatch.TableHolding || ev.Unit != 1 {
			t.Errorf("%s: event %+v", g.name(i), ev)
		}
		var wire []byte
		for j := 0; j < ev.Response.Len(); j++ {
			wire = binary.BigEndian.AppendUint16(wire, ev.Response.At(j))
		}
		if fmt.Sprintf("%x", wire) != g.wire {
			t.Errorf("%s: response %x, want the raw registers %s", g.name(i), wire, g.wire)
		}
	}
	if ev := got["coil_7"]; ev.Value != 1 || ev.Function != 1 || ev.Address != 7 || ev.Quality != "good" {
		t.Errorf("coil_7: %+v", ev)
	}
	if ev := got["discrete_3"]; ev.Value != 1 || ev.Function != 2 || ev.Address != 3 || ev.Table != plcwatch.TableDiscrete {
		t.Errorf("discrete_3: %+v", ev)
	}
	// 30011 is input register 10: -250 × 0.1 - 5 = -30.
	if ev := got["level"]; ev.Raw != -250 || ev.Value != -30 || ev.Function != 4 || ev.Address != 10 {
		t.Errorf("level: raw %v value %v fc %d address %d, want -250 -30 4 10", ev.Raw, ev.Value, ev.Function, ev.Address)
	}
}

// fcRecorder is a TCP proxy in front of a Modbus/TCP server that records
// the function code of every request that crosses it.
type fcRecorder struct {
	ln    net.Listener
	mu    sync.Mutex
	codes []byte
	conns int
}

func newFCRecorder(t *testing.T, upstream string) *fcRecorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fcRecorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, u); c.Close() }()
			go func() {
				defer u.Close()
				hdr := make([]byte, 7)
				for {
					if _, err := io.ReadFull(c, hdr); err != nil {
						return
					}
					pdu := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
					if _, err := io.ReadFull(c, pdu); err != nil || len(pdu) == 0 {
						return
					}
					r.mu.Lock()
					r.codes = append(r.codes, pdu[0])
					r.mu.Unlock()
					u.Write(append(hdr, pdu...))
				}
			}()
		}
	}()
	return r
}

func (r *fcRecorder) seen() ([]byte, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.codes), r.conns
}

func serveGoldens(t *testing.T, image map[int][]uint16) *modbussim.Server {
	img := &modbussim.Image{}
	for at, regs := range image {
		img.SetHolding(at, regs...)
	}
	img.SetCoil(7, true)
	img.SetDiscrete(3, true)
	img.SetInput(10, uint16(0xffff-249)) // -250
	srv, err := modbussim.Serve(freeAddr(t), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestGoldenValuesAndReadOnly polls the in-process simonvetter/modbus
// server through a proxy that records every function code: each type and
// byte order decodes to its golden value, the cycle sends exactly the
// planned requests, and nothing but FC 1-4 ever crosses the wire.
func TestGoldenValuesAndReadOnly(t *testing.T) {
	d, image := goldenDevice(t, "127.0.0.1:1")
	srv := serveGoldens(t, image)
	proxy := newFCRecorder(t, srv.Addr)
	d.Address = proxy.ln.Addr().String()
	p := mustPoller(t, d, Options{})
	var rec recorder
	for range 3 {
		p.cycle(context.Background(), rec.emit)
	}
	evs := rec.take()
	if evs[0].Op != plcwatch.OpStatus || evs[0].Quality != "up" {
		t.Errorf("first event %+v, want device up", evs[0])
	}
	rec.evs = evs
	checkGoldenEvents(t, d, rec.tags())
	codes, conns := proxy.seen()
	// Goldens in holding (merged by max_gap 1 in 125-register requests), a
	// coil, a discrete input, an input register: the planner's count.
	if len(codes) != 3*p.Reads() {
		t.Errorf("%d requests in 3 cycles, want 3 × %d planned", len(codes), p.Reads())
	}
	for _, fc := range codes {
		if fc < 1 || fc > 4 {
			t.Fatalf("function code %d on the wire: the poller must only read (FC 1-4); all: %v", fc, codes)
		}
	}
	if conns != 1 {
		t.Errorf("%d connections for 3 cycles, want 1 (kept open)", conns)
	}
	if st := p.Stats(); st.Cycles != 3 || st.FailedCycles != 0 || !st.Up || st.Requests != uint64(len(codes)) {
		t.Errorf("stats %+v", st)
	}
	if srv.Image.Writes.Load() != 0 {
		t.Error("the device saw a write")
	}
}

func TestPlannedRequestsForGoldens(t *testing.T) {
	d, _ := goldenDevice(t, "127.0.0.1:502")
	specs := d.specs()
	lim := limits{maxRegisters: d.MaxRegisters, maxBits: d.MaxBits, maxGap: d.MaxGap}
	reqs := plan(specs, lim)
	// 36 goldens take 36 + 80 registers with 35 gaps: 151 registers from
	// 100, more than 125, so two holding requests; plus coil, discrete,
	// input.
	var holding int
	for _, r := range reqs {
		if r.table == plcwatch.TableHolding {
			holding++
		}
	}
	if holding != 2 || len(reqs) != 5 {
		t.Errorf("%d requests (%d holding): %+v", len(reqs), holding, reqs)
	}
	d.Workaround.OneRequestPerTag = true
	if got := plan(specs, limits{maxRegisters: 125, maxBits: 2000, onePerTag: true}); len(got) != len(specs) {
		t.Errorf("one_request_per_tag: %d requests for %d tags", len(got), len(specs))
	}
}

func TestExceptionIsAnEventNotAFailure(t *testing.T) {
	srv := serveGoldens(t, nil)
	d := Device{Name: "plc", Address: srv.Addr, Retries: intp(0), Tags: []Tag{
		{Name: "ok", Table: "holding", Address: intp(0)},
		{Name: "beyond", Table: "holding", Address: intp(modbussim.Size)}, // past the device's map
	}}
	p := mustPoller(t, d, Options{})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	got := rec.tags()
	if ev := got["beyond"]; ev.Quality != "bad" || ev.Exception != 2 || !strings.Contains(ev.Error, "illegal data address") {
		t.Errorf("beyond: %+v, want quality bad, exception 2", ev)
	}
	if ev := got["ok"]; ev.Quality != "good" {
		t.Errorf("ok: %+v", ev)
	}
	if st := p.Stats(); !st.Up || st.Exceptions != 1 || st.FailedCycles != 0 {
		t.Errorf("stats %+v: an exception is an answer, the device is up", st)
	}
}

func TestDeviceDownThenUp(t *testing.T) {
	addr := freeAddr(t)
	d := Device{Name: "late", Address: addr, Timeout: 200 * time.Millisecond, Retries: intp(1), Backoff: time.Millisecond,
		Tags: []Tag{{Name: "v", Table: "holding", Address: intp(5)}}}
	p := mustPoller(t, d, Options{})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	p.cycle(context.Background(), rec.emit)
	evs := rec.take()
	if len(evs) != 1 || evs[0].Op != plcwatch.OpStatus || evs[0].Quality != "down" || !strings.Contains(evs[0].Error, "refused") {
		t.Fatalf("nothing listening: events %+v, want one device down (once, not per cycle)", evs)
	}
	img := &modbussim.Image{}
	img.SetHolding(5, 42)
	srv, err := modbussim.Serve(addr, img, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p.cycle(context.Background(), rec.emit)
	evs = rec.take()
	if len(evs) != 2 || evs[0].Quality != "up" || evs[1].Tag != "v" || evs[1].Value != 42 {
		t.Fatalf("device back: events %+v, want up then v=42", evs)
	}
	srv.Close()
	p.cycle(context.Background(), rec.emit)
	if evs = rec.take(); len(evs) != 1 || evs[0].Quality != "down" {
		t.Fatalf("device gone again: %+v", evs)
	}
	if st := p.Stats(); st.Cycles != 4 || st.FailedCycles != 3 || st.Up {
		t.Errorf("stats %+v", st)
	}
}

// TestLateResponseIsNeverMispaired: the first request times out, and its
// answer arrives while the poller could be waiting for the next one. RTU
// framing has no transaction id, so only the connection reset after a
// timeout keeps that late answer from being taken for the next request's.
func TestLateResponseIsNeverMispaired(t *testing.T) {
	for _, transport := range []string{"tcp", "rtu-over-tcp"} {
		t.Run(transport, func(t *testing.T) {
			var mu sync.Mutex
			first := true
			srv := newRawDevice(t, transport == "rtu-over-tcp", func(q query) reply {
				r := registers(q)
				mu.Lock()
				defer mu.Unlock()
				if first {
					first = false
					r.delay = 400 * time.Millisecond
				}
				return r
			})
			d := Device{Name: "slow", Transport: transport, Address: srv.addr(), Timeout: 150 * time.Millisecond,
				Retries: intp(0), Tags: []Tag{
					{Name: "a", Table: "holding", Address: intp(1)},
					{Name: "b", Table: "holding", Address: intp(50)},
				}}
			p := mustPoller(t, d, Options{})
			var rec recorder
			p.cycle(context.Background(), rec.emit) // a times out: device down
			time.Sleep(500 * time.Millisecond)      // the late answer (1001) is sent meanwhile
			for range 3 {
				p.cycle(context.Background(), rec.emit)
			}
			var values []float64
			for _, ev := range rec.take() {
				switch {
				case ev.Tag == "a" && ev.Value != 1001, ev.Tag == "b" && ev.Value != 1050:
					t.Fatalf("tag %s read %v: a late response was taken for another request", ev.Tag, ev.Value)
				case ev.Tag != "":
					values = append(values, ev.Value)
				}
			}
			if len(values) != 6 {
				t.Errorf("values %v, want a and b in each of 3 cycles", values)
			}
			if _, conns := srv.queries(); conns != 2 {
				t.Errorf("%d connections, want 2: one reset after the timeout", conns)
			}
		})
	}
}

// TestDeadOrSlowDeviceDoesNotDelayOthers runs three pollers as the daemon
// does: one device accepts connections and never answers, one answers
// slower than its interval, one is healthy. The healthy one keeps its
// cadence.
func TestDeadOrSlowDeviceDoesNotDelayOthers(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	slowImg := &modbussim.Image{}
	slowImg.Delay.Store(int64(300 * time.Millisecond))
	slow, err := modbussim.Serve(freeAddr(t), slowImg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	healthy := serveGoldens(t, nil)
	mk := func(name, addr string) *Poller {
		d := Device{Name: name, Address: addr, Interval: 50 * time.Millisecond, Timeout: 250 * time.Millisecond,
			Retries: intp(2), Backoff: 50 * time.Millisecond,
			Tags: []Tag{{Name: "v", Table: "holding", Address: intp(0)}, {Name: "w", Table: "input", Address: intp(0)}}}
		p := mustPoller(t, d, Options{})
		return p
	}
	pollers := []*Poller{mk("dead", silent.Addr().String()), mk("slow", slow.Addr), mk("healthy", healthy.Addr)}
	var mu sync.Mutex
	var healthyTimes []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Run(ctx, func(ev *plcwatch.Event) {
				if ev.Device == "healthy" && ev.Tag == "v" {
					mu.Lock()
					healthyTimes = append(healthyTimes, ev.Time)
					mu.Unlock()
				}
			})
		}()
	}
	wg.Wait()
	// 2 s at 50 ms is 40 cycles; allow a loaded machine half of them, but
	// not the stalls the other devices would cause if they shared a loop
	// (each dead cycle takes 3 × 250 ms plus backoff).
	if len(healthyTimes) < 20 {
		t.Errorf("healthy device: %d cycles in 2 s at 50 ms", len(healthyTimes))
	}
	for i := 1; i < len(healthyTimes); i++ {
		if gap := healthyTimes[i].Sub(healthyTimes[i-1]); gap > 400*time.Millisecond {
			t.Errorf("healthy device: %v between two cycles", gap)
		}
	}
	if st := pollers[0].Stats(); st.Up || st.Timeouts == 0 {
		t.Errorf("dead device: %+v", st)
	}
	if st := pollers[1].Stats(); st.Overruns == 0 {
		t.Errorf("slow device: %+v, want overruns (300 ms answers, 50 ms interval)", st)
	}
	if st := pollers[2].Stats(); st.FailedCycles != 0 {
		t.Errorf("healthy device: %+v", st)
	}
}

func TestTelemetryDocument(t *testing.T) {
	srv := serveGoldens(t, nil)
	srv.Image.SetHolding(0, 215)
	var got []byte
	d := Device{Name: "boiler", Address: srv.Addr, Tags: []Tag{
		{Name: "temperature", Table: "holding", Address: intp(0), Scale: new(0.1), UOM: "degC"},
		{Name: "serial", Table: "holding", Address: intp(1), Type: "string", Length: 2},
	}}
	d.Defaults()
	p, err := New(d, Options{Site: "plant-a", Gateway: "gw-1", Telemetry: func(dev string, b []byte) {
		if dev != "boiler" {
			t.Errorf("device %q", dev)
		}
		got = append([]byte(nil), b...)
	}})
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	var doc struct {
		Schema, Site, Gateway, Device string
		Time                          time.Time
		Tags                          map[string]struct {
			Value, Raw float64
			Text       string
			Quality    string
			UOM        string
		}
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	temp := doc.Tags["temperature"]
	if doc.Schema != "plcwatch.telemetry/v1" || doc.Site != "plant-a" || doc.Device != "boiler" || temp.Value != 21.5 ||
		temp.Raw != 215 || temp.UOM != "degC" || temp.Quality != "good" || doc.Tags["serial"].Quality != "good" {
		t.Errorf("telemetry %s", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(d *Device)
		field string
	}{
		{"ok", func(d *Device) {}, ""},
		{"no name", func(d *Device) { d.Name = "" }, "name"},
		{"topic wildcard in name", func(d *Device) { d.Name = "a/b" }, "name"},
		{"bad transport", func(d *Device) { d.Transport = "udp" }, "transport"},
		{"tls without certificates", func(d *Device) { d.Transport = "tcp+tls" }, "tls"},
		{"unit", func(d *Device) { d.Unit = intp(300) }, "unit"},
		{"unit 0 is a unit", func(d *Device) { d.Unit = intp(0) }, ""},
		{"max_registers", func(d *Device) { d.MaxRegisters = 126 }, "max_registers"},
		{"max_bits", func(d *Device) { d.MaxBits = 2001 }, "max_bits"},
		{"unknown type", func(d *Device) { d.Tags[0].Type = "float16" }, "tags[0].type"},
		{"float on a coil", func(d *Device) { d.Tags[0].Table = "coil"; d.Tags[0].Type = "float32" }, "tags[0].type"},
		{"bit 16", func(d *Device) { d.Tags[0].Type = "bit"; d.Tags[0].Bit = 16 }, "tags[0].bit"},
		{"string without length", func(d *Device) { d.Tags[0].Type = "string" }, "tags[0].length"},
		{"past 65535", func(d *Device) { d.Tags[0].Address = intp(65535); d.Tags[0].Type = "uint32" }, "tags[0].address"},
		{"register and address", func(d *Device) { d.Tags[0].Register = "40001" }, "tags[0].register"},
		{"register table digit", func(d *Device) { d.Tags[0].Address = nil; d.Tags[0].Table = ""; d.Tags[0].Register = "20001" }, "tags[0].register"},
		{"byte order", func(d *Device) { d.Tags[0].ByteOrder = "ACBD" }, "tags[0].byte_order"},
		{"AB on 32 bits", func(d *Device) { d.Tags[0].Type = "uint32"; d.Tags[0].ByteOrder = "BA" }, "tags[0].byte_order"},
		{"scale 0", func(d *Device) { d.Tags[0].Scale = new(0.0) }, "tags[0].scale"},
		{"duplicate tag", func(d *Device) { d.Tags = append(d.Tags, d.Tags[0]) }, "tags[1].name"},
		{"string longer than max_registers", func(d *Device) {
			d.MaxRegisters = 10
			d.Tags[0].Type = "string"
			d.Tags[0].Length = 11
		}, "tags[0].length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Device{Name: "plc", Address: "10.0.0.1", Tags: []Tag{{Name: "t", Table: "holding", Address: intp(0)}}}
			tc.edit(&d)
			d.Defaults()
			errs := d.Validate()
			var fields []string
			for _, e := range errs {
				var fe *FieldError
				if errors.As(e, &fe) {
					fields = append(fields, fe.Field)
				}
			}
			if tc.field == "" && len(errs) > 0 || tc.field != "" && !slices.Contains(fields, tc.field) {
				t.Errorf("errors %v, want one on %q", errs, tc.field)
			}
		})
	}
	d := Device{Address: "10.0.0.1"}
	d.Defaults()
	if d.Address != "10.0.0.1:502" || *d.Unit != 1 || *d.Retries != 1 || d.Interval != 10*time.Second {
		t.Errorf("defaults: %+v", d)
	}
}

// TestModbusTCPSecurity polls a Modbus/TCP Security (MBAPS) device with
// mutual TLS, and one whose certificate the poller does not trust.
func TestModbusTCPSecurity(t *testing.T) {
	ca, err := pki.New()
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := &modbussim.Image{}
	img.SetHolding(0, 7)
	srv, err := modbussim.ServeTLS(freeAddr(t), img, ca.Server, ca.CAPool, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	other, err := pki.New()
	if err != nil {
		t.Fatal(err)
	}
	otherFiles, err := other.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ca   string
		want string // quality of the status event
	}{{"trusted", files.CA, "up"}, {"untrusted server", otherFiles.CA, "down"}} {
		t.Run(tc.name, func(t *testing.T) {
			d := Device{Name: "mbaps", Transport: "tcp+tls", Address: srv.Addr, Retries: intp(0),
				TLS:  TLSConfig{CAFile: tc.ca, CertFile: files.ClientCert, KeyFile: files.ClientKey},
				Tags: []Tag{{Name: "v", Table: "holding", Address: intp(0)}}}
			p := mustPoller(t, d, Options{})
			var rec recorder
			p.cycle(context.Background(), rec.emit)
			evs := rec.take()
			if len(evs) == 0 || evs[0].Quality != tc.want {
				t.Fatalf("events %+v, want the device %s", evs, tc.want)
			}
			if tc.want == "up" && (len(evs) != 2 || evs[1].Value != 7) {
				t.Errorf("events %+v, want v=7", evs)
			}
			if tc.want == "down" && !strings.Contains(evs[0].Error, "certificate") {
				t.Errorf("error %q does not say what is wrong", evs[0].Error)
			}
		})
	}
}

// BenchmarkPollCycle is one cycle of a device with 100 uint16 tags (one
// request) against the in-process server on loopback: the request, the
// decoding, and 100 events emitted.
func BenchmarkPollCycle(b *testing.B) {
	img := &modbussim.Image{}
	srv, err := modbussim.Serve(freeAddr(b), img, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	d := Device{Name: "bench", Address: srv.Addr}
	for i := range 100 {
		d.Tags = append(d.Tags, Tag{Name: fmt.Sprintf("r%d", i), Table: "holding", Address: intp(i), Scale: new(0.1)})
	}
	p := mustPoller(b, d, Options{})
	events := 0
	emit := func(*plcwatch.Event) { events++ }
	b.ReportAllocs()
	for b.Loop() {
		p.cycle(context.Background(), emit)
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}

// TestBusyDeviceIsRetried: exception 6 (server device busy) is retried on
// the same connection; other exceptions are answers.
func TestBusyDeviceIsRetried(t *testing.T) {
	srv := serveGoldens(t, nil)
	srv.Image.SetHolding(3, 33)
	srv.Image.Busy.Store(1)
	d := Device{Name: "busy", Address: srv.Addr, Retries: intp(2), Backoff: time.Millisecond,
		Tags: []Tag{{Name: "v", Table: "holding", Address: intp(3)}}}
	p := mustPoller(t, d, Options{})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	if ev := rec.tags()["v"]; ev.Quality != "good" || ev.Value != 33 {
		t.Errorf("after one busy answer: %+v", ev)
	}
	if st := p.Stats(); st.Requests != 2 || st.Reconnects != 1 {
		t.Errorf("stats %+v, want 2 requests on 1 connection", st)
	}
	srv.Image.Busy.Store(5) // busier than the retries allow
	p.cycle(context.Background(), rec.emit)
	if ev := rec.tags()["v"]; ev.Quality != "bad" || ev.Exception != 6 {
		t.Errorf("still busy after the retries: %+v, want quality bad, exception 6", ev)
	}
}

// answerLink is a device without a network: each request written to it is
// answered at once with registers addr+1000... (MBAP framing), so that a
// benchmark measures the poller's own work — framing, parsing, decoding,
// rounding, emitting — without loopback and a server's.
type answerLink struct {
	out []byte
	n   int
}

func (l *answerLink) Write(b []byte) (int, error) {
	tid, unit, addr, qty := binary.BigEndian.Uint16(b), b[6], binary.BigEndian.Uint16(b[8:]), binary.BigEndian.Uint16(b[10:])
	l.out = binary.BigEndian.AppendUint16(l.out[:0], tid)
	l.out = append(l.out, 0, 0)
	l.out = binary.BigEndian.AppendUint16(l.out, 3+2*qty)
	l.out = append(l.out, unit, b[7], byte(2*qty))
	for i := range qty {
		l.out = binary.BigEndian.AppendUint16(l.out, addr+i+1000)
	}
	l.n = 0
	return len(b), nil
}

func (l *answerLink) Read(b []byte) (int, error) {
	n := copy(b, l.out[l.n:])
	l.n += n
	return n, nil
}

func (l *answerLink) Close() error                { return nil }
func (l *answerLink) SetDeadline(time.Time) error { return nil }

// BenchmarkPollCycleNoNetwork is BenchmarkPollCycle's cycle (100 uint16
// tags scaled by 0.1, one request) against answerLink: the poller's CPU and
// allocations alone.
func BenchmarkPollCycleNoNetwork(b *testing.B) {
	d := Device{Name: "bench", Address: "127.0.0.1:502"}
	for i := range 100 {
		d.Tags = append(d.Tags, Tag{Name: fmt.Sprintf("r%d", i), Table: "holding", Address: intp(i), Scale: new(0.1)})
	}
	p := mustPoller(b, d, Options{})
	p.dial = func(context.Context) (link, error) { return &answerLink{}, nil }
	events := 0
	emit := func(ev *plcwatch.Event) {
		if ev.Tag != "" && ev.Quality == "good" {
			events++
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		p.cycle(context.Background(), emit)
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}
