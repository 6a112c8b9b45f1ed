package opcua

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/sim/opcuasim"
)

// hostile is a raw TCP "server" that answers every Hello with ack (nil:
// never answers, like a silent server).
func hostile(t *testing.T, ack []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [8]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				io.CopyN(io.Discard, c, int64(binary.LittleEndian.Uint32(hdr[4:])-8))
				if ack != nil {
					c.Write(ack)
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return "opc.tcp://" + ln.Addr().String()
}

func ackBytes(recv, send, maxMsg, chunks uint32) []byte {
	b := make([]byte, 28)
	copy(b, "ACKF")
	for i, v := range []uint32{28, 0, recv, send, maxMsg, chunks} {
		binary.LittleEndian.PutUint32(b[4+4*i:], v)
	}
	return b
}

// TestHostileAcknowledge: a server whose Acknowledge has a
// ReceiveBufferSize below the header (0, 4) made gopcua v0.8.0 panic on
// its own goroutine, killing the agent. The device is down with the value
// and the spec's minimum, the test process lives, and a normal server
// polled alongside stays up.
func TestHostileAcknowledge(t *testing.T) {
	s := simServer(t, opcuasim.Config{}, map[string]any{"Level": 10.0})
	good := start(t, Device{Name: "good", Endpoint: s.Endpoint(), Interval: 200 * time.Millisecond,
		Security: Security{Policy: "None", Mode: "None"}, Tags: []Tag{{Name: "l", Node: "nsu=urn:plcwatch:sim;s=Level", Mode: "read"}}}, Options{})
	for _, tc := range []struct {
		name string
		ack  []byte
		want string
	}{
		{"ack0", ackBytes(0, 0, 0, 0), "ReceiveBufferSize 0 (OPC 10000-6 §7.1.2.4: at least 8192)"},
		{"ack4", ackBytes(4, 4, 0, 0), "ReceiveBufferSize 4 (OPC 10000-6 §7.1.2.4: at least 8192)"},
		{"send0", ackBytes(65535, 0, 0, 0), "SendBufferSize 0"},
		{"huge", ackBytes(0xFFFFFFFF, 0xFFFFFFFF, 0, 0), "ReceiveBufferSize 4294967295"},
		{"maxmsg", ackBytes(65535, 65535, 16, 0), "MaxMessageSize 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := hostile(t, tc.ack)
			w := start(t, Device{Name: tc.name, Endpoint: ep, Interval: 200 * time.Millisecond, Backoff: 50 * time.Millisecond,
				Security: Security{Policy: "None", Mode: "None"}, Tags: []Tag{{Name: "x", Node: "ns=1;s=X", Mode: "read"}}}, Options{})
			w.until(20*time.Second, "down with the Acknowledge's value", func(ev *plcwatch.Event) bool {
				if ev.Op != plcwatch.OpStatus {
					return false
				}
				if ev.Quality != "down" || !strings.Contains(ev.Error, tc.want) {
					t.Fatalf("status %s %q, want down with %q", ev.Quality, ev.Error, tc.want)
				}
				return true
			})
			time.Sleep(300 * time.Millisecond) // retries happen; a panic would end the test binary
		})
	}
	good.until(20*time.Second, "the normal server's value", func(ev *plcwatch.Event) bool {
		return ev.Op == plcwatch.OpRead && ev.Tag == "l" && ev.Value == 10
	})
}

// TestStopDuringConnect: stopping while a silent server holds the
// connect returns at once, not after connect_timeout (systemd's
// TimeoutStopSec is 30 s; connect_timeout may be 60 s): a server silent
// from the start (our handshake) and one that acknowledges and then is
// silent (gopcua's secure channel).
func TestStopDuringConnect(t *testing.T) {
	for _, tc := range []struct {
		name string
		ack  []byte
	}{{"silent", nil}, {"silent after Acknowledge", ackBytes(65535, 65535, 0, 0)}} {
		t.Run(tc.name, func(t *testing.T) {
			d := Device{Name: "silent", Endpoint: hostile(t, tc.ack), ConnectTimeout: 60 * time.Second,
				Security: Security{Policy: "None", Mode: "None"}, Tags: []Tag{{Name: "x", Node: "ns=1;s=X", Mode: "read"}}}
			d.Defaults()
			if errs := d.Validate(); len(errs) > 0 {
				t.Fatal(errs)
			}
			c, err := New(d, Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.Run(ctx, func(*plcwatch.Event) {})
			}()
			time.Sleep(time.Second)
			t0 := time.Now()
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("stop took more than 10 s")
			}
			t.Logf("stopped in %v", time.Since(t0))
		})
	}
}
