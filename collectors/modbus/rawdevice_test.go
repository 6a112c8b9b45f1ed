package modbus

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// rawDevice is a Modbus server written for the tests, byte by byte, so
// that it can answer what no library server will: any exception code, a
// wrong transaction id, silence for one unit, a late answer. It speaks
// MBAP or RTU framing over TCP; reply decides each answer.
type rawDevice struct {
	ln    net.Listener
	rtu   bool
	reply func(q query) reply

	mu    sync.Mutex
	reqs  []query
	conns int
}

// query is one request the device received.
type query struct {
	tid        uint16
	unit, fc   uint8
	addr, qty  uint16
	connection int // 1-based number of the connection it came on
}

// reply is what the device does with a query.
type reply struct {
	pdu    []byte        // the response PDU (function code first); nil with silent
	silent bool          // no answer at all
	tid    *uint16       // MBAP: answer with this transaction id instead
	delay  time.Duration // answer this late
	before [][]byte      // MBAP: whole frames sent before the answer (late answers, garbage)
}

// registers answers a read with register values addr+1000, addr+1001, ...
// (so that every answer says which request it answers), or bits alternating
// from 1.
func registers(q query) reply {
	if q.fc <= 2 {
		b := make([]byte, (q.qty+7)/8)
		for i := range q.qty {
			if (q.addr+i)%2 == 0 {
				b[i/8] |= 1 << (i % 8)
			}
		}
		return reply{pdu: append([]byte{q.fc, byte(len(b))}, b...)}
	}
	pdu := []byte{q.fc, byte(2 * q.qty)}
	for i := range q.qty {
		pdu = binary.BigEndian.AppendUint16(pdu, q.addr+i+1000)
	}
	return reply{pdu: pdu}
}

func exception(q query, code uint8) reply { return reply{pdu: []byte{q.fc | 0x80, code}} }

func newRawDevice(t testing.TB, rtu bool, f func(query) reply) *rawDevice {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &rawDevice{ln: ln, rtu: rtu, reply: f}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open = append(open, c)
			d.mu.Lock()
			d.conns++
			n := d.conns
			d.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); d.serve(c, n) }()
		}
	}()
	return d
}

func (d *rawDevice) addr() string { return d.ln.Addr().String() }

func (d *rawDevice) queries() ([]query, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]query(nil), d.reqs...), d.conns
}

func (d *rawDevice) serve(c net.Conn, n int) {
	defer c.Close()
	for {
		var q query
		if d.rtu {
			frame := make([]byte, 8) // unit, fc, addr, qty, crc
			if _, err := io.ReadFull(c, frame); err != nil {
				return
			}
			if binary.LittleEndian.Uint16(frame[6:]) != crc16(frame[:6]) {
				return
			}
			q = query{unit: frame[0], fc: frame[1], addr: binary.BigEndian.Uint16(frame[2:]), qty: binary.BigEndian.Uint16(frame[4:])}
		} else {
			hdr := make([]byte, 7)
			if _, err := io.ReadFull(c, hdr); err != nil {
				return
			}
			pdu := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
			if _, err := io.ReadFull(c, pdu); err != nil || len(pdu) != 5 {
				return
			}
			q = query{tid: binary.BigEndian.Uint16(hdr), unit: hdr[6], fc: pdu[0],
				addr: binary.BigEndian.Uint16(pdu[1:]), qty: binary.BigEndian.Uint16(pdu[3:])}
		}
		q.connection = n
		d.mu.Lock()
		d.reqs = append(d.reqs, q)
		d.mu.Unlock()
		r := d.reply(q)
		if r.delay > 0 {
			time.Sleep(r.delay)
		}
		if r.silent {
			continue
		}
		var out []byte
		for _, f := range r.before {
			out = append(out, f...)
		}
		if d.rtu {
			out = append(out, rtuFrame(q.unit, r.pdu)...)
		} else {
			tid := q.tid
			if r.tid != nil {
				tid = *r.tid
			}
			out = append(out, mbapFrame(tid, q.unit, r.pdu)...)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func mbapFrame(tid uint16, unit uint8, pdu []byte) []byte {
	f := binary.BigEndian.AppendUint16(nil, tid)
	f = append(f, 0, 0)
	f = binary.BigEndian.AppendUint16(f, uint16(len(pdu)+1))
	f = append(f, unit)
	return append(f, pdu...)
}

func rtuFrame(unit uint8, pdu []byte) []byte {
	f := append([]byte{unit}, pdu...)
	return binary.LittleEndian.AppendUint16(f, crc16(f))
}
