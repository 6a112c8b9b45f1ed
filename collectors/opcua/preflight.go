package opcua

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
)

// Limits of the server's Acknowledge that preflight accepts.
const (
	// minBufferSize is OPC 10000-6 §7.1.2.4: ReceiveBufferSize and
	// SendBufferSize "shall be at least 8192 bytes".
	minBufferSize = 8192
	// maxBufferSize bounds the ReceiveBufferSize gopcua v0.8.0 allocates
	// for every message it receives (uacp/conn.go Receive): a server that
	// says 4 GiB would have the agent allocate 4 GiB per message.
	maxBufferSize = 16 << 20
)

// preflight does a UACP Hello/Acknowledge exchange of its own on a plain
// TCP connection to hostport and closes it. It returns an error when the
// server's Acknowledge is one gopcua cannot survive or the spec forbids.
//
// Why: gopcua v0.8.0 trusts the Acknowledge. With a ReceiveBufferSize
// below the 8-byte header, uacp.(*Conn).Receive (uacp/conn.go:364,
// `b := make([]byte, c.ack.ReceiveBufSize)` then b[:8]) panics on
// gopcua's own goroutine, which no recover in plcwatch can reach, and the
// whole agent dies. uacp.Dialer takes only a *net.Dialer, so the
// Acknowledge cannot be checked on gopcua's own connection. The gap that
// remains: a server that answers this exchange well and the next one
// (gopcua's) badly still crashes the agent — an upstream bug
// (docs/opcua.md).
func preflight(ctx context.Context, hostport, endpoint string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // a cancelled ctx ends a blocked read at once
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	hel := make([]byte, 32, 32+len(endpoint))
	copy(hel, "HELF")
	binary.LittleEndian.PutUint32(hel[8:], 0) // ProtocolVersion
	binary.LittleEndian.PutUint32(hel[12:], uacp.DefaultReceiveBufSize)
	binary.LittleEndian.PutUint32(hel[16:], uacp.DefaultSendBufSize)
	binary.LittleEndian.PutUint32(hel[20:], 0) // MaxMessageSize: no limit
	binary.LittleEndian.PutUint32(hel[24:], 0) // MaxChunkCount: no limit
	binary.LittleEndian.PutUint32(hel[28:], uint32(len(endpoint)))
	hel = append(hel, endpoint...)
	binary.LittleEndian.PutUint32(hel[4:], uint32(len(hel)))
	if _, err := conn.Write(hel); err != nil {
		return ctxErr(ctx, fmt.Errorf("sending Hello: %w", err))
	}
	var hdr [8]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return ctxErr(ctx, fmt.Errorf("no Acknowledge: %w", err))
	}
	size := binary.LittleEndian.Uint32(hdr[4:])
	if size < 8 || size > 8+4096 {
		return fmt.Errorf("handshake reply %q of %d bytes: not an OPC UA server", hdr[:4], size)
	}
	body := make([]byte, size-8)
	if _, err := io.ReadFull(conn, body); err != nil {
		return ctxErr(ctx, fmt.Errorf("reading Acknowledge: %w", err))
	}
	switch string(hdr[:4]) {
	case "ACKF":
		if len(body) < 20 {
			return fmt.Errorf("an Acknowledge of %d bytes, want 28", size)
		}
		return checkAck(binary.LittleEndian.Uint32(body[0:]), binary.LittleEndian.Uint32(body[4:]),
			binary.LittleEndian.Uint32(body[8:]), binary.LittleEndian.Uint32(body[12:]), binary.LittleEndian.Uint32(body[16:]))
	case "ERRF":
		if len(body) < 4 {
			return errors.New("server sent Error")
		}
		code := ua.StatusCode(binary.LittleEndian.Uint32(body))
		return fmt.Errorf("server sent Error %s", statusText(code))
	}
	return fmt.Errorf("handshake reply %q: not an OPC UA server", hdr[:4])
}

// checkAck checks an Acknowledge's fields (OPC 10000-6 §7.1.2.4).
func checkAck(version, recv, send, maxMsg, maxChunks uint32) error {
	bad := func(field string, v uint32, want string) error {
		return fmt.Errorf("server's Acknowledge is invalid: %s %d (%s); refused before gopcua, which would crash on it", field, v, want)
	}
	switch {
	case version != 0:
		return bad("ProtocolVersion", version, "want 0")
	case recv < minBufferSize:
		return bad("ReceiveBufferSize", recv, "OPC 10000-6 §7.1.2.4: at least 8192")
	case send < minBufferSize:
		return bad("SendBufferSize", send, "OPC 10000-6 §7.1.2.4: at least 8192")
	case recv > maxBufferSize:
		return bad("ReceiveBufferSize", recv, "plcwatch takes at most 16 MiB")
	case maxMsg != 0 && maxMsg < minBufferSize:
		return bad("MaxMessageSize", maxMsg, "0 or at least 8192")
	}
	_ = maxChunks // any: 0 is no limit, 1 and up are chunk counts
	return nil
}

// statusText is a status code's name, or its hex when it has none.
func statusText(code ua.StatusCode) string {
	if n := StatusName(code); n != "" {
		return n
	}
	return fmt.Sprintf("0x%08X", uint32(code))
}

// ctxErr prefers ctx's error to the closed connection's a cancel caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
