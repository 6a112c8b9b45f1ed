// Package pcapgen writes synthetic TCP captures: pcap or pcapng, over
// Ethernet (optionally VLAN-tagged), Linux cooked v1/v2, raw IP or BSD
// loopback framing, IPv4 or IPv6, with full control over segmentation,
// retransmission and ordering. Integrators use it to make test traffic;
// plcwatch's own tests and benchmark data are written with it.
//
// Checksums are correct, so the captures can also be replayed onto an
// interface (tcpreplay) for live tests.
package pcapgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Link is the framing written around each IP packet.
type Link int

const (
	Ethernet     Link = iota // LINKTYPE_ETHERNET
	EthernetVLAN             // Ethernet with one 802.1Q tag
	EthernetQinQ             // Ethernet with an 802.1ad and an 802.1Q tag
	SLL                      // LINKTYPE_LINUX_SLL
	SLL2                     // LINKTYPE_LINUX_SLL2
	Raw                      // LINKTYPE_RAW
	Null                     // LINKTYPE_NULL, little-endian address family
)

func (l Link) linkType() uint32 {
	switch l {
	case SLL:
		return 113
	case SLL2:
		return 276
	case Raw:
		return 101
	case Null:
		return 0
	}
	return 1
}

// Options choose the file format and framing.
type Options struct {
	Link    Link
	PCAPNG  bool
	Snaplen int // cut packets to this length (0: never)
}

// Writer writes packets to a capture file. It buffers: call Flush.
type Writer struct {
	w    *bufio.Writer
	opts Options
	buf  []byte
	err  error
}

// NewWriter writes the file header and returns a Writer.
func NewWriter(w io.Writer, opts Options) (*Writer, error) {
	pw := &Writer{w: bufio.NewWriterSize(w, 1<<20), opts: opts, buf: make([]byte, 0, 2048)}
	if opts.PCAPNG {
		pw.ngHeader()
	} else {
		var h [24]byte
		binary.LittleEndian.PutUint32(h[0:], 0xa1b23c4d) // nanosecond resolution
		binary.LittleEndian.PutUint16(h[4:], 2)
		binary.LittleEndian.PutUint16(h[6:], 4)
		binary.LittleEndian.PutUint32(h[16:], 262144)
		binary.LittleEndian.PutUint32(h[20:], opts.Link.linkType())
		pw.w.Write(h[:])
	}
	return pw, nil
}

// Flush writes what is buffered and returns the first error met.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) ngHeader() {
	// Section header block, then one interface description block.
	shb := make([]byte, 28)
	binary.LittleEndian.PutUint32(shb[0:], 0x0A0D0D0A)
	binary.LittleEndian.PutUint32(shb[4:], 28)
	binary.LittleEndian.PutUint32(shb[8:], 0x1A2B3C4D)
	binary.LittleEndian.PutUint16(shb[12:], 1)
	binary.LittleEndian.PutUint64(shb[16:], ^uint64(0))
	binary.LittleEndian.PutUint32(shb[24:], 28)
	w.w.Write(shb)
	// IDB with if_tsresol = 9 (nanoseconds).
	idb := make([]byte, 32)
	binary.LittleEndian.PutUint32(idb[0:], 1)
	binary.LittleEndian.PutUint32(idb[4:], 32)
	binary.LittleEndian.PutUint16(idb[8:], uint16(w.opts.Link.linkType()))
	binary.LittleEndian.PutUint32(idb[12:], 262144)
	binary.LittleEndian.PutUint16(idb[16:], 9) // if_tsresol
	binary.LittleEndian.PutUint16(idb[18:], 1)
	idb[20] = 9
	// idb[24:28] opt_endofopt
	binary.LittleEndian.PutUint32(idb[28:], 32)
	w.w.Write(idb)
}

