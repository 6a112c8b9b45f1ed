package capture

import (
	"cmp"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/modbustcp"
	"github.com/plcwatch/plcwatch/collectors/capture/opcua"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// LinkType is a pcap LINKTYPE_ value. gopacket v1.1.19's layers.LinkType is
// a byte and cannot hold LINKTYPE_LINUX_SLL2 (276), so capture keeps its own.
type LinkType uint32

// The link types the engine decodes.
const (
	LinkNull     LinkType = 0   // BSD loopback, host byte order family
	LinkEthernet LinkType = 1   // Ethernet, with 802.1Q / 802.1ad tags
	LinkRawBSD   LinkType = 12  // raw IP (DLT_RAW on most BSDs)
	LinkRawOBSD  LinkType = 14  // raw IP (DLT_RAW on OpenBSD)
	LinkRaw      LinkType = 101 // raw IP
	LinkLoop     LinkType = 108 // OpenBSD loopback, network byte order family
	LinkSLL      LinkType = 113 // Linux cooked capture v1 ("any" device)
	LinkIPv4     LinkType = 228
	LinkIPv6     LinkType = 229
	LinkSLL2     LinkType = 276 // Linux cooked capture v2 (tcpdump -i any since 4.99)
)

const (
	// sweepEvery is how often (in packet time) connections are checked for
	// response timeouts, stale holes and idleness.
	sweepEvery = 250 * time.Millisecond
	// closeLinger keeps a connection that ended (FIN both ways, or RST) for
	// a while: retransmissions of its last segments still arrive, and a
	// forged RST must not make the connection's data look like a new,
	// mid-stream one.
	closeLinger = 2 * time.Second
	// holeTimeout is how long segments wait behind a hole for the
	// retransmission that fills it. A LAN retransmits within a few hundred
	// milliseconds; longer means the capture lost the segment.
	holeTimeout = time.Second
)

// Stats count what the engine saw. Plain counters: the goroutine that owns
// the engine reads them, or copies them for others.
type Stats struct {
	Packets       uint64
	Bytes         uint64
	Undecodable   uint64 // link, IP or TCP header could not be decoded
	UnknownLink   uint64 // link type not supported
	NotTCP        uint64 // decoded, but not TCP over IP
	Fragments     uint64 // IPv4 fragments (Modbus and OPC UA never need them)
	OtherPorts    uint64 // TCP on no configured port: ignored
	Flows         uint64 // connections tracked, in all
	ActiveFlows   uint64 // connections tracked now
	FlowEvictions uint64 // connections dropped to make room (max_flows)
	IdleFlows     uint64 // connections dropped for idleness
	Reassembly    reassembly.Stats
	Modbus        modbustcp.Stats
	OPCUA         opcua.Stats
}

// Dissector turns the TCP connections to its servers' ports into events:
// one Conn per connection. A new protocol is a package that provides one
// (modbustcp does), registered in NewEngine for its configured ports.
type Dissector interface {
	// NewConn starts a connection; id is unique per engine and goes in
	// every event's Conn.
	NewConn(id uint64, client, server netip.AddrPort, emit plcwatch.Emit) Conn
	// Limits bound what reassembly holds for one of its connections.
	Limits() reassembly.Limits
}

// Conn is a dissector's state for one connection: it consumes both
// reassembled streams and owes an event for every request it framed.
type Conn interface {
	reassembly.Consumer
	// Expire emits the requests that waited too long for a response.
	Expire(now time.Time)
	// Cut is told, as the connection ends, of the bytes of dir it left
	// unconsumed (possibly none): a message the connection ended inside.
	// Close follows.
	Cut(dir reassembly.Dir, rest []byte, m reassembly.Meta)
	// Close emits every request still waiting, with the reason why.
	Close(why string)
	// Outstanding is the number of requests waiting for a response.
	Outstanding() int
}

// modbusDissector adapts modbustcp to Dissector.
type modbusDissector struct{ *modbustcp.Dissector }

func (d modbusDissector) NewConn(id uint64, client, server netip.AddrPort, emit plcwatch.Emit) Conn {
	return d.Dissector.NewConn(id, client, server, emit)
}

func (d modbusDissector) Limits() reassembly.Limits {
	return reassembly.Limits{
		// A Modbus ADU is at most 260 bytes; the dissector consumes it or
		// resynchronises, so only a partial ADU (and the header that
		// confirms it) is ever pending.
		MaxPending:  4 * 260,
		MaxSegments: 64,
	}
}

// opcuaDissector adapts opcua to Dissector.
type opcuaDissector struct{ *opcua.Dissector }

func (d opcuaDissector) NewConn(id uint64, client, server netip.AddrPort, emit plcwatch.Emit) Conn {
	return d.Dissector.NewConn(id, client, server, emit)
}

// flowKey names a connection by its client and server ends. IPv4 addresses
// are stored IPv4-mapped so both families share one comparable key.
type flowKey struct {
	client, server [16]byte
	cport, sport   uint16
}

// flow is one tracked TCP connection.
type flow struct {
	key        flowKey
	asm        reassembly.Conn
	conn       Conn
	last       int64 // on the engine's clock
	closeAt    int64 // on the engine's clock: when an ended connection is dropped; 0 while open
	prev, next *flow // LRU list, most recent at the head
}

// Engine turns packets into events. It owns its connection table and is
// driven by one goroutine: a file reader or one live interface.
type Engine struct {
	cfg        Config
	emit       plcwatch.Emit
	modbus     *modbustcp.Dissector
	opcua      *opcua.Dissector
	dissectors []Dissector
	limits     []reassembly.Limits // by dissector
	server     [65536]uint8        // 1 + the index of the dissector for a server port; 0: none
	flows      map[flowKey]*flow
	head       *flow
	tail       *flow
	last       *flow  // the flow of the previous packet
	connBase   uint64 // high bits of connection ids: tells the engines of several interfaces apart
	// unknownLinks are the unsupported link types seen, at most
	// maxUnknownLinks of them, for a warning that names them.
	unknownLinks []LinkType
	// otherPorts counts the TCP packets on no configured port by the
	// lower of their two ports (the server's, as a rule: clients take
	// ephemeral ports, 32768 and up on Linux), for at most maxOtherPorts
	// ports: a capture that decodes nothing can say where its traffic is.
	otherPorts map[uint16]uint64
	budget     reassembly.Budget
	stats      Stats
	clock      clock // timers: response timeouts, holes, lingering and idle connections
	sweepAt    int64 // on clock

	// Decoding: layers allocated once and reused for every packet.
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	sll     layers.LinuxSLL
	loop    layers.Loopback
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     tcpHeader
	decoded []gopacket.LayerType
	parsers map[LinkType]*gopacket.DecodingLayerParser
	seg     reassembly.Segment
	meta    reassembly.Meta // of the packet being handled
}

// NewEngine returns an engine that emits events to emit. cfg must have had
// Defaults applied and passed Validate.
func NewEngine(cfg Config, emit plcwatch.Emit) *Engine {
	e := &Engine{
		cfg:   cfg,
		emit:  emit,
		flows: make(map[flowKey]*flow),
		modbus: modbustcp.New(modbustcp.Config{
			ResponseTimeout: cfg.ResponseTimeout,
			MaxOutstanding:  cfg.MaxOutstanding,
			EarlyRequests:   cfg.EarlyRequests,
		}),
		opcua: opcua.New(opcua.Config{
			ResponseTimeout: cfg.ResponseTimeout,
			MaxOutstanding:  cfg.MaxOutstanding,
			EarlyRequests:   cfg.EarlyRequests,
		}),
		budget:  reassembly.Budget{Max: cfg.MaxBuffer},
		decoded: make([]gopacket.LayerType, 0, 8),
	}
	e.register(modbusDissector{e.modbus}, cfg.ModbusPorts)
	e.register(opcuaDissector{e.opcua}, cfg.OPCUAPorts)
	decoders := []gopacket.DecodingLayer{&e.eth, &e.dot1q, &e.sll, &e.loop, &e.ip4, &e.ip6, &e.tcp}
	e.parsers = make(map[LinkType]*gopacket.DecodingLayerParser)
	for lt, first := range map[LinkType]gopacket.LayerType{
		LinkEthernet: layers.LayerTypeEthernet,
		LinkSLL:      layers.LayerTypeLinuxSLL,
		LinkNull:     layers.LayerTypeLoopback,
		LinkLoop:     layers.LayerTypeLoopback,
		LinkIPv4:     layers.LayerTypeIPv4,
		LinkIPv6:     layers.LayerTypeIPv6,
	} {
		p := gopacket.NewDecodingLayerParser(first, decoders...)
		// The array container looks decoders up by a short scan instead of
		// a map: measurably faster per packet (gopacket parser.go).
		p.SetDecodingLayerContainer(gopacket.DecodingLayerArray(nil))
		for _, d := range decoders {
			p.AddDecodingLayer(d)
		}
		p.IgnoreUnsupported = true
		e.parsers[lt] = p
	}
	return e
}

// register serves ports with d.
func (e *Engine) register(d Dissector, ports []uint16) {
	lim := d.Limits()
	lim.MaxEarly = e.cfg.MaxFlowBuffer
	e.dissectors = append(e.dissectors, d)
	e.limits = append(e.limits, lim)
	for _, p := range ports {
		e.server[p] = uint8(len(e.dissectors))
	}
}

// Stats returns a copy of the counters.
// maxUnknownLinks bounds Engine.UnknownLinkTypes: a hostile pcapng can
// describe thousands of interfaces.
const maxUnknownLinks = 8

// UnknownLinkTypes are the link types of the packets counted in
// Stats.UnknownLink, in the order first seen, at most 8 of them: a capture
// of another link type decodes nothing, and a user must be told why.
func (e *Engine) UnknownLinkTypes() []LinkType { return slices.Clone(e.unknownLinks) }

func (e *Engine) Stats() Stats {
	s := e.stats
	s.ActiveFlows = uint64(len(e.flows))
	s.Modbus = e.modbus.Stats
	s.OPCUA = e.opcua.Stats
	return s
}

// What parserFor found at the link layer.
const (
	linkOK = iota
	linkUnknown
	linkShort
	linkNotIP
)

// parserFor picks the decoder chain for a packet: by link type, and for raw
// IP framings by the IP version nibble.
func (e *Engine) parserFor(lt LinkType, data []byte) (*gopacket.DecodingLayerParser, []byte, int) {
	switch lt {
	case LinkRaw, LinkRawBSD, LinkRawOBSD:
		if len(data) == 0 {
			return nil, nil, linkShort
		}
		if data[0]>>4 == 6 {
			return e.parsers[LinkIPv6], data, linkOK
		}
		return e.parsers[LinkIPv4], data, linkOK
	case LinkSLL2:
		// Linux cooked v2: protocol type, reserved, ifindex, ARPHRD type,
		// packet type, address length, 8 address bytes. gopacket v1.1.19
		// has no layer for it; the protocol type is all we need.
		if len(data) < 20 {
			return nil, nil, linkShort
		}
		switch layers.EthernetType(binary.BigEndian.Uint16(data)) {
		case layers.EthernetTypeIPv4:
			return e.parsers[LinkIPv4], data[20:], linkOK
		case layers.EthernetTypeIPv6:
			return e.parsers[LinkIPv6], data[20:], linkOK
		}
		return nil, nil, linkNotIP
	}
	if p := e.parsers[lt]; p != nil {
		return p, data, linkOK
	}
	return nil, nil, linkUnknown
}

// Packet feeds one captured packet. data may be reused by the caller after
// Packet returns.
//
// ts is the packet's own time: the events it completes carry it, whatever
// the packets before it said. Timers run on a clock that one outlier stamp
// does not move (see clock).
func (e *Engine) Packet(data []byte, ts time.Time, lt LinkType) {
	e.stats.Packets++
	e.stats.Bytes += uint64(len(data))
	e.meta = reassembly.Meta{Time: ts, Frame: e.stats.Packets, Clock: e.clock.tick(ts.UnixNano())}
	if e.clock.now >= e.sweepAt {
		e.sweep()
	}
	p, data, link := e.parserFor(lt, data)
	switch link {
	case linkUnknown:
		e.stats.UnknownLink++
		if len(e.unknownLinks) < maxUnknownLinks && !slices.Contains(e.unknownLinks, lt) {
			e.unknownLinks = append(e.unknownLinks, lt)
		}
		return
	case linkShort:
		e.stats.Undecodable++
		return
	case linkNotIP:
		e.stats.NotTCP++
		return
	}
	err := p.DecodeLayers(data, &e.decoded)
	var v6, haveIP, haveTCP bool
	for _, t := range e.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			haveIP, v6 = true, false
		case layers.LayerTypeIPv6:
			haveIP, v6 = true, true
		case layers.LayerTypeTCP:
			haveTCP = true
		}
	}
	if !haveTCP {
		switch {
		case err != nil:
			e.stats.Undecodable++
		case haveIP && !v6 && (e.ip4.Flags&layers.IPv4MoreFragments != 0 || e.ip4.FragOffset != 0):
			// gopacket stops at fragments; Modbus and OPC UA never need
			// them, and reassembling IP is a DoS surface we do not want.
			e.stats.Fragments++
		default:
			e.stats.NotTCP++
		}
		return
	}
	t := &e.tcp
	var src, dst [16]byte
	var missing int
	if v6 {
		copy(src[:], e.ip6.SrcIP)
		copy(dst[:], e.ip6.DstIP)
		missing = int(e.ip6.Length) - t.hdrLen - len(t.payload)
		if e.ip6.HopByHop != nil {
			missing -= e.ip6.HopByHop.ActualLength
		}
	} else {
		src = v4mapped(e.ip4.SrcIP)
		dst = v4mapped(e.ip4.DstIP)
		missing = int(e.ip4.Length) - int(e.ip4.IHL)*4 - t.hdrLen - len(t.payload)
	}
	if missing < 0 {
		missing = 0
	}
	e.segment(src, dst, t, missing)
}

