package modbus

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/goburrow/serial"

	"github.com/plcwatch/plcwatch"
)

// The poller's Modbus client. It frames the four read requests (FC 1-4)
// and nothing else, over MBAP (Modbus/TCP, and Modbus/TCP Security over
// TLS) or RTU (a serial line, or RTU frames through a serial-to-Ethernet
// converter), and returns exactly what came back. It replaces the client of
// github.com/simonvetter/modbus v1.6.4, which loses what a poller must
// report (issue 9 §2, §7):
//
//   - exception codes it does not know (7, 12-255) come back as
//     fmt.Errorf("unknown exception code (%v)"), and an exception response
//     of another length as ErrProtocolError: the code is gone;
//   - a response with another transaction id is logged and skipped until
//     the deadline, so the caller sees ErrRequestTimedOut and never learns
//     that the device answered;
//   - it dials its own sockets and its transport is unexported, so no
//     wrapper can be put underneath it.
//
// References: Modbus Application Protocol v1.1b3 (MB) 6.1-6.4 and 7;
// Modbus Messaging on TCP/IP Implementation Guide v1.0b (TCP) 3.1.3;
// Modbus over Serial Line v1.02 (SL) 2.5.1 and 2.6.

// link is an open connection to a device: a TCP or TLS socket, or a serial
// port.
type link interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// framing is how requests and responses are delimited on a link.
type framing uint8

const (
	framingMBAP framing = iota // MBAP header with transaction ids (TCP 3.1.3)
	framingRTU                 // unit, PDU, CRC-16; silence between frames (SL 2.5.1)
)

// maxMBAPLength is the largest MBAP length field: unit id + a PDU of at
// most 253 bytes (TCP 3.1.3; an ADU is at most 260 bytes).
const maxMBAPLength = 254

// answer is a device's response to one read, when it sent one.
type answer struct {
	// data is the response's values: FC 1 and 2 packed bits (the first in
	// the lowest bit of the first byte, MB 6.1), FC 3 and 4 the registers'
	// bytes as sent. Valid until the client's next request.
	data      []byte
	exception bool   // an exception response (function code | 0x80, MB 7)
	code      uint8  // its exception code: any of 0-255, as sent
	malformed string // the response is this request's but not a well-formed answer to it
	discarded int    // frames read and set aside before it (late answers, other ids, other units)
}

// TimeoutError is a request that got no answer before its deadline.
type TimeoutError struct {
	After time.Duration
	Late  int // late answers to earlier requests that came meanwhile (discarded)
}

func (e *TimeoutError) Error() string {
	if e.Late > 0 {
		return fmt.Sprintf("timed out: no answer within %v (%d late answers to earlier requests discarded)", e.After, e.Late)
	}
	return fmt.Sprintf("timed out: no answer within %v", e.After)
}

// Timeout reports true: the request ran out of time.
func (e *TimeoutError) Timeout() bool { return true }

// TIDError is a device that answered, but with a transaction id that is not
// the request's (nor one of the connection's earlier requests), until the
// request's deadline: every such response was discarded (TCP 3.1.3: the
// client pairs responses by transaction id).
type TIDError struct {
	Want, Got uint16
	Count     int // responses discarded for it
}

func (e *TIDError) Error() string {
	return fmt.Sprintf("device answered with transaction id %d for request %d: response discarded", e.Got, e.Want)
}

// UnitError is an RTU answer from another unit than the request's (SL
// 2.1: a reply carries its own address), discarded until the deadline.
type UnitError struct {
	Want, Got uint8
}

func (e *UnitError) Error() string {
	return fmt.Sprintf("unit %d answered a request to unit %d: response discarded", e.Got, e.Want)
}

// FrameError is a byte stream that is not a Modbus frame (an MBAP length
// out of range, a bad CRC): the connection cannot be trusted past it.
type FrameError struct {
	Reason string
}

func (e *FrameError) Error() string { return "malformed frame: " + e.Reason }

