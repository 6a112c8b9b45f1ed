package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// logBuf collects a spool's log for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func logger(l *logBuf) *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// An unusable acked file sends everything in the spool again, and says so.
func TestUnusableAckResendsAndSaysSo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(path string)
	}{
		{"valid", func(string) {}},
		{"missing", func(p string) { os.Remove(p) }},
		{"garbled", func(p string) { os.WriteFile(p, []byte("\x00\x01garbage"), 0o640) }},
		{"bad checksum", func(p string) {
			b, _ := os.ReadFile(p)
			b[10] ^= 1
			os.WriteFile(p, b, 0o640)
		}},
		{"unreadable (a directory)", func(p string) { os.Remove(p); os.Mkdir(p, 0o750) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			build(t, dir, 8) // 1-6 are gone with their segment; 7, 8 acknowledged
			tc.spoil(filepath.Join(dir, "acked"))
			var log logBuf
			s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever, Logger: logger(&log)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := drainAll(t, s)
			want := seqs(9, 18)
			if tc.name != "valid" {
				want = seqs(7, 18) // 7 and 8 again: at least once
				if !strings.Contains(log.String(), "sent again") {
					t.Errorf("the log does not say alerts are sent again:\n%s", log.String())
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("delivered %v, want %v", got, want)
			}
		})
	}
}

func seqs(a, b uint64) []uint64 {
	var out []uint64
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(from, e.Name()))
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// A spool written by the previous format (testdata/format1, by the spool
// of commit 5044fcd) is migrated and delivered, nothing dropped: an
// upgrade with alerts waiting loses none.
func TestFormat1IsMigrated(t *testing.T) {
	for _, tc := range []struct {
		name string
		hurt func(t *testing.T, dir string) // damage to the format 1 files
		want []int
	}{
		{"intact", func(*testing.T, string) {}, ints(5, 30)},
		{"a flipped byte in record 7", func(t *testing.T, dir string) {
			// Record 7 of the first segment: find its header by its
			// sequence number.
			p := filepath.Join(dir, "0000000000000001.seg")
			b, _ := os.ReadFile(p)
			var seq [8]byte
			binary.BigEndian.PutUint64(seq[:], 7)
			i := bytes.Index(b, seq[:]) - 8
			b[i+30] ^= 0xff
			os.WriteFile(p, b, 0o640)
		}, append(ints(5, 6), ints(8, 30)...)},
		{"torn at the end", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "0000000000000010.seg")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-5)
		}, ints(5, 29)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, "testdata/format1", dir)
			tc.hurt(t, dir)
			var log logBuf
			s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever, Logger: logger(&log)})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(log.String(), "migrated from format 1") {
				t.Errorf("no migration in the log:\n%s", log.String())
			}
			var got []int
			for round := 0; ; round++ {
				recs, err := s.Peek(4)
				if err != nil || round > 100 {
					t.Fatal(err, round)
				}
				if len(recs) == 0 {
					break
				}
				for _, r := range recs {
					var n int
					if _, err := fmt.Sscanf(string(r.Data[bytes.Index(r.Data, []byte(`"n":`)):]), `"n":%d}`, &n); err != nil {
						t.Fatalf("record %d: %q", r.Seq, r.Data)
					}
					if !bytes.HasPrefix(r.Data, []byte("plcwatch/site/gw/alerts/high\x00{")) {
						t.Fatalf("record %d: %q", r.Seq, r.Data)
					}
					got = append(got, n)
				}
				s.Ack(recs[len(recs)-1].Seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("delivered %v\nwant      %v", got, tc.want)
			}
			s.Append([]byte("after"))
			s.Close()
			// Migrated for good: the files are format 2 now.
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			for _, p := range segs {
				if b, _ := os.ReadFile(p); len(b) > 0 && !bytes.HasPrefix(b, []byte(magic)) {
					t.Errorf("%s is not format 2", p)
				}
			}
			s, err = Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if recs, _ := s.Peek(10); len(recs) != 1 || string(recs[0].Data) != "after" {
				t.Errorf("after reopening: %v", recs)
			}
		})
	}
}

