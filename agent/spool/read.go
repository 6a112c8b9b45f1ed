package spool

import (
	"fmt"
	"os"
	"sort"
	"time"
)

// Peek returns up to max records from the head, oldest first, without
// removing them. It returns the same records until they are acknowledged.
func (s *Spool) Peek(max int) ([]Record, error) { return s.Read(0, max) }

// readFailLimit is how many times in a row a segment may fail to be read
// before the reader gives up on it (its records are counted lost): a disk
// that fails for good must not stall delivery of everything after it.
const readFailLimit = 3

// Read returns up to max records with sequence numbers from from on (or
// from the head, when from is 0 or already acknowledged), oldest first,
// without removing them: a publisher with records in flight reads what
// comes after them. Damaged records are skipped (and counted, and logged
// once); the error is ErrClosed, or wraps ErrStorage when a segment cannot
// be read at all (try again later; after readFailLimit failures in a row
// the segment is skipped).
func (s *Spool) Read(from uint64, max int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	first := from
	if first <= s.acked {
		first = s.acked + 1
	}
	if first >= s.next || max <= 0 {
		return nil, nil
	}
	var c cursor
	switch {
	case s.after.ok && s.after.prev+1 == first:
		c = s.after
	default:
		// From the head (a reconnect reads everything not acknowledged
		// again), or, rarely, from the middle: walk from the head.
		c = s.head()
		s.fifo = s.fifo[:0]
		if c.prev+1 < first {
			c.prev = first - 1 // what lies between is passed over
		}
	}
	if first == s.acked+1 {
		s.fifo = s.fifo[:0]
		s.settleDrops()
	}
	var out []Record
	for len(out) < max {
		r, at, ok, err := s.nextRecord(&c, true)
		if err != nil {
			s.after = c
			if len(out) > 0 {
				return out, nil
			}
			return nil, err
		}
		if !ok {
			break
		}
		out = append(out, r)
		s.fifo = append(s.fifo, readEntry{seq: r.Seq, at: at, appended: r.Appended.UnixNano()})
	}
	s.after = c
	return out, nil
}

// head is a cursor at the first record not acknowledged.
func (s *Spool) head() cursor {
	if len(s.fifo) > 0 && s.fifo[0].seq > s.acked {
		return cursor{at: s.fifo[0].at, prev: s.acked, ok: true}
	}
	if s.after.ok && s.after.prev == s.acked {
		return s.after
	}
	return cursor{at: pos{seg: s.segs[0].path}, prev: s.acked, ok: true}
}

// nextRecord moves c to the next record after c.prev and returns it (with
// its data copied when want). ok is false when there is none yet.
func (s *Spool) nextRecord(c *cursor, want bool) (Record, pos, bool, error) {
	for {
		if c.at.mem {
			i := sort.Search(len(s.mem), func(i int) bool { return s.mem[i].seq > c.prev })
			if i == len(s.mem) {
				// Nothing more in memory: back to the disk where reading
				// left it. What memory moved to disk since, and what was
				// written after, comes after that point.
				c.at.mem = false
				if s.atEnd(c) {
					return Record{}, pos{}, false, nil
				}
				continue
			}
			m := s.mem[i]
			s.gap(c.prev, m.seq, "memory")
			c.prev = m.seq
			// Memory records never change: no copy needed.
			return Record{Seq: m.seq, Appended: time.Unix(0, m.appended), Data: m.data}, pos{mem: true}, true, nil
		}
		i := s.segIndex(c.at.seg)
		if i < 0 {
			// Its segment is gone (acknowledged or dropped): the
			// oldest one left holds what comes next.
			c.at = pos{seg: s.segs[0].path}
			i = 0
		}
		g := &s.segs[i]
		if c.at.off >= g.size {
			switch {
			case i+1 < len(s.segs):
				c.at = pos{seg: s.segs[i+1].path}
				continue
			case len(s.mem) > 0 && s.mem[len(s.mem)-1].seq > c.prev:
				c.at.mem = true // the disk position is kept to come back to
				continue
			}
			return Record{}, pos{}, false, nil
		}
		err := s.rd.open(g.path, g.size)
		var fd found
		var ok bool
		if err == nil {
			fd, ok, err = s.rd.next(c.at.off)
		}
		if err != nil {
			s.rd.close()
			s.readErrs[g.path]++
			if s.readErrs[g.path] < readFailLimit {
				return Record{}, pos{}, false, fmt.Errorf("%w: %s: %w", ErrStorage, g.path, err)
			}
			// It keeps failing: give up on the rest of it.
			s.log.Error("spool: a segment cannot be read: skipping the rest of it; its alerts are lost", "segment", g.path, "err", err)
			delete(s.readErrs, g.path)
			c.at.off = g.size
			continue
		}
		delete(s.readErrs, g.path)
		if !ok {
			c.at.off = g.size
			continue
		}
		c.at.off = fd.end
		if fd.h.seq <= c.prev {
			continue // acknowledged, or read already
		}
		s.gap(c.prev, fd.h.seq, g.path)
		c.prev = fd.h.seq
		r := Record{Seq: fd.h.seq, Appended: time.Unix(0, fd.h.appended)}
		if want {
			r.Data = append([]byte(nil), fd.data...)
		}
		return r, pos{seg: g.path, off: fd.off}, true, nil
	}
}

