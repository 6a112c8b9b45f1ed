package modbustcp

import (
	"net/netip"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

const (
	mbapLen = 7       // transaction id, protocol id, length, unit id
	maxADU  = 6 + 254 // MBAP up to the length field, then at most 254 bytes
)

// Config tunes the dissector.
type Config struct {
	// ResponseTimeout is how long a request waits for its response before
	// it is emitted as a timeout event.
	ResponseTimeout time.Duration
	// MaxOutstanding bounds the requests a connection may have waiting for
	// a response; beyond it the oldest is emitted as evicted.
	MaxOutstanding int
	// EarlyRequests emits every request twice: as plcwatch.StageRequest
	// the moment it is complete on the wire, and as StageResponse when it is
	// answered or given up on. Off, it is emitted once, StageWhole, at the
	// second moment. Set it when the consumer honours Event.Stage: it is
	// what lets an alert on a request never wait for a response that may
	// never come (issue 9).
	EarlyRequests bool
}

// DefaultConfig is what the dissector uses when nothing is configured.
var DefaultConfig = Config{ResponseTimeout: 5 * time.Second, MaxOutstanding: 64}

// Stats count what the dissector saw. They are plain counters owned by the
// goroutine that feeds the dissector; the owner publishes snapshots.
type Stats struct {
	Requests       uint64 // request ADUs framed
	Responses      uint64 // response ADUs framed
	Events         uint64 // events emitted, StageRequest ones aside: one per request, orphan or framing error
	EarlyRequests  uint64 // StageRequest events emitted (Config.EarlyRequests)
	Malformed      uint64 // events whose Malformed is set
	Exceptions     uint64 // exception responses
	Orphans        uint64 // responses that matched no request
	Timeouts       uint64 // requests that got no response in time
	Unanswered     uint64 // requests emitted without a response for any reason
	ResyncBytes    uint64 // bytes skipped while looking for an MBAP header
	Resyncs        uint64 // times the framing was found again after a loss
	Confirmed      uint64 // connections a request and its response confirmed as Modbus/TCP
	NotModbus      uint64 // connections that showed they are not Modbus/TCP
	NotModbusBytes uint64 // bytes of such connections left undecoded
	CutShort       uint64 // ADUs their connection ended inside (reported as far as they came when the function code had)
}

// Dissector makes Conns that share a configuration and statistics. It is
// not safe for concurrent use: one capture goroutine owns it.
type Dissector struct {
	cfg     Config
	Stats   Stats
	scratch plcwatch.Event // events that are emitted at once (orphans, framing errors)
}

// New returns a dissector; zero fields of cfg take DefaultConfig's values.
func New(cfg Config) *Dissector {
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = DefaultConfig.ResponseTimeout
	}
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = DefaultConfig.MaxOutstanding
	}
	return &Dissector{cfg: cfg}
}

// What a connection has shown about itself, after Zeek's protocol
// confirmation and violation: a response that agrees with a request waiting
// for one confirms Modbus/TCP (see confirmBy); an impossible MBAP header
// before that shows the connection is something else (TLS, SSH, HTTP, a
// scanner's probe on port 502).
type connState uint8

const (
	stateUnknown   connState = iota // decoded as Modbus/TCP: how every real connection starts
	stateConfirmed                  // a response agreed with a request
	stateNotModbus                  // reported once, then its bytes are counted, not decoded
)

// request is a request waiting for its response.
type request struct {
	due  int64 // after this, on the engine's clock (reassembly.Meta.ClockNs), it times out
	held bool  // framed on a connection that is not Modbus: emitted only if a response confirms it
	ev   plcwatch.Event
}

// Conn is the dissector's state for one TCP connection. It implements
// reassembly.Consumer.
type Conn struct {
	d     *Dissector
	emit  plcwatch.Emit
	base  plcwatch.Event // the fields every event of this connection shares
	state connState
	lost  [2]bool // framing lost: looking for an MBAP header
	fresh [2]bool // lost, and the next data starts a segment
	tail  [2]int  // bytes left unconsumed by the last Data: the reassembler offers them again first
	tailM [2]reassembly.Meta
	// doubt: on a connection not confirmed yet, the client's framing was
	// found only after skipping bytes that are no ADU — a capture that
	// began inside one, or bytes that are not Modbus at all (a TLS
	// ClientHello can hold a plausible ADU). What it frames is held, as on
	// a connection that is not Modbus, until a response agrees.
	doubt   bool
	pending []request
	cutting bool // the ADU being handled is one the connection ended inside (Cut)
}

