package opcua

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// The fuzz targets' seeds are in testdata/fuzz (go test runs them);
// seeds_test.go writes them from the synthetic and real messages.

// FuzzConn feeds arbitrary bytes, cut into segments of both directions
// and gaps, to one connection: chunk framing, resynchronisation, chunk
// reassembly and everything behind it. It must never panic; every
// request emitted at StageRequest must be emitted again at StageResponse
// by the time the connection is closed; and every byte of the shared
// buffer budget must be given back.
func FuzzConn(f *testing.F) {
	f.Fuzz(func(t *testing.T, script []byte) {
		d := New(Config{MaxBuffer: 1 << 20, MaxMessage: 256 << 10, MaxOutstanding: 8, EarlyRequests: true})
		var req, resp int
		t0 := time.Unix(1700000000, 0)
		c := d.NewConn(1, netip.MustParseAddrPort("10.0.0.1:50000"), netip.MustParseAddrPort("10.0.0.2:4840"), func(ev *plcwatch.Event) {
			switch ev.Stage {
			case plcwatch.StageRequest:
				req++
			case plcwatch.StageResponse:
				resp++
			}
			// An event's time is the stamp of the packet it names (feed
			// stamps packet n at n ms), never another's.
			if ev.Frame != 0 && !ev.Time.Equal(t0.Add(time.Duration(ev.Frame)*time.Millisecond)) {
				t.Fatalf("frame %d stamped %s: %s", ev.Frame, ev.Time.Sub(t0), ev.AppendJSON(nil))
			}
			if ev.RTT < 0 {
				t.Fatalf("negative rtt: %s", ev.AppendJSON(nil))
			}
			if js := ev.AppendJSON(nil); !json.Valid(js) {
				t.Fatalf("invalid JSON: %s", js)
			}
		})
		rest := feed(c, script, t0)
		// The connection ends inside whatever is left (breaker 1).
		for dir := range rest {
			c.Cut(reassembly.Dir(dir), rest[dir], reassembly.Meta{Time: t0, Frame: 1})
		}
		c.Close(plcwatch.UnansweredEOF)
		if req != resp {
			t.Fatalf("%d StageRequest events, %d StageResponse", req, resp)
		}
		if d.held != 0 {
			t.Fatalf("%d bytes of the buffer budget not given back", d.held)
		}
	})
}

// feed plays a script: each step is a control byte (bit 0 the direction,
// bit 1 a gap before the data, bits 2-7 and the next byte the length)
// and that many bytes of data. Unconsumed bytes are kept and offered
// again, as reassembly does; what is left unconsumed is returned.
func feed(c *Conn, script []byte, t0 time.Time) [2][]byte {
	var pending [2][]byte
	frame := uint64(0)
	for len(script) >= 2 {
		ctl, n := script[0], int(script[1])|int(script[0]>>2)<<8
		script = script[2:]
		n = min(n, len(script))
		data := script[:n]
		script = script[n:]
		dir := reassembly.Dir(ctl & 1)
		frame++
		m := reassembly.Meta{Time: t0.Add(time.Duration(frame) * time.Millisecond), Frame: frame}
		if ctl&2 != 0 {
			pending[dir] = pending[dir][:0]
			c.Gap(dir, m)
		}
		buf := append(pending[dir], data...)
		used := c.Data(dir, buf, m)
		pending[dir] = append(pending[dir][:0], buf[used:]...)
		if len(pending[dir]) > smallChunk {
			pending[dir] = pending[dir][:0]
			c.Gap(dir, m)
		}
		c.Expire(m.Time)
	}
	return pending
}

// FuzzService decodes arbitrary bodies as every service plcwatch knows,
// both ways: the schema walk and gopcua (decodeService), and the whole
// request and response paths of a connection. Nothing may panic outside
// the recover at gopcua's boundary, and nothing may allocate without
// bound (the fuzzer's memory limit would stop it).
func FuzzService(f *testing.F) {
	f.Fuzz(func(t *testing.T, which uint16, body []byte) {
		s := &services[int(which)%len(services)]
		id := s.req
		if which&0x8000 != 0 {
			id = s.resp
		}
		msg := binary.LittleEndian.AppendUint16([]byte{1, 0}, id)
		msg = append(msg, body...)
		d := New(Config{})
		d.decodeService(msg, uint32(id))
		c := d.NewConn(1, netip.MustParseAddrPort("10.0.0.1:50000"), netip.MustParseAddrPort("10.0.0.2:4840"), func(*plcwatch.Event) {})
		ch := c.channel(7)
		ch.mode, ch.policy, ch.sigLen = "None", "None", 0
		m := reassembly.Meta{Time: time.Unix(1700000000, 0), Frame: 1}
		c.message(reassembly.ClientToServer, ch, typMSG, 9, msg, m, msgInfo{size: len(msg)})
		c.message(reassembly.ServerToClient, ch, typMSG, 9, msg, m, msgInfo{size: len(msg)})
		c.Close(plcwatch.UnansweredEOF)
		if d.Stats.Panics != 0 {
			// Recovered and reported, as it must be; but a panic is
			// something the schema walk should have kept gopcua from.
			t.Logf("gopcua panicked on %x", msg)
		}
	})
}

// FuzzFastAgreesWithGopcua feeds the same bytes to the hand-written
// readers of the hot services and to gopcua, and fails when they
// disagree: on whether the message is well formed, on how many bytes it
// takes, and on every field plcwatch reports.
func FuzzFastAgreesWithGopcua(f *testing.F) {
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		id := []uint16{idReadReq, idReadResp, idPublishReq, idPublishResp}[which%4]
		msg := binary.LittleEndian.AppendUint16([]byte{1, 0}, id)
		msg = append(msg, body...)
		compareFast(t, id, msg)
	})
}

