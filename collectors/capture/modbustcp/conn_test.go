package modbustcp

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

var (
	c2s = reassembly.ClientToServer
	s2c = reassembly.ServerToClient
	t0  = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
)

func adu(tid uint16, unit uint8, pdu string) []byte {
	p := h(pdu)
	b := []byte{byte(tid >> 8), byte(tid), 0, 0, byte((len(p) + 1) >> 8), byte(len(p) + 1), unit}
	return append(b, p...)
}

type feeder struct {
	t    *testing.T
	c    *Conn
	d    *Dissector
	evs  []plcwatch.Event
	now  time.Time
	keep [2][]byte // what the conn left unconsumed, as the reassembler keeps it
}

func newFeeder(t *testing.T) *feeder {
	f := &feeder{t: t, d: New(Config{ResponseTimeout: time.Second}), now: t0}
	f.c = f.d.NewConn(1, netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:502"),
		func(ev *plcwatch.Event) { f.evs = append(f.evs, *ev) })
	return f
}

func (f *feeder) feed(dir reassembly.Dir, b []byte) {
	f.now = f.now.Add(time.Millisecond)
	data := append(f.keep[dir], b...)
	n := f.c.Data(dir, data, reassembly.Meta{Time: f.now})
	f.keep[dir] = append([]byte(nil), data[n:]...)
}

func (f *feeder) gap(dir reassembly.Dir) {
	f.keep[dir] = nil
	f.c.Gap(dir, reassembly.Meta{Time: f.now})
}

func TestConnPairsAndFrames(t *testing.T) {
	f := newFeeder(t)
	f.feed(c2s, adu(1, 1, "03 0000 0002"))
	f.feed(c2s, adu(2, 1, "06 0010 00ff"))
	f.feed(s2c, adu(2, 1, "06 0010 00ff"))
	f.feed(s2c, adu(1, 1, "03 04 0001 0002"))
	if len(f.evs) != 2 {
		t.Fatalf("%d events, want 2", len(f.evs))
	}
	if ev := f.evs[0]; ev.TID != 2 || ev.Function != 6 || ev.RTT != time.Millisecond {
		t.Errorf("first event: tid %d fc %d rtt %s", ev.TID, ev.Function, ev.RTT)
	}
	if ev := f.evs[1]; ev.TID != 1 || ev.Response.Len() != 2 || ev.RTT != 3*time.Millisecond {
		t.Errorf("second event: tid %d response %v rtt %s", ev.TID, ev.Response.Ints(nil), ev.RTT)
	}
}

func TestConnResponseWithOtherFunctionIsAnOrphan(t *testing.T) {
	f := newFeeder(t)
	f.feed(c2s, adu(7, 1, "03 0000 0001"))
	f.feed(s2c, adu(7, 1, "04 02 0001"))
	if len(f.evs) != 1 || !f.evs[0].Orphan || f.evs[0].Function != 4 {
		t.Fatalf("want one orphan FC 4 response, got %+v", f.evs)
	}
	f.feed(s2c, adu(7, 1, "83 02"))
	if len(f.evs) != 2 || f.evs[1].Orphan || f.evs[1].Exception != 2 {
		t.Fatalf("the FC 3 request should pair with its exception response, got %+v", f.evs[1])
	}
}

func TestConnFramingErrorOnAModbusConnection(t *testing.T) {
	f := newFeeder(t)
	f.feed(c2s, adu(1, 1, "03 0000 0001"))
	f.feed(s2c, adu(1, 1, "03 02 0007")) // confirmed: a request and its response agree
	// A broken ADU on a Modbus connection: a framing error, once ...
	f.feed(c2s, h("0002 0001 0006 01 06 0001 0002"))
	if len(f.evs) != 2 || f.evs[1].Malformed != BadProtocolID || f.evs[1].TID != 2 || f.evs[1].Unit != 1 {
		t.Fatalf("want one %q event with the header's fields, got %+v", BadProtocolID, f.evs[1:])
	}
	// ... more junk in the same stream raises nothing more ...
	f.feed(c2s, h("00000000ffff00000000"))
	if len(f.evs) != 2 {
		t.Fatalf("junk after a framing error raised %d more events", len(f.evs)-2)
	}
	// ... and a real ADU after a segment boundary is found again.
	f.gap(c2s)
	f.feed(c2s, adu(9, 1, "05 0001 ff00"))
	f.feed(s2c, adu(9, 1, "05 0001 ff00"))
	if len(f.evs) != 3 || f.evs[2].Function != 5 || f.evs[2].Malformed != "" {
		t.Fatalf("after resync: %+v", f.evs[len(f.evs)-1])
	}
}