func v4mapped(ip []byte) (a [16]byte) {
	a[10], a[11] = 0xff, 0xff
	copy(a[12:], ip)
	return a
}

// segment routes one TCP segment to its connection.
func (e *Engine) segment(src, dst [16]byte, t *tcpHeader, missing int) {
	toServer, fromServer := e.server[t.dstPort] != 0, e.server[t.srcPort] != 0
	if !toServer && !fromServer {
		e.stats.OtherPorts++
		e.countOther(min(t.srcPort, t.dstPort))
		return
	}
	dir := reassembly.ClientToServer
	key := flowKey{client: src, server: dst, cport: t.srcPort, sport: t.dstPort}
	if !toServer {
		dir = reassembly.ServerToClient
		key = flowKey{client: dst, server: src, cport: t.dstPort, sport: t.srcPort}
	}
	var f *flow
	if e.last != nil && e.last.key == key {
		f = e.last // a response usually follows its request
	} else {
		f = e.flows[key]
	}
	if f == nil && toServer && fromServer {
		// Both ports are server ports: the first packet decided who the
		// client is; look the other way round too.
		rev := flowKey{client: dst, server: src, cport: t.dstPort, sport: t.srcPort}
		if f = e.flows[rev]; f != nil {
			key, dir = rev, reassembly.ServerToClient
		}
	}
	syn := t.flags&flagSYN != 0
	ack := t.flags&flagACK != 0
	rst := t.flags&flagRST != 0
	if f != nil && syn && !ack && dir == reassembly.ClientToServer && f.asm.Started(dir) && f.asm.Next(dir) != t.seq+1 {
		// A new connection on the same four-tuple.
		e.drop(f, plcwatch.UnansweredClosed)
		f = nil
	}
	if f == nil {
		if rst || (len(t.payload) == 0 && missing == 0 && !syn) {
			return // nothing to track: a lone ACK, FIN or RST
		}
		if syn && ack && dir == reassembly.ClientToServer {
			// A SYN-ACK sent to a server port: the ports are the other way
			// round for this connection (both ends on server ports).
			dir = reassembly.ServerToClient
			key = flowKey{client: dst, server: src, cport: t.dstPort, sport: t.srcPort}
		}
		f = e.newFlow(key)
	}
	f.last = e.meta.Clock
	e.last = f
	e.touch(f)
	e.seg = reassembly.Segment{
		Seq: t.seq, Ack: t.ack,
		SYN: syn, FIN: t.flags&flagFIN != 0, RST: rst, HasAck: ack,
		Payload: t.payload, Missing: missing,
	}
	f.asm.Add(dir, &e.seg, e.meta)
	if (rst || f.asm.Closed()) && f.closeAt == 0 {
		f.closeAt = e.meta.Clock + int64(closeLinger)
	}
}

