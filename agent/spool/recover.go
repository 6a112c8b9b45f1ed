package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The acked file, format 2 (28 bytes):
//
//	"PWAK" | version uint32 (2) | acked uint64 | last written uint64 | CRC-32C of bytes 0-23
//
// Format 1 was 12 bytes: acked uint64 | CRC-32C of it.
const (
	ackedName  = "acked"
	stateMagic = "PWAK"
	stateLen   = 28
)

type state struct {
	acked, written uint64
	problem        string // why the file could not be used; "" when it could (or there was none)
	present        bool
}

func (s *Spool) readState() state {
	path := filepath.Join(s.opts.Dir, ackedName)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return state{problem: "missing"}
	case err != nil:
		return state{problem: err.Error()}
	case len(b) == 12 && crc32.Checksum(b[:8], crcTable) == binary.BigEndian.Uint32(b[8:]):
		return state{acked: binary.BigEndian.Uint64(b), present: true}
	case len(b) == stateLen && string(b[:4]) == stateMagic && binary.BigEndian.Uint32(b[4:]) == 2 &&
		crc32.Checksum(b[:24], crcTable) == binary.BigEndian.Uint32(b[24:]):
		st := state{acked: binary.BigEndian.Uint64(b[8:]), written: binary.BigEndian.Uint64(b[16:]), present: true}
		if st.acked > maxSeq || st.written > maxSeq {
			return state{problem: "sequence numbers out of range"}
		}
		return st
	}
	return state{problem: fmt.Sprintf("garbled (%d bytes)", len(b))}
}

// writeState records the ack and the last record written, without fsync:
// losing it redelivers, it never loses. It never fails the caller: an
// acked file that cannot be written is logged once and costs duplicates
// after a restart.
func (s *Spool) writeState() {
	var b [stateLen]byte
	copy(b[:], stateMagic)
	binary.BigEndian.PutUint32(b[4:], 2)
	binary.BigEndian.PutUint64(b[8:], s.acked)
	binary.BigEndian.PutUint64(b[16:], s.diskLast)
	binary.BigEndian.PutUint32(b[24:], crc32.Checksum(b[:24], crcTable))
	tmp := filepath.Join(s.opts.Dir, ackedName+".tmp")
	err := os.WriteFile(tmp, b[:], 0o640)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.opts.Dir, ackedName))
	}
	if err != nil {
		if msg := err.Error(); msg != s.stateErr {
			s.stateErr = msg
			s.log.Error("spool: cannot record acknowledgements: after a restart, alerts already delivered are sent again", "err", err)
		}
		return
	}
	if s.stateErr != "" {
		s.stateErr = ""
		s.log.Info("spool: acknowledgements are recorded again")
	}
	s.stateLast = s.diskLast
}

var segName = regexp.MustCompile(`^([0-9a-f]{16})(?:-([1-9][0-9]{0,5}))?\.seg$`)

// scan is what a segment file holds.
type scan struct {
	segment
	runs     spans // the sequence numbers of its valid records, as runs
	damaged  int64 // bytes that were not valid records
	headBad  bool  // damage before its first valid record
	tailBad  bool  // damage after its last valid record
	lastEnd  int64 // where its last valid record ends
	fileSize int64
}

