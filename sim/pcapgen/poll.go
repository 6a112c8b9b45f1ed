package pcapgen

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"
)

// PollOptions describe a synthetic Modbus/TCP polling capture: SCADA
// clients polling PLCs, with a few writes, some requests split over two
// segments and some coalesced (pipelined) into one.
type PollOptions struct {
	Packets   int     // data segments to write (requests and responses)
	Conns     int     // client-server connections
	Writes    float64 // share of requests that are writes (FC 5, 6, 15, 16)
	Split     float64 // share of requests split over two segments
	Coalesced float64 // share of rounds where a client pipelines 2-3 requests in one segment
	Seed      uint64
	Start     time.Time
}

// DefaultPoll is the benchmark capture: a few percent writes, splits and
// coalesced segments over 64 connections.
var DefaultPoll = PollOptions{Packets: 1_000_000, Conns: 64, Writes: 0.03, Split: 0.02, Coalesced: 0.02, Seed: 1,
	Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}

// PollStats count what Poll wrote.
type PollStats struct {
	Packets, Requests, Writes int
}

// Poll writes a polling capture to w.
func Poll(w *Writer, o PollOptions) PollStats {
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	conns := make([]*Conn, o.Conns)
	tids := make([]uint16, o.Conns)
	var st PollStats
	t := o.Start
	for i := range conns {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(1 + i%200)}), uint16(40000+i))
		server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 2, byte(1 + i%50)}), 502)
		conns[i] = w.Conn(client, server, t, rng.Uint32())
		conns[i].Step = 0
		conns[i].Handshake()
		st.Packets += 3
	}
	var req, resp []byte
	for st.Packets < o.Packets {
		i := rng.IntN(len(conns))
		c := conns[i]
		t = t.Add(time.Duration(50+rng.IntN(100)) * time.Microsecond)
		c.Time = t
		n := 1
		if rng.Float64() < o.Coalesced {
			n = 2 + rng.IntN(2)
		}
		req, resp = req[:0], resp[:0]
		for k := 0; k < n; k++ {
			tids[i]++
			q, r, write := pollPair(rng, tids[i], o.Writes)
			req = append(req, q...)
			resp = append(resp, r...)
			st.Requests++
			if write {
				st.Writes++
			}
		}
		if n == 1 && rng.Float64() < o.Split {
			c.SendSplit(ToServer, req, 1+rng.IntN(len(req)-1))
			st.Packets += 2
		} else {
			c.Send(ToServer, req)
			st.Packets++
		}
		c.Time = t.Add(time.Duration(300+rng.IntN(700)) * time.Microsecond)
		c.Send(ToClient, resp)
		st.Packets++
	}
	return st
}

// pollPair returns one request ADU and its response.
func pollPair(rng *rand.Rand, tid uint16, writes float64) (req, resp []byte, write bool) {
	unit := uint8(1 + rng.IntN(4))
	addr := uint16(rng.IntN(1000))
	if rng.Float64() < writes {
		switch rng.IntN(4) {
		case 0:
			v := uint16(0)
			if rng.IntN(2) == 0 {
				v = 0xff00
			}
			pdu := be(5, addr, v)
			return MBAP(tid, unit, pdu...), MBAP(tid, unit, pdu...), true
		case 1:
			pdu := be(6, addr, uint16(rng.IntN(65536)))
			return MBAP(tid, unit, pdu...), MBAP(tid, unit, pdu...), true
		case 2:
			n := uint16(1 + rng.IntN(32))
			pdu := be(15, addr, n)
			bc := (int(n) + 7) / 8
			pdu = append(pdu, byte(bc))
			for j := 0; j < bc; j++ {
				pdu = append(pdu, byte(rng.IntN(256)))
			}
			return MBAP(tid, unit, pdu...), MBAP(tid, unit, be(15, addr, n)...), true
		default:
			n := uint16(1 + rng.IntN(10))
			pdu := be(16, addr, n)
			pdu = append(pdu, byte(2*n))
			for j := uint16(0); j < n; j++ {
				pdu = binary.BigEndian.AppendUint16(pdu, uint16(rng.IntN(65536)))
			}
			return MBAP(tid, unit, pdu...), MBAP(tid, unit, be(16, addr, n)...), true
		}
	}
	fc := []byte{1, 2, 3, 3, 3, 4, 4}[rng.IntN(7)]
	if fc <= 2 {
		n := uint16(1 + rng.IntN(64))
		bc := (int(n) + 7) / 8
		r := []byte{fc, byte(bc)}
		for j := 0; j < bc; j++ {
			r = append(r, byte(rng.IntN(256)))
		}
		return MBAP(tid, unit, be(fc, addr, n)...), MBAP(tid, unit, r...), false
	}
	n := uint16(1 + rng.IntN(20))
	r := []byte{fc, byte(2 * n)}
	for j := uint16(0); j < n; j++ {
		r = binary.BigEndian.AppendUint16(r, uint16(rng.IntN(4096)))
	}
	return MBAP(tid, unit, be(fc, addr, n)...), MBAP(tid, unit, r...), false
}

// be encodes a function code and 16-bit fields.
func be(fc byte, fields ...uint16) []byte {
	b := []byte{fc}
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, f)
	}
	return b
}
