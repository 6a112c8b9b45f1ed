package capture_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

var craft = flag.Bool("craft", false, "write the crafted capture files of testdata/files again (from the real captures they are cut from)")

// The real captures the crafted files are cut from (BSD-3-Clause, see
// testdata/files/NOTICE.md): a 22-packet pcapng and a 152-packet pcap,
// both on BSD loopback (LINKTYPE_NULL).
const (
	ngSource   = "../../testdata/pcaps/opcua/icsnpp_open62541_client-server-getEndpoints.pcap"
	pcapSource = "../../testdata/pcaps/opcua/icsnpp_open62541_client-server_mainloop-hasInnerStatusCode.pcap"
)

// ngBlocks splits a little-endian pcapng file into its blocks.
func ngBlocks(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		l := int(binary.LittleEndian.Uint32(b[4:]))
		out = append(out, b[:l:l])
		b = b[l:]
	}
	return out
}

// idbWithTsresol is an Interface Description Block for LINKTYPE_NULL with
// the option if_tsresol set to v.
func idbWithTsresol(v byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 1)
	b = binary.LittleEndian.AppendUint32(b, 32)
	b = append(b, 0, 0, 0, 0)                       // LINKTYPE_NULL, reserved
	b = binary.LittleEndian.AppendUint32(b, 262144) // snap length
	b = append(b, 9, 0, 1, 0, v, 0, 0, 0)           // if_tsresol
	b = append(b, 0, 0, 0, 0)                       // opt_endofopt
	return binary.LittleEndian.AppendUint32(b, 32)
}

