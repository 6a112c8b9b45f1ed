// Package reassembly turns the TCP segments of one connection, as a capture
// sees them (retransmitted, overlapping, out of order, with holes, or starting
// mid-stream), into the two ordered byte streams a protocol dissector frames
// its messages from.
//
// It is built for the gateway's hot path: a segment that arrives in order is
// handed to the consumer straight from the capture buffer, and only the
// unconsumed tail of a message split across segments, or a segment that
// arrives early, is copied. Every buffer is bounded; hitting a bound is
// counted and reported to the consumer as a gap, never an error.
package reassembly

import "time"

// Dir is a direction of a connection.
type Dir uint8

const (
	ClientToServer Dir = 0 // requests
	ServerToClient Dir = 1 // responses
)

func (d Dir) String() string {
	if d == ClientToServer {
		return "client->server"
	}
	return "server->client"
}

// Meta describes the packet whose arrival caused a delivery.
type Meta struct {
	Time  time.Time // the packet's own time stamp: what its messages' events carry
	Frame uint64    // 1-based packet number in the capture
	// Clock is the owner's clock at this packet in nanoseconds, for timers
	// (response timeouts, holes): packet time made robust against outlier
	// stamps, so it may differ from Time. 0: timers run on Time.
	Clock int64
}

// Later returns the meta of the packet that arrived last of m and o: by
// frame number (capture order), whatever the time stamps say; by time
// stamp when the frames are the same (o on a tie). A message that spans
// packets takes the meta of the one that completed it.
func (m Meta) Later(o Meta) Meta {
	if m.Frame != o.Frame {
		if m.Frame > o.Frame {
			return m
		}
		return o
	}
	if m.Time.After(o.Time) {
		return m
	}
	return o
}

// ClockNs is the time timers use at m, in nanoseconds.
func (m *Meta) ClockNs() int64 {
	if m.Clock != 0 {
		return m.Clock
	}
	return m.Time.UnixNano()
}

// Consumer receives a connection's reassembled bytes.
type Consumer interface {
	// Data offers in-order bytes of dir and returns how many it consumed.
	// The unconsumed tail is kept and offered again, followed by the next
	// bytes, on the next call; data must not be retained after Data returns.
	Data(dir Dir, data []byte, m Meta) int
	// Gap says bytes of dir are missing before the next Data: lost by the
	// capture, dropped at a bound, or never seen because the capture started
	// mid-stream. Bytes kept from before the gap were discarded.
	Gap(dir Dir, m Meta)
}

// Limits bound the memory of one direction of one connection.
type Limits struct {
	MaxPending  int // unconsumed in-order bytes (an incomplete message)
	MaxEarly    int // bytes of segments that arrived ahead of a hole
	MaxSegments int // number of such segments
}

// DefaultLimits suit protocols whose messages are at most a few kilobytes.
var DefaultLimits = Limits{MaxPending: 64 << 10, MaxEarly: 256 << 10, MaxSegments: 64}

// Stats count what reassembly met; the owner aggregates them.
type Stats struct {
	Retransmitted   uint64 // segments whose bytes were all delivered already
	OverlapBytes    uint64 // bytes trimmed because they were seen before
	OutOfOrder      uint64 // segments buffered ahead of a hole
	Gaps            uint64 // holes skipped (lost in capture, or a bound hit)
	GapBytes        uint64 // bytes known to be missing at those holes
	PendingOverflow uint64 // incomplete messages dropped at MaxPending
	EarlyOverflow   uint64 // holes skipped because MaxEarly or MaxSegments was hit
	Truncated       uint64 // segments cut short by the capture's snap length
}

// Segment is the TCP part of one packet.
type Segment struct {
	Seq, Ack      uint32
	SYN, FIN, RST bool
	HasAck        bool
	Payload       []byte // captured payload, pointing into the capture buffer
	Missing       int    // payload bytes the capture did not keep (snap length)
}

// Budget bounds the out-of-order bytes of many connections together. The
// owner of the connections shares one among them.
type Budget struct {
	Max  int
	Used int
}

// Conn reassembles both directions of one connection. The zero Conn is ready
// once Consumer, Limits and Stats are set; Budget is optional.
type Conn struct {
	Consumer Consumer
	Limits   *Limits
	Stats    *Stats
	Budget   *Budget
	streams  [2]stream
}

type stream struct {
	started bool
	fin     bool
	next    uint32 // sequence number of the next byte to deliver
	ackSeen bool
	peerAck uint32 // highest ACK the other side sent: it has every byte below
	pending []byte // unconsumed in-order bytes
	early   []early
	earlyN  int
	waiting int64 // when the oldest hole started holding segments back (Meta.ClockNs)
}

