package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
)

// Record framing, format 2. Every record can be found again from any byte
// of a damaged file: it starts with a marker, and its checksum covers its
// header as well as its data, so a scan that lands on garbage that happens
// to start with the marker rejects it (one chance in 2^32).
//
//	offset size
//	0      4    magic "\xffPWS" (0xFF never occurs in UTF-8 text: never in an alert's topic or JSON)
//	4      4    length of data, big-endian, at most MaxRecord
//	8      8    sequence number, big-endian, at most maxSeq
//	16     8    when it was appended, Unix nanoseconds, big-endian
//	24     4    CRC-32C (Castagnoli) of bytes 0-23 and the data
//	28     -    data
const (
	magic     = "\xffPWS"
	headerLen = 28
)

// Format 1 (plcwatch before the framing above) had no marker and a checksum
// of the data only:
//
//	length uint32 | crc32c(data) uint32 | seq uint64 | appended int64 | data
//
// Segments in it are rewritten in format 2 when the spool opens.
const headerLenV1 = 24

// maxSeq bounds sequence numbers: a record or segment name beyond it is not
// ours (a stray file named ffffffffffffff00.seg must not make the spool
// believe it holds 2^64 records).
const maxSeq = 1 << 62

// Plausible times of format 1 records (2001 to 2200), in Unix nanoseconds.
const (
	minTime = 978307200 * int64(1e9)
	maxTime = 7258118400 * int64(1e9)
)

// MaxRecord bounds one record's data.
const MaxRecord = 1 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends a format 2 record to b.
func appendRecord(b []byte, seq uint64, appended int64, data []byte) []byte {
	start := len(b)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(appended))
	crc := crc32.Update(0, crcTable, b[start:start+24])
	crc = crc32.Update(crc, crcTable, data)
	b = binary.BigEndian.AppendUint32(b, crc)
	return append(b, data...)
}

// header is a record's header as found on disk.
type header struct {
	n        int // data bytes
	seq      uint64
	appended int64
}

// parseHeader reads a format 2 header from h (headerLen bytes) without
// checking the checksum; ok is false when it cannot start a record.
func parseHeader(h []byte) (header, bool) {
	if string(h[:4]) != magic {
		return header{}, false
	}
	n := binary.BigEndian.Uint32(h[4:])
	seq := binary.BigEndian.Uint64(h[8:])
	if n > MaxRecord || seq == 0 || seq > maxSeq {
		return header{}, false
	}
	return header{n: int(n), seq: seq, appended: int64(binary.BigEndian.Uint64(h[16:]))}, true
}

// checksumOK checks the CRC of a whole record (header and data).
func checksumOK(rec []byte) bool {
	crc := crc32.Update(0, crcTable, rec[:24])
	crc = crc32.Update(crc, crcTable, rec[headerLen:])
	return crc == binary.BigEndian.Uint32(rec[24:])
}

// segReader reads one segment file through a window, so that a scan reads
// the file in large pieces rather than a system call per header.
type segReader struct {
	f      *os.File
	name   string // the file's path, while open
	size   int64  // bytes that may be read (the valid extent of the file)
	buf    []byte
	bufOff int64
	bufLen int
}

const readChunk = 256 << 10

// open points the reader at path, reusing the open file when it is the
// same one.
func (r *segReader) open(path string, size int64) error {
	r.size = size
	if r.f != nil && r.name == path {
		return nil
	}
	r.close()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	r.f, r.name = f, path
	return nil
}

func (r *segReader) close() {
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.name, r.bufLen = nil, "", 0
}

// window returns up to n bytes at off (fewer at the end of the valid
// extent). The slice is valid until the next call.
func (r *segReader) window(off int64, n int) ([]byte, error) {
	if off >= r.size {
		return nil, nil
	}
	n = int(min(int64(n), r.size-off))
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(r.bufLen) {
		i := int(off - r.bufOff)
		return r.buf[i : i+n], nil
	}
	want := int(min(int64(max(n, readChunk)), r.size-off))
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got, err := r.f.ReadAt(r.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		r.bufLen = 0
		return nil, err
	}
	r.bufOff, r.bufLen = off, got
	return r.buf[:min(n, got)], nil
}