// Packet writes one IP packet (IPv4 or IPv6) with the writer's framing.
func (w *Writer) Packet(ts time.Time, ip []byte) {
	frame := w.frame(ip)
	orig := len(frame)
	if w.opts.Snaplen > 0 && len(frame) > w.opts.Snaplen {
		frame = frame[:w.opts.Snaplen]
	}
	ns := uint64(ts.UnixNano())
	if w.opts.PCAPNG {
		pad := (4 - len(frame)%4) % 4
		total := 32 + len(frame) + pad
		var h [28]byte
		binary.LittleEndian.PutUint32(h[0:], 6)
		binary.LittleEndian.PutUint32(h[4:], uint32(total))
		binary.LittleEndian.PutUint32(h[12:], uint32(ns>>32))
		binary.LittleEndian.PutUint32(h[16:], uint32(ns))
		binary.LittleEndian.PutUint32(h[20:], uint32(len(frame)))
		binary.LittleEndian.PutUint32(h[24:], uint32(orig))
		w.w.Write(h[:])
		w.w.Write(frame)
		w.w.Write(make([]byte, pad))
		var t [4]byte
		binary.LittleEndian.PutUint32(t[:], uint32(total))
		w.w.Write(t[:])
		return
	}
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(ns/1e9))
	binary.LittleEndian.PutUint32(h[4:], uint32(ns%1e9))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(frame)))
	binary.LittleEndian.PutUint32(h[12:], uint32(orig))
	w.w.Write(h[:])
	if _, err := w.w.Write(frame); err != nil && w.err == nil {
		w.err = err
	}
}

var (
	clientMAC = []byte{0x02, 0, 0, 0, 0, 0x01}
	serverMAC = []byte{0x02, 0, 0, 0, 0, 0x02}
)

// frame puts the link header in front of ip, in w.buf.
func (w *Writer) frame(ip []byte) []byte {
	v6 := ip[0]>>4 == 6
	etype := uint16(0x0800)
	if v6 {
		etype = 0x86dd
	}
	b := w.buf[:0]
	switch w.opts.Link {
	case Ethernet, EthernetVLAN, EthernetQinQ:
		b = append(b, serverMAC...)
		b = append(b, clientMAC...)
		if w.opts.Link == EthernetQinQ {
			b = binary.BigEndian.AppendUint16(b, 0x88a8)
			b = binary.BigEndian.AppendUint16(b, 100)
		}
		if w.opts.Link != Ethernet {
			b = binary.BigEndian.AppendUint16(b, 0x8100)
			b = binary.BigEndian.AppendUint16(b, 42)
		}
		b = binary.BigEndian.AppendUint16(b, etype)
	case SLL:
		b = binary.BigEndian.AppendUint16(b, 0) // to us
		b = binary.BigEndian.AppendUint16(b, 1) // ARPHRD_ETHER
		b = binary.BigEndian.AppendUint16(b, 6)
		b = append(b, clientMAC...)
		b = append(b, 0, 0)
		b = binary.BigEndian.AppendUint16(b, etype)
	case SLL2:
		b = binary.BigEndian.AppendUint16(b, etype)
		b = append(b, 0, 0)
		b = binary.BigEndian.AppendUint32(b, 2) // ifindex
		b = binary.BigEndian.AppendUint16(b, 1) // ARPHRD_ETHER
		b = append(b, 0, 6)
		b = append(b, clientMAC...)
		b = append(b, 0, 0)
	case Null:
		fam := uint32(2)
		if v6 {
			fam = 30
		}
		b = binary.LittleEndian.AppendUint32(b, fam)
	}
	b = append(b, ip...)
	w.buf = b
	return b
}

// Flags of a TCP segment.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// Dir is a direction of a connection.
type Dir int

const (
	ToServer Dir = 0
	ToClient Dir = 1
)

// Conn writes the segments of one TCP connection.
type Conn struct {
	w      *Writer
	ends   [2]netip.AddrPort // sender for each direction
	next   [2]uint32         // next sequence number per direction
	Time   time.Time         // timestamp of the next segment
	Step   time.Duration     // added to Time after each segment
	ip     []byte
	ipID   uint16
	Window uint16
}

// Conn starts a connection at time t. Its sequence numbers start at isn
// (client) and isn+0x10000000 (server), so that tests can see wrap-around
// by choosing isn near 2^32.
func (w *Writer) Conn(client, server netip.AddrPort, t time.Time, isn uint32) *Conn {
	return &Conn{
		w: w, ends: [2]netip.AddrPort{client, server},
		next: [2]uint32{isn, isn + 0x10000000},
		Time: t, Step: 100 * time.Microsecond, Window: 64240,
		ip: make([]byte, 0, 2048),
	}
}

// Next returns the next sequence number of dir.
func (c *Conn) Next(d Dir) uint32 { return c.next[d] }