var _ reassembly.Consumer = (*Conn)(nil)

// NewConn starts the state for connection id from client to server. A
// connection whose handshake was not seen starts with a Gap from the
// reassembler, which makes the Conn look for the first ADU boundary.
func (d *Dissector) NewConn(id uint64, client, server netip.AddrPort, emit plcwatch.Emit) *Conn {
	c := &Conn{d: d, emit: emit}
	c.base.Conn = id
	c.base.Source = plcwatch.Wire
	c.base.Protocol = plcwatch.ProtoModbus
	c.base.Client, c.base.Server = client, server
	c.base.Device = server.String()
	return c
}

// Gap implements reassembly.Consumer: bytes are missing, so whatever follows
// may start in the middle of an ADU.
func (c *Conn) Gap(dir reassembly.Dir, _ reassembly.Meta) {
	c.lost[dir], c.fresh[dir] = true, true
	c.tail[dir] = 0
	c.dropHeld(dir)
}

// dropHeld forgets the requests held on a connection that is not Modbus
// when the run of ADUs they belong to breaks (dir's bytes were skipped or
// lost): whatever confirms the connection later does not vouch for them.
func (c *Conn) dropHeld(dir reassembly.Dir) {
	if !c.holding() || dir != reassembly.ClientToServer {
		return
	}
	for i := len(c.pending) - 1; i >= 0; i-- {
		if c.pending[i].held {
			c.remove(i)
		}
	}
}

// Data implements reassembly.Consumer: it frames and handles every complete
// ADU in data and returns how many bytes it used. An ADU's event takes the
// meta of the packet that completed it: m, or for an ADU that began in
// bytes an earlier call left unconsumed, whichever of the two packets came
// last — out-of-order segments are delivered with their own packet's meta
// after the one that filled the hole before them (issue 9).
func (c *Conn) Data(dir reassembly.Dir, data []byte, m reassembly.Meta) int {
	off := 0
	fresh := c.fresh[dir]
	c.fresh[dir] = false
	old, oldM := c.tail[dir], c.tailM[dir]
	if old > 0 {
		oldM = oldM.Later(m)
	}
loop:
	for {
		rest := data[off:]
		at := m
		if off < old {
			at = oldM
		}
		if c.lost[dir] {
			// A connection that showed it is not Modbus is not taken at
			// its word at a segment start: what it frames is held until a
			// response confirms it.
			skip, found := resync(rest, dir, fresh && off == 0 && c.state != stateNotModbus)
			c.skipped(skip)
			if skip > 0 {
				c.dropHeld(dir)
				if c.state == stateUnknown && dir == reassembly.ClientToServer {
					c.doubt = true
				}
			}
			off += skip
			if !found {
				break loop
			}
			c.lost[dir] = false
			c.d.Stats.Resyncs++
			continue
		}
		if len(rest) < mbapLen {
			break
		}
		length := int(be16(rest[4:]))
		if be16(rest[2:]) != 0 || length < 2 || length > 254 {
			c.framingError(dir, rest, at)
			c.lost[dir] = true
			off++ // look for the next header after this byte
			c.skipped(1)
			continue
		}
		total := 6 + length
		if len(rest) < total {
			break
		}
		c.adu(dir, rest[:total], at)
		off += total
	}
	// What is left is offered again with the next bytes: remember which
	// packet its latest byte came in.
	c.tail[dir] = len(data) - off
	if off < old {
		c.tailM[dir] = oldM
	} else {
		c.tailM[dir] = m
	}
	return off
}

// skipped counts n bytes passed over while looking for an ADU.
func (c *Conn) skipped(n int) {
	c.d.Stats.ResyncBytes += uint64(n)
	if c.state == stateNotModbus {
		c.d.Stats.NotModbusBytes += uint64(n)
	}
}

