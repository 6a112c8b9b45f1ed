package spool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The damage table (issue 8 §1): a spool of three segments is damaged in
// one of many ways at one position, opened, and drained. What must hold:
// every record whose bytes are intact is delivered exactly once and in
// order, no damaged record is delivered, the records lost are counted
// (exactly, where the spool can know), nothing loops, and the spool takes
// and delivers new records afterwards.

const (
	perSeg  = 6   // records per segment
	nSegs   = 3   // segments
	dataLen = 700 // bytes of data a record: a typical alert
)

// layout is where each record of a built spool lies.
type recLoc struct {
	seq  uint64
	path string
	off  int64
	n    int64 // header and data
	data []byte
}

func recData(seq uint64) []byte {
	b := []byte(fmt.Sprintf("plcwatch/t/alerts/high\x00{\"id\":\"%032d\"", seq))
	for len(b) < dataLen-1 {
		b = append(b, 'x')
	}
	return append(b, '}')
}

// build makes a spool of nSegs segments of perSeg records, the first acked
// of them acknowledged, closes it, and returns its layout.
func build(t testing.TB, dir string, acked uint64) []recLoc {
	t.Helper()
	rec := int64(headerLen + dataLen)
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: rec * perSeg, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= perSeg*nSegs; i++ {
		if err := s.Append(recData(i)); err != nil {
			t.Fatal(err)
		}
	}
	if acked > 0 {
		if err := s.Ack(acked); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var locs []recLoc
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(segs)
	if len(segs) != nSegs && acked == 0 {
		t.Fatalf("%d segments, want %d", len(segs), nSegs)
	}
	for _, p := range segs {
		b, _ := os.ReadFile(p)
		for off := int64(0); off < int64(len(b)); off += rec {
			h, _ := parseHeader(b[off:])
			locs = append(locs, recLoc{seq: h.seq, path: p, off: off, n: rec, data: recData(h.seq)})
		}
	}
	return locs
}

// drainAll reads and acknowledges everything, failing on a loop or a
// duplicate, and returns the sequence numbers delivered.
func drainAll(t testing.TB, s *Spool) []uint64 {
	t.Helper()
	var got []uint64
	seen := map[uint64]bool{}
	for round := 0; ; round++ {
		if round > 1000 {
			t.Fatal("drain does not end: a loop")
		}
		recs, err := s.Peek(7)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(recs) == 0 {
			return got
		}
		for _, r := range recs {
			if seen[r.Seq] {
				t.Fatalf("record %d delivered twice", r.Seq)
			}
			seen[r.Seq] = true
			if !bytes.Equal(r.Data, recData(r.Seq)) {
				t.Fatalf("record %d delivered with other data: %.40q", r.Seq, r.Data)
			}
			got = append(got, r.Seq)
		}
		if err := s.Ack(recs[len(recs)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
}

type damage struct {
	name string
	// resends: the damage keeps acknowledgements from being recorded, so
	// a restart sends the records again (at least once).
	resends bool
	// apply damages the spool in dir around record loc (the target) and
	// returns the sequence numbers of the records it damaged, and whether
	// the spool can count them exactly.
	apply func(t *testing.T, dir string, locs []recLoc, target recLoc) (lost []uint64, exact bool)
}

// hit returns the records whose bytes intersect [off, off+n) of path.
func hit(locs []recLoc, path string, off, n int64) []uint64 {
	var out []uint64
	for _, l := range locs {
		if l.path == path && l.off < off+n && off < l.off+l.n {
			out = append(out, l.seq)
		}
	}
	return out
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[off : off+int64(n)]
}

func damages() []damage {
	var ds []damage
	rec := int64(headerLen + dataLen)
	// Truncate the file at every offset of the record: it and what
	// follows in its segment are gone.
	for _, cut := range []int64{0, 1, 3, 4, 7, 8, 15, 16, 23, 24, 27, 28, 29, rec / 2, rec - 1} {
		ds = append(ds, damage{fmt.Sprintf("truncate at +%d", cut), false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			if err := os.Truncate(x.path, x.off+cut); err != nil {
				t.Fatal(err)
			}
			return hit(locs, x.path, x.off+cut, 1<<30), true
		}})
	}
	// Flip each byte of the header and some of the data.
	for _, at := range []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 19, 23, 24, 25, 26, 27, 28, 29, rec / 2, rec - 1} {
		ds = append(ds, damage{fmt.Sprintf("flip byte +%d", at), false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			b := readAt(t, x.path, x.off+at, 1)
			patch(t, x.path, x.off+at, []byte{b[0] ^ 0xff})
			return []uint64{x.seq}, true
		}})
	}
	// Every byte of the header, one bit at a time (a bit rot).
	ds = append(ds, damage{"flip one bit of each header byte (in turn)", false, nil})
	ds = append(ds,
		damage{"huge length", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			patch(t, x.path, x.off+4, []byte{0xff, 0xff, 0xff, 0xf0})
			return []uint64{x.seq}, true
		}},
		damage{"length one too long", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			n := dataLen + 1
			patch(t, x.path, x.off+4, []byte{0, 0, byte(n >> 8), byte(n)})
			return []uint64{x.seq}, true
		}},
		damage{"zero a page", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			page := x.off &^ 4095
			fi, _ := os.Stat(x.path)
			n := min(4096, fi.Size()-page)
			patch(t, x.path, page, make([]byte, n))
			return hit(locs, x.path, page, n), true
		}},
		damage{"random bytes over the record", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			b := make([]byte, x.n)
			r := rand.New(rand.NewPCG(uint64(x.seq), 7))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			patch(t, x.path, x.off, b)
			return []uint64{x.seq}, true
		}},
		damage{"random segment", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			fi, _ := os.Stat(x.path)
			b := make([]byte, fi.Size())
			r := rand.New(rand.NewPCG(uint64(x.seq), 9))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			os.WriteFile(x.path, b, 0o640)
			return hit(locs, x.path, 0, 1<<30), true
		}},
		damage{"emptied segment", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			os.Truncate(x.path, 0)
			return hit(locs, x.path, 0, 1<<30), true
		}},
		damage{"segment file deleted", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			os.Remove(x.path)
			return hit(locs, x.path, 0, 1<<30), true
		}},
		damage{"garbage inserted before the record", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			b, _ := os.ReadFile(x.path)
			b = slices.Insert(b, int(x.off), []byte("\xffPW garbage \xffPWS\x00\x00\x00\x05")...)
			os.WriteFile(x.path, b, 0o640)
			return nil, true
		}},
		damage{"bytes cut out of the record", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			b, _ := os.ReadFile(x.path)
			b = slices.Delete(b, int(x.off+10), int(x.off+50))
			os.WriteFile(x.path, b, 0o640)
			return []uint64{x.seq}, true
		}},
		damage{"the record twice (a write replayed)", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			b, _ := os.ReadFile(x.path)
			b = slices.Insert(b, int(x.off+x.n), b[x.off:x.off+x.n]...)
			os.WriteFile(x.path, b, 0o640)
			return nil, true
		}},
		damage{"acked missing", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			os.Remove(filepath.Join(dir, "acked"))
			return nil, true
		}},
		damage{"acked garbled", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			os.WriteFile(filepath.Join(dir, "acked"), []byte("not an ack at all"), 0o640)
			return nil, true
		}},
		damage{"acked is a directory", true, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			os.Remove(filepath.Join(dir, "acked"))
			os.Mkdir(filepath.Join(dir, "acked"), 0o750)
			return nil, true
		}},
		damage{"foreign files and folders", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o640)
			os.WriteFile(filepath.Join(dir, "backup.seg"), []byte("hello"), 0o640)
			os.WriteFile(filepath.Join(dir, filepath.Base(x.path)+".bak"), []byte("hello"), 0o640)
			os.Mkdir(filepath.Join(dir, "lost+found"), 0o750)
			return nil, true
		}},
		damage{"a directory named *.seg", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			os.Mkdir(filepath.Join(dir, "x.seg"), 0o750)
			// ... and one with the name the next segment would take.
			next := locs[len(locs)-1].seq + 1
			os.Mkdir(filepath.Join(dir, fmt.Sprintf("%016x.seg", next)), 0o750)
			return nil, true
		}},
		damage{"a stray copy named with a huge sequence number", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
			b, _ := os.ReadFile(x.path)
			os.WriteFile(filepath.Join(dir, "ffffffffffffff00.seg"), b, 0o640)
			os.WriteFile(filepath.Join(dir, "0000100000000000.seg"), b, 0o640)
			os.WriteFile(filepath.Join(dir, "0000200000000000.seg"), []byte("random junk"), 0o640)
			os.WriteFile(filepath.Join(dir, "0000300000000000.seg"), nil, 0o640)
			return nil, true
		}},
	)
	return ds
}