// found is what next found at an offset.
type found struct {
	off     int64 // where the record starts
	end     int64 // where the next one may start
	h       header
	data    []byte // valid until the next read
	skipped int64  // damaged bytes passed over before it
}

// next returns the first valid record at or after off, passing over damage
// (bytes that do not form a valid record) by searching for the next
// marker. ok is false when the segment holds no more valid record; skipped
// then counts the damaged bytes at its end.
func (r *segReader) next(off int64) (fd found, ok bool, err error) {
	start := off
	for off < r.size {
		w, err := r.window(off, headerLen)
		if err != nil {
			return found{}, false, err
		}
		if len(w) == headerLen {
			if h, hok := parseHeader(w); hok && off+headerLen+int64(h.n) <= r.size {
				rec, err := r.window(off, headerLen+h.n)
				if err != nil {
					return found{}, false, err
				}
				if len(rec) == headerLen+h.n && checksumOK(rec) {
					return found{off: off, end: off + int64(len(rec)), h: h, data: rec[headerLen:], skipped: off - start}, true, nil
				}
			}
		}
		if off, err = r.findMagic(off + 1); err != nil {
			return found{}, false, err
		}
	}
	return found{skipped: r.size - start}, false, nil
}

// findMagic returns the offset of the next marker at or after off, or the
// end of the valid extent.
func (r *segReader) findMagic(off int64) (int64, error) {
	for off < r.size {
		w, err := r.window(off, readChunk)
		if err != nil {
			return 0, err
		}
		if i := bytes.Index(w, []byte(magic)); i >= 0 {
			return off + int64(i), nil
		}
		if int64(len(w)) < int64(len(magic)) || off+int64(len(w)) >= r.size {
			return r.size, nil
		}
		// A marker may straddle the window's end.
		off += int64(len(w)) - int64(len(magic)-1)
	}
	return r.size, nil
}

// nextV1 is next for a format 1 segment. Format 1 has no marker: after
// damage it tries every offset for a header whose sequence number lies
// where this segment's records can be (from..from+span) and whose data
// checksum holds.
func (r *segReader) nextV1(off int64, from, span uint64) (fd found, ok bool, err error) {
	start := off
	for ; off+headerLenV1 <= r.size; off++ {
		w, err := r.window(off, headerLenV1)
		if err != nil {
			return found{}, false, err
		}
		n := binary.BigEndian.Uint32(w)
		seq := binary.BigEndian.Uint64(w[8:])
		appended := int64(binary.BigEndian.Uint64(w[16:]))
		// Format 1 records always held data (a topic, a NUL, the
		// alert), their time is a real one, and a record's number is
		// at most one more than the records that fit before it: without
		// a marker these keep zeros and text from passing as a record
		// (an empty record's checksum is 0).
		if n == 0 || n > MaxRecord || seq < from || seq-from > span || seq-from > uint64(off/headerLenV1) ||
			seq > maxSeq || off+headerLenV1+int64(n) > r.size || appended < minTime || appended > maxTime {
			continue
		}
		crc := binary.BigEndian.Uint32(w[4:])
		rec, err := r.window(off, headerLenV1+int(n))
		if err != nil {
			return found{}, false, err
		}
		if len(rec) != headerLenV1+int(n) || crc32.Checksum(rec[headerLenV1:], crcTable) != crc {
			continue
		}
		return found{off: off, end: off + int64(len(rec)), h: header{n: int(n), seq: seq, appended: appended},
			data: rec[headerLenV1:], skipped: off - start}, true, nil
	}
	return found{skipped: r.size - start}, false, nil
}
