package modbustcp

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// FuzzDissector feeds arbitrary bytes to a connection as both directions'
// streams, cut into chunks and interleaved as ctl says, with gaps. Nothing
// may panic, unconsumed bytes stay bounded, every event encodes to valid
// JSON, every request emitted early (StageRequest) is emitted once more
// when answered or given up on (StageResponse) and nothing else is, and
// closing the connection reports every outstanding request.
func FuzzDissector(f *testing.F) {
	f.Add(append(adu(1, 1, "03 0000 0002"), adu(1, 1, "03 04 0001 0002")...), []byte{12, 0x80 | 11})
	f.Add(append(adu(1, 1, "10 0001 0002 04 000a 0102"), adu(1, 1, "10 0001 0002")...), []byte{5, 7, 0x80 | 12})
	f.Add(append(adu(3, 0, "2b 0e 01 00"), adu(3, 0, "2b 0e 01 01 00 00 01 00 03 414243")...), []byte{11, 0x80 | 40})
	f.Add([]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"), []byte{0x40})
	// Requests and responses cut short, then whole ones.
	f.Add(append(adu(4, 1, "16 0004 00"), adu(5, 1, "08 0004 0000")...), []byte{9, 11})
	f.Add(append(adu(6, 1, "03 0000 0002"), adu(6, 1, "83")...), []byte{11, 0x80 | 7})
	// Not Modbus: TLS with a plausible ADU inside, SSH, HTTP; then a
	// request and a response that agree.
	tls := append(h("160301004f0100004b0303"), adu(7, 1, "09 0102")...)
	tls = append(tls, adu(8, 1, "09 0304")...)
	f.Add(append(append(tls, adu(9, 1, "06 0001 0002")...), adu(9, 1, "06 0001 0002")...), []byte{byte(len(tls) - 1), 0x40 | 11, 0x80 | 11})
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x05\xdc\x07\x14"), []byte{0x80 | 20, 0x3f})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: plc\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n"), []byte{30, 0x80 | 30})
	f.Fuzz(func(t *testing.T, stream, ctl []byte) {
		d := New(Config{ResponseTimeout: time.Second, MaxOutstanding: 8, EarlyRequests: true})
		var n int
		early := map[[2]uint64]bool{} // tid, frame of requests emitted early and not yet again
		c := d.NewConn(1, netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:502"), func(ev *plcwatch.Event) {
			if !json.Valid(ev.AppendJSON(nil)) {
				t.Fatalf("invalid JSON: %s", ev.AppendJSON(nil))
			}
			if ev.Values.Len() > 8*plcwatch.MaxValueBytes || ev.Response.Len() > 8*plcwatch.MaxValueBytes {
				t.Fatalf("value count out of bounds")
			}
			key := [2]uint64{uint64(ev.TID), ev.Frame}
			switch ev.Stage {
			case plcwatch.StageRequest:
				if early[key] || ev.Response.Kind() != plcwatch.NoValues || ev.Exception != 0 || ev.Unanswered != "" {
					t.Fatalf("bad early request: %s", ev.AppendJSON(nil))
				}
				early[key] = true
				return
			case plcwatch.StageResponse:
				if !early[key] {
					t.Fatalf("a response stage without its request stage: %s", ev.AppendJSON(nil))
				}
				delete(early, key)
			default:
				if !ev.Orphan && ev.Malformed == "" {
					t.Fatalf("a whole event that is neither an orphan nor malformed: %s", ev.AppendJSON(nil))
				}
			}
			n++
		})
		var keep [2][]byte
		now := time.Unix(1e9, 0)
		frame := uint64(0)
		for len(stream) > 0 {
			op := byte(1)
			if len(ctl) > 0 {
				op, ctl = ctl[0], ctl[1:]
			}
			dir := reassembly.Dir(op >> 7)
			if op&0x40 != 0 {
				keep[dir] = nil
				c.Gap(dir, reassembly.Meta{Time: now})
			}
			size := int(op&0x3f) + 1
			if size > len(stream) {
				size = len(stream)
			}
			data := append(keep[dir], stream[:size]...)
			stream = stream[size:]
			now = now.Add(100 * time.Millisecond)
			frame++
			used := c.Data(dir, data, reassembly.Meta{Time: now, Frame: frame})
			if used < 0 || used > len(data) {
				t.Fatalf("consumed %d of %d bytes", used, len(data))
			}
			keep[dir] = append([]byte(nil), data[used:]...)
			// At most a candidate ADU and the bytes that confirm the
			// header after it, while resynchronising.
			if len(keep[dir]) > maxADU+mbapLen+1 {
				t.Fatalf("%d bytes left unconsumed: more than an ADU and a header", len(keep[dir]))
			}
			c.Expire(now)
		}
		// The connection ends inside whatever is left (breaker 1).
		for dir := range keep {
			c.Cut(reassembly.Dir(dir), keep[dir], reassembly.Meta{Time: now, Frame: frame})
		}
		c.Close(plcwatch.UnansweredClosed)
		if c.Outstanding() != 0 {
			t.Fatalf("%d requests outstanding after Close", c.Outstanding())
		}
		if len(early) != 0 {
			t.Fatalf("%d requests emitted early were never emitted again", len(early))
		}
		if uint64(n) != d.Stats.Events {
			t.Fatalf("emitted %d events, counted %d", n, d.Stats.Events)
		}
	})
}