type early struct {
	seq  uint32
	data []byte
	meta Meta // the packet that carried it: its data crossed the wire then
}

// seqDiff is a-b in sequence space, correct across wrap-around.
func seqDiff(a, b uint32) int32 { return int32(a - b) }

// Started reports whether dir has a known sequence number.
func (c *Conn) Started(dir Dir) bool { return c.streams[dir].started }

// Next returns the sequence number of the next byte expected in dir.
func (c *Conn) Next(dir Dir) uint32 { return c.streams[dir].next }

// Closed reports whether both directions have sent FIN.
func (c *Conn) Closed() bool { return c.streams[0].fin && c.streams[1].fin }

// Add processes one segment of direction dir.
func (c *Conn) Add(dir Dir, seg *Segment, m Meta) {
	s := &c.streams[dir]
	if seg.HasAck {
		c.ack(dir^1, seg.Ack, m)
	}
	seq := seg.Seq
	if seg.SYN {
		seq++ // the SYN occupies one sequence number
		if !s.started {
			s.started, s.next = true, seq
		}
	}
	data := seg.Payload
	if seg.FIN {
		s.fin = true
	}
	if len(data) == 0 && seg.Missing == 0 {
		return
	}
	if !s.started {
		// First bytes of a connection whose handshake we never saw: the
		// consumer cannot know where its messages start.
		s.started, s.next = true, seq
		c.Consumer.Gap(dir, m)
	}
	if seg.Missing > 0 {
		c.Stats.Truncated++
	}
	delta := seqDiff(seq, s.next)
	if delta < 0 {
		// int64: -int(delta) overflows a 32-bit int when delta is -2^31
		// (a segment half the sequence space behind), and slicing with it
		// panicked on 32-bit ARM (make test-arm, zeek_fuzz-72.pcap).
		old := -int64(delta)
		if old >= int64(len(data)+seg.Missing) {
			c.Stats.Retransmitted++
			return
		}
		c.Stats.OverlapBytes += uint64(min(old, int64(len(data))))
		if old >= int64(len(data)) {
			// Only the bytes the capture dropped are new: a hole.
			c.skipTo(dir, seq+uint32(len(data)+seg.Missing), m)
			return
		}
		data = data[old:]
		seq = s.next
		delta = 0
	}
	if delta > 0 {
		if s.ackSeen && seqDiff(s.peerAck, seq) >= 0 {
			// The receiver acknowledged the hole before this segment: its
			// bytes crossed the wire and the capture lost them. Waiting for
			// a retransmission that will never come would only delay.
			c.skipTo(dir, seq, m)
		} else {
			c.keepEarly(dir, seq, data, m)
			return
		}
	}
	c.deliver(dir, data, m)
	if seg.Missing > 0 {
		c.skipTo(dir, s.next+uint32(seg.Missing), m)
	}
	c.drainEarly(dir, m)
}

// ack records that the receiver of dir has every byte below a: when bytes
// buffered ahead of a hole are already acknowledged, the hole was lost by the
// capture.
func (c *Conn) ack(dir Dir, a uint32, m Meta) {
	s := &c.streams[dir]
	if !s.ackSeen || seqDiff(a, s.peerAck) > 0 {
		s.ackSeen, s.peerAck = true, a
	}
	if len(s.early) > 0 && s.started && seqDiff(a, s.early[0].seq) >= 0 {
		c.skipTo(dir, s.early[0].seq, m)
		c.drainEarly(dir, m)
	}
}

// deliver hands in-order bytes to the consumer, straight from data when
// nothing is pending.
func (c *Conn) deliver(dir Dir, data []byte, m Meta) {
	s := &c.streams[dir]
	s.next += uint32(len(data))
	var rest []byte
	if len(s.pending) == 0 {
		n := c.Consumer.Data(dir, data, m)
		rest = data[n:]
		if len(rest) == 0 {
			return
		}
		if len(rest) > c.Limits.MaxPending {
			c.overflow(dir, m)
			return
		}
		if s.pending == nil {
			s.pending = make([]byte, 0, min(max(2*len(rest), 512), c.Limits.MaxPending))
		}
		s.pending = append(s.pending, rest...)
		return
	}
	s.pending = append(s.pending, data...)
	n := c.Consumer.Data(dir, s.pending, m)
	s.pending = s.pending[:copy(s.pending, s.pending[n:])]
	if len(s.pending) > c.Limits.MaxPending {
		c.overflow(dir, m)
	}
}

func (c *Conn) overflow(dir Dir, m Meta) {
	c.Stats.PendingOverflow++
	c.streams[dir].pending = c.streams[dir].pending[:0]
	c.Consumer.Gap(dir, m)
}

