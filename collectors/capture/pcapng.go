package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// pcapng block types (IETF draft-ietf-opsawg-pcapng, section 11.1).
const (
	ngSHB    = 0x0A0D0D0A // Section Header Block
	ngIDB    = 0x00000001 // Interface Description Block
	ngPB     = 0x00000002 // Packet Block (obsolete)
	ngSPB    = 0x00000003 // Simple Packet Block
	ngNRB    = 0x00000004 // Name Resolution Block
	ngISB    = 0x00000005 // Interface Statistics Block
	ngEPB    = 0x00000006 // Enhanced Packet Block
	ngJEB    = 0x00000009 // systemd Journal Export Block
	ngDSB    = 0x0000000A // Decryption Secrets Block
	ngCB     = 0x00000BAD // Custom Block
	ngCBCopy = 0x40000BAD // Custom Block, may be copied
	ngBOM    = 0x1A2B3C4D // byte-order magic
)

// maxBlock is the largest pcapng block read: a packet of maxSnaplen bytes
// with generous room for options. A block that declares more is damaged
// (Wireshark's limit is larger, 16 MiB, but no packet plcwatch decodes
// comes near it); its bytes are skipped, never allocated.
const maxBlock = maxSnaplen + 64<<10

// ngIface is what a packet needs from its Interface Description Block.
type ngIface struct {
	link    LinkType
	snaplen uint32
	// units is the number of timestamp units per second (if_tsresol:
	// 10^n or 2^n); offset is if_tsoffset, in seconds.
	units  uint64
	offset int64
	bad    string // why the interface's packets cannot be read; "" if fine
}

// ngReader reads pcapng (draft-ietf-opsawg-pcapng) block by block, and
// unlike gopacket's pcapgo.NgReader (v1.7.7: one bad block ends the file
// with an error and no offset, and the reader cannot go on) it checks each
// block's framing - the total length at both ends - before using it, so a
// block whose body is damaged is skipped whole and the packets after it
// are still read; a block whose framing is damaged is skipped by scanning
// for the next well-framed block. Every skip is reported with its byte
// offset.
type ngReader struct {
	r      *bufio.Reader
	off    int64 // byte offset of the next block
	order  binary.ByteOrder
	ifaces []ngIface
	inSkip bool // in a section of an unknown major version: skip to the next section
	seen   bool // a Section Header Block was read
	// valid says a section this reader can read (a well-formed header of
	// major version 1) was found; until then firstBad is the first
	// damage met, and a file that ends so is no pcapng file (an error,
	// never "0 packets").
	valid    bool
	firstBad *FileError
	eof      bool // the input ended: what is left is buffered
	skip     func(*FileError)
	// pending is the skip being reported: blocks skipped one after the
	// other for the same reason (every packet of a damaged interface)
	// are one report.
	pending *FileError
}

// newNgReader reads pcapng from r, which must start with a Section Header
// Block. skip is told of every stretch of bytes skipped.
func newNgReader(r *bufio.Reader, skip func(*FileError)) *ngReader {
	return &ngReader{r: r, order: binary.LittleEndian, skip: skip}
}

// blockHeader returns the type and total length of the block at the
// reader's position without consuming it; io.EOF at a clean end,
// io.ErrUnexpectedEOF if the file ends inside the header.
func (n *ngReader) blockHeader() (typ, length uint32, order binary.ByteOrder, err error) {
	h, err := n.r.Peek(8)
	if err != nil {
		if len(h) == 0 && errors.Is(err, io.EOF) {
			return 0, 0, nil, io.EOF
		}
		return 0, 0, nil, io.ErrUnexpectedEOF
	}
	order = n.order
	typ = order.Uint32(h)
	if typ == ngSHB { // the same bytes in either order
		h, err = n.r.Peek(12)
		if err != nil {
			return 0, 0, nil, io.ErrUnexpectedEOF
		}
		switch {
		case binary.LittleEndian.Uint32(h[8:]) == ngBOM:
			order = binary.LittleEndian
		case binary.BigEndian.Uint32(h[8:]) == ngBOM:
			order = binary.BigEndian
		default:
			return typ, 0, nil, badFrame{errors.New("section header with no byte-order magic")}
		}
	}
	return typ, order.Uint32(h[4:]), order, nil
}

