// Package spool is plcwatch's outbox: an ordered queue of records on disk.
// An alert counts as spooled once Append returns; the publisher reads records
// in order from the head and acknowledges them once the broker has them.
// Records survive agent crashes (kill -9: written data is in the page cache)
// and, with SyncAlways or SyncInterval, power loss (up to the interval).
//
// What must hold (issue 8): the spool never stops delivering, and damage
// costs exactly the damaged records.
//
//   - Every record is framed so that it can be found again (format.go): a
//     reader that meets damage skips to the next valid record, counts the
//     records lost (their sequence numbers are the gap), logs once per
//     segment, and goes on. Damage is never an error for the reader.
//   - Files in the folder that are not the spool's are ignored with a
//     warning, never fatal; a segment of an older format is migrated.
//   - A disk that refuses writes (full, failing) does not lose alerts
//     silently: records wait in a bounded memory queue, are read from there
//     like any other, and go to disk when it takes writes again. Only when
//     that queue is full are records dropped, oldest first, counted by
//     reason.
//   - The spool is bounded by MaxBytes: when full, the oldest records make
//     room and are counted as dropped.
//
// On disk it is a folder of segment files, each a run of records named by
// the sequence number of its first (%016x.seg), an "acked" file holding the
// sequence number of the last acknowledged record and of the last record
// written, and the dead-letter file (records the publisher set aside).
// Losing an ack (it is not fsynced) only means a record is delivered again —
// with the same content, so consumers drop the duplicate — never that one is
// lost.
package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/plcwatch/plcwatch/agent/rotate"
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
	// MemoryBytes bounds the records held in memory while the disk
	// refuses writes (default DefaultMemoryBytes; at least MaxRecord).
	MemoryBytes int64
	// DeadLetterBytes: the dead-letter file is rotated beyond this, one
	// old file kept (default DefaultDeadLetterBytes).
	DeadLetterBytes int64
	Logger          *slog.Logger
}

// Defaults of Options.
const (
	DefaultMemoryBytes     = 8 << 20
	DefaultDeadLetterBytes = 16 << 20
)

// DeadLetterFile is the name, in the spool's folder, of the file of records
// set aside (SetAside): JSON lines, one per record.
const DeadLetterFile = "dead-letters.jsonl"

// Record is one queued record.
type Record struct {
	Seq      uint64
	Appended time.Time
	Data     []byte // the caller may keep it; it must not change it
}

// DropReason says why records were dropped undelivered.
type DropReason int

const (
	// DropMaxBytes: the spool reached MaxBytes; the oldest records made room.
	DropMaxBytes DropReason = iota
	// DropNoSpace: the filesystem is full and the memory queue too; the
	// oldest records made room.
	DropNoSpace
	// DropWriteError: the disk refuses writes (not for lack of space) and
	// the memory queue is full; its oldest records made room.
	DropWriteError
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{"max_bytes", "no_space", "write_error"}

func (r DropReason) String() string { return dropReasonNames[r] }

// Stats describe the spool.
type Stats struct {
	Depth       uint64        // records not yet acknowledged (on disk and in memory)
	Bytes       int64         // segments on disk
	OldestAge   time.Duration // age of the oldest unacknowledged record
	Appended    uint64        // records accepted since open
	Spooled     uint64        // records written to disk since open (at once, or from memory later)
	Acked       uint64        // records acknowledged since open
	Dropped     uint64        // records dropped unacknowledged, all reasons
	DroppedBy   [NumDropReasons]uint64
	Corrupt     uint64 // records lost to damage: found at open or while reading
	Memory      int    // records held in memory because the disk refused them
	MemoryBytes int64
	WriteErrors uint64 // failed writes to disk
	// WriteError is why the disk refuses writes, while it does; "" when
	// records go to disk.
	WriteError  string
	DeadLetters uint64 // records set aside since open
}

var (
	// ErrTooLarge is returned for a record bigger than MaxRecord.
	ErrTooLarge = errors.New("spool: record too large")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrStorage wraps errors reading the spool's files (not damage, which
	// is skipped, but a file that cannot be read at all). The caller waits
	// and tries again; the spool skips a segment that keeps failing.
	ErrStorage = errors.New("spool: storage error")
)

type segment struct {
	name   uint64 // the sequence number in its file name: no record in it is older
	suffix int    // >0 when the plain name was taken by something not ours
	path   string
	first  uint64 // seq of its first valid record (count 0: none)
	last   uint64 // seq of its last valid record
	count  uint64 // valid records
	size   int64  // bytes to read; for the segment being written, where the next record goes
}

// pos is where a record is: in a segment at an offset, or in memory.
type pos struct {
	mem bool
	seg string // segment path
	off int64
}

// cursor is a reading position: the next record is looked for at at, and
// every record up to prev is behind it.
type cursor struct {
	at   pos
	prev uint64
	ok   bool
}

// readEntry is a record handed out by Read and not yet acknowledged.
type readEntry struct {
	seq      uint64
	at       pos
	appended int64
}

type memRecord struct {
	seq      uint64
	appended int64
	data     []byte
}

// Spool is safe for concurrent use; it is meant for one appender and one
// reader.
type Spool struct {
	opts Options
	log  *slog.Logger
	mu   sync.Mutex

	segs  []segment // ours, oldest first; the last one is written
	w     *os.File  // the last segment, open for writing
	next  uint64    // seq of the next record
	acked uint64    // seq of the last acknowledged record (0: none)
	holes spans     // seqs after acked that hold no record: lost, dropped or skipped
	total int64
	// diskLast is the last seq written to disk; it goes to the acked file,
	// so that records that vanish from the end of the spool are noticed.
	diskLast  uint64
	stateLast uint64 // diskLast when the acked file was last written
	stateErr  string // the last error writing the acked file, logged once

	// pendingDrop: records dropped while handed to the reader, by
	// reason; acknowledged, they were delivered after all, else they
	// count as dropped when the reader starts again from the head.
	pendingDrop [NumDropReasons]spans

	mem      []memRecord // records the disk refused, oldest first
	memBytes int64
	failing  error // the last write error, while writes fail
	// outage is the write failure last logged, until the disk is logged
	// back; failures counts the failed writes meanwhile.
	outage   error
	failures uint64
	// madeRoom is what dropping the oldest segments freed while the disk
	// is full: writes into it do not mean the disk takes writes again.
	madeRoom int64
	lastTry  time.Time // the last attempt to move memory to disk

	rd       segReader
	after    cursor      // where the last Read stopped
	fifo     []readEntry // records read and not acknowledged, in order
	readErrs map[string]int
	occupied map[string]bool // segment-like paths taken by things that are not ours

	// failInject, set by tests, fails writes with this error: a disk
	// failing with EIO is hard to come by (a full one is not: the full
	// disk test uses a real tmpfs).
	failInject error

	dead   *rotate.File
	stats  Stats
	notify chan struct{}
	synced time.Time
	dirty  bool
	closed bool
	buf    []byte
}

// Open opens (creating) the spool in opts.Dir and recovers what is there:
// damaged records are skipped and counted, a record torn at the end of the
// last segment is cut off, files that are not the spool's are ignored with
// a warning, format 1 segments are migrated. It fails only when the folder
// cannot be used at all (cannot be created, read or written).
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
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = DefaultMemoryBytes
	}
	opts.MemoryBytes = max(opts.MemoryBytes, MaxRecord)
	if opts.DeadLetterBytes <= 0 {
		opts.DeadLetterBytes = DefaultDeadLetterBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{opts: opts, log: opts.Logger, notify: make(chan struct{}, 1), next: 1, synced: time.Now(),
		readErrs: map[string]int{}, occupied: map[string]bool{}}
	if err := s.recover(); err != nil {
		s.rd.close()
		return nil, err
	}
	s.checkFreeSpace()
	return s, nil
}

