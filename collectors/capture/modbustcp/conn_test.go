package modbustcp

import (
	"net/netip"
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

func TestConnFramingErrorThenResync(t *testing.T) {
	f := newFeeder(t)
	// A TLS ClientHello on port 502: not Modbus/TCP.
	f.feed(c2s, h("16030100a5010000a10303"))
	if len(f.evs) != 1 || f.evs[0].Malformed != BadProtocolID {
		t.Fatalf("want one %q event, got %+v", BadProtocolID, f.evs)
	}
	// More junk in the same stream raises nothing more ...
	f.feed(c2s, h("00000000ffff00000000"))
	if len(f.evs) != 1 {
		t.Fatalf("junk after a framing error raised %d more events", len(f.evs)-1)
	}
	// ... and a real ADU after a segment boundary is found again.
	f.gap(c2s)
	f.feed(c2s, adu(9, 1, "05 0001 ff00"))
	f.feed(s2c, adu(9, 1, "05 0001 ff00"))
	if len(f.evs) != 2 || f.evs[1].Function != 5 || f.evs[1].Malformed != "" {
		t.Fatalf("after resync: %+v", f.evs[len(f.evs)-1])
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