func TestConnNotModbus(t *testing.T) {
	f := newFeeder(t)
	// A TLS ClientHello on port 502: not Modbus/TCP. One event says so,
	// with no Modbus field a rule could take for a request's.
	f.feed(c2s, h("16030100a5010000a10303"))
	if len(f.evs) != 1 || f.evs[0].Malformed != NotModbusTLS || f.evs[0].Function != 0 || f.evs[0].TID != 0 {
		t.Fatalf("want one %q event, got %+v", NotModbusTLS, f.evs)
	}
	// Bytes that frame as a plausible request, even at a segment start,
	// are not taken for one ...
	f.gap(c2s)
	f.feed(c2s, adu(9, 1, "09 0102"))
	f.feed(s2c, h("1603030031020000"))
	f.feed(s2c, adu(8, 1, "09 00")) // a response to another request
	if len(f.evs) != 1 {
		t.Fatalf("a connection that is not Modbus gave events: %+v", f.evs[1:])
	}
	if f.d.Stats.NotModbus != 1 || f.d.Stats.NotModbusBytes == 0 || f.d.Stats.Requests != 0 {
		t.Errorf("stats %+v", f.d.Stats)
	}
	// ... unless a response agrees with one: then it was Modbus after all,
	// and so were the requests pipelined before it since the framing last
	// broke — not the one before the gap.
	f.gap(c2s)
	f.feed(c2s, h("00 00 ff ff ff ff ff"))  // junk first ...
	f.feed(c2s, adu(10, 1, "06 0001 0005")) // ... then requests that are answered
	f.feed(c2s, adu(11, 1, "06 0002 0006"))
	f.feed(s2c, adu(10, 1, "06 0001 0005"))
	f.feed(s2c, adu(11, 1, "06 0002 0006"))
	f.c.Close(plcwatch.UnansweredClosed)
	if len(f.evs) != 3 || f.evs[1].TID != 10 || f.evs[2].TID != 11 || f.evs[1].Malformed != "" || f.evs[1].RTT == 0 || f.evs[2].Unanswered != "" {
		t.Fatalf("after confirmation: %+v", f.evs[1:])
	}
	if f.d.Stats.Confirmed != 1 || f.d.Stats.Requests != 2 {
		t.Errorf("stats %+v", f.d.Stats)
	}
}

func TestConnStages(t *testing.T) {
	f := newFeeder(t)
	f.d.cfg.EarlyRequests = true
	var stages []plcwatch.Stage
	emit := f.c.emit
	f.c.emit = func(ev *plcwatch.Event) { stages = append(stages, ev.Stage); emit(ev) }
	f.feed(c2s, adu(1, 1, "08 0004 0000")) // force listen only: no answer will come
	if len(f.evs) != 1 || stages[0] != plcwatch.StageRequest || f.evs[0].SubFunction != 4 || f.evs[0].Time != t0.Add(time.Millisecond) {
		t.Fatalf("the request was not emitted when complete: %v %+v", stages, f.evs)
	}
	f.feed(c2s, adu(2, 1, "03 0000 0001"))
	f.feed(s2c, adu(2, 1, "03 02 002a"))
	f.feed(s2c, adu(3, 1, "03 02 002b"))
	f.c.Expire(t0.Add(time.Hour))
	want := []plcwatch.Stage{plcwatch.StageRequest, plcwatch.StageRequest, plcwatch.StageResponse, plcwatch.StageWhole, plcwatch.StageResponse}
	if !slices.Equal(stages, want) {
		t.Fatalf("stages %v, want %v", stages, want)
	}
	if ev := f.evs[1]; ev.Response.Len() != 0 || ev.RTT != 0 {
		t.Errorf("a StageRequest event carries response fields: %+v", ev)
	}
	if ev := f.evs[2]; ev.Response.At(0) != 42 || ev.RTT != time.Millisecond || ev.Time != t0.Add(2*time.Millisecond) {
		t.Errorf("paired: %+v", ev)
	}
	if ev := f.evs[4]; ev.TID != 1 || ev.Unanswered != plcwatch.UnansweredTimeout {
		t.Errorf("timeout: %+v", ev)
	}
	if st := f.d.Stats; st.EarlyRequests != 2 || st.Events != 3 {
		t.Errorf("early %d events %d, want 2 and 3", st.EarlyRequests, st.Events)
	}
}

