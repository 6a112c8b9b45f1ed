package reassembly

import (
	"testing"
	"time"
)

// checker is a consumer that knows what every stream byte must be: the
// fuzzer writes the byte at sequence number p as value(p). Whatever the segments do,
// delivered bytes must be consecutive positions until a Gap.
type checker struct {
	t     *testing.T
	last  [2]int // value of the last byte delivered; -1 after a gap
	taken [2]int // how much to consume per call (exercises pending data)
}

func value(p uint32) byte { return byte(p) } // continuous across the 2^32 wrap

func (c *checker) Data(dir Dir, data []byte, _ Meta) int {
	for _, b := range data {
		if c.last[dir] >= 0 && int(b) != (c.last[dir]+1)%256 {
			c.t.Fatalf("dir %d: byte %d after %d: delivered out of order or twice", dir, b, c.last[dir])
		}
		c.last[dir] = int(b)
	}
	n := len(data)
	if c.taken[dir] > 0 && n > c.taken[dir] {
		// Leave a tail unconsumed, as a dissector does with half an
		// ADU: it must come back first on the next call.
		n -= c.taken[dir]
		c.last[dir] = int(data[n-1])
		if n == 0 {
			c.last[dir] = -1
		}
	}
	return n
}

func (c *checker) Gap(dir Dir, _ Meta) { c.last[dir] = -1 }

// FuzzReassembler plays arbitrary segments (direction, flags, sequence
// offset, length) of two streams whose bytes are a known function of their
// sequence number, and checks that the consumer only ever sees each stream's
// bytes in order, that memory stays within its bounds, and that the shared
// budget balances.
func FuzzReassembler(f *testing.F) {
	f.Add(uint32(1000), []byte{0, 0, 10, 0, 10, 10, 0, 5, 5, 1, 0, 20})
	f.Add(uint32(0xfffffff0), []byte{0, 0, 30, 0, 40, 8, 0, 30, 10, 0x10, 0, 0})
	f.Add(uint32(7), []byte{2, 0, 1, 0, 3, 1, 4, 0, 9, 8, 200, 255})
	f.Fuzz(func(t *testing.T, isn uint32, ops []byte) { runOne(t, isn, ops) })
}

// runOne is one fuzz input.
func runOne(t *testing.T, isn uint32, ops []byte) {
	chk := &checker{t: t, last: [2]int{-1, -1}, taken: [2]int{int(isn % 7), int(isn % 5)}}
	lim := Limits{MaxPending: 64, MaxEarly: 256, MaxSegments: 8}
	budget := Budget{Max: 400}
	var st Stats
	c := Conn{Consumer: chk, Limits: &lim, Stats: &st, Budget: &budget}
	base := [2]uint32{isn, isn + 1<<20}
	buf := make([]byte, 256)
	now := time.Unix(1e9, 0)
	for i := 0; i+2 < len(ops); i += 3 {
		flags, off, n := ops[i], ops[i+1], int(ops[i+2])
		dir := Dir(flags & 1)
		seq := base[dir] + uint32(off)
		if flags&2 != 0 {
			seq -= 128 // reach back: retransmissions and overlaps
		}
		for k := 0; k < n; k++ {
			buf[k] = value(seq + uint32(k))
		}
		seg := Segment{Seq: seq, Payload: buf[:n], SYN: flags&4 != 0, FIN: flags&8 != 0, HasAck: flags&16 != 0}
		if flags&32 != 0 && n > 0 {
			seg.Missing = int(flags>>6) + 1
			seg.Payload = buf[:n/2]
		}
		if seg.HasAck {
			seg.Ack = base[dir^1] + uint32(ops[i+1])
		}
		if seg.SYN {
			seg.Seq-- // the SYN takes the number before the data
			for k := 0; k < n; k++ {
				buf[k] = value(seg.Seq + 1 + uint32(k))
			}
		}
		now = now.Add(time.Duration(flags>>6) * 400 * time.Millisecond)
		c.Add(dir, &seg, Meta{Time: now, Frame: uint64(i)})
		if off > 200 {
			base[dir] += uint32(off) // move the window on
		}
		c.SkipStaleHoles(now.Add(-time.Second), Meta{Time: now})
		for d := range c.streams {
			s := &c.streams[d]
			if s.earlyN > lim.MaxEarly || len(s.early) > lim.MaxSegments+1 {
				t.Fatalf("dir %d holds %d early bytes in %d segments: over the limits", d, s.earlyN, len(s.early))
			}
			if len(s.pending) > lim.MaxPending {
				t.Fatalf("dir %d holds %d pending bytes", d, len(s.pending))
			}
		}
		if budget.Used != c.streams[0].earlyN+c.streams[1].earlyN {
			t.Fatalf("budget says %d, streams hold %d", budget.Used, c.streams[0].earlyN+c.streams[1].earlyN)
		}
	}
	c.Flush(Meta{Time: now})
	c.Release()
	if budget.Used != 0 {
		t.Fatalf("budget %d after Release", budget.Used)
	}
}