// FuzzDecodePDU decodes arbitrary request and response PDUs.
func FuzzDecodePDU(f *testing.F) {
	for _, p := range [][2]string{
		{"01 0013 0013", "01 03 cd6b05"}, {"0f 0013 000a 02 cd01", "0f 0013 000a"},
		{"17 0003 0006 000e 0003 06 00ff 00ff 00ff", "17 0c 00fe 0acd 0001 0003 000d 00ff"},
		{"14 0e 06 0004 0001 0002 06 0003 0009 0002", "14 0c 05 06 0df8 0020 05 06 33cd 0040"},
		{"15 0d 06 0004 0007 0003 06af 04be 100d", "15 0d 06 0004 0007 0003 06af 04be 100d"},
		{"18 04de", "18 0006 0002 01b8 1284"}, {"2b 0e 01 00", "2b 0e 01 01 00 00 01 00 03 414243"},
		{"08 0004 0000", "88 01"},
		// Cut short: every field before the cut is kept.
		{"16 0004 00f2 00", "16 0004"}, {"10 0001 0003 06 000a 01", "10 0001"}, {"17 0003 0006 00", "17 0c 00fe"},
		{"15 16 06 0004 0007 0003 06af 04", "15 0d 06"}, {"14 0e 06 0004 0001 0002 06 00", "14 0c 05 06 0d"},
		{"2b 0e 01", "2b 0e 01 01 00"}, {"06 0001", "86"}, {"03 0000 0001", "83 00"},
	} {
		f.Add(h(p[0]), h(p[1]))
	}
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		var ev plcwatch.Event
		DecodeRequest(&ev, req)
		whole := ev
		DecodeResponse(&ev, resp)
		if !json.Valid(ev.AppendJSON(nil)) {
			t.Fatalf("invalid JSON: %s", ev.AppendJSON(nil))
		}
		if len(resp) > 0 {
			var orphan plcwatch.Event
			DecodeOrphan(&orphan, resp)
		}
		// A well-formed request of a function with a fixed layout, cut
		// anywhere, says it was cut and keeps every field it still has.
		if whole.Malformed != "" || len(req) < 2 || !fixedLayout(req) {
			return
		}
		for n := 1; n < len(req); n++ {
			var cut plcwatch.Event
			DecodeRequest(&cut, req[:n])
			if !strings.HasPrefix(cut.Malformed, Truncated) {
				t.Fatalf("%x cut to %d bytes: malformed %q", req, n, cut.Malformed)
			}
			for _, f := range [][2]uint16{{cut.Address, whole.Address}, {cut.Count, whole.Count}, {cut.AndMask, whole.AndMask},
				{cut.OrMask, whole.OrMask}, {cut.ReadAddress, whole.ReadAddress}, {cut.ReadCount, whole.ReadCount}, {cut.File, whole.File}} {
				if f[0] != f[1] && f[0] != 0 {
					t.Fatalf("%x cut to %d bytes: a field reads %d, the whole request %d", req, n, f[0], f[1])
				}
			}
		}
	})
}

// fixedLayout reports whether a request's length follows from its function
// code and its own fields: every cut of it is detectable.
func fixedLayout(req []byte) bool {
	switch req[0] {
	case 1, 2, 3, 4, 5, 6, 15, 16, 20, 21, 22, 23, 24:
		return true
	case Diagnostics:
		return len(req) >= 3 && OneWordDiagnostic(be16(req[1:]))
	case EncapsulatedInterface:
		return req[1] == MEIDeviceIdent
	}
	return false
}
