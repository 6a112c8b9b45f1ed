// Package spool is plcwatch's outbox: an ordered queue of records on disk.
// An alert counts as raised once Append returns; the publisher reads records
// in order from the head and acknowledges them once the broker has them.
// Records survive agent crashes (kill -9: written data is in the page cache)
// and, with SyncAlways or SyncInterval, power loss (up to the interval).
// The spool is bounded: when full, the oldest records make room and are
// counted as dropped.
//
// On disk it is a folder of segment files, each a run of records
//
//	length uint32 | crc32c uint32 | seq uint64 | appended unixnano int64 | payload
//
// named by the sequence number of its first record, and an "acked" file
// holding the sequence number of the last acknowledged record. Losing an
// ack (it is not fsynced) only means a record is delivered again — with the
// same content, so consumers drop the duplicate — never that one is lost.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sync says when appended records are flushed to stable storage.
type Sync int

const (
	SyncInterval Sync = iota // fsync at most every Options.SyncInterval (default)
	SyncAlways               // fsync every append: survives power loss, costs throughput
	SyncNever                // leave it to the OS: survives agent crashes, not power loss
)

// ParseSync reads "interval", "always" or "never".
func ParseSync(s string) (Sync, error) {
	switch s {
	case "interval", "":
		return SyncInterval, nil
	case "always":
		return SyncAlways, nil
	case "never":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("fsync %q: want always, interval or never", s)
}

// Options configure a spool.
type Options struct {
	Dir          string
	MaxBytes     int64 // bound on all segments together
	SegmentBytes int64 // a segment is closed beyond this (default MaxBytes/16, at least 64 KiB)
	Sync         Sync
	SyncInterval time.Duration // default 1s
	Logger       *slog.Logger
}

// Record is one queued record.
type Record struct {
	Seq      uint64
	Appended time.Time
	Data     []byte
}

// Stats describe the spool.
type Stats struct {
	Depth     uint64        // records not yet acknowledged
	Bytes     int64         // on disk
	OldestAge time.Duration // age of the oldest unacknowledged record
	Appended  uint64        // records appended since open
	Acked     uint64        // records acknowledged since open
	Dropped   uint64        // records dropped unacknowledged because the spool was full
}

const headerLen = 4 + 4 + 8 + 8

// MaxRecord bounds one record.
const MaxRecord = 1 << 20

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)
	// ErrTooLarge is returned for a record bigger than MaxRecord.
	ErrTooLarge = errors.New("spool: record too large")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
)

type segment struct {
	first uint64 // seq of its first record
	count uint64 // records in it
	size  int64
	path  string
}

// Spool is safe for one appender and one reader in different goroutines.
type Spool struct {
	opts   Options
	log    *slog.Logger
	mu     sync.Mutex
	segs   []segment          // oldest first; the last one is written
	w      *os.File           // the last segment, open for appending
	next   uint64             // seq of the next record
	acked  uint64             // seq of the last acknowledged record (0: none)
	head   readPos            // where the first unacknowledged record is, when known
	after  readPos            // where the record after the last one read is
	pos    map[uint64]readPos // positions of records read, not yet acknowledged
	total  int64
	stats  Stats
	notify chan struct{}
	synced time.Time
	dirty  bool
	closed bool
	buf    []byte
}

// readPos caches the file offset of record seq in segment seg.
type readPos struct {
	seq    uint64
	seg    uint64 // first seq of the segment
	offset int64
	ok     bool
}

// Open opens (creating) the spool in opts.Dir, recovering what a crash left:
// a record torn at the end of the last segment is cut off.
func Open(opts Options) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		return nil, errors.New("spool: MaxBytes must be positive")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = max(opts.MaxBytes/16, 64<<10)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{opts: opts, log: opts.Logger, notify: make(chan struct{}, 1), next: 1, synced: time.Now(),
		pos: map[uint64]readPos{}}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spool) segPath(first uint64) string {
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%016x.seg", first))
}