// resync looks for the first offset in b where a run of plausible ADUs
// starts: a header whose ADU ends exactly where b ends (senders write whole
// ADUs, so segments end on boundaries) or is followed by another plausible
// header. When b starts a segment right after a gap (atSegment), a
// plausible complete ADU at its very start is taken on its own: a segment
// start is where a sender's write begins. It returns how many bytes to skip
// and whether framing was found; when the candidate ADU is not complete yet
// it stops there and waits.
func resync(b []byte, dir reassembly.Dir, atSegment bool) (skip int, found bool) {
	for i := 0; i+mbapLen+1 <= len(b); i++ {
		total, ok := plausible(b[i:], dir)
		if !ok {
			continue
		}
		end := i + total
		switch {
		case end > len(b):
			return i, false // wait for the rest of the candidate
		case end == len(b), i == 0 && atSegment:
			return i, true
		case end+mbapLen+1 > len(b):
			return i, false // wait to see what follows
		default:
			if _, ok := plausible(b[end:], dir); ok {
				return i, true
			}
		}
	}
	// Keep a possible header start at the very end.
	return max(0, len(b)-mbapLen), false
}

// plausible reports whether b starts with an MBAP header and function code
// that a real peer would send, and the ADU's total length.
func plausible(b []byte, dir reassembly.Dir) (int, bool) {
	if len(b) < mbapLen+1 || be16(b[2:]) != 0 {
		return 0, false
	}
	length := int(be16(b[4:]))
	if length < 2 || length > 254 {
		return 0, false
	}
	fc := b[7]
	pduLen := length - 1
	if dir == reassembly.ClientToServer {
		if fc == 0 || fc >= 0x80 {
			return 0, false
		}
		switch fc {
		case ReadCoils, ReadDiscreteInputs, ReadHoldingRegisters, ReadInputRegisters, WriteSingleCoil, WriteSingleRegister:
			if pduLen != 5 {
				return 0, false
			}
		case ReadExceptionStatus, GetCommEventCounter, GetCommEventLog, ReportServerID:
			if pduLen != 1 {
				return 0, false
			}
		case MaskWriteRegister:
			if pduLen != 7 {
				return 0, false
			}
		case WriteMultipleCoils, WriteMultipleRegisters:
			if len(b) > 12 && pduLen != 6+int(b[12]) {
				return 0, false
			}
		}
		return 6 + length, true
	}
	switch {
	case fc == 0 || fc == 0x80:
		return 0, false
	case fc&0x80 != 0:
		if pduLen != 2 {
			return 0, false
		}
	case fc <= ReadInputRegisters || fc == ReadWriteMultipleRegisters:
		if len(b) > 8 && pduLen != 2+int(b[8]) {
			return 0, false
		}
	case fc == WriteSingleCoil || fc == WriteSingleRegister || fc == WriteMultipleCoils || fc == WriteMultipleRegisters:
		if pduLen != 5 {
			return 0, false
		}
	}
	return 6 + length, true
}

// framingError handles an impossible MBAP header at an ADU boundary. On a
// connection not confirmed as Modbus/TCP it is a protocol violation (Zeek's
// model): the connection is reported once and its bytes are no longer
// decoded as requests until a request and its response agree again. A
// header whose protocol id is not 0 is not Modbus at all (TLS, SSH, HTTP, a
// scanner's probe): the event says so and carries no Modbus field. On a
// confirmed connection it is a framing error — a broken sender, an attack on
// parsers — reported once per loss of framing, after which the stream is
// resynchronised on the next plausible header.
func (c *Conn) framingError(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	bad := be16(b[2:]) != 0
	switch c.state {
	case stateNotModbus:
		c.dropHeld(dir)
		return
	case stateUnknown:
		c.state = stateNotModbus
		c.d.Stats.NotModbus++
		// The other direction is no more trusted than this one.
		c.lost[dir^1] = true
		if bad {
			ev := c.newEvent(m)
			ev.Op = plcwatch.OpOther
			ev.Absent |= plcwatch.FieldTID | plcwatch.FieldUnit | plcwatch.FieldFunction // not Modbus: no MBAP header
			ev.Malformed = notModbus(b)
			c.send(ev)
			return
		}
		// A Modbus header with an impossible length: reported as what it
		// is, an attack on parsers as much as a violation.
	}
	ev := c.newEvent(m)
	ev.TID = be16(b)
	ev.Unit = b[6]
	ev.Op = plcwatch.OpOther
	if len(b) > mbapLen {
		ev.Function = b[7] &^ 0x80
	} else {
		ev.Absent |= plcwatch.FieldFunction
	}
	switch {
	case dir == reassembly.ClientToServer && bad:
		ev.Malformed = BadProtocolID
	case dir == reassembly.ClientToServer:
		ev.Malformed = BadMBAPLength
	case bad:
		ev.Malformed = RespBadProtocolID
	default:
		ev.Malformed = RespBadMBAPLength
	}
	if dir == reassembly.ServerToClient {
		ev.Orphan = true
	}
	c.send(ev)
}