// craftedFiles builds each crafted file from the real ones.
func craftedFiles(t *testing.T) map[string][]byte {
	ng, err := os.ReadFile(ngSource)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := os.ReadFile(pcapSource)
	if err != nil {
		t.Fatal(err)
	}
	blocks := ngBlocks(t, ng) // SHB, IDB, 22 EPBs
	join := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	clone := func(b []byte) []byte { return append([]byte(nil), b...) }
	epbs := join(blocks[2:]...)
	// EPB 5 (the 4th packet, index 5 of blocks) with a damaged trailing length.
	badTail := clone(blocks[5])
	binary.LittleEndian.PutUint32(badTail[len(badTail)-4:], 0xdeadbeef)
	// EPB 6 whose captured length runs past its (well-framed) block.
	badBody := clone(blocks[6])
	binary.LittleEndian.PutUint32(badBody[20:], 0x7fffffff)
	// EPB 7 with a total length of almost 4 GiB at both ends is caught at
	// its start: the scan must not allocate or read 4 GiB.
	huge := clone(blocks[7])
	binary.LittleEndian.PutUint32(huge[4:], 0xfffffff0)
	garbage := bytes.Repeat([]byte{0xA5}, 36)
	// The whole pcap, its header saying link type 147 (LINKTYPE_USER0):
	// every packet is of a link type plcwatch does not decode.
	user0 := clone(pc)
	binary.LittleEndian.PutUint32(user0[20:], 147)
	// One LINKTYPE_NULL packet whose IPv4 header is cut after 10 bytes,
	// then the real packets.
	shortIP := join(pc[:24], make([]byte, 8), binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 14), 14),
		[]byte{2, 0, 0, 0, 0x45, 0, 0, 0x28, 0, 0, 0, 0, 0x40, 6}, pc[24:])
	// A header declaring a snap length of 4 GiB, one good record, then one
	// claiming 4 GiB: the record bound (262144 bytes) holds whatever the
	// header declares (breaker 1: 545 MB resident for one such record).
	snapMax := clone(pc[:24])
	binary.LittleEndian.PutUint32(snapMax[16:], 0xffffffff)
	first := pc[24 : 40+binary.LittleEndian.Uint32(pc[32:])]
	hugeRec := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0), 0xfffffff0_fffffff0)
	// Just above the bound, the bytes there: refused too, not read.
	overRec := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0), 262145<<32|262145)
	// A section header of 24 bytes (at least 28: the section length is
	// cut), then good blocks: no section ever starts (breaker 1 read it
	// as 0 packets, exit 0).
	shortSHB := clone(blocks[0][:24])
	binary.LittleEndian.PutUint32(shortSHB[4:], 24)
	binary.LittleEndian.PutUint32(shortSHB[20:], 24)
	// The only section is of a major version this reader skips.
	v2 := clone(blocks[0])
	binary.LittleEndian.PutUint16(v2[12:], 2)
	return map[string][]byte{
		"linktype-147.pcap":        user0,
		"short-ip.pcap":            shortIP,
		"shb-short-only.pcapng":    join(shortSHB, join(blocks[1:]...)),
		"shb-v2-only.pcapng":       join(v2, join(blocks[1:]...)),
		"tsresol-7f.pcapng":        join(blocks[0], idbWithTsresol(0x7f), epbs),
		"tsresol-ff.pcapng":        join(blocks[0], idbWithTsresol(0xff), epbs),
		"tsresol-7f-second.pcapng": join(blocks[0], blocks[1], idbWithTsresol(0x7f), epbs),
		"truncated.pcapng":         ng[:len(ng)-50],
		"shb-cut.pcapng":           ng[:20],
		// 200 KB of "packet block of 256 KiB" headers: every step of the
		// scan looks at a block that runs past the end.
		"scan-tail.pcapng":             join(blocks[0], blocks[1], bytes.Repeat([]byte{6, 0, 0, 0, 0, 0, 4, 0}, 25000)),
		"truncated-header.pcapng":      join(blocks[0], blocks[1], blocks[2], blocks[3][:6]),
		"bad-block.pcapng":             join(blocks[0], blocks[1], join(blocks[2:5]...), badTail, join(blocks[6:]...)),
		"bad-body.pcapng":              join(blocks[0], blocks[1], join(blocks[2:6]...), badBody, join(blocks[7:]...)),
		"huge-length.pcapng":           join(blocks[0], blocks[1], join(blocks[2:7]...), huge, join(blocks[8:]...)),
		"garbage-between.pcapng":       join(blocks[0], blocks[1], join(blocks[2:10]...), garbage, join(blocks[10:]...)),
		"bad-magic.pcap":               join([]byte{0xde, 0xad, 0xbe, 0xef}, pc[4:200]),
		"empty.pcap":                   {},
		"short-3.pcap":                 pc[:3],
		"short-10.pcap":                pc[:10],
		"header-only.pcap":             pc[:24],
		"truncated.pcap":               pc[:len(pc)-30],
		"huge-caplen.pcap":             join(pc[:24], binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0), 0xffffffff_fffffff0), pc[40:]),
		"snaplen-max-4g-record.pcap":   join(snapMax, first, hugeRec, pc[40:1000]),
		"snaplen-max-over-record.pcap": join(snapMax, first, overRec, bytes.Repeat([]byte{0}, 262145), first),
	}
}