// Advance moves dir's sequence on by n bytes without writing anything: the
// bytes were sent, the capture did not see them (or saw them out of order).
func (c *Conn) Advance(d Dir, n int) { c.next[d] += uint32(n) }

// Handshake writes SYN, SYN-ACK, ACK.
func (c *Conn) Handshake() {
	c.Segment(ToServer, c.next[0], SYN, nil)
	c.next[0]++
	c.Segment(ToClient, c.next[1], SYN|ACK, nil)
	c.next[1]++
	c.Segment(ToServer, c.next[0], ACK, nil)
}

// Send writes payload as one segment and advances the sequence.
func (c *Conn) Send(d Dir, payload []byte) {
	c.Segment(d, c.next[d], PSH|ACK, payload)
	c.next[d] += uint32(len(payload))
}

// SendSplit writes payload as segments cut at the given offsets (increasing,
// within payload).
func (c *Conn) SendSplit(d Dir, payload []byte, cuts ...int) {
	prev := 0
	for _, cut := range append(cuts, len(payload)) {
		c.Send(d, payload[prev:cut])
		prev = cut
	}
}

// Close writes FIN-ACK both ways and the last ACK.
func (c *Conn) Close() {
	c.Segment(ToServer, c.next[0], FIN|ACK, nil)
	c.next[0]++
	c.Segment(ToClient, c.next[1], FIN|ACK, nil)
	c.next[1]++
	c.Segment(ToServer, c.next[0], ACK, nil)
}

// Segment writes one TCP segment with any sequence number and flags; it does
// not advance the connection's sequence (Send does). The ACK field is the
// other direction's next sequence number.
func (c *Conn) Segment(d Dir, seq uint32, flags uint8, payload []byte) {
	src, dst := c.ends[d], c.ends[1-d]
	ack := uint32(0)
	if flags&ACK != 0 {
		ack = c.next[1-d]
	}
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], c.Window)
	tcp = append(tcp, payload...)
	ip := c.ip[:0]
	c.ipID++
	if src.Addr().Is4() {
		ip = append(ip, 0x45, 0)
		ip = binary.BigEndian.AppendUint16(ip, uint16(20+len(tcp)))
		ip = binary.BigEndian.AppendUint16(ip, c.ipID)
		ip = append(ip, 0x40, 0, 64, 6, 0, 0) // DF, TTL 64, TCP, checksum
		a, b := src.Addr().As4(), dst.Addr().As4()
		ip = append(ip, a[:]...)
		ip = append(ip, b[:]...)
		binary.BigEndian.PutUint16(ip[10:], checksum(ip[:20], 0))
		pseudo := sum(a[:], 0) + sum(b[:], 0) + 6 + uint32(len(tcp))
		binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
	} else {
		ip = append(ip, 0x60, 0, 0, 0)
		ip = binary.BigEndian.AppendUint16(ip, uint16(len(tcp)))
		ip = append(ip, 6, 64)
		a, b := src.Addr().As16(), dst.Addr().As16()
		ip = append(ip, a[:]...)
		ip = append(ip, b[:]...)
		pseudo := sum(a[:], 0) + sum(b[:], 0) + 6 + uint32(len(tcp))
		binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
	}
	ip = append(ip, tcp...)
	c.ip = ip
	c.w.Packet(c.Time, ip)
	c.Time = c.Time.Add(c.Step)
}

func sum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func checksum(b []byte, initial uint32) uint16 {
	s := sum(b, initial)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// MBAP prepends a Modbus/TCP header to pdu.
func MBAP(tid uint16, unit uint8, pdu ...byte) []byte {
	b := make([]byte, 7, 7+len(pdu))
	binary.BigEndian.PutUint16(b[0:], tid)
	binary.BigEndian.PutUint16(b[4:], uint16(len(pdu)+1))
	b[6] = unit
	return append(b, pdu...)
}

// String names a link for test names.
func (l Link) String() string {
	switch l {
	case Ethernet:
		return "ethernet"
	case EthernetVLAN:
		return "vlan"
	case EthernetQinQ:
		return "qinq"
	case SLL:
		return "sll"
	case SLL2:
		return "sll2"
	case Raw:
		return "raw"
	case Null:
		return "null"
	}
	return fmt.Sprintf("link%d", int(l))
}