func (c *Conn) newEvent(m reassembly.Meta) *plcwatch.Event {
	ev := &c.d.scratch
	*ev = c.base
	ev.Time, ev.Frame = m.Time, m.Frame
	return ev
}

// adu handles one framed ADU.
func (c *Conn) adu(dir reassembly.Dir, adu []byte, m reassembly.Meta) {
	tid, unit, pdu := be16(adu), adu[6], adu[mbapLen:]
	if dir == reassembly.ClientToServer {
		c.request(tid, unit, pdu, m)
	} else {
		c.response(tid, unit, pdu, m)
	}
}

func (c *Conn) request(tid uint16, unit uint8, pdu []byte, m reassembly.Meta) {
	// On a connection that showed it is not Modbus, what frames as a
	// request is held, unreported, until a response agrees with one of
	// them: then the unbroken run of ADUs it ends were requests (a client
	// that sends junk first cannot hide the writes it pipelines after it).
	// Bytes skipped or lost before the next one break the run: see
	// dropHeld.
	held := c.holding()
	if !held {
		c.d.Stats.Requests++
	}
	for i := range c.pending {
		if c.pending[i].ev.TID == tid {
			c.finish(i, plcwatch.UnansweredReused)
			break
		}
	}
	if len(c.pending) >= c.d.cfg.MaxOutstanding {
		c.finish(0, plcwatch.UnansweredEvicted) // the oldest: pending is in arrival order
	}
	// Reuse the slot's memory: every field is set below, and zeroing a
	// kilobyte per request costs as much as decoding it.
	n := len(c.pending)
	if n < cap(c.pending) {
		c.pending = c.pending[:n+1]
	} else {
		c.pending = append(c.pending, request{})
	}
	p := &c.pending[n]
	p.due, p.held = m.ClockNs()+int64(c.d.cfg.ResponseTimeout), held
	p.ev = c.base
	ev := &p.ev
	ev.Time, ev.Frame = m.Time, m.Frame
	ev.TID, ev.Unit = tid, unit
	DecodeRequest(ev, pdu)
	if c.cutting {
		ev.Malformed = cutReason(ev.Malformed)
	}
	if !held {
		c.early(p)
	}
}

// early emits a request complete on the wire as StageRequest, when asked
// to; its final event is then StageResponse.
func (c *Conn) early(p *request) {
	if !c.d.cfg.EarlyRequests {
		return
	}
	p.ev.Stage = plcwatch.StageRequest
	c.d.Stats.EarlyRequests++
	c.emit(&p.ev)
	p.ev.Stage = plcwatch.StageResponse
}

func (c *Conn) response(tid uint16, unit uint8, pdu []byte, m reassembly.Meta) {
	fc := pdu[0]
	if c.state != stateConfirmed {
		c.confirmBy(tid, unit, fc&^0x80)
	}
	for i := range c.pending {
		p := &c.pending[i]
		if p.held || p.ev.TID != tid || p.ev.Function != fc&^0x80 {
			continue
		}
		c.d.Stats.Responses++
		if fc&0x80 != 0 {
			c.d.Stats.Exceptions++
		}
		ev := &p.ev
		DecodeResponse(ev, pdu)
		if c.cutting {
			ev.Malformed = cutReason(ev.Malformed)
		}
		ev.RTT = c.rtt(m.Time.Sub(ev.Time))
		c.send(ev)
		c.remove(i)
		return
	}
	if c.state == stateNotModbus {
		return // no more a response than the bytes before it were requests
	}
	// A response to no request we saw: the capture started after it, or
	// somebody is injecting responses. Report it: it is either harmless
	// context or exactly what a SOC wants to see.
	c.d.Stats.Responses++
	if fc&0x80 != 0 {
		c.d.Stats.Exceptions++
	}
	c.d.Stats.Orphans++
	ev := c.newEvent(m)
	ev.TID, ev.Unit = tid, unit
	DecodeOrphan(ev, pdu)
	if c.cutting {
		ev.Malformed = cutReason(ev.Malformed)
	}
	c.send(ev)
}