// maxOtherPorts bounds the ports Engine.OtherPorts counts: a port scan
// must not grow the map without end.
const maxOtherPorts = 1024

func (e *Engine) countOther(port uint16) {
	if e.otherPorts == nil {
		e.otherPorts = make(map[uint16]uint64)
	}
	if _, ok := e.otherPorts[port]; ok || len(e.otherPorts) < maxOtherPorts {
		e.otherPorts[port]++
	}
}

// PortCount is how many TCP packets went to or from a port.
type PortCount struct {
	Port    uint16
	Packets uint64
}

// OtherPorts returns the n ports with the most TCP packets on no
// configured port (Stats.OtherPorts), most first: each packet counted
// under the lower of its two ports, the server's as a rule.
func (e *Engine) OtherPorts(n int) []PortCount {
	out := make([]PortCount, 0, len(e.otherPorts))
	for p, c := range e.otherPorts {
		out = append(out, PortCount{p, c})
	}
	slices.SortFunc(out, func(a, b PortCount) int {
		if a.Packets != b.Packets {
			return cmp.Compare(b.Packets, a.Packets)
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return out[:min(n, len(out))]
}

func (e *Engine) newFlow(key flowKey) *flow {
	if len(e.flows) >= e.cfg.MaxFlows && e.tail != nil {
		e.stats.FlowEvictions++
		e.drop(e.tail, plcwatch.UnansweredIdle)
	}
	client := netip.AddrPortFrom(netip.AddrFrom16(key.client).Unmap(), key.cport)
	server := netip.AddrPortFrom(netip.AddrFrom16(key.server).Unmap(), key.sport)
	d := e.server[key.sport] - 1
	f := &flow{key: key}
	e.stats.Flows++
	f.conn = e.dissectors[d].NewConn(e.connBase|e.stats.Flows, client, server, e.emit)
	f.asm = reassembly.Conn{Consumer: f.conn, Limits: &e.limits[d], Stats: &e.stats.Reassembly, Budget: &e.budget}
	e.flows[key] = f
	f.next = e.head
	if e.head != nil {
		e.head.prev = f
	}
	e.head = f
	if e.tail == nil {
		e.tail = f
	}
	return f
}

// touch moves f to the head of the LRU list.
func (e *Engine) touch(f *flow) {
	if e.head == f {
		return
	}
	e.unlink(f)
	f.next = e.head
	e.head.prev = f
	e.head = f
	if e.tail == nil {
		e.tail = f
	}
}

func (e *Engine) unlink(f *flow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		e.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		e.tail = f.prev
	}
	f.prev, f.next = nil, nil
}

// drop forgets a connection, emitting what it still owed.
func (e *Engine) drop(f *flow, why string) {
	if e.last == f {
		e.last = nil
	}
	// A request the connection ended inside leaves a trace (Zeek and
	// Suricata report such truncations): the dissector reports what came.
	for dir := reassembly.ClientToServer; dir <= reassembly.ServerToClient; dir++ {
		f.conn.Cut(dir, f.asm.Pending(dir), e.meta)
	}
	f.conn.Close(why)
	f.asm.Release()
	e.unlink(f)
	delete(e.flows, f.key)
}

// sweep expires response timeouts, stale holes, ended and idle connections
// on the engine's clock. Whatever a flush delivers keeps the meta of the
// packet that carried it; e.meta only tells a consumer when a gap was found.
func (e *Engine) sweep() {
	now := e.clock.now
	e.sweepAt = now + int64(sweepEvery)
	m := e.meta
	idle := now - int64(e.cfg.FlowIdleTimeout)
	for e.tail != nil && e.tail.last < idle {
		e.stats.IdleFlows++
		f := e.tail
		f.asm.Flush(m)
		e.drop(f, plcwatch.UnansweredIdle)
	}
	stale := time.Unix(0, now-int64(holeTimeout))
	expire := time.Unix(0, now)
	for f := e.head; f != nil; {
		next := f.next
		if f.asm.Waiting() {
			f.asm.SkipStaleHoles(stale, m)
		}
		if f.conn.Outstanding() > 0 {
			f.conn.Expire(expire)
		}
		if f.closeAt != 0 && now >= f.closeAt {
			f.asm.Flush(m)
			e.drop(f, plcwatch.UnansweredClosed)
		}
		f = next
	}
}

// Advance moves the engine's clock when no packet does: live capture calls
// it with the wall clock when the wire is quiet, so that timeouts still
// fire. The wall clock goes through the same filter as packet stamps.
func (e *Engine) Advance(now time.Time) {
	e.meta.Clock = e.clock.tick(now.UnixNano())
	if e.clock.now >= e.sweepAt {
		e.sweep()
	}
}

// Finish ends every connection, emitting outstanding requests with reason
// why (plcwatch.UnansweredEOF at the end of a file) — or closed, for a
// connection that had ended and was lingering.
func (e *Engine) Finish(why string) {
	for e.head != nil {
		f := e.head
		f.asm.Flush(e.meta)
		if f.closeAt == 0 {
			e.drop(f, why)
		} else {
			e.drop(f, plcwatch.UnansweredClosed)
		}
	}
}

// clock is the engine's time for timers, in nanoseconds. Packet stamps are
// not trusted one by one: a capture can hold one packet stamped an hour
// late, stamps that step back, or none at all (pcapfix writes zeros), and a
// timer run on the latest stamp seen expires every request and connection
// at the outlier (issue 9). So the clock moves to a stamp only once the next
// stamp is at least as late — two packets in a row agree — and never back:
// one outlier, late or early, moves nothing. Two stamps in a row well
// behind the clock are a step back, taken as a new start: later stamps are
// shifted onto the clock, which runs on at their pace.
type clock struct {
	now     int64 // what timers expire on
	prev    int64 // the previous stamp, shifted
	shift   int64 // added to stamps since the last step back
	started bool
}

// stepBack is how far behind the clock two stamps in a row must be to make
// a step back; less is jitter (interfaces merged in one file), which only
// holds the clock still for a moment.
const stepBack = int64(time.Second)

// tick takes a stamp and returns the time timers started by its packet
// start from: the stamp, shifted past steps back, and never before the
// clock.
func (c *clock) tick(ts int64) int64 {
	at := ts + c.shift
	if !c.started {
		c.started = true
		c.now, c.prev = at, at
		return at
	}
	if floor := c.now - stepBack; at < floor && c.prev < floor {
		d := c.now - min(c.prev, at)
		c.shift += d
		at += d
		c.prev += d
	}
	c.now = max(c.now, min(c.prev, at))
	c.prev = at
	return max(at, c.now)
}

// TCP flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

var (
	errTCPShort  = errors.New("tcp: header truncated")
	errTCPOffset = errors.New("tcp: data offset below 5")
)

// tcpHeader decodes what reassembly needs of a TCP header and nothing more.
// gopacket's TCP layer rejects a segment whose options are malformed, which
// a receiving Linux stack ignores: an attacker could hide a write behind
// bad options. This layer does not read options at all.
type tcpHeader struct {
	srcPort, dstPort uint16
	seq, ack         uint32
	flags            uint8
	hdrLen           int
	payload          []byte
}

func (t *tcpHeader) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 {
		df.SetTruncated()
		return errTCPShort
	}
	t.srcPort = binary.BigEndian.Uint16(data)
	t.dstPort = binary.BigEndian.Uint16(data[2:])
	t.seq = binary.BigEndian.Uint32(data[4:])
	t.ack = binary.BigEndian.Uint32(data[8:])
	t.flags = data[13]
	t.hdrLen = int(data[12]>>4) * 4
	if t.hdrLen < 20 {
		return errTCPOffset
	}
	if t.hdrLen > len(data) {
		// Options cut by the snap length: the header is usable, the
		// payload is all missing.
		df.SetTruncated()
		t.payload = nil
		return nil
	}
	t.payload = data[t.hdrLen:]
	return nil
}

func (t *tcpHeader) CanDecode() gopacket.LayerClass    { return layers.LayerTypeTCP }
func (t *tcpHeader) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }
func (t *tcpHeader) LayerPayload() []byte              { return t.payload }