// client is one open connection to a device.
type client struct {
	link    link
	framing framing
	// RTU timing (SL 2.5.1.1): the time of one character, the silence
	// between frames, and when the line was last busy.
	t1, t35  time.Duration
	lastBusy time.Time

	tid     uint16    // MBAP: the transaction id of the last request
	waiting [8]uint16 // MBAP: the last requests on this connection that got no answer in time
	nwait   int       // how many of waiting are set

	req  [12]byte
	buf  [2 * 260]byte // received bytes: buf[r:w] is not yet consumed
	r, w int
}

func newClient(l link, f framing, baud int) *client {
	c := &client{link: l, framing: f}
	if baud <= 0 {
		baud = 19200
	}
	// 11 bits a character (start, 8 data, parity or a second stop, stop).
	c.t1 = time.Duration(11 * int64(time.Second) / int64(baud))
	c.t35 = 1750 * time.Microsecond // fixed above 19200 baud (SL 2.5.1.1)
	if baud < 19200 {
		c.t35 = c.t1 * 35 / 10
	}
	return c
}

// functionOf is the read function code of a table: the only codes the
// poller can send.
func functionOf(t plcwatch.Table) uint8 {
	switch t {
	case plcwatch.TableCoil:
		return 1
	case plcwatch.TableDiscrete:
		return 2
	case plcwatch.TableHolding:
		return 3
	}
	return 4
}

// read sends the read of qty coils, inputs or registers of table from addr
// on unit, and waits until deadline for its answer. It returns the answer
// (values, or an exception with its code, or a malformed response to this
// request), or an error when there is none: *TimeoutError, *TIDError,
// *UnitError, *FrameError, or the link's error.
func (c *client) read(unit uint8, table plcwatch.Table, addr, qty uint16, deadline time.Time, timeout time.Duration) (answer, error) {
	fc := functionOf(table)
	if err := c.link.SetDeadline(deadline); err != nil {
		return answer{}, err
	}
	var frame []byte
	if c.framing == framingMBAP {
		c.tid++
		frame = c.req[:12]
		binary.BigEndian.PutUint16(frame[0:], c.tid)
		binary.BigEndian.PutUint16(frame[2:], 0) // protocol id: Modbus
		binary.BigEndian.PutUint16(frame[4:], 6) // unit + PDU
		frame[6], frame[7] = unit, fc
		binary.BigEndian.PutUint16(frame[8:], addr)
		binary.BigEndian.PutUint16(frame[10:], qty)
	} else {
		frame = c.req[:8]
		frame[0], frame[1] = unit, fc
		binary.BigEndian.PutUint16(frame[2:], addr)
		binary.BigEndian.PutUint16(frame[4:], qty)
		binary.LittleEndian.PutUint16(frame[6:], crc16(frame[:6]))
		// At least 3.5 characters of silence before a frame (SL 2.5.1.1).
		if wait := time.Until(c.lastBusy.Add(c.t35)); wait > 0 {
			time.Sleep(wait)
		}
	}
	if c.framing == framingRTU {
		c.r, c.w = 0, 0 // RTU frames end in silence: nothing before the request can be its answer
	}
	n, err := c.link.Write(frame)
	if err != nil {
		return answer{}, fmt.Errorf("send: %w", err)
	}
	if c.framing == framingRTU {
		c.lastBusy = time.Now().Add(time.Duration(n) * c.t1)
	}
	if c.framing == framingMBAP {
		return c.readMBAP(unit, fc, qty, timeout)
	}
	return c.readRTU(unit, fc, qty, timeout)
}