// TestCraftedFiles reads each crafted file: no panic, the packets before
// (and, in pcapng, after) the damage are decoded, and each skip or error
// names the byte offset.
func TestCraftedFiles(t *testing.T) {
	files := craftedFiles(t)
	dir := filepath.Join("testdata", "files")
	if *craft {
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ng, _ := os.ReadFile(ngSource)
	blocks := ngBlocks(t, ng)
	off := func(i int) int64 { // byte offset of block i of the real pcapng
		n := 0
		for _, b := range blocks[:i] {
			n += len(b)
		}
		return int64(n)
	}
	for _, tc := range []struct {
		name    string
		packets uint64
		skips   []int64 // offsets of the skipped stretches
		errAt   int64   // offset of the error that ended reading; -1: none
		trunc   bool
		errHas  string
		unknown uint64 // packets of an unsupported link type
		undec   uint64 // packets whose link, IP or TCP header is bad
	}{
		{name: "linktype-147.pcap", packets: 152, unknown: 152, errAt: -1},
		{name: "short-ip.pcap", packets: 153, undec: 1, errAt: -1},
		// Every packet names the interface whose if_tsresol cannot be
		// used: the interface and its 22 packets are skipped, and said so
		// in two reports (gopacket v1.1.19 divided by zero here).
		{name: "tsresol-7f.pcapng", skips: []int64{off(1), off(1) + 32}, errAt: -1},
		{name: "tsresol-ff.pcapng", skips: []int64{off(1), off(1) + 32}, errAt: -1},
		// The bad interface is the second: the packets on the first are read.
		{name: "tsresol-7f-second.pcapng", packets: 22, skips: []int64{off(2)}, errAt: -1},
		{name: "truncated.pcapng", packets: 21, errAt: off(23), trunc: true},
		{name: "truncated-header.pcapng", packets: 1, errAt: off(3), trunc: true},
		{name: "bad-block.pcapng", packets: 21, skips: []int64{off(5)}, errAt: -1},
		{name: "bad-body.pcapng", packets: 21, skips: []int64{off(6)}, errAt: -1},
		{name: "huge-length.pcapng", packets: 21, skips: []int64{off(7)}, errAt: -1},
		{name: "garbage-between.pcapng", packets: 22, skips: []int64{off(10)}, errAt: -1},
		{name: "bad-magic.pcap", errAt: 0, errHas: "not a pcap or pcapng file"},
		{name: "empty.pcap", errAt: 0, errHas: "empty file"},
		{name: "short-3.pcap", errAt: 0, errHas: "not a pcap or pcapng file: 3 bytes, a pcap header has 24"},
		{name: "short-10.pcap", errAt: 0, errHas: "not a pcap or pcapng file: 10 bytes, a pcap header has 24"},
		{name: "header-only.pcap", errAt: -1},
		{name: "truncated.pcap", packets: 151, errAt: lastRecord(t), trunc: true},
		{name: "huge-caplen.pcap", errAt: 24, errHas: "capture length exceeds"},
		{name: "snaplen-max-4g-record.pcap", packets: 1, errAt: 24 + firstRecord(t), errHas: "capture length exceeds snap length: 4294967280 > 262144"},
		{name: "snaplen-max-over-record.pcap", packets: 1, errAt: 24 + firstRecord(t), errHas: "capture length exceeds snap length: 262145 > 262144"},
		{name: "shb-cut.pcapng", errAt: 0, errHas: "no valid section header"},
		{name: "scan-tail.pcapng", errAt: off(2), trunc: true},
		{name: "shb-short-only.pcapng", skips: []int64{0, 24, 44}, errAt: 0, errHas: "no valid section header (section header shorter than 28 bytes)"},
		{name: "shb-v2-only.pcapng", skips: []int64{0}, errAt: 0, errHas: "no valid section header (section of pcapng version 2.0 skipped)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.name))
			if err != nil {
				t.Fatalf("%v (write the crafted files with go test -run TestCraftedFiles -craft)", err)
			}
			if !bytes.Equal(b, files[tc.name]) {
				t.Fatalf("testdata/files/%s differs from what craftedFiles builds: write them again with -craft", tc.name)
			}
			cfg := capture.Config{OPCUAPorts: []uint16{4840}}
			cfg.Defaults()
			e := capture.NewEngine(cfg, func(*plcwatch.Event) {})
			var skips []int64
			err = capture.ReadWith(context.Background(), bytes.NewReader(b), e, capture.ReadOptions{Skipped: func(fe *capture.FileError) {
				if fe.Skipped <= 0 || fe.Err == nil {
					t.Errorf("skip report %+v: want a length and a reason", fe)
				}
				skips = append(skips, fe.Offset)
			}})
			st := e.Stats()
			if st.Packets != tc.packets || st.UnknownLink != tc.unknown || st.Undecodable != tc.undec {
				t.Errorf("%d packets decoded, %d of an unknown link type, %d undecodable; want %d, %d, %d",
					st.Packets, st.UnknownLink, st.Undecodable, tc.packets, tc.unknown, tc.undec)
			}
			if lt := e.UnknownLinkTypes(); (tc.unknown > 0) != (len(lt) == 1 && lt[0] == 147) {
				t.Errorf("unknown link types %v", lt)
			}
			if !equalInts(skips, tc.skips) {
				t.Errorf("skipped at offsets %v, want %v", skips, tc.skips)
			}
			var fe *capture.FileError
			switch {
			case tc.errAt < 0 && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.errAt >= 0 && !errors.As(err, &fe):
				t.Errorf("error %v, want a *capture.FileError at offset %d", err, tc.errAt)
			case tc.errAt >= 0 && fe.Offset != tc.errAt:
				t.Errorf("error at offset %d (%v), want %d", fe.Offset, err, tc.errAt)
			}
			if errors.Is(err, capture.ErrTruncatedFile) != tc.trunc {
				t.Errorf("error %v: truncated %v, want %v", err, !tc.trunc, tc.trunc)
			}
			errHas := tc.errHas
			if (tc.name == "huge-caplen.pcap" || tc.name == "snaplen-max-4g-record.pcap") && strconv.IntSize == 32 {
				// On 32-bit ARM pcapgo refuses the length before comparing
				// it (make test-arm): the same error at the same offset.
				errHas = "does not fit in int"
			}
			if errHas != "" && (err == nil || !strings.Contains(err.Error(), errHas)) {
				t.Errorf("error %v, want it to say %q", err, errHas)
			}
		})
	}
}

