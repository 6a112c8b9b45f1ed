package capture

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/plcwatch/plcwatch"
)

// ErrTruncatedFile says a capture file ends in the middle of a packet (or
// a pcapng block), as files copied from a running capture do. Everything
// before was processed. It comes wrapped in a *FileError with the offset.
var ErrTruncatedFile = errors.New("capture file cut short in the middle of a packet")

// maxSnaplen is the largest packet a file may hold, whatever its header
// declares (pcapng blocks are bounded by it too: maxBlock); files that
// declare a smaller snap length than their packets (some writers do) are
// read anyway, as tcpdump and Wireshark read them.
const maxSnaplen = 262144

// FileError is a damaged stretch of a capture file. Offset counts bytes
// from the start of the file (of the decompressed stream, for a gzipped
// file). Skipped > 0 says reading went on after Skipped bytes; 0 says
// reading stopped there.
type FileError struct {
	Offset  int64
	Skipped int64
	Blocks  int // pcapng blocks skipped (consecutive ones for one reason are one FileError); 0 for a scanned stretch
	Err     error
}

func (e *FileError) Error() string {
	switch {
	case e.Skipped > 0 && e.Blocks > 1:
		return fmt.Sprintf("byte offset %d: skipped %d bytes (%d blocks): %v", e.Offset, e.Skipped, e.Blocks, e.Err)
	case e.Skipped > 0:
		return fmt.Sprintf("byte offset %d: skipped %d bytes: %v", e.Offset, e.Skipped, e.Err)
	}
	return fmt.Sprintf("byte offset %d: %v", e.Offset, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// ReadOptions tune Read.
type ReadOptions struct {
	// Skipped is told of every damaged stretch of the file that was
	// skipped, reading going on after it (pcapng only: its blocks carry
	// their length at both ends, classic pcap records do not). nil: not
	// told.
	Skipped func(*FileError)
}

// ReadFile feeds every packet of a pcap or pcapng file (optionally
// gzipped) to e as fast as it can, then ends every connection: requests
// still waiting for a response are emitted as unanswered "eof". path "-"
// is standard input, read as it arrives.
func ReadFile(ctx context.Context, path string, e *Engine) error {
	return ReadFileWith(ctx, path, e, ReadOptions{})
}

// ReadFileWith is ReadFile with options.
func ReadFileWith(ctx context.Context, path string, e *Engine, opts ReadOptions) error {
	if path == "-" {
		if err := ReadWith(ctx, ContextReader(ctx, os.Stdin), e, opts); err != nil {
			return fmt.Errorf("standard input: %w", err)
		}
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := ReadWith(ctx, f, e, opts); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Read is ReadFile for any reader.
func Read(ctx context.Context, r io.Reader, e *Engine) error {
	return ReadWith(ctx, r, e, ReadOptions{})
}

// ReadWith is Read with options. The reader is read as it delivers: a
// pipe's packets are decoded (and their events emitted) as they arrive,
// never seeking. Errors: a *FileError with the byte offset for a damaged
// file (errors.Is(err, ErrTruncatedFile) for one cut short); ctx.Err() if
// ctx ends first. No input makes it panic.
func ReadWith(ctx context.Context, r io.Reader, e *Engine, opts ReadOptions) error {
	br := bufio.NewReaderSize(r, 1<<20) // > maxBlock: a pcapng block is peeked whole
	magic, err := br.Peek(4)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case len(magic) == 0 && errors.Is(err, io.EOF):
			return &FileError{Err: errors.New("empty file: not a pcap or pcapng capture")}
		case errors.Is(err, io.EOF):
			// Shorter than a magic number: said as for any file shorter
			// than a header, not as "EOF".
			return &FileError{Err: fmt.Errorf("not a pcap or pcapng file: %d bytes, a pcap header has 24", len(magic))}
		}
		return &FileError{Err: fmt.Errorf("read capture header: %w", err)}
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return &FileError{Err: fmt.Errorf("gzip: %w", err)}
		}
		br = bufio.NewReaderSize(zr, 1<<20)
		if magic, err = br.Peek(4); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return &FileError{Err: fmt.Errorf("gzip: not a pcap or pcapng file inside: %d bytes, a pcap header has 24", len(magic))}
			}
			return &FileError{Err: fmt.Errorf("read capture header: %w", err)}
		}
	}
	var next func() ([]byte, time.Time, LinkType, error)
	if binary.LittleEndian.Uint32(magic) == ngSHB {
		next = newNgReader(br, opts.Skipped).next
	} else {
		pr, err := newPcapReader(br)
		if err != nil {
			return err
		}
		next = pr.next
	}
	for n := uint64(0); ; n++ {
		if n&4095 == 0 && ctx.Err() != nil {
			e.Finish(plcwatch.UnansweredEOF)
			return ctx.Err()
		}
		data, ts, lt, err := next()
		if err != nil {
			e.Finish(plcwatch.UnansweredEOF)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		e.Packet(data, ts, lt)
	}
}