// compareFast is FuzzFastAgreesWithGopcua's check, also run on the
// synthetic and real messages by TestFastAgreesWithGopcua.
func compareFast(t *testing.T, id uint16, msg []byte) {
	t.Helper()
	d := New(Config{})
	obj, gConsumed, why := d.decodeService(msg, uint32(id))
	r := reader{b: msg}
	r.skipNodeID(true)
	cost := budget{max: maxCost(len(msg))}
	var ev plcwatch.Event
	ev.Value = plcwatch.NoValue
	var consumed int
	var ok bool
	var nodes []string
	var attrs []uint32
	var ranges []string
	var statuses []uint32
	var types []string
	var ps publishStats
	switch id {
	case idReadReq, idPublishReq:
		var h reqHeader
		r.requestHeader(&h, &cost)
		if id == idReadReq {
			consumed, ok = d.readRequest(&r, &ev, &cost, func(i int, v *readValue) {
				nodes = append(nodes, string(appendNodeID(nil, &v.node)))
				attrs = append(attrs, v.attr)
				ranges = append(ranges, string(v.rng))
			})
		} else {
			consumed, ok = d.publishRequest(&r, &ev, &cost)
		}
	default:
		var h respHeader
		r.responseHeader(&h, &cost)
		if id == idReadResp {
			consumed, ok = d.readResponse(&r, &ev, &cost, func(i int, dv *dataValue) {
				statuses = append(statuses, dv.status)
				if dv.mask&1 != 0 {
					types = append(types, typeNames[dv.vh.typ])
				} else {
					types = append(types, "")
				}
			})
		} else {
			consumed, ok = d.publishResponse(&r, &ev, &cost, &ps)
		}
	}
	if why == errCost {
		// The schema walk's memory estimate for gopcua is a bound on
		// gopcua, not on the bytes: the hand-written reader allocates
		// nothing and may read what gopcua is not allowed to.
		return
	}
	if gok := why == ""; gok != ok {
		t.Fatalf("message %x: gopcua: %q; plcwatch: ok=%v %q", msg, why, ok, r.why)
	}
	if !ok {
		return
	}
	if gConsumed != consumed {
		t.Fatalf("message %x: gopcua takes %d bytes, plcwatch %d", msg, gConsumed, consumed)
	}
	switch x := obj.(type) {
	case *ua.ReadRequest:
		if len(x.NodesToRead) != len(nodes) || int(ev.Count) != min(len(nodes), math.MaxUint16) {
			t.Fatalf("message %x: %d nodes to read, plcwatch %d (count %d)", msg, len(x.NodesToRead), len(nodes), ev.Count)
		}
		for i, n := range x.NodesToRead {
			if g := nodeText(n.NodeID); g != nodes[i] {
				t.Fatalf("message %x: node %d: gopcua %q, plcwatch %q", msg, i, g, nodes[i])
			}
			if uint32(n.AttributeID) != attrs[i] || n.IndexRange != ranges[i] {
				t.Fatalf("message %x: node %d: gopcua attribute %d range %q, plcwatch %d %q", msg, i, n.AttributeID, n.IndexRange, attrs[i], ranges[i])
			}
		}
		if len(nodes) > 0 && ev.Node != nodes[0] {
			t.Fatalf("event node %q, first node %q", ev.Node, nodes[0])
		}
	case *ua.ReadResponse:
		if len(x.Results) != len(statuses) {
			t.Fatalf("message %x: %d results, plcwatch %d", msg, len(x.Results), len(statuses))
		}
		for i, dv := range x.Results {
			if uint32(dv.Status) != statuses[i] {
				t.Fatalf("message %x: result %d: status %x, plcwatch %x", msg, i, uint32(dv.Status), statuses[i])
			}
			want := ""
			if dv.Has(ua.DataValueValue) && dv.Value != nil {
				want = typeNames[dv.Value.Type()]
			}
			if want != types[i] {
				t.Fatalf("message %x: result %d: type %q, plcwatch %q", msg, i, want, types[i])
			}
			if len(x.Results) == 1 && ev.ValueType != "" {
				f, ok := scalarNumber(dv.Value.Value())
				if !ok || !(f == ev.Value || (f != f && ev.Value != ev.Value)) {
					t.Fatalf("message %x: value %v (%v), plcwatch %v", msg, dv.Value.Value(), ok, ev.Value)
				}
			}
		}
	case *ua.PublishRequest:
		if len(x.SubscriptionAcknowledgements) != int(ev.Count) {
			t.Fatalf("message %x: %d acknowledgements, plcwatch %d", msg, len(x.SubscriptionAcknowledgements), ev.Count)
		}
	case *ua.PublishResponse:
		nm := x.NotificationMessage
		if x.SubscriptionID != ps.subscription || nm == nil || nm.SequenceNumber != ps.seq ||
			len(nm.NotificationData) != ps.notes || len(x.Results) != ps.results {
			t.Fatalf("message %x: gopcua %+v, plcwatch %+v", msg, x, ps)
		}
		items := 0
		for _, eo := range nm.NotificationData {
			switch n := eo.Value.(type) {
			case *ua.DataChangeNotification:
				items += len(n.MonitoredItems)
			case *ua.EventNotificationList:
				items += len(n.Events)
			}
		}
		if items != ps.items {
			t.Fatalf("message %x: %d notifications, plcwatch %d", msg, items, ps.items)
		}
	default:
		t.Fatalf("message %x: gopcua decoded %T", msg, obj)
	}
}