// firstRecord is the length of the first record of pcapSource.
func firstRecord(t *testing.T) int64 {
	pc, err := os.ReadFile(pcapSource)
	if err != nil {
		t.Fatal(err)
	}
	return 16 + int64(binary.LittleEndian.Uint32(pc[32:]))
}

// lastRecord is the offset of the last record of pcapSource: the
// truncated copy ends inside it.
func lastRecord(t *testing.T) int64 {
	b, err := os.ReadFile(pcapSource)
	if err != nil {
		t.Fatal(err)
	}
	off, last := 24, 0
	for off < len(b) {
		last = off
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	return int64(last)
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNgReaderAgreesWithPcapgo reads every real pcapng capture with the
// reader plcwatch uses and with gopacket's pcapgo.NgReader: the same
// packets, bytes and times.
func TestNgReaderAgreesWithPcapgo(t *testing.T) {
	paths, _ := filepath.Glob("../../testdata/pcaps/*/*.pcap")
	n := 0
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint32(b) != 0x0A0D0D0A {
			continue
		}
		n++
		t.Run(filepath.Base(path), func(t *testing.T) {
			r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.NgReaderOptions{WantMixedLinkType: true})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for {
				data, ci, err := r.ReadPacketData()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, ci.Timestamp.Format(time.RFC3339Nano)+" "+string(data))
			}
			got := capture.PacketsOf(t, b)
			if len(got) != len(want) {
				t.Fatalf("%d packets, pcapgo reads %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("packet %d differs from pcapgo's: %.40q vs %.40q", i+1, got[i], want[i])
				}
			}
		})
	}
	if n < 5 {
		t.Fatalf("%d pcapng captures found in testdata/pcaps, want at least 5", n)
	}
}

// TestPcapRecordBoundEveryPath: the 262144-byte record bound holds in every
// reader path (plain, gzip, a pipe as standard input is), at the record's
// offset, without allocating what the record claims.
func TestPcapRecordBoundEveryPath(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "files", "snaplen-max-4g-record.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b)
	zw.Close()
	for name, r := range map[string]func() io.Reader{
		"file": func() io.Reader { return bytes.NewReader(b) },
		"gzip": func() io.Reader { return bytes.NewReader(gz.Bytes()) },
		"pipe": func() io.Reader { return io.MultiReader(bytes.NewReader(b[:30]), bytes.NewReader(b[30:])) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := capture.Config{}
			cfg.Defaults()
			e := capture.NewEngine(cfg, func(*plcwatch.Event) {})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := capture.Read(context.Background(), r(), e)
			runtime.ReadMemStats(&after)
			var fe *capture.FileError
			// On 32-bit ARM pcapgo refuses a length of 2^31 or more before
			// the bound is compared (make test-arm): the same offset.
			bound := "> 262144"
			if strconv.IntSize == 32 && !strings.Contains(fmt.Sprint(err), bound) {
				bound = "does not fit in int"
			}
			if !errors.As(err, &fe) || fe.Offset != 24+firstRecord(t) || !strings.Contains(err.Error(), bound) {
				t.Errorf("error %v, want the record bound at offset %d", err, 24+firstRecord(t))
			}
			if a := after.TotalAlloc - before.TotalAlloc; a > 16<<20 {
				t.Errorf("allocated %d bytes reading a %d-byte file", a, len(b))
			}
		})
	}
}
