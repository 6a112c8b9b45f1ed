package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
)

// FuzzSpoolDamage damages a spool folder at random — bytes flipped, zeroed
// or overwritten, files cut, emptied, deleted, grown, copied under other
// names, foreign files and folders, a spoiled acked file — then opens and
// drains it. What must hold: Open never fails, the drain ends, every record
// whose bytes are intact in a segment file (and that was not acknowledged)
// is delivered exactly once, nothing is delivered that was not written,
// and the spool takes and delivers new records afterwards.
func FuzzSpoolDamage(f *testing.F) {
	f.Add([]byte{0, 1, 0, 40, 0, 0})                     // a flipped byte in the first segment
	f.Add([]byte{3, 2, 5, 0, 0, 0, 1, 1, 2, 0, 16, 0})   // cut the last segment, zero some of the middle one
	f.Add([]byte{4, 1, 0, 0, 0, 0, 8, 3, 0, 0, 4, 'x'})  // delete a segment, garble acked
	f.Add([]byte{9, 0, 0xff, 0xff, 0, 0, 7, 0, 1, 0, 3}) // a stray copy, a foreign folder
	f.Add([]byte{5, 1, 0x10, 0x02, 8, 0xff, 'P', 'W', 'S', 0, 0, 0, 9})
	f.Add([]byte{10, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4096 {
			return
		}
		dir := t.TempDir()
		acked := uint64(0)
		if len(ops) > 0 && ops[0] >= 10 {
			acked = uint64(ops[0] % (perSeg * nSegs)) // some acknowledged first
			ops = ops[1:]
		}
		locs := buildCached(t, dir, acked)
		segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
		sort.Strings(segs)
		targets := append(segs, filepath.Join(dir, "acked"))
		damageFolder(dir, targets, ops)

		s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: int64(headerLen+dataLen) * perSeg, Sync: SyncNever})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer s.Close()
		intact := intactRecords(t, dir, locs)
		got := drainAll(t, s) // fails on a loop, a duplicate, or data not written
		delivered := map[uint64]bool{}
		for _, q := range got {
			delivered[q] = true
		}
		for _, l := range locs {
			if intact[l.seq] && l.seq > acked && !delivered[l.seq] {
				t.Fatalf("record %d is intact and was not delivered (delivered %v)", l.seq, got)
			}
		}
		if !slices.IsSorted(got) {
			t.Fatalf("delivered out of order: %v", got)
		}
		if err := s.Append([]byte("after")); err != nil {
			t.Fatal(err)
		}
		recs, err := s.Peek(100)
		if err != nil || len(recs) == 0 || string(recs[len(recs)-1].Data) != "after" {
			t.Fatalf("after the drain: %d records, %v", len(recs), err)
		}
		s.Close()
		s, err = Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if st := s.Stats(); st.Depth < 1 || st.Depth > uint64(len(locs))+1 {
			t.Fatalf("reopened with depth %d", st.Depth)
		}
	})
}

// built caches the spools build makes, by acked: fuzzing copies files
// rather than appending records again every time.
var built sync.Map

type builtSpool struct {
	locs  []recLoc
	files map[string][]byte
}

func buildCached(t *testing.T, dir string, acked uint64) []recLoc {
	v, ok := built.Load(acked)
	if !ok {
		tmp := t.TempDir()
		locs := build(t, tmp, acked)
		b := builtSpool{files: map[string][]byte{}}
		entries, _ := os.ReadDir(tmp)
		for _, e := range entries {
			b.files[e.Name()], _ = os.ReadFile(filepath.Join(tmp, e.Name()))
		}
		for _, l := range locs {
			l.path = filepath.Base(l.path)
			b.locs = append(b.locs, l)
		}
		v, _ = built.LoadOrStore(acked, b)
	}
	b := v.(builtSpool)
	for name, data := range b.files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	locs := slices.Clone(b.locs)
	for i := range locs {
		locs[i].path = filepath.Join(dir, locs[i].path)
	}
	return locs
}

// damageFolder applies ops: a byte code, a target file, a 16-bit offset, a
// length and bytes.
func damageFolder(dir string, targets []string, ops []byte) {
	take := func(n int) []byte {
		if n > len(ops) {
			n = len(ops)
		}
		b := ops[:n]
		ops = ops[n:]
		return b
	}
	for len(ops) >= 2 {
		op := take(1)[0] % 11
		target := targets[int(take(1)[0])%len(targets)]
		a := take(2)
		off := 0
		if len(a) == 2 {
			off = int(binary.BigEndian.Uint16(a))
		}
		n := 0
		if l := take(1); len(l) == 1 {
			n = int(l[0])
		}
		b, _ := os.ReadFile(target)
		at := 0
		if len(b) > 0 {
			at = off % (len(b) + 1)
		}
		switch op {
		case 0: // flip a byte
			if at < len(b) {
				b[at] ^= byte(n) | 1
			}
		case 1: // zero a range
			for i := at; i < min(len(b), at+n*16); i++ {
				b[i] = 0
			}
		case 2: // overwrite with given bytes
			copy(b[at:], take(n%32))
		case 3: // truncate
			b = b[:at]
		case 4: // delete
			os.RemoveAll(target)
			continue
		case 5: // insert given bytes
			b = slices.Insert(b, at, take(n%32)...)
		case 6: // cut a range
			b = slices.Delete(b, at, min(len(b), at+n))
		case 7: // a foreign file or folder
			name := fmt.Sprintf("f%02x%s", n, []string{"", ".seg", ".tmp", ".seg.migrating"}[off%4])
			if off%2 == 0 {
				os.Mkdir(filepath.Join(dir, name), 0o750)
			} else {
				os.WriteFile(filepath.Join(dir, name), take(n%16), 0o640)
			}
			continue
		case 8: // the acked file spoiled
			os.WriteFile(filepath.Join(dir, "acked"), take(n%40), 0o640)
			continue
		case 9: // a copy under a segment's name (or a stray one)
			seq := uint64(off)<<48 | uint64(n)
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.seg", seq)), b, 0o640)
			continue
		case 10: // a folder where a segment was
			os.RemoveAll(target)
			os.Mkdir(target, 0o750)
			continue
		}
		if _, err := os.Lstat(target); err == nil {
			os.WriteFile(target, b, 0o640)
		}
	}
}

// intactRecords says which records are still whole in a file the spool
// reads as a segment.
func intactRecords(t *testing.T, dir string, locs []recLoc) map[uint64]bool {
	entries, _ := os.ReadDir(dir)
	var files [][]byte
	for _, e := range entries {
		m := segName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		if seq, _ := strconv.ParseUint(m[1], 16, 64); seq == 0 || seq > maxSeq {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		files = append(files, b)
	}
	out := map[uint64]bool{}
	for _, l := range locs {
		enc := appendRecord(nil, l.seq, 0, l.data)
		for _, f := range files {
			// The time is not known here: match around it.
			for i := 0; ; {
				j := bytes.Index(f[i:], enc[:16])
				if j < 0 {
					break
				}
				k := i + j
				if k+len(enc) <= len(f) && checksumOK(f[k:k+len(enc)]) && bytes.Equal(f[k+headerLen:k+len(enc)], l.data) {
					out[l.seq] = true
				}
				i = k + 1
			}
		}
	}
	return out
}