func TestConnTimeIsTheCompletingPacket(t *testing.T) {
	// The reassembler offers bytes a packet left unconsumed again with the
	// next packet's; when out-of-order segments are drained, that next
	// packet can be an earlier one. The ADU completes with whichever came
	// last.
	d := New(Config{})
	var evs []plcwatch.Event
	c := d.NewConn(1, netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:502"),
		func(ev *plcwatch.Event) { evs = append(evs, *ev) })
	req := adu(1, 1, "06 0001 0005")
	next := adu(2, 1, "06 0002 0006")
	m := func(frame uint64) reassembly.Meta {
		return reassembly.Meta{Time: t0.Add(time.Duration(frame) * time.Second), Frame: frame}
	}
	// Frame 5 filled the hole with the first 4 bytes; frame 3 had arrived
	// early with the rest and the whole next ADU.
	n := c.Data(c2s, req[:4], m(5))
	rest := append(append(append([]byte(nil), req[n:4]...), req[4:]...), next...)
	c.Data(c2s, rest, m(3))
	c.Close(plcwatch.UnansweredEOF)
	if len(evs) != 2 || evs[0].Frame != 5 || !evs[0].Time.Equal(m(5).Time) || evs[1].Frame != 3 || !evs[1].Time.Equal(m(3).Time) {
		t.Fatalf("frames and times: %d %s, %d %s; want 5 and 3", evs[0].Frame, evs[0].Time, evs[1].Frame, evs[1].Time)
	}
}

func TestConnResyncMidADU(t *testing.T) {
	f := newFeeder(t)
	f.gap(c2s) // the capture starts mid-stream
	w := adu(1, 1, "10 0000 0002 04 0001 0002")
	r := adu(2, 1, "03 0000 0001")
	f.feed(c2s, append(append([]byte(nil), w[9:]...), r...))
	f.feed(s2c, adu(2, 1, "03 02 002a"))
	if len(f.evs) != 1 || f.evs[0].TID != 2 || f.evs[0].Response.At(0) != 42 {
		t.Fatalf("want the read after the partial write, got %+v", f.evs)
	}
	if f.d.Stats.ResyncBytes != uint64(len(w)-9) {
		t.Errorf("resync skipped %d bytes, want %d", f.d.Stats.ResyncBytes, len(w)-9)
	}
}

func TestConnTimeoutAndClose(t *testing.T) {
	f := newFeeder(t)
	f.feed(c2s, adu(1, 1, "06 0001 0001"))
	f.c.Expire(f.now.Add(500 * time.Millisecond))
	if len(f.evs) != 0 {
		t.Fatal("expired before the timeout")
	}
	f.c.Expire(f.now.Add(1500 * time.Millisecond))
	if len(f.evs) != 1 || f.evs[0].Unanswered != plcwatch.UnansweredTimeout {
		t.Fatalf("want a timeout event, got %+v", f.evs)
	}
	// A late response is not taken for the next request's.
	f.feed(c2s, adu(2, 1, "06 0001 0002"))
	f.feed(s2c, adu(1, 1, "06 0001 0001"))
	if len(f.evs) != 2 || !f.evs[1].Orphan {
		t.Fatalf("late response should be an orphan, got %+v", f.evs[1])
	}
	f.c.Close(plcwatch.UnansweredClosed)
	if len(f.evs) != 3 || f.evs[2].TID != 2 || f.evs[2].Unanswered != plcwatch.UnansweredClosed {
		t.Fatalf("close should flush request 2, got %+v", f.evs)
	}
}

func TestConnEvictsOldestBeyondMaxOutstanding(t *testing.T) {
	f := newFeeder(t)
	f.d.cfg.MaxOutstanding = 2
	for tid := uint16(1); tid <= 3; tid++ {
		f.feed(c2s, adu(tid, 1, "03 0000 0001"))
	}
	if len(f.evs) != 1 || f.evs[0].TID != 1 || f.evs[0].Unanswered != plcwatch.UnansweredEvicted {
		t.Fatalf("want request 1 evicted, got %+v", f.evs)
	}
}

func TestConnEventsDoNotAllocate(t *testing.T) {
	f := newFeeder(t)
	req := adu(1, 1, "03 0000 000a")
	resp := adu(1, 1, "03 14 0001000200030004000500060007000800090010")
	m := reassembly.Meta{Time: t0}
	f.c.emit = func(*plcwatch.Event) {}
	allocs := testing.AllocsPerRun(1000, func() {
		f.c.Data(c2s, req, m)
		f.c.Data(s2c, resp, m)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per request/response pair, want 0", allocs)
	}
}
