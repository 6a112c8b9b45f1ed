// Package actors is what talks to a scenario's plants: a small Modbus/TCP
// client that sends any PDU (the standard function codes, diagnostics,
// device identification, user-defined codes a library client refuses to
// send) from a source address of its own, and the actions a scenario's
// actors take with it — a legitimate HMI's polls and writes, and the
// attacks. Every action is a function, so that tests and integrators can
// drive one from Go. A Recorder writes what the clients send and receive
// to a capture, as a tap on their sockets would see it.
package actors

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// Timeout bounds one request's answer when the context has no deadline.
const Timeout = 5 * time.Second

// Client is one Modbus/TCP connection from a chosen source address.
type Client struct {
	conn  net.Conn
	rec   *recConn // nil when not recording
	tid   uint16
	local netip.AddrPort
}

// Dial connects to server (host:port) from the address from (port chosen
// by the kernel), recording the connection to rec when it is not nil.
func Dial(ctx context.Context, from netip.Addr, server string, rec *Recorder) (*Client, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: Timeout}
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", server, from, err)
	}
	c := &Client{conn: conn, local: conn.LocalAddr().(*net.TCPAddr).AddrPort()}
	if rec != nil {
		c.rec = rec.open(c.local, conn.RemoteAddr().(*net.TCPAddr).AddrPort())
	}
	return c, nil
}

// Local is the connection's source address and port.
func (c *Client) Local() netip.AddrPort { return c.local }

// Close ends the connection (recorded as FIN both ways).
func (c *Client) Close() error {
	if c.rec != nil {
		c.rec.close()
	}
	return c.conn.Close()
}

// ErrException is wrapped by the error of an answer that is a Modbus
// exception.
var ErrException = errors.New("modbus exception")

// Exception is an exception response's code.
type Exception struct {
	Function, Code byte
}

func (e Exception) Error() string {
	return fmt.Sprintf("function %d: exception %d", e.Function, e.Code)
}

func (e Exception) Unwrap() error { return ErrException }

// Do sends pdu (function code and data) to unit and returns the answer's
// PDU. An exception answer is returned as an Exception error along with
// the PDU.
func (c *Client) Do(ctx context.Context, unit uint8, pdu []byte) ([]byte, error) {
	if len(pdu) == 0 || len(pdu) > 253 {
		return nil, fmt.Errorf("pdu of %d bytes: want 1-253", len(pdu))
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(Timeout)
	}
	c.conn.SetDeadline(deadline)
	c.tid++
	adu := make([]byte, 7, 7+len(pdu))
	binary.BigEndian.PutUint16(adu[0:], c.tid)
	binary.BigEndian.PutUint16(adu[4:], uint16(1+len(pdu)))
	adu[6] = unit
	adu = append(adu, pdu...)
	if _, err := c.conn.Write(adu); err != nil {
		return nil, fmt.Errorf("send function %d: %w", pdu[0], err)
	}
	if c.rec != nil {
		c.rec.send(adu)
	}
	var head [7]byte
	if _, err := io.ReadFull(c.conn, head[:]); err != nil {
		return nil, fmt.Errorf("function %d: no answer: %w", pdu[0], err)
	}
	n := int(binary.BigEndian.Uint16(head[4:]))
	if n < 2 || n > 254 {
		return nil, fmt.Errorf("function %d: answer with MBAP length %d", pdu[0], n)
	}
	resp := make([]byte, 7+n-1)
	copy(resp, head[:])
	if _, err := io.ReadFull(c.conn, resp[7:]); err != nil {
		return nil, fmt.Errorf("function %d: answer cut short: %w", pdu[0], err)
	}
	if c.rec != nil {
		c.rec.receive(resp)
	}
	if got := binary.BigEndian.Uint16(head[0:]); got != c.tid {
		return resp[7:], fmt.Errorf("function %d: answer to transaction %d, want %d", pdu[0], got, c.tid)
	}
	if resp[7]&0x80 != 0 && len(resp) > 8 {
		return resp[7:], Exception{Function: resp[7] &^ 0x80, Code: resp[8]}
	}
	return resp[7:], nil
}

// be is a function code followed by 16-bit big-endian fields.
func be(fc byte, fields ...uint16) []byte {
	b := []byte{fc}
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, f)
	}
	return b
}