// skipTo gives up on the bytes before seq: whatever was pending is dropped
// and the consumer told.
func (c *Conn) skipTo(dir Dir, seq uint32, m Meta) {
	s := &c.streams[dir]
	d := seqDiff(seq, s.next)
	if d <= 0 {
		return
	}
	c.Stats.Gaps++
	c.Stats.GapBytes += uint64(d)
	s.next = seq
	s.pending = s.pending[:0]
	c.Consumer.Gap(dir, m)
}

// keepEarly buffers a copy of a segment that arrived ahead of a hole,
// sorted by sequence number, first copy of a byte wins.
// A truncated early segment keeps what was captured; its lost tail is a hole
// like any other, skipped when the stream gets there.
func (c *Conn) keepEarly(dir Dir, seq uint32, data []byte, m Meta) {
	s := &c.streams[dir]
	c.Stats.OutOfOrder++
	i := len(s.early)
	for i > 0 && seqDiff(s.early[i-1].seq, seq) > 0 {
		i--
	}
	if len(s.early) == 0 {
		s.waiting = m.ClockNs()
	}
	if len(data) > 0 {
		e := early{seq: seq, data: append([]byte(nil), data...), meta: m}
		s.early = append(s.early, early{})
		copy(s.early[i+1:], s.early[i:])
		s.early[i] = e
		s.earlyN += len(data)
		if c.Budget != nil {
			c.Budget.Used += len(data)
		}
	}
	// Over a bound: give up on holes, oldest first, until within it. Each
	// round delivers at least one segment, so this ends.
	for len(s.early) > 0 && (s.earlyN > c.Limits.MaxEarly || len(s.early) > c.Limits.MaxSegments ||
		(c.Budget != nil && c.Budget.Used > c.Budget.Max)) {
		c.Stats.EarlyOverflow++
		c.skipTo(dir, s.early[0].seq, m)
		c.drainEarly(dir, m)
	}
}

// drainEarly delivers buffered segments that the stream has caught up with.
func (c *Conn) drainEarly(dir Dir, m Meta) {
	s := &c.streams[dir]
	for len(s.early) > 0 {
		e := s.early[0]
		d := seqDiff(e.seq, s.next)
		if d > 0 {
			return
		}
		s.early[0] = early{}
		s.early = s.early[1:]
		s.earlyN -= len(e.data)
		if c.Budget != nil {
			c.Budget.Used -= len(e.data)
		}
		if -int64(d) >= int64(len(e.data)) { // int64: see Add
			c.Stats.OverlapBytes += uint64(len(e.data))
			continue
		}
		c.Stats.OverlapBytes += uint64(-int64(d))
		c.deliver(dir, e.data[-d:], e.meta)
	}
	if len(s.early) == 0 {
		s.early = nil // let the backing array go
	} else {
		s.waiting = m.ClockNs() // a new hole starts now
	}
}

// SkipStaleHoles gives up on holes that have held segments back since
// before t, on the Meta clock: the retransmission that would fill them is
// not coming (a capture that lost packets without the receiver's ACK
// showing it).
func (c *Conn) SkipStaleHoles(t time.Time, m Meta) {
	ns := t.UnixNano()
	for dir := ClientToServer; dir <= ServerToClient; dir++ {
		s := &c.streams[dir]
		for len(s.early) > 0 && s.waiting < ns {
			c.skipTo(dir, s.early[0].seq, m)
			c.drainEarly(dir, m)
		}
	}
}

// Waiting reports whether segments are held back behind a hole.
func (c *Conn) Waiting() bool { return len(c.streams[0].early)+len(c.streams[1].early) > 0 }

// Flush delivers everything buffered, skipping holes: the connection is
// ending (FIN, RST, idle expiry, end of capture).
func (c *Conn) Flush(m Meta) {
	for dir := ClientToServer; dir <= ServerToClient; dir++ {
		s := &c.streams[dir]
		for len(s.early) > 0 {
			c.skipTo(dir, s.early[0].seq, m)
			c.drainEarly(dir, m)
		}
	}
}

// Release returns this connection's buffered bytes to the budget without
// delivering them: the connection is being dropped.
func (c *Conn) Release() {
	for dir := range c.streams {
		s := &c.streams[dir]
		if c.Budget != nil {
			c.Budget.Used -= s.earlyN
		}
		s.early, s.earlyN, s.pending = nil, 0, nil
	}
}

// Pending returns dir's in-order bytes the consumer left unconsumed: the
// start of a message whose rest has not come. Valid until the next Add,
// Flush or Release.
func (c *Conn) Pending(dir Dir) []byte { return c.streams[dir].pending }

// Buffered returns the bytes this connection holds in its buffers.
func (c *Conn) Buffered() int {
	return cap(c.streams[0].pending) + cap(c.streams[1].pending) + c.streams[0].earlyN + c.streams[1].earlyN
}