// DecodeOrphan fills ev from a response PDU whose request was not seen:
// the function and what the response itself says (see DecodeResponse).
func DecodeOrphan(ev *plcwatch.Event, pdu []byte) {
	fc := pdu[0]
	ev.Function = fc &^ 0x80
	ev.Op = OpOf(fc)
	ev.Table = TableOf(fc)
	ev.Orphan = true
	DecodeResponse(ev, pdu)
}

// rtt is a response's time from its request's: the two packets' own
// stamps. A pair of stamps that runs backwards, or further apart than the
// response timeout allows twice over, has an outlier in it and gives no
// rtt (0, left out of the JSON).
func (c *Conn) rtt(d time.Duration) time.Duration {
	if d < 0 || d > 2*c.d.cfg.ResponseTimeout {
		return 0
	}
	return d
}

// confirmBy confirms the connection as Modbus/TCP when a response agrees
// with a request waiting for one: the same transaction id and unit — what
// MBAP pairs by, and what Zeek's confirmation asks of a response — and, on a
// connection that showed it is not Modbus or for a request held in doubt,
// the same function too.
func (c *Conn) confirmBy(tid uint16, unit, fc uint8) {
	for i := range c.pending {
		p := &c.pending[i]
		if p.ev.TID == tid && p.ev.Unit == unit && ((!p.held && c.state != stateNotModbus) || p.ev.Function == fc) {
			c.confirm()
			return
		}
	}
}

// holding reports whether requests are held, not reported, until a
// response vouches for them.
func (c *Conn) holding() bool {
	return c.state == stateNotModbus || (c.doubt && c.state == stateUnknown)
}

// confirm records that the connection speaks Modbus/TCP. Requests held
// while it looked like something else are requests after all.
func (c *Conn) confirm() {
	if c.state == stateConfirmed {
		return
	}
	c.state = stateConfirmed
	c.d.Stats.Confirmed++
	for i := range c.pending {
		if p := &c.pending[i]; p.held {
			p.held = false
			c.d.Stats.Requests++
			c.early(p)
		}
	}
}

// finish emits pending request i without a response and removes it; a
// held candidate goes silently.
func (c *Conn) finish(i int, why string) {
	p := &c.pending[i]
	if !p.held {
		p.ev.Unanswered = why
		c.d.Stats.Unanswered++
		if why == plcwatch.UnansweredTimeout {
			c.d.Stats.Timeouts++
		}
		c.send(&p.ev)
	}
	c.remove(i)
}

func (c *Conn) remove(i int) {
	last := len(c.pending) - 1
	if i != last {
		// Keep arrival order: timeouts and flushes are emitted oldest first.
		copy(c.pending[i:], c.pending[i+1:])
	}
	c.pending[last].ev.Objects = nil
	c.pending = c.pending[:last]
}

func (c *Conn) send(ev *plcwatch.Event) {
	c.d.Stats.Events++
	if ev.Malformed != "" {
		c.d.Stats.Malformed++
	}
	c.emit(ev)
}

// Expire emits the requests whose response timeout has passed at now, on
// the engine's clock (reassembly.Meta.ClockNs, as a time).
func (c *Conn) Expire(now time.Time) {
	ns := now.UnixNano()
	for len(c.pending) > 0 && ns > c.pending[0].due {
		c.finish(0, plcwatch.UnansweredTimeout)
	}
}

// CutShort is the Malformed reason of an ADU its connection ended inside
// (FIN, RST, idle timeout, or the end of the capture): its fields are
// decoded as far as they came, and what the decoder says is missing
// follows this prefix. Zeek and Suricata report such truncations too.
const CutShort = "ADU cut short: its connection ended inside it"

func cutReason(decoder string) string {
	if decoder == "" {
		return CutShort
	}
	return CutShort + ": " + decoder
}

