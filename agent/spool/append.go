package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/plcwatch/plcwatch/agent/rotate"
)

// retryEvery is how often records held in memory are offered to the disk
// again (besides every Sync).
const retryEvery = time.Second

// Append queues a record. When it returns nil the record is queued: in the
// segment file (with SyncAlways, on stable storage), or — while the disk
// refuses writes — in memory, to be written when it takes writes again and
// delivered meanwhile like any other. Stats says which. The only errors are
// ErrTooLarge and ErrClosed.
func (s *Spool) Append(data []byte) error {
	if len(data) > MaxRecord {
		return ErrTooLarge
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	seq := s.next
	s.next++
	s.stats.Appended++
	at := now()
	if len(s.mem) > 0 {
		// Order: nothing goes to disk before what waits in memory.
		s.flushMem(false)
	}
	if len(s.mem) == 0 {
		if _, err := s.write(seq, at, data); err == nil {
			s.wake()
			return nil
		}
	}
	s.keep(memRecord{seq: seq, appended: at, data: append([]byte(nil), data...)})
	s.wake()
	return nil
}

// write puts one record on disk and returns where. A failure is recorded
// (s.failing) and leaves the segment as it was.
func (s *Spool) write(seq uint64, at int64, data []byte) (pos, error) {
	need := int64(headerLen + len(data))
	cur := &s.segs[len(s.segs)-1]
	if cur.size > 0 && cur.size+need > s.opts.SegmentBytes {
		if err := s.startSegment(seq); err != nil {
			s.writeFailed(err)
			return pos{}, err
		}
		cur = &s.segs[len(s.segs)-1]
	}
	for s.total+need > s.opts.MaxBytes && len(s.segs) > 1 {
		s.dropOldest(DropMaxBytes)
		cur = &s.segs[len(s.segs)-1]
	}
	s.buf = appendRecord(s.buf[:0], seq, at, data)
	// WriteAt, not O_APPEND: a failed write that could not be cut back
	// is overwritten by the next one, so the valid extent stays exact.
	var err error
	if s.failInject != nil {
		err = &os.PathError{Op: "write", Path: cur.path, Err: s.failInject}
	} else {
		_, err = s.w.WriteAt(s.buf, cur.size)
	}
	if err != nil {
		_ = s.w.Truncate(cur.size)
		s.rd.forgetIf(cur.path)
		s.writeFailed(err)
		return pos{}, fmt.Errorf("spool: append: %w", err)
	}
	at0 := pos{seg: cur.path, off: cur.size}
	if cur.count == 0 {
		cur.first = seq
	}
	cur.last = seq
	cur.count++
	cur.size += need
	s.total += need
	s.diskLast = seq
	s.stats.Spooled++
	s.dirty = true
	s.failing = nil
	if s.outage != nil {
		if s.madeRoom > 0 {
			// Written into the room dropping the oldest segment made:
			// the disk is still full, not back (breaker 1: the log
			// said back, then full, every second).
			s.madeRoom -= need
		} else {
			s.log.Info("spool: the disk takes writes again", "was", s.outage.Error(), "failures", s.failures,
				"alerts_in_memory", len(s.mem))
			s.outage = nil
			s.failures = 0
		}
	}
	if s.opts.Sync == SyncAlways || (s.opts.Sync == SyncInterval && time.Since(s.synced) >= s.opts.SyncInterval) {
		if err := s.syncLocked(); err != nil {
			s.log.Error("spool: fsync", "err", err)
		}
	}
	return at0, nil
}

// writeFailed records a failed write. The failure is logged when writes
// start failing, or fail for another reason (another errno: the file
// named differs from segment to segment and does not count); the failures
// until the disk takes writes again are counted, and that line says how
// many.
func (s *Spool) writeFailed(err error) {
	s.stats.WriteErrors++
	s.failures++
	s.madeRoom = 0 // whatever room was made is used up
	if s.outage == nil || errKind(s.outage) != errKind(err) {
		s.outage = err
		s.log.Error("spool: cannot write to disk: alerts wait in memory until it can (spool.memory_bytes), then the oldest are dropped",
			"dir", s.opts.Dir, "err", err, "memory_bytes", s.opts.MemoryBytes)
	}
	s.failing = err
}

// errKind is what makes two write errors the same failure: the operation
// and the errno, not the file.
func errKind(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// keep holds a record in memory, making room when the queue is full: when
// the disk is full, by dropping the oldest segment (the oldest records
// overall) and moving memory to the room it leaves; otherwise by dropping
// the oldest records in memory that are not being delivered.
func (s *Spool) keep(m memRecord) {
	for s.memBytes+int64(len(m.data)) > s.opts.MemoryBytes && len(s.mem) > 0 {
		if noSpace(s.failing) {
			if len(s.segs) == 1 && s.segs[0].count > 0 {
				// The oldest records are in the segment being written:
				// start another (an empty file takes no room) so that it
				// can go.
				if err := s.startSegment(s.mem[0].seq); err != nil {
					s.log.Debug("spool: cannot start a segment on a full disk", "err", err)
				}
			}
			if len(s.segs) > 1 {
				s.madeRoom += s.segs[0].size
				s.dropOldest(DropNoSpace)
				s.flushMem(true)
				continue
			}
		}
		reason := DropWriteError
		if noSpace(s.failing) {
			reason = DropNoSpace
		}
		// The oldest not handed to the reader yet: one in flight may
		// still be delivered (if all are, it is settled later).
		i := sort.Search(len(s.mem), func(i int) bool { return s.mem[i].seq > s.after.prev })
		if i == len(s.mem) {
			i = 0
		}
		var n int
		var counted uint64
		for n = 0; i+n < len(s.mem) && s.memBytes+int64(len(m.data)) > s.opts.MemoryBytes; n++ {
			d := s.mem[i+n]
			s.memBytes -= int64(len(d.data))
			s.holes.add(d.seq, d.seq)
			if d.seq <= s.after.prev {
				s.pendingDrop[reason].add(d.seq, d.seq)
			} else {
				counted++
			}
		}
		s.mem = append(s.mem[:i], s.mem[i+n:]...)
		s.dropped(reason, counted)
	}
	s.mem = append(s.mem, m)
	s.memBytes += int64(len(m.data))
}

// settleDrops counts as dropped the records dropped while in flight that
// were not acknowledged: the reader starts again without them.
func (s *Spool) settleDrops() {
	for r := range s.pendingDrop {
		if n := s.pendingDrop[r].total(); n > 0 {
			s.dropped(DropReason(r), n)
			s.pendingDrop[r] = nil
		}
	}
}

func (s *Spool) dropped(r DropReason, n uint64) {
	if n == 0 {
		return
	}
	s.stats.Dropped += n
	s.stats.DroppedBy[r] += n
	s.log.Warn("spool: dropped the oldest undelivered alerts to make room", "reason", r.String(), "dropped", n,
		"dropped_total", s.stats.Dropped)
}

// flushMem moves records from memory to disk, oldest first, until the disk
// refuses one. Unless forced it tries at most every retryEvery. Readers and
// records in flight that pointed into memory point at the disk copies.
func (s *Spool) flushMem(force bool) {
	if !force && time.Since(s.lastTry) < retryEvery {
		return
	}
	s.lastTry = time.Now()
	n := 0
	moved := map[uint64]pos{}
	for _, m := range s.mem {
		at, err := s.write(m.seq, m.appended, m.data)
		if err != nil {
			break
		}
		moved[m.seq] = at
		s.memBytes -= int64(len(m.data))
		n++
	}
	if n == 0 {
		return
	}
	s.mem = append(s.mem[:0], s.mem[n:]...)
	for i := range s.fifo {
		if p, ok := moved[s.fifo[i].seq]; ok {
			s.fifo[i].at = p
		}
	}
	// A reader in memory may have records behind it that moved to disk:
	// it goes back to the disk where it left it, and finds them there.
	s.after.at.mem = false
	if len(s.mem) == 0 {
		s.log.Info("spool: alerts held in memory are on disk now", "alerts", n)
	}
}

// dropOldest deletes the oldest segment to make room, counting the records
// it held that were never acknowledged.
func (s *Spool) dropOldest(r DropReason) {
	old := s.segs[0]
	var lost uint64
	if old.count > 0 && old.last > s.acked {
		from := max(s.acked+1, old.first)
		lost = old.last - from + 1 - s.holes.count(from, old.last)
		// Records handed to the reader may still be delivered: they are
		// counted as dropped only if they are not acknowledged.
		for q := from; q <= min(old.last, s.after.prev); q++ {
			if s.holes.count(q, q) == 0 {
				s.pendingDrop[r].add(q, q)
				lost--
			}
		}
		s.acked = old.last
		s.holes.prune(s.acked)
	}
	s.segs = s.segs[1:]
	s.total -= old.size
	s.rd.forgetIf(old.path)
	s.forgetReads(old.path)
	// The ack first: a crash between the two must not make the records
	// of a deleted segment look lost at the next start.
	s.writeState()
	removeFile(old.path)
	s.dropped(r, lost)
}

// forgetReads drops read positions into a segment that is gone.
func (s *Spool) forgetReads(path string) {
	if s.after.ok && s.after.at.seg == path && !s.after.at.mem {
		s.after = cursor{at: pos{seg: s.segs[0].path}, prev: max(s.after.prev, s.acked), ok: true}
	}
	n := 0
	for _, e := range s.fifo {
		if e.seq > s.acked {
			s.fifo[n] = e
			n++
		}
	}
	s.fifo = s.fifo[:n]
}

// SetAside moves a record the publisher cannot deliver (the broker refuses
// it again and again) out of the way: line, a JSON object without newline
// describing it, goes to the dead-letter file, and every record up to seq
// is acknowledged. Delivery goes on with the next. When the dead-letter
// file cannot be written, the line goes to the log instead: the record is
// set aside either way, never lost without a trace.
func (s *Spool) SetAside(seq uint64, line []byte) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	var err error
	if s.dead == nil {
		s.dead, err = rotate.Open(filepath.Join(s.opts.Dir, DeadLetterFile), rotate.Options{MaxBytes: s.opts.DeadLetterBytes, Keep: 1})
	}
	if err == nil {
		err = s.dead.WriteLine(line)
	}
	s.stats.DeadLetters++
	s.mu.Unlock()
	if err != nil {
		s.log.Error("spool: cannot write the dead-letter file: the record set aside is in this line", "err", err, "record", string(line))
	}
	return s.Ack(seq)
}