// readMBAP reads frames until the one with the request's transaction id.
func (c *client) readMBAP(unit, fc uint8, qty uint16, timeout time.Duration) (answer, error) {
	var ans answer
	var tidErr *TIDError
	late := 0
	for {
		if err := c.fill(7); err != nil {
			return ans, c.noAnswer(err, timeout, late, tidErr, nil)
		}
		hdr := c.buf[c.r : c.r+7]
		tid, proto, length := binary.BigEndian.Uint16(hdr), binary.BigEndian.Uint16(hdr[2:]), int(binary.BigEndian.Uint16(hdr[4:]))
		if length < 2 || length > maxMBAPLength {
			return ans, &FrameError{Reason: fmt.Sprintf("MBAP length %d (want 2-%d)", length, maxMBAPLength)}
		}
		if err := c.fill(6 + length); err != nil {
			return ans, c.noAnswer(err, timeout, late, tidErr, nil)
		}
		pdu := c.buf[c.r+7 : c.r+6+length]
		c.r += 6 + length
		switch {
		case proto != 0:
			ans.discarded++ // not Modbus (TCP 3.1.3: protocol id 0)
		case tid != c.tid && c.late(tid):
			// A late answer to an earlier request of ours that timed out
			// (the connection is kept after a timeout when the device
			// answers other requests).
			ans.discarded++
			late++
		case tid != c.tid:
			ans.discarded++
			if tidErr == nil {
				tidErr = &TIDError{Want: c.tid, Got: tid}
			}
			tidErr.Count++
		default:
			// The transaction id pairs it: a unit id echoed wrong (0 or
			// 255 from some gateways) does not make it another's answer.
			ans = check(fc, qty, pdu, ans.discarded)
			return ans, nil
		}
	}
}

// late reports whether tid is one of the connection's recent requests that
// got no answer in time (and forgets it: one answer each). Only those can
// have a late answer; every other request was answered.
func (c *client) late(tid uint16) bool {
	for i := range c.nwait {
		if c.waiting[i] == tid {
			c.nwait--
			c.waiting[i] = c.waiting[c.nwait]
			return true
		}
	}
	return false
}

// gaveUp remembers that the current request got no answer in time.
func (c *client) gaveUp() {
	if c.nwait == len(c.waiting) {
		copy(c.waiting[:], c.waiting[1:])
		c.nwait--
	}
	c.waiting[c.nwait] = c.tid
	c.nwait++
}

// readRTU reads frames until one from the request's unit answers its
// function. RTU has no transaction id: after any failure the poller
// reopens the link, so that a late answer cannot be taken for the next
// request's (libmodbus#83).
func (c *client) readRTU(unit, fc uint8, qty uint16, timeout time.Duration) (answer, error) {
	var ans answer
	var unitErr *UnitError
	late := 0
	for {
		if err := c.fill(3); err != nil {
			return ans, c.noAnswer(err, timeout, late, nil, unitErr)
		}
		hdr := c.buf[c.r : c.r+3]
		var size int
		switch f := hdr[1]; {
		case f&0x80 != 0 && f&0x7f >= 1 && f&0x7f <= 4:
			size = 5 // unit, function, code, CRC
		case f >= 1 && f <= 4:
			size = 3 + int(hdr[2]) + 2
		default:
			return ans, &FrameError{Reason: fmt.Sprintf("function code %d in a response to a read (FC %d)", f, fc)}
		}
		if err := c.fill(size); err != nil {
			return ans, c.noAnswer(err, timeout, late, nil, unitErr)
		}
		frame := c.buf[c.r : c.r+size]
		c.r += size
		if binary.LittleEndian.Uint16(frame[size-2:]) != crc16(frame[:size-2]) {
			return ans, &FrameError{Reason: "bad CRC"}
		}
		c.lastBusy = time.Now()
		switch {
		case frame[0] != unit:
			ans.discarded++
			if unitErr == nil {
				unitErr = &UnitError{Want: unit, Got: frame[0]}
			}
		case frame[1]&0x7f != fc:
			ans.discarded++ // a late answer to another read of this unit
			late++
		default:
			return check(fc, qty, frame[1:size-2], ans.discarded), nil
		}
	}
}

// noAnswer is the error of a request whose answer never came: what ended
// the wait, said in the terms of what was seen meanwhile.
func (c *client) noAnswer(err error, timeout time.Duration, late int, tidErr *TIDError, unitErr *UnitError) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("connection closed by the device")
			}
			return err
		}
	}
	if c.framing == framingMBAP {
		c.gaveUp()
	}
	switch {
	case tidErr != nil:
		return tidErr
	case unitErr != nil:
		return unitErr
	}
	return &TimeoutError{After: timeout, Late: late}
}