// frame checks the framing of the block at the reader's position and
// returns its bytes (valid until the next read) without consuming them.
func (n *ngReader) frame() (typ uint32, blk []byte, order binary.ByteOrder, err error) {
	typ, length, order, err := n.blockHeader()
	if err != nil {
		return 0, nil, nil, err
	}
	if length < 12 || length%4 != 0 || length > maxBlock {
		return typ, nil, nil, badFrame{fmt.Errorf("block type 0x%08x: total length %d is not a multiple of 4 from 12 to %d", typ, length, maxBlock)}
	}
	if n.eof && int(length) > n.r.Buffered() {
		// Known to run past the end: peeking again would slide the
		// buffer at every step of a scan (quadratic on a crafted tail).
		return typ, nil, nil, io.ErrUnexpectedEOF
	}
	blk, err = n.r.Peek(int(length))
	if err != nil {
		if errors.Is(err, io.EOF) {
			n.eof = true // everything left is buffered now
			return typ, nil, nil, io.ErrUnexpectedEOF
		}
		return typ, nil, nil, err
	}
	if tail := order.Uint32(blk[length-4:]); tail != length {
		return typ, nil, nil, badFrame{fmt.Errorf("block type 0x%08x: total length %d at its start, %d at its end", typ, length, tail)}
	}
	return typ, blk, order, nil
}

// badFrame is a block whose framing is damaged: its length cannot be
// trusted to find the next block.
type badFrame struct{ err error }

func (b badFrame) Error() string { return b.err.Error() }

// knownBlock says whether typ is a block type a resynchronising scan may
// take for the start of a block.
func knownBlock(typ uint32) bool {
	switch typ {
	case ngSHB, ngIDB, ngPB, ngSPB, ngNRB, ngISB, ngEPB, ngJEB, ngDSB, ngCB, ngCBCopy:
		return true
	}
	return false
}

// resync skips from a damaged block at the reader's position to the next
// well-framed block of a known type, 4 bytes at a time (blocks are 32-bit
// aligned), and reports the skip. At the end of the file without finding
// one, the damage is the file's end: it returns a truncation error.
func (n *ngReader) resync(why error) error {
	start := n.off
	for {
		if _, err := n.r.Discard(4); err != nil {
			if !n.seen {
				return &FileError{Offset: start, Err: fmt.Errorf("not a pcapng file: no valid section header (%v)", why)}
			}
			return &FileError{Offset: start, Err: fmt.Errorf("%w (%v; no valid block after it)", ErrTruncatedFile, why)}
		}
		n.off += 4
		if h, err := n.r.Peek(4); err == nil {
			if typ := n.order.Uint32(h); !knownBlock(typ) || (!n.seen && typ != ngSHB) {
				continue // not a block start: no need to look at its length
			}
		}
		typ, _, _, err := n.frame()
		if err == nil && knownBlock(typ) && (n.seen || typ == ngSHB) {
			n.report(&FileError{Offset: start, Skipped: n.off - start, Err: why})
			return nil
		}
		if errors.Is(err, io.EOF) {
			if !n.seen {
				return &FileError{Offset: start, Err: fmt.Errorf("not a pcapng file: no valid section header (%v)", why)}
			}
			return &FileError{Offset: start, Err: fmt.Errorf("%w (%v)", ErrTruncatedFile, why)}
		}
	}
}

// noSection is the error of a file that ended before any section header
// this reader can read: the offset and reason of the first damage.
func (n *ngReader) noSection() error {
	fe := &FileError{Err: errors.New("not a pcapng file: no valid section header")}
	if n.firstBad != nil {
		fe = &FileError{Offset: n.firstBad.Offset, Err: fmt.Errorf("not a pcapng file: no valid section header (%v)", n.firstBad.Err)}
	}
	return fe
}

func (n *ngReader) report(fe *FileError) {
	if !n.valid && n.firstBad == nil {
		n.firstBad = &FileError{Offset: fe.Offset, Err: fe.Err}
	}
	if fe.Blocks == 0 {
		fe.Blocks = 1
	}
	if p := n.pending; p != nil {
		if p.Offset+p.Skipped == fe.Offset && p.Err.Error() == fe.Err.Error() {
			p.Skipped += fe.Skipped
			p.Blocks += fe.Blocks
			return
		}
		n.flush()
	}
	n.pending = fe
}