// recover reads the folder: segments, records, the ack.
func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	st := s.readState()
	var scans []scan
	var foreign []string
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.opts.Dir, name)
		switch {
		case name == ackedName:
			continue
		case name == ackedName+".tmp", strings.HasSuffix(name, ".seg.migrating"), strings.HasSuffix(name, ".seg.merging"):
			// Left by a crash while writing them; the originals stand.
			if e.Type().IsRegular() {
				os.Remove(path)
				continue
			}
		case name == DeadLetterFile || strings.HasPrefix(name, DeadLetterFile+"."):
			continue
		}
		m := segName.FindStringSubmatch(name)
		if m == nil || !e.Type().IsRegular() {
			foreign = append(foreign, name)
			s.occupied[path] = true
			continue
		}
		seq, _ := strconv.ParseUint(m[1], 16, 64)
		suffix, _ := strconv.Atoi(m[2])
		if seq == 0 || seq > maxSeq {
			foreign = append(foreign, name)
			s.occupied[path] = true
			continue
		}
		sc, err := s.scanSegment(segment{name: seq, suffix: suffix, path: path})
		if err != nil {
			// Not readable: not something to deliver, not a reason to
			// stop. It stays, for someone to look at.
			s.log.Error("spool: a segment cannot be read: ignored, its alerts are not delivered", "path", path, "err", err)
			s.occupied[path] = true
			continue
		}
		scans = append(scans, sc)
	}
	if len(foreign) > 0 {
		s.log.Warn("spool: the folder holds entries that are not the spool's: ignored", "dir", s.opts.Dir,
			"entries", strings.Join(foreign[:min(len(foreign), 10)], " "), "count", len(foreign))
	}
	// In the order of their records (a copy named after a later record
	// than its first must not come before the records it follows), then
	// of their names.
	key := func(sc scan) uint64 {
		if sc.count > 0 {
			return sc.first
		}
		return sc.name
	}
	slices.SortFunc(scans, func(a, b scan) int {
		if ka, kb := key(a), key(b); ka != kb {
			if ka < kb {
				return -1
			}
			return 1
		}
		if a.name != b.name {
			if a.name < b.name {
				return -1
			}
			return 1
		}
		return a.suffix - b.suffix
	})

	scans = s.mergeOverlaps(scans)

	// The highest sequence number the spool can have used.
	hi := max(st.acked, st.written)
	for _, sc := range scans {
		if sc.count > 0 {
			hi = max(hi, sc.last)
		}
	}
	plausible := s.plausible()
	var ours []scan
	for _, sc := range scans {
		if sc.count > 0 {
			ours = append(ours, sc)
			continue
		}
		if sc.name > hi && sc.name-hi > plausible {
			// Named beyond any number the spool has used, and nothing in
			// it: a stray file (issue 8: ffffffffffffff00.seg made the
			// spool believe it held 1.8e19 records).
			s.log.Warn("spool: a .seg file named beyond every sequence number the spool has used, with no valid record: ignored", "path", sc.path, "bytes", sc.fileSize)
			s.occupied[sc.path] = true
			continue
		}
		if sc.fileSize > 0 {
			s.log.Warn("spool: segment holds no valid record: removed", "path", sc.path, "bytes", sc.fileSize)
		}
		os.Remove(sc.path)
	}

	// The ack. Without a usable one every record is sent again: at least
	// once, never lost.
	records := false
	for _, sc := range ours {
		records = records || sc.count > 0
	}
	s.acked = st.acked
	if !st.present {
		s.acked = 0
		if len(ours) > 0 {
			s.acked = ours[0].first - 1
			for _, sc := range ours[1:] {
				s.acked = min(s.acked, sc.first-1)
			}
		}
		if records {
			s.log.Warn("spool: the acked mark is unusable: every alert in the spool is sent again (at least once; consumers drop duplicates by id)",
				"problem", st.problem, "path", filepath.Join(s.opts.Dir, ackedName))
		}
	}
	s.diskLast = max(s.acked, st.written)
	for _, sc := range ours {
		s.diskLast = max(s.diskLast, sc.last)
	}
	s.next = s.diskLast + 1

	s.account(ours, st)
	s.absorbHoles()

	// Segments wholly acknowledged are finished; the last one is written
	// unless it is finished too.
	for len(ours) > 0 && ours[0].last <= s.acked {
		os.Remove(ours[0].path)
		ours = ours[1:]
	}
	for _, sc := range ours {
		s.segs = append(s.segs, sc.segment)
		s.total += sc.size
	}
	if len(s.segs) > 0 {
		last := &s.segs[len(s.segs)-1]
		sc := ours[len(ours)-1]
		if sc.fileSize > sc.lastEnd {
			// A record torn by a crash, or damage after the last valid
			// record: cut off, so that appends follow valid records.
			if err := os.Truncate(last.path, sc.lastEnd); err != nil {
				return fmt.Errorf("spool: cut the damaged end of %s: %w", last.path, err)
			}
		}
		last.size = sc.lastEnd
		s.total += last.size - sc.size
		w, err := os.OpenFile(last.path, os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.w = w
	} else if err := s.startSegment(s.next); err != nil {
		return err
	}
	s.after = cursor{at: pos{seg: s.segs[0].path}, prev: s.acked, ok: true}
	s.writeState()
	if d := s.depth(); d > 0 {
		s.log.Info("spool recovered undelivered alerts", "alerts", d, "bytes", s.total)
	}
	return nil
}

