package modbus

import (
	"os"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// streamLink is a device that sends stream, a few bytes a read (so that
// frames arrive in pieces), then falls silent.
type streamLink struct {
	stream []byte
	chunk  int
}

func (l *streamLink) Read(b []byte) (int, error) {
	if len(l.stream) == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(b[:min(len(b), l.chunk)], l.stream)
	l.stream = l.stream[n:]
	return n, nil
}

func (l *streamLink) Write(b []byte) (int, error) { return len(b), nil }
func (l *streamLink) Close() error                { return nil }
func (l *streamLink) SetDeadline(time.Time) error { return nil }

// FuzzClientResponse feeds the client whatever a device might send back,
// over MBAP and RTU framing, for three reads in a row on one connection: it
// never panics, and an answer with values has exactly the bytes the read
// asked for.
func FuzzClientResponse(f *testing.F) {
	f.Add(false, uint8(3), uint16(1), uint8(7), mbapFrame(1, 1, []byte{3, 2, 0, 42}))
	f.Add(false, uint8(3), uint16(2), uint8(3), append(mbapFrame(9, 1, []byte{3, 2, 0, 1}), mbapFrame(1, 1, []byte{3, 4, 0, 1, 0, 2})...))
	f.Add(false, uint8(1), uint16(10), uint8(64), mbapFrame(1, 1, []byte{1, 2, 0xff, 0x03}))
	f.Add(false, uint8(4), uint16(1), uint8(2), mbapFrame(1, 1, []byte{0x84, 7}))
	f.Add(false, uint8(3), uint16(1), uint8(5), mbapFrame(1, 1, []byte{0x83}))
	f.Add(false, uint8(3), uint16(1), uint8(5), []byte{0, 1, 0, 0, 0, 0, 1})
	f.Add(true, uint8(3), uint16(1), uint8(3), rtuFrame(1, []byte{3, 2, 0, 42}))
	f.Add(true, uint8(2), uint16(3), uint8(1), rtuFrame(1, []byte{2, 1, 5}))
	f.Add(true, uint8(3), uint16(1), uint8(8), rtuFrame(1, []byte{0x83, 200}))
	f.Add(true, uint8(3), uint16(1), uint8(8), append(rtuFrame(2, []byte{3, 2, 0, 1}), rtuFrame(1, []byte{3, 2, 0, 2})...))
	f.Add(true, uint8(3), uint16(1), uint8(8), []byte{1, 3, 2, 0, 42, 0, 0})
	f.Fuzz(func(t *testing.T, rtu bool, fc uint8, qty uint16, chunk uint8, stream []byte) {
		table := [...]plcwatch.Table{plcwatch.TableCoil, plcwatch.TableDiscrete, plcwatch.TableHolding, plcwatch.TableInput}[fc%4]
		qty = 1 + qty%MaxRegistersPerRead
		framing := framingMBAP
		if rtu {
			framing = framingRTU
		}
		c := newClient(&streamLink{stream: stream, chunk: 1 + int(chunk)%300}, framing, 19200)
		c.t35 = 0 // no line to keep silent
		want := 2 * int(qty)
		if table == plcwatch.TableCoil || table == plcwatch.TableDiscrete {
			want = (int(qty) + 7) / 8
		}
		for range 3 {
			ans, err := c.read(1, table, 0, qty, time.Time{}, time.Second)
			if err != nil {
				if _, frame := err.(*FrameError); frame {
					return // the poller closes the connection
				}
				continue
			}
			if !ans.exception && ans.malformed == "" && len(ans.data) != want {
				t.Fatalf("answer of %d bytes to a read of %d (want %d)", len(ans.data), qty, want)
			}
			if ans.exception && len(ans.data) != 0 {
				t.Fatal("an exception with values")
			}
		}
	})
}