// flush reports the pending skip.
func (n *ngReader) flush() {
	if n.pending != nil && n.skip != nil {
		n.skip(n.pending)
	}
	n.pending = nil
}

// next returns the next packet: its bytes (valid until the next call), its
// time and its interface's link type. io.EOF at the end of the file; a
// *FileError wrapping ErrTruncatedFile if it ends inside a block.
func (n *ngReader) next() ([]byte, time.Time, LinkType, error) {
	data, ts, lt, err := n.read()
	n.flush()
	return data, ts, lt, err
}

func (n *ngReader) read() ([]byte, time.Time, LinkType, error) {
	for {
		typ, blk, order, err := n.frame()
		if err != nil {
			var bad badFrame
			switch {
			case errors.Is(err, io.EOF):
				if !n.valid {
					return nil, time.Time{}, 0, n.noSection()
				}
				return nil, time.Time{}, 0, io.EOF
			case errors.As(err, &bad):
				err = bad.err
			case errors.Is(err, io.ErrUnexpectedEOF):
				// A damaged length can look like a file cut short:
				// only a scan that finds no valid block after it tells.
				err = fmt.Errorf("block type 0x%08x runs past the end of the file", typ)
			default: // the reader failed: no point in scanning
				return nil, time.Time{}, 0, &FileError{Offset: n.off, Err: err}
			}
			if err := n.resync(err); err != nil {
				return nil, time.Time{}, 0, err
			}
			continue
		}
		off := n.off
		if typ == ngSHB {
			n.order = order
		}
		body := blk[8 : len(blk)-4]
		data, ts, lt, ok, berr := n.block(typ, body)
		// The packet's bytes stay in the bufio buffer until the next
		// read: consume the block after taking what is needed.
		if berr != nil {
			_, _ = n.r.Discard(len(blk))
			n.off += int64(len(blk))
			n.report(&FileError{Offset: off, Skipped: int64(len(blk)), Err: berr})
			continue
		}
		if ok {
			// Discarding invalidates nothing already returned by Peek
			// until the buffer is refilled, which happens on the next
			// Peek: data is valid until the next call, as promised.
			_, _ = n.r.Discard(len(blk))
			n.off += int64(len(blk))
			return data, ts, lt, nil
		}
		_, _ = n.r.Discard(len(blk))
		n.off += int64(len(blk))
	}
}