// pcapReader reads classic pcap through gopacket's pcapgo.Reader, keeping
// the byte offset of each record for errors.
type pcapReader struct {
	r   *pcapgo.Reader
	lt  LinkType
	off int64 // of the next record
}

func newPcapReader(br *bufio.Reader) (*pcapReader, error) {
	// gopacket keeps the link type in a 16-bit value; read the real one
	// from the file header (LINKTYPE_LINUX_SLL2 is 276). Its low 16 bits
	// are the type; the high ones may carry FCS information.
	hdr, err := br.Peek(24)
	if err != nil {
		return nil, &FileError{Err: fmt.Errorf("not a pcap or pcapng file: %d bytes, a pcap header has 24", len(hdr))}
	}
	var lt LinkType
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		lt = LinkType(binary.LittleEndian.Uint32(hdr[20:]) & 0xffff)
	case 0xd4c3b2a1, 0x4d3cb2a1:
		lt = LinkType(binary.BigEndian.Uint32(hdr[20:]) & 0xffff)
	default:
		return nil, &FileError{Err: fmt.Errorf("not a pcap or pcapng file: magic number %x", hdr[:4])}
	}
	r, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, &FileError{Err: fmt.Errorf("pcap header: %w", err)}
	}
	// Records are bounded by maxSnaplen whatever the header declares: one
	// declaring a snap length of 4 GiB must not let a record claim 4 GiB
	// (pcapgo reads records up to the snap length). Smaller declared snap
	// lengths are raised to it: some writers write more than they declare.
	r.SetSnaplen(maxSnaplen)
	return &pcapReader{r: r, lt: lt, off: 24}, nil
}

func (p *pcapReader) next() ([]byte, time.Time, LinkType, error) {
	data, ci, err := p.r.ZeroCopyReadPacketData()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return nil, time.Time{}, 0, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = ErrTruncatedFile
		}
		// A classic pcap record has no marker to find the next one by:
		// reading stops at the first bad record, as in tcpdump.
		return nil, time.Time{}, 0, &FileError{Offset: p.off, Err: err}
	}
	p.off += 16 + int64(len(data))
	return data, ci.Timestamp, p.lt, nil
}

// ContextReader returns a reader of r whose Read returns ctx.Err() as soon
// as ctx ends, even while a read of r is blocked: for standard input,
// where a read of a quiet pipe waits until the writer writes or hangs up
// and closing os.Stdin does not end it (a blocking fd is not in Go's
// poller), so that Ctrl-C stops a replay at once. Nothing may read r
// after ctx ends (a read may still be in flight).
func ContextReader(ctx context.Context, r io.Reader) io.Reader {
	return &ctxReader{ctx: ctx, r: r}
}

// ctxReader reads r, returning ctx.Err() as soon as ctx ends even while a
// read of r is blocked. The blocked read goes on in its goroutine (it
// owns buf; nothing reads r after ctx ends); it ends when r does.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	buf  []byte
	res  chan ctxRead
	dead bool // ctx ended with a read in flight
}

type ctxRead struct {
	n   int
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.dead || c.ctx.Err() != nil {
		return 0, c.ctx.Err()
	}
	if c.res == nil {
		c.res = make(chan ctxRead, 1)
	}
	if len(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	go func() {
		n, err := c.r.Read(buf)
		c.res <- ctxRead{n, err}
	}()
	select {
	case r := <-c.res:
		return copy(p, buf[:r.n]), r.err
	case <-c.ctx.Done():
		c.dead = true
		return 0, c.ctx.Err()
	}
}