// recover reads the folder: segments, records, the ack.
func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var firsts []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	if b, err := os.ReadFile(filepath.Join(s.opts.Dir, "acked")); err == nil && len(b) == 12 &&
		crc32.Checksum(b[:8], crcTable) == binary.BigEndian.Uint32(b[8:]) {
		s.acked = binary.BigEndian.Uint64(b)
	}
	for i, first := range firsts {
		seg, err := s.scan(first, i == len(firsts)-1)
		if err != nil {
			return err
		}
		if seg.count == 0 && i < len(firsts)-1 {
			os.Remove(seg.path)
			continue
		}
		s.segs = append(s.segs, seg)
		s.total += seg.size
		s.next = seg.first + seg.count
	}
	// Segments wholly acknowledged are finished.
	for len(s.segs) > 1 && s.segs[0].first+s.segs[0].count-1 <= s.acked {
		os.Remove(s.segs[0].path)
		s.total -= s.segs[0].size
		s.segs = s.segs[1:]
	}
	if len(s.segs) > 0 && s.acked < s.segs[0].first-1 {
		s.acked = s.segs[0].first - 1
	}
	if s.acked >= s.next {
		s.acked = s.next - 1
	}
	if len(s.segs) == 0 {
		s.next = max(s.next, s.acked+1)
		return s.startSegment()
	}
	last := s.segs[len(s.segs)-1]
	w, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w = w
	s.stats.Depth = s.next - 1 - s.acked
	if s.stats.Depth > 0 {
		s.log.Info("spool recovered undelivered records", "records", s.stats.Depth, "bytes", s.total)
	}
	return nil
}

// scan counts the valid records of a segment; in the last segment a broken
// tail (a crash mid-write) is cut off.
func (s *Spool) scan(first uint64, last bool) (segment, error) {
	path := s.segPath(first)
	f, err := os.Open(path)
	if err != nil {
		return segment{}, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	seg := segment{first: first, path: path}
	var off int64
	hdr := make([]byte, headerLen)
	for {
		if _, err := f.ReadAt(hdr, off); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(hdr)
		if n > MaxRecord || binary.BigEndian.Uint64(hdr[8:]) != first+seg.count {
			break
		}
		payload := make([]byte, n)
		if _, err := f.ReadAt(payload, off+headerLen); err != nil {
			break
		}
		if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			break
		}
		off += headerLen + int64(n)
		seg.count++
	}
	st, err := f.Stat()
	if err != nil {
		return segment{}, fmt.Errorf("spool: %w", err)
	}
	if st.Size() > off {
		s.log.Warn("spool segment has a broken tail: cut off", "segment", path, "valid_bytes", off, "size", st.Size(), "last", last)
		if err := os.Truncate(path, off); err != nil {
			return segment{}, fmt.Errorf("spool: %w", err)
		}
	}
	seg.size = off
	return seg, nil
}

func (s *Spool) startSegment() error {
	if s.w != nil {
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.w.Close()
	}
	seg := segment{first: s.next, path: s.segPath(s.next)}
	w, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w = w
	s.segs = append(s.segs, seg)
	syncDir(s.opts.Dir)
	return nil
}

