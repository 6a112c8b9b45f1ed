package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// tmpfs mounts a tmpfs of size bytes on a new folder for the test (issue 8
// §2: a full disk, for real). It needs root: CI runs as root, and there a
// failure to mount fails the test.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs needs root, and CI runs as root")
		}
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0750", size)); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4096)
	for {
		if _, err := f.Write(b); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// A burst of alerts onto a full filesystem smaller than max_bytes: every
// alert is accounted for — delivered, or counted dropped with its reason —
// the oldest go first, the spool says it cannot write while it cannot,
// and when space returns what waited in memory goes to disk.
func TestFullDisk(t *testing.T) {
	mnt := tmpfs(t, 4<<20)
	dir := filepath.Join(mnt, "spool")
	var log logBuf
	s, err := Open(Options{Dir: dir, MaxBytes: 64 << 20, SegmentBytes: 64 << 10, Sync: SyncAlways,
		MemoryBytes: 1 << 20, Logger: logger(&log)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(log.String(), "less room than spool.max_bytes") {
		t.Errorf("no warning that the filesystem is smaller than max_bytes:\n%s", log.String())
	}
	const n = 5000
	rec := func(i int) []byte {
		b := []byte(fmt.Sprintf("plcwatch/t/alerts/high\x00{\"n\":%06d,\"pad\":\"", i))
		for len(b) < 698 {
			b = append(b, 'x')
		}
		return append(b, "\"}"...)
	}
	// Some alerts on disk, then the disk fills up (another process).
	for i := 0; i < 100; i++ {
		s.Append(rec(i))
	}
	fill(t, filepath.Join(mnt, "filler"))
	for i := 100; i < n; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.WriteError == "" || !strings.Contains(st.WriteError, "no space") {
		t.Errorf("the spool does not say it cannot write: %+v", st)
	}
	if st.Dropped == 0 || st.DroppedBy[DropNoSpace] != st.Dropped {
		t.Errorf("dropped %v, want all of them for no_space", st.DroppedBy)
	}
	if st.Appended != n {
		t.Errorf("appended %d, want %d", st.Appended, n)
	}
	t.Logf("on a full disk: %d spooled, %d in memory (%d bytes), %d dropped", st.Spooled, st.Memory, st.MemoryBytes, st.Dropped)
	// While the disk stays full, the log says so once, not once a second
	// each way as the room made by dropping the oldest segments is filled
	// (breaker 1).
	if n := strings.Count(log.String(), "cannot write to disk"); n != 1 {
		t.Errorf("%d \"cannot write\" lines while the disk stayed full, want 1", n)
	}
	if n := strings.Count(log.String(), "takes writes again"); n != 0 {
		t.Errorf("%d \"takes writes again\" lines while the disk stayed full, want 0", n)
	}
	// Space returns: what waits in memory goes to disk.
	os.Remove(filepath.Join(mnt, "filler"))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.WriteError != "" || st.Memory != 0 {
		t.Errorf("space came back but: %+v", st)
	}
	if n := strings.Count(log.String(), "takes writes again"); n != 1 || !regexp.MustCompile(`takes writes again.* failures=[1-9]`).MatchString(log.String()) {
		t.Errorf("%d \"takes writes again\" lines when space came back, want 1 with the count of failures:\n%s", n, log.String())
	}
	// Drain: every alert is delivered or was counted dropped, the
	// dropped ones are the oldest, the delivered ones in order.
	var got []int
	for round := 0; ; round++ {
		if round > n {
			t.Fatal("the drain does not end")
		}
		recs, err := s.Peek(64)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			var i int
			if _, err := fmt.Sscanf(string(r.Data), "plcwatch/t/alerts/high\x00{\"n\":%d,", &i); err != nil {
				t.Fatalf("record %d: %.60q", r.Seq, r.Data)
			}
			got = append(got, i)
		}
		s.Ack(recs[len(recs)-1].Seq)
	}
	st = s.Stats()
	if len(got)+int(st.Dropped) != n {
		t.Fatalf("%d delivered + %d dropped != %d raised", len(got), st.Dropped, n)
	}
	for k, i := range got {
		if i != int(st.Dropped)+k {
			t.Fatalf("delivered[%d] = %d: want %d..%d, the oldest %d dropped", k, i, st.Dropped, n-1, st.Dropped)
		}
	}
	t.Logf("%d delivered, the oldest %d dropped (no_space), in order", len(got), st.Dropped)
}