// gap notes the records between two read one after the other: those not
// known to be holes were lost since the spool opened (damage on a running
// system). Counted and logged.
func (s *Spool) gap(prev, seq uint64, where string) {
	if seq <= prev+1 {
		return
	}
	a, b := prev+1, seq-1
	if b-a+1 > s.plausible() {
		s.holes.add(a, b)
		return
	}
	known := s.holes.count(a, b)
	if known == b-a+1 {
		return
	}
	n := s.holes.add(a, b)
	s.stats.Corrupt += n
	s.log.Warn("spool: records lost to damage while running: skipped", "segment", where, "records_lost", n,
		"seqs_lost", spans{{a, b}}.String())
}

// atEnd reports whether a disk cursor stands at the end of the last
// segment.
func (s *Spool) atEnd(c *cursor) bool {
	i := s.segIndex(c.at.seg)
	return i == len(s.segs)-1 && c.at.off >= s.segs[i].size
}

func (s *Spool) segIndex(path string) int {
	for i := range s.segs {
		if s.segs[i].path == path {
			return i
		}
	}
	return -1
}

// oldestLocked returns when the first record not acknowledged was appended.
func (s *Spool) oldestLocked() (int64, bool) {
	if len(s.fifo) > 0 && s.fifo[0].seq > s.acked {
		return s.fifo[0].appended, true
	}
	c := s.head()
	r, _, ok, err := s.nextRecord(&c, false)
	if err != nil || !ok {
		return 0, false
	}
	return r.Appended.UnixNano(), true
}

// Ack acknowledges every record up to and including seq: they are gone.
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for r := range s.pendingDrop {
		s.pendingDrop[r].prune(seq) // delivered after all
	}
	if seq <= s.acked {
		return nil
	}
	if seq >= s.next {
		return fmt.Errorf("spool: ack %d beyond the last record %d", seq, s.next-1)
	}
	n := seq - s.acked - s.holes.count(s.acked+1, seq)
	s.acked = seq
	s.holes.prune(seq)
	s.absorbHoles()
	seq = s.acked
	s.stats.Acked += n
	i := 0
	for i < len(s.fifo) && s.fifo[i].seq <= seq {
		i++
	}
	s.fifo = append(s.fifo[:0], s.fifo[i:]...)
	j := 0
	for j < len(s.mem) && s.mem[j].seq <= seq {
		s.memBytes -= int64(len(s.mem[j].data))
		j++
	}
	if j > 0 {
		s.mem = append(s.mem[:0], s.mem[j:]...)
	}
	if s.after.prev < seq {
		s.after.prev = seq
	}
	// The ack first, then the files: a crash between the two must not
	// make records of a deleted segment look lost at the next start.
	finished := 0
	for finished < len(s.segs)-1 && s.segs[finished].last <= s.acked {
		finished++
	}
	s.writeState()
	for _, g := range s.segs[:finished] {
		s.rd.forgetIf(g.path)
		removeFile(g.path)
		s.total -= g.size
	}
	s.segs = s.segs[finished:]
	return nil
}

// absorbHoles moves the ack over holes right after it: no record has
// those numbers, and the acked file then says so too (a restart does not
// find and count the same loss again).
func (s *Spool) absorbHoles() {
	for len(s.holes) > 0 && s.holes[0].a <= s.acked+1 {
		s.acked = max(s.acked, s.holes[0].b)
		s.holes = s.holes[1:]
	}
}

func removeFile(path string) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		// It stays on disk; the spool no longer counts it.
		_ = err
	}
}

// forgetIf closes the reader when it reads path.
func (r *segReader) forgetIf(path string) {
	if r.name == path {
		r.close()
	}
}