// account finds the records lost at open: gaps between the valid records
// of the segments, in order, after the ack, and records the acked file says
// were written that are no longer there. They are holes (so the depth is
// right), counted and logged once per segment.
func (s *Spool) account(ours []scan, st state) {
	plausible := s.plausible()
	prev := s.acked
	lost := make([]spans, len(ours))
	var tail spans
	for i, sc := range ours {
		for _, r := range sc.runs {
			if r.b <= prev {
				continue
			}
			a := max(r.a, prev+1)
			if a > prev+1 {
				gap := span{prev + 1, a - 1}
				if gap.b-gap.a+1 > plausible {
					s.holes.add(gap.a, gap.b)
					s.log.Warn("spool: sequence numbers jump: records from elsewhere?", "from", prev, "to", a, "segment", sc.path)
				} else {
					// Blame the segment where the damage is: this one
					// (inside, or at its head), or else the one before
					// (its end, or a segment file gone between them).
					j := i
					if r == sc.runs[0] && !sc.headBad && i > 0 {
						j = i - 1
					}
					lost[j].add(gap.a, gap.b)
				}
			}
			prev = r.b
		}
	}
	if st.written > prev {
		tail.add(prev+1, st.written)
	}
	for i, sc := range ours {
		n := uint64(0)
		for _, x := range lost[i] {
			n += s.holes.add(x.a, x.b)
		}
		s.stats.Corrupt += n
		switch {
		case n == 0 && sc.damaged > 0 && i == len(ours)-1 && !sc.headBad && sc.damaged == sc.fileSize-sc.lastEnd:
			s.log.Warn("spool: cut off bytes at the end of the spool that are not a whole record (a write cut short by a crash, or damage)",
				"segment", sc.path, "bytes", sc.damaged)
		case n > 0 || sc.damaged > 0:
			s.log.Warn("spool: damaged segment: its valid records are delivered, the damaged ones are lost",
				"segment", sc.path, "damaged_bytes", sc.damaged, "records_lost", n, "seqs_lost", lost[i].String())
		}
	}
	if t := tail.total(); t > 0 && t <= plausible {
		for _, x := range tail {
			s.stats.Corrupt += s.holes.add(x.a, x.b)
		}
		where := "the spool is empty"
		if len(ours) > 0 {
			where = ours[len(ours)-1].path
		}
		s.log.Warn("spool: records written before the last stop are gone from the end of the spool (a segment cut short or emptied?)",
			"records_lost", t, "seqs_lost", tail.String(), "last_segment", where)
	} else if t > plausible {
		s.holes.add(prev+1, st.written)
	}
}

// mergeOverlaps merges segments whose records overlap (copies of a
// segment, put back from a backup or a stray copy: each may hold records
// the other lost) into one file, each record once, in order. Overlaps do
// not happen otherwise; reading assumes segments follow each other.
func (s *Spool) mergeOverlaps(scans []scan) []scan {
	var out []scan
	for i := 0; i < len(scans); {
		j := i + 1
		if scans[i].count > 0 {
			end := scans[i].last
			for j < len(scans) && scans[j].count > 0 && scans[j].first <= end {
				end = max(end, scans[j].last)
				j++
			}
		}
		if j == i+1 {
			out = append(out, scans[i])
			i++
			continue
		}
		merged, err := s.merge(scans[i:j])
		if err != nil {
			s.log.Error("spool: segments overlap and could not be merged: read as they are", "err", err)
			out = append(out, scans[i:j]...)
		} else {
			out = append(out, merged)
		}
		i = j
	}
	return out
}

func (s *Spool) merge(group []scan) (scan, error) {
	recs := map[uint64][]byte{}
	var paths []string
	for _, sc := range group {
		paths = append(paths, filepath.Base(sc.path))
		f, err := os.Open(sc.path)
		if err != nil {
			return scan{}, err
		}
		r := segReader{f: f, name: sc.path, size: sc.fileSize}
		for off := int64(0); ; {
			fd, ok, err := r.next(off)
			if err != nil {
				r.close()
				return scan{}, err
			}
			if !ok {
				break
			}
			off = fd.end
			if _, dup := recs[fd.h.seq]; !dup {
				recs[fd.h.seq] = appendRecord(nil, fd.h.seq, fd.h.appended, fd.data)
			}
		}
		r.close()
	}
	seqs := slices.Sorted(maps.Keys(recs))
	var out []byte
	for _, q := range seqs {
		out = append(out, recs[q]...)
	}
	g := segment{name: seqs[0]}
	tmp := filepath.Join(s.opts.Dir, fmt.Sprintf("%016x.seg.merging", g.name))
	if err := writeFileSync(tmp, out); err != nil {
		os.Remove(tmp)
		return scan{}, err
	}
	// The merged file replaces a member, atomically, before the others
	// go: a crash leaves the members, or the merge and some members
	// (merged again at the next start), never less.
	members := map[string]bool{}
	for _, sc := range group {
		members[sc.path] = true
	}
	for {
		g.path = s.segPath(g.name, g.suffix)
		if _, err := os.Lstat(g.path); members[g.path] || errors.Is(err, os.ErrNotExist) {
			break
		}
		g.suffix++
	}
	if err := os.Rename(tmp, g.path); err != nil {
		os.Remove(tmp)
		return scan{}, err
	}
	syncDir(s.opts.Dir)
	for _, sc := range group {
		if sc.path != g.path {
			os.Remove(sc.path)
		}
	}
	s.log.Warn("spool: segments hold the same records (copies?): merged into one, each record once", "segments", strings.Join(paths, " "), "into", filepath.Base(g.path), "records", len(seqs))
	return s.scanV2(g)
}