// plausible is the most records the spool can hold: a gap in sequence
// numbers wider than this is not records lost (a stray file), and a
// segment named beyond it is not ours.
func (s *Spool) plausible() uint64 {
	return uint64(s.opts.MaxBytes/headerLen) + uint64(s.opts.MemoryBytes/headerLen) + 1
}

func (s *Spool) segPath(name uint64, suffix int) string {
	if suffix > 0 {
		return filepath.Join(s.opts.Dir, fmt.Sprintf("%016x-%d.seg", name, suffix))
	}
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%016x.seg", name))
}

// startSegment closes the segment being written and starts one named by
// the sequence number of the first record that will go in it.
func (s *Spool) startSegment(first uint64) error {
	if s.w != nil {
		if s.opts.Sync != SyncNever && s.dirty {
			if err := s.w.Sync(); err != nil {
				return fmt.Errorf("spool: fsync: %w", err)
			}
		}
		s.w.Close()
		s.w = nil
	}
	seg := segment{name: first}
	for {
		seg.path = s.segPath(seg.name, seg.suffix)
		if !s.occupied[seg.path] {
			if _, err := os.Lstat(seg.path); errors.Is(err, os.ErrNotExist) {
				break
			}
			// Something is there that we do not know of: leave it.
			s.occupied[seg.path] = true
			s.log.Warn("spool: a file that is not the spool's has the name of the next segment: left alone, the segment takes another name", "path", seg.path)
		}
		seg.suffix++
	}
	w, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w = w
	s.segs = append(s.segs, seg)
	syncDir(s.opts.Dir)
	return nil
}

// Notify returns a channel that receives when records are appended.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

func (s *Spool) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Sync flushes appended records to stable storage (unless the spool syncs
// never), records the acknowledgement mark, and tries again to move records
// held in memory to disk. The agent calls it every second.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if len(s.mem) > 0 {
		s.flushMem(true)
	}
	err := s.syncLocked()
	if s.stateLast != s.diskLast {
		s.writeState()
	}
	return err
}

func (s *Spool) syncLocked() error {
	if !s.dirty || s.opts.Sync == SyncNever {
		return nil
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.dirty = false
	s.synced = time.Now()
	return nil
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Bytes = s.total
	st.Depth = s.depth()
	st.Memory = len(s.mem)
	st.MemoryBytes = s.memBytes
	if s.failing != nil {
		st.WriteError = s.failing.Error()
	}
	if st.Depth > 0 && !s.closed {
		if t, ok := s.oldestLocked(); ok {
			st.OldestAge = time.Since(time.Unix(0, t))
		}
	}
	return st
}

// depth counts the records not acknowledged: every sequence number after
// the ack that is not a hole.
func (s *Spool) depth() uint64 {
	if s.next <= s.acked+1 {
		return 0
	}
	return s.next - 1 - s.acked - s.holes.count(s.acked+1, s.next-1)
}

// Close syncs and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if len(s.mem) > 0 {
		s.flushMem(true)
		if len(s.mem) > 0 {
			s.log.Error("spool: closing with alerts the disk would not take: they are lost", "alerts", len(s.mem), "err", s.failing)
		}
	}
	s.closed = true
	s.settleDrops()
	err := s.syncLocked()
	s.writeState()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	s.rd.close()
	if s.dead != nil {
		s.dead.Close()
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// noSpace tells a full filesystem (or quota) from other write errors.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