// block reads one well-framed block's body. ok says it is a packet to
// return; err says the block is damaged (it is then skipped).
func (n *ngReader) block(typ uint32, body []byte) (data []byte, ts time.Time, lt LinkType, ok bool, err error) {
	o := n.order
	if typ == ngSHB {
		if len(body) < 16 {
			return nil, ts, 0, false, errors.New("section header shorter than 28 bytes")
		}
		n.seen = true
		n.ifaces = n.ifaces[:0]
		// A reader must skip a section of another major version
		// (draft-ietf-opsawg-pcapng 4.1); minor versions are compatible.
		major := o.Uint16(body[4:])
		n.inSkip = major != 1
		if n.inSkip {
			return nil, ts, 0, false, fmt.Errorf("section of pcapng version %d.%d skipped", major, o.Uint16(body[6:]))
		}
		n.valid = true
		return nil, ts, 0, false, nil
	}
	if !n.seen {
		return nil, ts, 0, false, fmt.Errorf("block type 0x%08x before any section header", typ)
	}
	if n.inSkip {
		return nil, ts, 0, false, nil
	}
	switch typ {
	case ngIDB:
		if len(body) < 8 {
			n.ifaces = append(n.ifaces, ngIface{bad: "its description block is too short"})
			return nil, ts, 0, false, errors.New("interface description shorter than 20 bytes")
		}
		iface := ngIface{link: LinkType(o.Uint16(body)), snaplen: o.Uint32(body[4:]), units: 1e6}
		err := n.options(body[8:], func(code uint16, v []byte) error {
			switch code {
			case 9: // if_tsresol
				if len(v) < 1 {
					return errors.New("if_tsresol is empty")
				}
				exp := uint64(v[0] & 0x7f)
				if v[0]&0x80 != 0 {
					if exp > 63 {
						return fmt.Errorf("if_tsresol 0x%02x: 2^-%d seconds does not fit 64 bits", v[0], exp)
					}
					iface.units = 1 << exp
					return nil
				}
				if exp > 19 {
					return fmt.Errorf("if_tsresol 0x%02x: 10^-%d seconds does not fit 64 bits", v[0], exp)
				}
				iface.units = 1
				for range exp {
					iface.units *= 10
				}
			case 14: // if_tsoffset
				if len(v) < 8 {
					return errors.New("if_tsoffset shorter than 8 bytes")
				}
				iface.offset = int64(o.Uint64(v))
			}
			return nil
		})
		if err != nil {
			// Keep its place: the packets that name this interface
			// by index must not be taken for another's.
			iface.bad = err.Error()
			n.ifaces = append(n.ifaces, iface)
			return nil, ts, 0, false, fmt.Errorf("interface %d: %w; its packets are skipped", len(n.ifaces)-1, err)
		}
		n.ifaces = append(n.ifaces, iface)
		return nil, ts, 0, false, nil
	case ngEPB, ngPB:
		if len(body) < 20 {
			return nil, ts, 0, false, errors.New("packet block shorter than 32 bytes")
		}
		var id uint32
		if typ == ngEPB {
			id = o.Uint32(body)
		} else {
			id = uint32(o.Uint16(body))
		}
		capLen := o.Uint32(body[12:])
		if uint64(capLen) > uint64(len(body)-20) {
			return nil, ts, 0, false, fmt.Errorf("captured length %d is longer than its block", capLen)
		}
		iface, err := n.iface(id)
		if err != nil {
			return nil, ts, 0, false, err
		}
		raw := uint64(o.Uint32(body[4:]))<<32 | uint64(o.Uint32(body[8:]))
		return body[20 : 20+capLen], iface.time(raw), iface.link, true, nil
	case ngSPB:
		if len(body) < 4 {
			return nil, ts, 0, false, errors.New("simple packet block shorter than 16 bytes")
		}
		iface, err := n.iface(0)
		if err != nil {
			return nil, ts, 0, false, err
		}
		// The captured length is the original one cut to the snap
		// length, and to the block.
		capLen := uint64(o.Uint32(body))
		if iface.snaplen != 0 && capLen > uint64(iface.snaplen) {
			capLen = uint64(iface.snaplen)
		}
		if capLen > uint64(len(body)-4) {
			capLen = uint64(len(body) - 4)
		}
		return body[4 : 4+capLen], time.Time{}, iface.link, true, nil
	}
	return nil, ts, 0, false, nil // statistics, names, secrets, custom: not needed
}

// iface returns the interface a packet names, or why its packet is skipped.
func (n *ngReader) iface(id uint32) (*ngIface, error) {
	if uint64(id) >= uint64(len(n.ifaces)) {
		return nil, fmt.Errorf("packet on interface %d, but the section describes %d", id, len(n.ifaces))
	}
	iface := &n.ifaces[id]
	if iface.bad != "" {
		return nil, fmt.Errorf("packet on interface %d, whose description is damaged (%s)", id, iface.bad)
	}
	return iface, nil
}

// time turns a raw timestamp in the interface's units into a time.
// Timestamps beyond what time.Time holds from the Unix epoch are clamped.
func (i *ngIface) time(raw uint64) time.Time {
	sec := raw / i.units
	frac := raw % i.units
	// frac < units <= 2^63: scale it to nanoseconds without overflow.
	var nsec uint64
	if i.units <= 1e9 {
		nsec = frac * 1e9 / i.units // < 1e18: no overflow
	} else {
		nsec = uint64(float64(frac) * (1e9 / float64(i.units)))
	}
	if sec > math.MaxInt64/2 {
		sec = math.MaxInt64 / 2
	}
	return time.Unix(int64(sec)+i.offset, int64(nsec)).UTC()
}

// options walks a block's options (code, length, value padded to 32 bits)
// until opt_endofopt or the end of the body; f's error makes the block bad.
func (n *ngReader) options(b []byte, f func(code uint16, v []byte) error) error {
	o := n.order
	for len(b) >= 4 {
		code, l := o.Uint16(b), int(o.Uint16(b[2:]))
		if code == 0 {
			return nil
		}
		b = b[4:]
		if l > len(b) {
			return fmt.Errorf("option %d: length %d runs past its block", code, l)
		}
		if err := f(code, b[:l]); err != nil {
			return err
		}
		pad := (l + 3) &^ 3
		if pad > len(b) {
			pad = len(b)
		}
		b = b[pad:]
	}
	return nil
}