// scanSegment reads a segment file whole: its valid records, its damage.
// A segment in format 1 is migrated to format 2 first.
func (s *Spool) scanSegment(g segment) (scan, error) {
	sc, err := s.scanV2(g)
	if err != nil || sc.count > 0 || sc.fileSize == 0 {
		return sc, err
	}
	n, err := s.migrate(g)
	if err != nil {
		return sc, err
	}
	if n == 0 {
		return sc, nil
	}
	s.log.Info("spool: segment migrated from format 1", "path", g.path, "records", n)
	return s.scanV2(g)
}

func (s *Spool) scanV2(g segment) (scan, error) {
	f, err := os.Open(g.path)
	if err != nil {
		return scan{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return scan{}, err
	}
	r := segReader{f: f, name: g.path, size: fi.Size()}
	defer r.close()
	sc := scan{segment: g, fileSize: fi.Size()}
	sc.size = sc.fileSize
	prev := uint64(0)
	var off int64
	for {
		fd, ok, err := r.next(off)
		if err != nil {
			return scan{}, err
		}
		if fd.skipped > 0 {
			sc.damaged += fd.skipped
			if sc.count == 0 {
				sc.headBad = true
			}
		}
		if !ok {
			sc.tailBad = fd.skipped > 0
			break
		}
		off = fd.end
		if fd.h.seq <= prev {
			// Older than a record before it: not where it belongs.
			sc.damaged += fd.end - fd.off
			continue
		}
		if sc.count == 0 {
			sc.first = fd.h.seq
		}
		sc.last = fd.h.seq
		sc.count++
		sc.runs.add(fd.h.seq, fd.h.seq)
		sc.lastEnd = fd.end
		prev = fd.h.seq
	}
	return sc, nil
}

// migrate rewrites a format 1 segment in format 2 (same sequence numbers
// and times), atomically: a crash leaves the old file or the new one. It
// returns the records kept; 0 when the file holds no format 1 record.
func (s *Spool) migrate(g segment) (uint64, error) {
	f, err := os.Open(g.path)
	if err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	r := segReader{f: f, name: g.path, size: fi.Size()}
	defer r.close()
	tmp := g.path + ".migrating"
	var out []byte
	var n uint64
	prev := g.name - 1
	var off int64
	for {
		fd, ok, err := r.nextV1(off, g.name, s.plausible())
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		off = fd.end
		if fd.h.seq <= prev {
			continue
		}
		out = appendRecord(out, fd.h.seq, fd.h.appended, fd.data)
		prev = fd.h.seq
		n++
	}
	if n == 0 {
		return 0, nil
	}
	if err := writeFileSync(tmp, out); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, g.path); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	syncDir(s.opts.Dir)
	return n, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkFreeSpace warns when the filesystem cannot hold MaxBytes: the spool
// would fill the disk first (issue 8).
func (s *Spool) checkFreeSpace() {
	var fs unix.Statfs_t
	if err := unix.Statfs(s.opts.Dir, &fs); err != nil {
		return
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	if free+s.total < s.opts.MaxBytes {
		s.log.Warn("spool: the filesystem has less room than spool.max_bytes: when it is full, alerts wait in memory (spool.memory_bytes) and then the oldest are dropped",
			"dir", s.opts.Dir, "free_bytes", free, "spool_bytes", s.total, "max_bytes", s.opts.MaxBytes, "memory_bytes", s.opts.MemoryBytes)
	}
}

// now is the time records are stamped with.
func now() int64 { return time.Now().UnixNano() }