func ints(a, b int) []int {
	var out []int
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out
}

// A format 1 acked file of 12 bytes is read (the upgrade keeps the ack).
func TestFormat1AckIsRead(t *testing.T) {
	dir := t.TempDir()
	var b [12]byte
	binary.BigEndian.PutUint64(b[:], 41)
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[:8], crcTable))
	os.WriteFile(filepath.Join(dir, "acked"), b[:], 0o640)
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Append([]byte("x"))
	if recs, _ := s.Peek(1); len(recs) != 1 || recs[0].Seq != 42 {
		t.Errorf("after an ack of 41 the next record is %v", recs)
	}
}

// refuseWrites makes the spool's writes fail with err, as a full or
// failing disk does (the real full disk is TestFullDisk, on a tmpfs);
// the returned function ends it.
func refuseWrites(t *testing.T, s *Spool, err error) func() {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failInject = err
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.failInject = nil
	}
}

// While the disk refuses writes, records wait in memory and are read from
// there like any other, in order; when it takes writes again they go to
// disk. When memory is full the oldest not yet handed out are dropped and
// counted by reason.
func TestMemoryQueueWhileTheDiskRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		reason DropReason
	}{
		{"disk full", syscall.ENOSPC, DropNoSpace},
		{"disk failing", syscall.EIO, DropWriteError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever, MemoryBytes: MaxRecord})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			big := bytes.Repeat([]byte("x"), 100<<10) // ten of them fill the memory queue
			rec := func(i int) []byte { return append([]byte(fmt.Sprintf("%03d", i)), big...) }
			for i := 1; i <= 3; i++ {
				s.Append(rec(i))
			}
			restore := refuseWrites(t, s, tc.err)
			for i := 4; i <= 8; i++ {
				if err := s.Append(rec(i)); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			if st.Memory != 5 || st.WriteError == "" || st.Spooled != 3 || st.Appended != 8 || st.Depth != 8 {
				t.Fatalf("stats %+v", st)
			}
			// Read 1-6: 6 is in flight from memory.
			recs, _ := s.Read(0, 6)
			if len(recs) != 6 || recs[5].Seq != 6 {
				t.Fatalf("read %d", len(recs))
			}
			s.Ack(2)
			// 9-14 overflow memory: the oldest not in flight go (7, 8, 9,
			// ...), 4-6 stay (in flight).
			for i := 9; i <= 14; i++ {
				s.Append(rec(i))
			}
			st = s.Stats()
			if st.DroppedBy[tc.reason] == 0 || st.Dropped != st.DroppedBy[tc.reason] {
				t.Fatalf("dropped %v, want them counted as %s", st.DroppedBy, tc.reason)
			}
			dropped := st.Dropped
			restore()
			s.Sync() // the disk takes writes again: memory goes to disk
			st = s.Stats()
			if st.Memory != 0 || st.WriteError != "" {
				t.Fatalf("after the disk came back: %+v", st)
			}
			// Read on from where we were (after 6): the rest, in order.
			rest, _ := s.Read(7, 100)
			var got []int
			for _, r := range append(recs[2:], rest...) {
				var n int
				fmt.Sscanf(string(r.Data[:3]), "%d", &n)
				got = append(got, n)
			}
			if len(got)+int(dropped) != 12 || got[0] != 3 || got[3] != 6 || got[len(got)-1] != 14 || !slices.IsSorted(got) {
				t.Errorf("delivered %v with %d dropped: want 3..14 in order, less the oldest not in flight", got, dropped)
			}
			s.Ack(rest[len(rest)-1].Seq)
			if st := s.Stats(); st.Depth != 0 {
				t.Errorf("depth %d after all acknowledged", st.Depth)
			}
			// And they are on disk: a restart has nothing left, and
			// nothing lost.
			s.Append(rec(15))
			s.Close()
			s2, _ := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNever})
			defer s2.Close()
			if recs, _ := s2.Peek(10); len(recs) != 1 || string(recs[0].Data[:3]) != "015" {
				t.Errorf("after a restart: %d records", len(recs))
			}
		})
	}
}