// fill reads until buf[r:] holds n bytes.
func (c *client) fill(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	if c.r > 0 {
		c.w = copy(c.buf[:], c.buf[c.r:c.w])
		c.r = 0
	}
	for c.w < n {
		m, err := c.link.Read(c.buf[c.w:])
		c.w += m
		if c.w >= n {
			return nil
		}
		if err != nil {
			if m > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// check reads the PDU that answers a read of qty with function fc (MB
// 6.1-6.4, 7).
func check(fc uint8, qty uint16, pdu []byte, discarded int) answer {
	ans := answer{discarded: discarded}
	want := 2 * int(qty)
	unit := "registers"
	if fc <= 2 {
		want, unit = (int(qty)+7)/8, "bits"
	}
	switch {
	case pdu[0] == fc|0x80:
		ans.exception = true
		if len(pdu) < 2 {
			ans.malformed = "exception response without its exception code"
		} else {
			ans.code = pdu[1]
		}
	case pdu[0] != fc:
		ans.malformed = fmt.Sprintf("answered with function code %d to function code %d", pdu[0], fc)
	case len(pdu) < 2 || int(pdu[1]) != want || len(pdu) != 2+want:
		n := len(pdu) - 2
		if len(pdu) >= 2 {
			n = int(pdu[1])
		}
		ans.malformed = fmt.Sprintf("response of %d bytes to a read of %d %s (want %d)", max(n, 0), qty, unit, want)
	default:
		ans.data = pdu[2 : 2+want]
	}
	return ans
}

// crc16 is the CRC of RTU frames (SL 6.2.2: polynomial 0xA001, reflected,
// initial 0xFFFF), sent low byte first.
func crc16(b []byte) uint16 {
	crc := uint16(0xffff)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xa001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// drain discards what a link holds before the first request: a serial
// line or a converter may hold the tail of an earlier conversation.
func drain(l link) {
	var b [256]byte
	l.SetDeadline(time.Now().Add(2 * time.Millisecond))
	for {
		if n, err := l.Read(b[:]); err != nil || n == 0 {
			return
		}
	}
}

// connectTimeout bounds opening a connection: TCP's handshake (and TLS's)
// may need more than one request's timeout over a slow link.
const connectTimeout = 5 * time.Second

// dialLink opens the device's connection.
func dialLink(ctx context.Context, d *Device, tlsConf *tls.Config) (link, error) {
	timeout := max(connectTimeout, d.Timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch d.Transport {
	case "rtu":
		return openSerial(d)
	case "tcp+tls":
		c, err := (&tls.Dialer{Config: tlsConf}).DialContext(ctx, "tcp", d.Address)
		if err != nil {
			return nil, err
		}
		return c.(link), nil
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", d.Address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// serialLink is a serial port with deadlines: goburrow/serial reads block
// for at most its timeout (10 ms here); the deadline is checked between.
type serialLink struct {
	port     serial.Port
	deadline atomic.Int64 // unix nanoseconds; 0 none
}

func openSerial(d *Device) (link, error) {
	parity := map[string]string{"none": "N", "even": "E", "odd": "O"}[d.Serial.Parity]
	stop := d.Serial.StopBits
	if stop == 0 {
		stop = 2 // SL 2.5.1: 2 stop bits without parity
		if parity != "N" {
			stop = 1
		}
	}
	p, err := serial.Open(&serial.Config{Address: d.Address, BaudRate: d.Serial.Baud, DataBits: d.Serial.DataBits,
		Parity: parity, StopBits: stop, Timeout: 10 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	return &serialLink{port: p}, nil
}

func (s *serialLink) Read(b []byte) (int, error) {
	for {
		if dl := s.deadline.Load(); dl != 0 && time.Now().UnixNano() >= dl {
			return 0, os.ErrDeadlineExceeded
		}
		n, err := s.port.Read(b)
		if errors.Is(err, serial.ErrTimeout) || n == 0 && err == nil {
			continue
		}
		return n, err
	}
}

func (s *serialLink) Write(b []byte) (int, error) { return s.port.Write(b) }
func (s *serialLink) Close() error                { return s.port.Close() }

func (s *serialLink) SetDeadline(t time.Time) error {
	if t.IsZero() {
		s.deadline.Store(0)
	} else {
		s.deadline.Store(t.UnixNano())
	}
	return nil
}
