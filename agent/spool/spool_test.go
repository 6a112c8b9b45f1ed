package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func open(t *testing.T, dir string, maxBytes, segBytes int64) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: maxBytes, SegmentBytes: segBytes, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(i int) []byte { return []byte(fmt.Sprintf("alert-%06d", i)) }

func appendN(t *testing.T, s *Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// drain peeks and acks everything, checking order, and returns the records.
func drain(t *testing.T, s *Spool, batch int) []string {
	t.Helper()
	var got []string
	for {
		recs, err := s.Peek(batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return got
		}
		for _, r := range recs {
			got = append(got, string(r.Data))
		}
		if err := s.Ack(recs[len(recs)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOrderAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 256) // tiny segments: many of them
	appendN(t, s, 0, 100)
	// Peek without ack returns the same records.
	a, _ := s.Peek(10)
	b, _ := s.Peek(10)
	if len(a) != 10 || string(a[0].Data) != string(b[0].Data) || string(a[9].Data) != "alert-000009" {
		t.Fatalf("peek: %d records, %q", len(a), a[0].Data)
	}
	if err := s.Ack(a[4].Seq); err != nil { // a partial ack
		t.Fatal(err)
	}
	if got, _ := s.Peek(1); string(got[0].Data) != "alert-000005" {
		t.Fatalf("after a partial ack: %q", got[0].Data)
	}
	if st := s.Stats(); st.Depth != 95 || st.Acked != 5 {
		t.Fatalf("stats %+v", st)
	}
	s.Close()
	// Reopen: the 95 unacknowledged records are there, in order.
	s = open(t, dir, 1<<20, 256)
	appendN(t, s, 100, 10)
	got := drain(t, s, 7)
	if len(got) != 105 || got[0] != "alert-000005" || got[104] != "alert-000109" {
		t.Fatalf("%d records, first %q last %q", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("out of order at %d: %q after %q", i, got[i], got[i-1])
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Errorf("%d segment files after draining, want only the one being written", len(segs))
	}
	s.Close()
	s = open(t, dir, 1<<20, 256)
	if st := s.Stats(); st.Depth != 0 {
		t.Errorf("drained spool reopened with %d records", st.Depth)
	}
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 1<<20)
	appendN(t, s, 0, 3)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.OpenFile(segs[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0, 12, 1, 2, 3}) // a crash in the middle of a header
	f.Close()
	s = open(t, dir, 1<<20, 1<<20)
	appendN(t, s, 3, 1)
	if got := drain(t, s, 10); len(got) != 4 || got[3] != "alert-000003" {
		t.Fatalf("after a torn tail: %q", got)
	}
}

func TestFullSpoolDropsOldest(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 2048, 512)
	appendN(t, s, 0, 200) // about 7 KB of records
	st := s.Stats()
	if st.Dropped == 0 || st.Bytes > 2048 {
		t.Fatalf("stats %+v: want drops and at most 2048 bytes", st)
	}
	got := drain(t, s, 50)
	if uint64(len(got))+st.Dropped != 200 {
		t.Errorf("%d delivered + %d dropped != 200", len(got), st.Dropped)
	}
	if got[len(got)-1] != "alert-000199" {
		t.Errorf("the newest record was dropped: last %q", got[len(got)-1])
	}
	first := fmt.Sprintf("alert-%06d", st.Dropped)
	if got[0] != first {
		t.Errorf("first kept %q, want %q: the oldest go first", got[0], first)
	}
}

func TestConcurrentAppendAndDrain(t *testing.T) {
	s := open(t, t.TempDir(), 8<<20, 4096)
	const n = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := s.Append(rec(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []string
	for len(got) < n {
		select {
		case <-s.Notify():
		default:
		}
		recs, err := s.Peek(64)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, string(r.Data))
		}
		if len(recs) > 0 {
			if err := s.Ack(recs[len(recs)-1].Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	for i, g := range got {
		if g != string(rec(i)) {
			t.Fatalf("record %d is %q", i, g)
		}
	}
}
