package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// "replay --pcap -" on a quiet pipe: ctx ending (Ctrl-C) must stop the
// read at once, before the header and after it; it used to wait for the
// writer, checking ctx only every 4096 packets.
func TestQuietStdinStopsWithCtx(t *testing.T) {
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr, 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	for _, tc := range []struct {
		name  string
		wrote []byte
	}{{"before the header", nil}, {"after the header", hdr}} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw, err := os.Pipe() // a real fd, blocking as stdin is
			if err != nil {
				t.Fatal(err)
			}
			defer pw.Close() // the writer stays quiet until the test ends
			defer pr.Close()
			if _, err := pw.Write(tc.wrote); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cfg := Config{}
			cfg.Defaults()
			e := NewEngine(cfg, func(*plcwatch.Event) {})
			done := make(chan error, 1)
			go func() { done <- ReadWith(ctx, ContextReader(ctx, pr), e, ReadOptions{}) }()
			time.Sleep(200 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("ReadWith = %v, want context.Canceled", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("ReadWith still blocked in the read after ctx ended")
			}
		})
	}
}
