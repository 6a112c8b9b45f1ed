package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/plcwatch/plcwatch"
)

// ErrTruncatedFile says a capture file ends in the middle of a packet, as
// files copied from a running capture do. Everything before was processed.
var ErrTruncatedFile = errors.New("capture file cut short in the middle of a packet")

// maxSnaplen is the largest packet a file may hold; files that declare a
// smaller snap length than their packets (some writers do) are read anyway,
// as tcpdump and Wireshark read them.
const maxSnaplen = 262144

// ReadFile feeds every packet of a pcap or pcapng file (optionally gzipped,
// for pcap) to e as fast as it can, then ends every connection: requests
// still waiting for a response are emitted as unanswered "eof".
func ReadFile(ctx context.Context, path string, e *Engine) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := Read(ctx, f, e); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Read is ReadFile for any reader.
func Read(ctx context.Context, r io.Reader, e *Engine) error {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("read capture header: %w", err)
	}
	var loop func() error
	if binary.LittleEndian.Uint32(magic) == 0x0A0D0D0A {
		loop, err = ngLoop(br, e)
	} else {
		loop, err = pcapLoop(br, e)
	}
	if err != nil {
		return err
	}
	var n uint64
	for {
		if n&4095 == 0 && ctx.Err() != nil {
			e.Finish(plcwatch.UnansweredEOF)
			return ctx.Err()
		}
		n++
		if err := loop(); err != nil {
			e.Finish(plcwatch.UnansweredEOF)
			switch {
			case errors.Is(err, io.EOF):
				return nil
			case errors.Is(err, io.ErrUnexpectedEOF):
				return ErrTruncatedFile
			}
			return fmt.Errorf("packet %d: %w", e.stats.Packets+1, err)
		}
	}
}

// pcapLoop returns a function that reads and feeds one packet of a classic
// pcap file.
func pcapLoop(br *bufio.Reader, e *Engine) (func() error, error) {
	// gopacket keeps the link type in a byte; read the real one from the
	// file header before it does (LINKTYPE_LINUX_SLL2 is 276). Its low 16
	// bits are the type; the high ones may carry FCS information.
	hdr, err := br.Peek(24)
	if err != nil {
		return nil, fmt.Errorf("read pcap header: %w", err)
	}
	var lt LinkType
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		lt = LinkType(binary.LittleEndian.Uint32(hdr[20:]) & 0xffff)
	default:
		lt = LinkType(binary.BigEndian.Uint32(hdr[20:]) & 0xffff)
	}
	r, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("not a pcap or pcapng file: %w", err)
	}
	if r.Snaplen() < maxSnaplen {
		r.SetSnaplen(maxSnaplen)
	}
	return func() error {
		data, ci, err := r.ZeroCopyReadPacketData()
		if err != nil {
			return err
		}
		e.Packet(data, ci.Timestamp, lt)
		return nil
	}, nil
}

// ngLoop returns a function that reads and feeds one packet of a pcapng
// file, whose interfaces may each have their own link type.
func ngLoop(br *bufio.Reader, e *Engine) (func() error, error) {
	r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
	if err != nil {
		return nil, fmt.Errorf("not a pcapng file: %w", err)
	}
	var types []LinkType // by interface index
	return func() error {
		data, ci, err := r.ZeroCopyReadPacketData()
		if err != nil {
			return err
		}
		i := ci.InterfaceIndex
		for len(types) <= i {
			types = append(types, 0xffffffff)
		}
		if types[i] == 0xffffffff {
			iface, err := r.Interface(i)
			if err != nil {
				return err
			}
			types[i] = ngLinkType(iface.LinkType)
		}
		e.Packet(data, ci.Timestamp, types[i])
		return nil
	}, nil
}

// ngLinkType undoes gopacket's truncation of pcapng link types to a byte for
// the one type above 255 that matters here. LINKTYPE 20 is unassigned, so
// 20 can only be 276 (Linux cooked v2) cut short.
func ngLinkType(lt layers.LinkType) LinkType {
	if lt == layers.LinkType(LinkSLL2&0xff) {
		return LinkSLL2
	}
	return LinkType(lt)
}