// Cut implements the engine's end of a connection: rest are dir's bytes
// Data left unconsumed, the start of an ADU whose rest never came. It is
// counted; when the function code came, it is handled as the ADU it
// began (a request waits for Close; a response answers its request), with
// Malformed saying so. Bytes after a framing loss, or of a connection that
// is not Modbus, are no ADU: left alone.
func (c *Conn) Cut(dir reassembly.Dir, rest []byte, m reassembly.Meta) {
	if len(rest) == 0 || c.lost[dir] || c.state == stateNotModbus {
		return
	}
	c.d.Stats.CutShort++
	if len(rest) <= mbapLen {
		return // no function code: counted only
	}
	if c.tail[dir] > 0 {
		m = c.tailM[dir] // the packet that brought its last bytes
	}
	length := int(be16(rest[4:]))
	if be16(rest[2:]) != 0 || length < 2 || length > 254 || len(rest) >= 6+length {
		return // framed already: cannot happen, but no ADU to report
	}
	c.cutting = true
	c.adu(dir, rest, m)
	c.cutting = false
}

// Close emits every outstanding request with the given reason: the
// connection is gone.
func (c *Conn) Close(why string) {
	for len(c.pending) > 0 {
		c.finish(0, why)
	}
}

// Outstanding returns the number of requests waiting for a response.
func (c *Conn) Outstanding() int { return len(c.pending) }

// NotModbus reports whether the connection showed it is not Modbus/TCP.
func (c *Conn) NotModbus() bool { return c.state == stateNotModbus }

// Reasons a connection is not Modbus/TCP: the protocol its bytes look like
// when they are a common one. Each contains "MBAP", as every framing
// error's reason does.
const (
	NotModbus          = "not Modbus/TCP" // the prefix of every reason below
	NotModbusProtoID   = NotModbus + ": MBAP protocol id is not 0"
	NotModbusTLS       = NotModbus + " (TLS): MBAP protocol id is not 0"
	NotModbusSSH       = NotModbus + " (SSH): MBAP protocol id is not 0"
	NotModbusHTTP      = NotModbus + " (HTTP): MBAP protocol id is not 0"
	NotModbusDCERPC    = NotModbus + " (DCE/RPC): MBAP protocol id is not 0"
	NotModbusTPKT      = NotModbus + " (TPKT: S7comm, RDP, ISO-TSAP): MBAP protocol id is not 0"
	NotModbusOPCUA     = NotModbus + " (OPC UA): MBAP protocol id is not 0"
	notModbusHTTPVerbs = "GET POSTHEADPUT OPTIDELECONNPATCTRACHTTP"
)

// notModbus says why the header at b, whose protocol id is not 0, shows a
// connection is not Modbus/TCP, naming the protocol when its first bytes are
// a well-known one.
func notModbus(b []byte) string {
	switch {
	case b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 3 && b[2] <= 4: // record type, version 3.x
		return NotModbusTLS
	case string(b[:4]) == "SSH-":
		return NotModbusSSH
	case b[0] == 5 && b[1] <= 1: // version 5.0 or 5.1
		return NotModbusDCERPC
	case b[0] == 3 && b[1] == 0: // RFC 1006 version 3
		return NotModbusTPKT
	case (string(b[:3]) == "HEL" || string(b[:3]) == "OPN" || string(b[:3]) == "MSG" || string(b[:3]) == "ACK") && b[3] == 'F':
		return NotModbusOPCUA
	}
	for i := 0; i+4 <= len(notModbusHTTPVerbs); i += 4 {
		if string(b[:4]) == notModbusHTTPVerbs[i:i+4] {
			return NotModbusHTTP
		}
	}
	return NotModbusProtoID
}

// IsNotModbus reports whether a Malformed reason says a connection is not
// Modbus/TCP.
func IsNotModbus(reason string) bool {
	return len(reason) >= len(NotModbus) && reason[:len(NotModbus)] == NotModbus
}

// IsFramingError reports whether a Malformed reason says the bytes at an
// ADU boundary were no Modbus/TCP ADU: an impossible MBAP header, or a
// connection that is not Modbus/TCP.
func IsFramingError(reason string) bool {
	switch reason {
	case BadProtocolID, BadMBAPLength, RespBadProtocolID, RespBadMBAPLength:
		return true
	}
	return IsNotModbus(reason)
}
