package spool

import "testing"

// BenchmarkAppendRead appends b.N alerts of 700 bytes and drains them as
// the publisher does (reads of 128, an ack per read): the spool's share of
// delivery, without a broker.
func BenchmarkAppendRead(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), MaxBytes: 1 << 30, Sync: SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 700)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Append(data); err != nil {
			b.Fatal(err)
		}
	}
	var next uint64
	for n := 0; n < b.N; {
		recs, err := s.Read(next, 128)
		if err != nil || len(recs) == 0 {
			b.Fatalf("read %d of %d: %v", n, b.N, err)
		}
		n += len(recs)
		next = recs[len(recs)-1].Seq + 1
		if err := s.Ack(recs[len(recs)-1].Seq); err != nil {
			b.Fatal(err)
		}
	}
}
