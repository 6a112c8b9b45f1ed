package capture_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// readAll decodes b read through wrap and returns the packets, events,
// skips and error.
func readAll(t *testing.T, b []byte, oneByte bool) (uint64, uint64, []string, error) {
	cfg := capture.Config{ModbusPorts: []uint16{502}, OPCUAPorts: []uint16{4840}}
	cfg.Defaults()
	var events uint64
	e := capture.NewEngine(cfg, func(*plcwatch.Event) { events++ })
	var skips []string
	var r = bytes.NewReader(b)
	var src interface{ Read([]byte) (int, error) } = r
	if oneByte {
		src = iotest.OneByteReader(r)
	}
	err := capture.ReadWith(context.Background(), src, e, capture.ReadOptions{Skipped: func(fe *capture.FileError) {
		if fe.Skipped <= 0 || fe.Offset < 0 || fe.Offset+fe.Skipped > int64(len(b)) {
			t.Fatalf("skip %+v outside the %d-byte input", fe, len(b))
		}
		skips = append(skips, fe.Error())
	}})
	return e.Stats().Packets, events, skips, err
}

// fuzzFile is what both fuzz targets check on any input: no panic; an
// error is a *capture.FileError inside the input; and a pipe that delivers
// one byte at a time decodes exactly what a file does.
func fuzzFile(t *testing.T, b []byte) {
	packets, events, skips, err := readAll(t, b, false)
	var fe *capture.FileError
	if err != nil && (!errors.As(err, &fe) || fe.Offset < 0 || fe.Offset > int64(len(b))) {
		t.Fatalf("error %v: want a *capture.FileError with an offset in the %d-byte input", err, len(b))
	}
	if packets > uint64(len(b))/12 {
		t.Fatalf("%d packets from %d bytes", packets, len(b))
	}
	p1, e1, s1, err1 := readAll(t, b, true)
	if p1 != packets || e1 != events || len(s1) != len(skips) || (err == nil) != (err1 == nil) || (err != nil && err.Error() != err1.Error()) {
		t.Fatalf("one byte at a time: %d packets, %d events, skips %q, error %v; at once: %d, %d, %q, %v",
			p1, e1, s1, err1, packets, events, skips, err)
	}
}

// addSeeds adds the crafted files with the given extension: the seed
// corpus in testdata/fuzz holds real captures.
func addSeeds(f *testing.F, ext string) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "files", "*"+ext))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzReadPcap fuzzes the classic pcap reader (gopacket's pcapgo.Reader
// and plcwatch's offsets around it) and the engine behind it.
func FuzzReadPcap(f *testing.F) {
	addSeeds(f, ".pcap")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4 && b[0] == 0x0a && b[1] == 0x0d && b[2] == 0x0d && b[3] == 0x0a {
			return // pcapng: FuzzReadPcapng's
		}
		fuzzFile(t, b)
	})
}

// FuzzReadPcapng fuzzes the pcapng reader (block framing, skipping and
// resynchronising, interface options, timestamps) and the engine behind it.
func FuzzReadPcapng(f *testing.F) {
	addSeeds(f, ".pcapng")
	f.Fuzz(func(t *testing.T, b []byte) {
		// Every input is taken as pcapng: the reader must cope with
		// whatever follows a section header's first bytes.
		fuzzFile(t, append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, b...))
	})
}