func TestDamageTable(t *testing.T) {
	for _, d := range damages() {
		if d.apply == nil {
			continue
		}
		for _, seg := range []int{0, 1, 2} {
			for _, at := range []int{0, perSeg / 2, perSeg - 1} {
				name := fmt.Sprintf("%s/segment %d of 3/record %d of %d", d.name, seg+1, at+1, perSeg)
				t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
					t.Parallel()
					runDamage(t, d, seg*perSeg+at)
				})
			}
		}
	}
	// A bit rot in each bit of each header byte, on the middle record
	// of the middle segment: exactly that record is lost.
	for b := int64(0); b < headerLen; b++ {
		for bit := range 8 {
			d := damage{"bit", false, func(t *testing.T, dir string, locs []recLoc, x recLoc) ([]uint64, bool) {
				v := readAt(t, x.path, x.off+b, 1)
				patch(t, x.path, x.off+b, []byte{v[0] ^ 1<<bit})
				return []uint64{x.seq}, true
			}}
			t.Run(fmt.Sprintf("bit_%d_of_header_byte_%d", bit, b), func(t *testing.T) {
				t.Parallel()
				runDamage(t, d, perSeg+perSeg/2)
			})
		}
	}
}

func runDamage(t *testing.T, d damage, target int) {
	dir := t.TempDir()
	locs := build(t, dir, 0)
	lost, exact := d.apply(t, dir, locs, locs[target])
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: int64(headerLen+dataLen) * perSeg, Sync: SyncNever})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	var want []uint64
	for _, l := range locs {
		if !slices.Contains(lost, l.seq) {
			want = append(want, l.seq)
		}
	}
	if d0 := s.Stats().Depth; d0 != uint64(len(want)) {
		t.Errorf("depth %d at open, want %d", d0, len(want))
	}
	got := drainAll(t, s)
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v\nwant      %v", got, want)
	}
	st := s.Stats()
	if exact && st.Corrupt != uint64(len(lost)) {
		t.Errorf("corrupt records counted %d, want %d", st.Corrupt, len(lost))
	}
	if st.Depth != 0 {
		t.Errorf("depth %d after draining", st.Depth)
	}
	// It goes on: a new record is taken and delivered, also after a
	// restart.
	if err := s.Append(recData(1000)); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Peek(10)
	if err != nil || len(recs) != 1 || !bytes.HasPrefix(recs[0].Data, []byte("plcwatch/t")) {
		t.Fatalf("after the drain: %v %v", recs, err)
	}
	s.Close()
	s, err = Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); (st.Depth != 1 && !d.resends) || st.Depth < 1 || st.Corrupt != 0 {
		t.Errorf("reopened: depth %d (want the one new record), corrupt %d (damage counted twice?)", st.Depth, st.Corrupt)
	}
}
