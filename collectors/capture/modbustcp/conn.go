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
}

// DefaultConfig is what the dissector uses when nothing is configured.
var DefaultConfig = Config{ResponseTimeout: 5 * time.Second, MaxOutstanding: 64}

// Stats count what the dissector saw. They are plain counters owned by the
// goroutine that feeds the dissector; the owner publishes snapshots.
type Stats struct {
	Requests    uint64 // request ADUs framed
	Responses   uint64 // response ADUs framed
	Events      uint64 // events emitted
	Malformed   uint64 // events whose Malformed is set
	Exceptions  uint64 // exception responses
	Orphans     uint64 // responses that matched no request
	Timeouts    uint64 // requests that got no response in time
	Unanswered  uint64 // requests emitted without a response for any reason
	ResyncBytes uint64 // bytes skipped while looking for an MBAP header
	Resyncs     uint64 // times the framing was found again after a loss
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

// Conn is the dissector's state for one TCP connection. It implements
// reassembly.Consumer.
type Conn struct {
	d       *Dissector
	emit    plcwatch.Emit
	base    plcwatch.Event // the fields every event of this connection shares
	lost    [2]bool        // framing lost: looking for an MBAP header
	fresh   [2]bool        // lost, and the next data starts a segment
	pending []plcwatch.Event
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
}

// Data implements reassembly.Consumer: it frames and handles every complete
// ADU in data and returns how many bytes it used.
func (c *Conn) Data(dir reassembly.Dir, data []byte, m reassembly.Meta) int {
	off := 0
	fresh := c.fresh[dir]
	c.fresh[dir] = false
	for {
		rest := data[off:]
		if c.lost[dir] {
			skip, found := resync(rest, dir, fresh && off == 0)
			c.d.Stats.ResyncBytes += uint64(skip)
			off += skip
			if !found {
				return off
			}
			c.lost[dir] = false
			c.d.Stats.Resyncs++
			continue
		}
		if len(rest) < mbapLen {
			return off
		}
		length := int(be16(rest[4:]))
		if be16(rest[2:]) != 0 || length < 2 || length > 254 {
			c.framingError(dir, rest, m)
			c.lost[dir] = true
			off++ // look for the next header after this byte
			c.d.Stats.ResyncBytes++
			continue
		}
		total := 6 + length
		if len(rest) < total {
			return off
		}
		c.adu(dir, rest[:total], m)
		off += total
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

// framingError emits one event for an ADU whose MBAP header is impossible:
// the stream is not Modbus/TCP here (a scanner, another protocol on the port,
// or an attack on the parser). The reason goes once per loss of framing.
func (c *Conn) framingError(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	ev := c.newEvent(m)
	ev.TID = be16(b)
	ev.Unit = b[6]
	ev.Op = plcwatch.OpOther
	if len(b) > mbapLen {
		ev.Function = b[7] &^ 0x80
	}
	bad := be16(b[2:]) != 0
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
	c.d.Stats.Requests++
	for i := range c.pending {
		if c.pending[i].TID == tid {
			c.finish(i, plcwatch.UnansweredReused)
			break
		}
	}
	if len(c.pending) >= c.d.cfg.MaxOutstanding {
		oldest := 0
		for i := range c.pending {
			if c.pending[i].Time.Before(c.pending[oldest].Time) {
				oldest = i
			}
		}
		c.finish(oldest, plcwatch.UnansweredEvicted)
	}
	c.pending = append(c.pending, c.base)
	ev := &c.pending[len(c.pending)-1]
	ev.Time, ev.Frame = m.Time, m.Frame
	ev.TID, ev.Unit = tid, unit
	DecodeRequest(ev, pdu)
}

func (c *Conn) response(tid uint16, unit uint8, pdu []byte, m reassembly.Meta) {
	c.d.Stats.Responses++
	fc := pdu[0]
	if fc&0x80 != 0 {
		c.d.Stats.Exceptions++
	}
	for i := range c.pending {
		ev := &c.pending[i]
		if ev.TID != tid || ev.Function != fc&^0x80 {
			continue
		}
		DecodeResponse(ev, pdu)
		ev.RTT = m.Time.Sub(ev.Time)
		c.send(ev)
		c.remove(i)
		return
	}
	// A response to no request we saw: the capture started after it, or
	// somebody is injecting responses. Report it: it is either harmless
	// context or exactly what a SOC wants to see.
	c.d.Stats.Orphans++
	ev := c.newEvent(m)
	ev.TID, ev.Unit = tid, unit
	ev.Function = fc &^ 0x80
	ev.Op = OpOf(fc)
	ev.Table = TableOf(fc)
	ev.Orphan = true
	DecodeResponse(ev, pdu)
	c.send(ev)
}

// finish emits pending request i without a response and removes it.
func (c *Conn) finish(i int, why string) {
	ev := &c.pending[i]
	ev.Unanswered = why
	c.d.Stats.Unanswered++
	if why == plcwatch.UnansweredTimeout {
		c.d.Stats.Timeouts++
	}
	c.send(ev)
	c.remove(i)
}

func (c *Conn) remove(i int) {
	last := len(c.pending) - 1
	if i != last {
		// Keep arrival order: timeouts and flushes are emitted oldest first.
		copy(c.pending[i:], c.pending[i+1:])
	}
	c.pending[last].Objects = nil
	c.pending = c.pending[:last]
}

func (c *Conn) send(ev *plcwatch.Event) {
	c.d.Stats.Events++
	if ev.Malformed != "" {
		c.d.Stats.Malformed++
	}
	c.emit(ev)
}

// Expire emits the requests that have waited longer than the response
// timeout at time now (packet time when reading a file).
func (c *Conn) Expire(now time.Time) {
	deadline := now.Add(-c.d.cfg.ResponseTimeout)
	for len(c.pending) > 0 && c.pending[0].Time.Before(deadline) {
		c.finish(0, plcwatch.UnansweredTimeout)
	}
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