// Append queues a record. When it returns nil, the record is in the file
// (and, with SyncAlways, on stable storage).
func (s *Spool) Append(data []byte) error {
	if len(data) > MaxRecord {
		return ErrTooLarge
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	need := int64(headerLen + len(data))
	cur := &s.segs[len(s.segs)-1]
	if cur.size > 0 && cur.size+need > s.opts.SegmentBytes {
		if err := s.startSegment(); err != nil {
			return err
		}
		cur = &s.segs[len(s.segs)-1]
	}
	for s.total+need > s.opts.MaxBytes && len(s.segs) > 1 {
		s.dropOldest()
	}
	b := s.buf[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(data, crcTable))
	b = binary.BigEndian.AppendUint64(b, s.next)
	b = binary.BigEndian.AppendUint64(b, uint64(time.Now().UnixNano()))
	b = append(b, data...)
	s.buf = b
	if _, err := s.w.Write(b); err != nil {
		// A short write leaves a torn record; cut it off so the file
		// stays a clean sequence of records.
		_ = s.w.Truncate(cur.size)
		return fmt.Errorf("spool: append: %w", err)
	}
	cur.size += need
	cur.count++
	s.total += need
	s.next++
	s.stats.Appended++
	s.stats.Depth++
	s.dirty = true
	if err := s.maybeSync(); err != nil {
		return err
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (s *Spool) maybeSync() error {
	switch s.opts.Sync {
	case SyncNever:
		return nil
	case SyncInterval:
		if time.Since(s.synced) < s.opts.SyncInterval {
			return nil
		}
	}
	return s.syncLocked()
}

func (s *Spool) syncLocked() error {
	if !s.dirty {
		return nil
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.dirty = false
	s.synced = time.Now()
	return nil
}

// Sync flushes appended records to stable storage now (SyncInterval calls
// it on a timer too, through Tick).
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return s.syncLocked()
}

// dropOldest deletes the oldest segment to make room, counting the records
// it held that were never acknowledged.
func (s *Spool) dropOldest() {
	old := s.segs[0]
	lost := uint64(0)
	if end := old.first + old.count - 1; end > s.acked {
		lost = end - max(s.acked, old.first-1)
		s.acked = end
		s.stats.Depth -= lost
	}
	s.stats.Dropped += lost
	s.log.Warn("spool full: dropped the oldest undelivered alerts", "dropped", lost, "dropped_total", s.stats.Dropped)
	os.Remove(old.path)
	s.total -= old.size
	s.segs = s.segs[1:]
	s.head.ok, s.after.ok = false, false
	clear(s.pos)
	s.writeAcked()
}

// Notify returns a channel that receives when records are appended.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Peek returns up to max records from the head, oldest first, without
// removing them. It returns the same records until they are acknowledged.
func (s *Spool) Peek(max int) ([]Record, error) { return s.Read(0, max) }

// Read returns up to max records starting at sequence number from (or at
// the head, when from is 0 or already acknowledged), without removing them:
// a publisher with records in flight reads what comes after them.
func (s *Spool) Read(from uint64, max int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	first := max64(from, s.acked+1)
	if first >= s.next || max <= 0 {
		return nil, nil
	}
	// The writer's data must be visible to our reads.
	var out []Record
	seq := first
	si := s.segIndex(seq)
	offset := int64(0)
	switch {
	case s.head.ok && s.head.seq == seq && si >= 0 && s.head.seg == s.segs[si].first:
		offset = s.head.offset
	case s.after.ok && s.after.seq == seq && si >= 0 && s.after.seg == s.segs[si].first:
		offset = s.after.offset // reading on from where the last read stopped
	case si >= 0:
		var err error
		if offset, err = s.offsetOf(s.segs[si], seq); err != nil {
			return nil, err
		}
		if seq == s.acked+1 {
			s.head = readPos{seq: seq, seg: s.segs[si].first, offset: offset, ok: true}
		}
	}
	for si >= 0 && si < len(s.segs) && len(out) < max && seq < s.next {
		recs, end, err := s.readSegment(s.segs[si], offset, seq, max-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
		seq += uint64(len(recs))
		s.after = readPos{seq: seq, seg: s.segs[si].first, offset: end, ok: true}
		if seq == s.segs[si].first+s.segs[si].count {
			s.after.ok = false // the next record starts the next segment, at 0
		}
		si++
		offset = 0
	}
	return out, nil
}

func (s *Spool) segIndex(seq uint64) int {
	for i, g := range s.segs {
		if seq >= g.first && seq < g.first+g.count {
			return i
		}
	}
	return -1
}

// offsetOf walks a segment's headers to the offset of record seq.
func (s *Spool) offsetOf(g segment, seq uint64) (int64, error) {
	f, err := os.Open(g.path)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	var off int64
	hdr := make([]byte, headerLen)
	for cur := g.first; cur < seq; cur++ {
		if _, err := f.ReadAt(hdr, off); err != nil {
			return 0, fmt.Errorf("spool: %s: %w", g.path, err)
		}
		off += headerLen + int64(binary.BigEndian.Uint32(hdr))
	}
	return off, nil
}

// readSegment reads up to max records of g from offset (record seq) and
// returns them and the offset after the last.
func (s *Spool) readSegment(g segment, offset int64, seq uint64, max int) ([]Record, int64, error) {
	f, err := os.Open(g.path)
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	var out []Record
	hdr := make([]byte, headerLen)
	for len(out) < max && seq < g.first+g.count {
		s.pos[seq] = readPos{seq: seq, seg: g.first, offset: offset, ok: true}
		if _, err := f.ReadAt(hdr, offset); err != nil {
			return nil, 0, fmt.Errorf("spool: %s: %w", g.path, err)
		}
		n := binary.BigEndian.Uint32(hdr)
		data := make([]byte, n)
		if _, err := f.ReadAt(data, offset+headerLen); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("spool: %s: %w", g.path, err)
		}
		if crc32.Checksum(data, crcTable) != binary.BigEndian.Uint32(hdr[4:]) || binary.BigEndian.Uint64(hdr[8:]) != seq {
			return nil, 0, fmt.Errorf("spool: %s: record %d is corrupt", g.path, seq)
		}
		out = append(out, Record{Seq: seq, Appended: time.Unix(0, int64(binary.BigEndian.Uint64(hdr[16:]))), Data: data})
		offset += headerLen + int64(n)
		seq++
	}
	return out, offset, nil
}

// Ack acknowledges every record up to and including seq: they are gone.
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if seq <= s.acked {
		return nil
	}
	if seq >= s.next {
		return fmt.Errorf("spool: ack %d beyond the last record %d", seq, s.next-1)
	}
	n := seq - s.acked
	// The head moves to the next record read, or to where the last read
	// stopped; failing both, it is found again when needed.
	switch p, ok := s.pos[seq+1]; {
	case ok:
		s.head = p
	case s.after.ok && s.after.seq == seq+1:
		s.head = s.after
	default:
		s.head.ok = false
	}
	for q := s.acked + 1; q <= seq; q++ {
		delete(s.pos, q)
	}
	s.acked = seq
	s.stats.Depth -= n
	s.stats.Acked += n
	for len(s.segs) > 1 && s.segs[0].first+s.segs[0].count-1 <= s.acked {
		os.Remove(s.segs[0].path)
		s.total -= s.segs[0].size
		s.segs = s.segs[1:]
	}
	return s.writeAcked()
}

// writeAcked records the ack without fsync: losing it redelivers, it never
// loses.
func (s *Spool) writeAcked() error {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:], s.acked)
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[:8], crcTable))
	tmp := filepath.Join(s.opts.Dir, "acked.tmp")
	if err := os.WriteFile(tmp, b[:], 0o640); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.opts.Dir, "acked")); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Bytes = s.total
	if st.Depth > 0 && !s.closed {
		if recs, err := s.peekOneLocked(); err == nil && len(recs) == 1 {
			st.OldestAge = time.Since(recs[0].Appended)
		}
	}
	return st
}

func (s *Spool) peekOneLocked() ([]Record, error) {
	seq := s.acked + 1
	si := s.segIndex(seq)
	if si < 0 {
		return nil, nil
	}
	off := int64(0)
	if s.head.ok && s.head.seq == seq && s.head.seg == s.segs[si].first {
		off = s.head.offset
	} else {
		var err error
		if off, err = s.offsetOf(s.segs[si], seq); err != nil {
			return nil, err
		}
	}
	recs, _, err := s.readSegment(s.segs[si], off, seq, 1)
	return recs, err
}

// Close syncs and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.syncLocked()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
