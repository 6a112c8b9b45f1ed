package opcua

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// UACP framing (OPC 10000-6 §7.1.2): every message starts with a three
// byte type, a chunk type (F final, C intermediate, A abort) and the
// message size, header included.
const (
	hdrLen = 8
	// smallChunk is the largest chunk reassembly holds while it is
	// incomplete: a 64 KiB receive buffer, what nearly every stack
	// negotiates, plus room. Larger chunks the Conn buffers itself, within
	// the dissector's budget.
	smallChunk = 1<<16 + 64
	// maxChunk is the most a chunk header may claim before the stream is
	// taken for something that is not UACP. The encoding allows 4 GiB; no
	// stack negotiates more than a few MiB.
	maxChunk = 16 << 20
)

// Message types, as the first four bytes read little-endian without the
// chunk type.
const (
	typHEL = uint32('H') | uint32('E')<<8 | uint32('L')<<16
	typACK = uint32('A') | uint32('C')<<8 | uint32('K')<<16
	typERR = uint32('E') | uint32('R')<<8 | uint32('R')<<16
	typRHE = uint32('R') | uint32('H')<<8 | uint32('E')<<16
	typOPN = uint32('O') | uint32('P')<<8 | uint32('N')<<16
	typCLO = uint32('C') | uint32('L')<<8 | uint32('O')<<16
	typMSG = uint32('M') | uint32('S')<<8 | uint32('G')<<16
)

// Why a chunk could not be read, and other reasons an event is malformed
// (docs/events.md lists them all).
const (
	errHeader     = "not an OPC UA message header"
	errChunkShort = "chunk too short for its headers"
	errChunkType  = "chunk type not allowed for this message"
	errDirection  = "message type sent in the wrong direction"
	errTooLarge   = "message larger than plcwatch reassembles"
	errOversized  = "chunk or message larger than Hello/Acknowledge negotiated"
	errAborted    = "message aborted by its sender"
	errMismatch   = "response type does not match the request"
	errLostChunks = "earlier chunks of the message were not seen"
	// ErrCutShort prefixes the Malformed reason of a message its
	// connection ended inside (FIN, RST, idle timeout, the end of the
	// capture): decoded as far as it came, the decoder's reason for what
	// is missing after it.
	ErrCutShort = "message cut short: its connection ended inside it"
)

func cutReason(decoder string) string {
	switch {
	case decoder == "":
		return ErrCutShort
	case len(decoder) >= len(ErrCutShort) && decoder[:len(ErrCutShort)] == ErrCutShort:
		return decoder // marked already
	}
	return ErrCutShort + ": " + decoder
}

// header checks a message header and returns the message's size.
func header(b []byte) (typ uint32, size int, ok bool) {
	if len(b) < hdrLen {
		return 0, 0, false
	}
	typ = binary.LittleEndian.Uint32(b) & 0xffffff
	ct := b[3]
	size = int(binary.LittleEndian.Uint32(b[4:]))
	min := 0
	switch typ {
	case typHEL:
		min = hdrLen + 20 + 4
	case typACK:
		min = hdrLen + 20
	case typERR:
		min = hdrLen + 8
	case typRHE:
		min = hdrLen + 8
	case typOPN:
		min = hdrLen + 4 + 12
	case typCLO, typMSG:
		min = hdrLen + 8
	default:
		return 0, 0, false
	}
	switch ct {
	case 'F':
	case 'C', 'A':
		if typ != typMSG {
			return 0, 0, false
		}
	default:
		return 0, 0, false
	}
	if size < min || size > maxChunk {
		return 0, 0, false
	}
	return typ, size, true
}

// limits are what Hello and Acknowledge negotiated for one direction; 0
// is no limit (§7.1.2.3, .4).
type limits struct {
	chunk, message, chunks uint32
}

// dirState is the framing state of one direction of a connection.
type dirState struct {
	lost  bool // framing lost: looking for a message header
	fresh bool // lost, and the next data starts a segment
	big   []byte
	bigN  int
	bigM  reassembly.Meta // of the packet that brought big's latest bytes
	skip  int
	tail  int             // bytes the last Data left unconsumed: reassembly offers them again first
	tailM reassembly.Meta // of the packet that brought the tail's latest bytes
	asm   []assembly
	spare []byte // a message buffer kept for reuse (within the budget)
	limit limits
}

// spareMax is the largest message buffer a direction keeps for reuse.
const spareMax = 256 << 10

// assembly is a message whose chunks are arriving (§6.7.2.2).
type assembly struct {
	reqID, channel uint32
	buf            []byte // the bodies so far; budgeted
	chunks         int
	tooBig         string          // why the rest is dropped; "" while it is kept
	size           int             // bytes of all chunks, headers included
	meta           reassembly.Meta // of the packet that brought the latest of its bytes
}

// channel is one secure channel's security as far as the capture tells.
type channel struct {
	id         uint32
	policy     string // short policy name; "" when the OPN was not seen
	sigLen     int    // bytes of a symmetric signature; -1 unknown
	mode       string // None, Sign, SignAndEncrypt; "" not known yet
	thumbprint string // of the client certificate in the OPN
	opaque     bool   // bodies are encrypted: counted, not decoded
	msgs       uint64 // messages since the last OPN, for encrypted channels
	bytes      uint64
}

// session is what the capture saw of one session on the connection, by its
// AuthenticationToken (OPC 10000-4 §5.6.2).
type session struct {
	token    string // the token's text form
	name     string
	identity string
	user     string
}

// pending is a request waiting for its response.
type pending struct {
	ev       plcwatch.Event // the request's event; for multi, what its operations share
	reqID    uint32
	channel  uint32
	typ      msgType
	start    time.Time // on the engine's timer clock (reassembly.Meta.ClockNs): deadlines count from it
	deadline time.Time // on the same clock
	obj      any       // multi: the decoded request (*ua.WriteRequest, *ua.CallRequest)
	resp     any       // multi: the decoded response
	result   uint32    // the response's ServiceResult
	token    string    // the AuthenticationToken the request names, as text
	session  int       // index into Conn.sessions, -1 none
	kind     pendKind
}

type pendKind uint8

const (
	pendService pendKind = iota
	pendHello
	pendOpen // an encrypted OPN: its response is the next OPN
)

// Conn is the dissector's state for one TCP connection; it implements
// reassembly.Consumer and capture.Conn.
type Conn struct {
	d        *Dissector
	emit     plcwatch.Emit
	base     plcwatch.Event
	dirs     [2]dirState
	channels []channel
	sessions []session
	pending  []pending
	endpoint string
	lastTime time.Time // of the last data seen: when a connection's end is reported
	cutting  bool      // the chunk being handled is one the connection ended inside (Cut)
}

var _ reassembly.Consumer = (*Conn)(nil)

// Gap implements reassembly.Consumer: bytes are missing, so what follows
// may start inside a chunk, and messages being assembled lost a piece.
func (c *Conn) Gap(dir reassembly.Dir, _ reassembly.Meta) {
	st := &c.dirs[dir]
	st.lost, st.fresh = true, true
	st.tail = 0
	if st.big != nil {
		c.d.release(st.bigN)
		st.big = nil
	}
	st.skip = 0
	for i := range st.asm {
		c.d.release(cap(st.asm[i].buf))
	}
	st.asm = st.asm[:0]
}

// Data implements reassembly.Consumer: it frames every complete chunk in
// data, hands it on, and returns how many bytes it used. A chunk takes the
// meta of the packet that completed it: m, or for a chunk that began in
// bytes an earlier call left unconsumed, whichever of the two packets came
// last — out-of-order segments are delivered with their own packet's meta
// after the one that filled the hole before them (issue 9), as on the
// Modbus side.
func (c *Conn) Data(dir reassembly.Dir, data []byte, m reassembly.Meta) int {
	c.lastTime = m.Time
	st := &c.dirs[dir]
	off := c.frame(st, dir, data, m)
	// What is left is offered again with the next bytes: remember which
	// packet its latest byte came in.
	if off < st.tail {
		st.tailM = st.tailM.Later(m)
	} else {
		st.tailM = m
	}
	st.tail = len(data) - off
	return off
}

func (c *Conn) frame(st *dirState, dir reassembly.Dir, data []byte, m reassembly.Meta) int {
	off := 0
	fresh := st.fresh
	st.fresh = false
	old, oldM := st.tail, st.tailM
	if old > 0 {
		oldM = oldM.Later(m)
	}
	// at is the meta of the packet that completed data[off:end].
	at := func(end int) reassembly.Meta {
		switch {
		case off >= old:
			return m
		case end <= old:
			return st.tailM
		}
		return oldM
	}
	for off < len(data) {
		rest := data[off:]
		switch {
		case st.skip > 0:
			n := min(st.skip, len(rest))
			st.skip -= n
			off += n
			continue
		case st.big != nil:
			n := min(st.bigN-len(st.big), len(rest))
			st.big = append(st.big, rest[:n]...)
			st.bigM = st.bigM.Later(at(off + n))
			off += n
			if len(st.big) == st.bigN {
				big := st.big
				st.big = nil
				c.chunk(dir, big, st.bigM)
				c.d.release(st.bigN)
			}
			continue
		case st.lost:
			skip, found := c.resync(rest, fresh && off == 0)
			c.d.Stats.ResyncBytes += uint64(skip)
			off += skip
			if !found {
				return off
			}
			st.lost = false
			c.d.Stats.Resyncs++
			continue
		}
		if len(rest) < hdrLen {
			return off
		}
		_, size, ok := header(rest)
		if !ok {
			c.framingError(dir, rest, at(off+hdrLen))
			st.lost = true
			off++
			c.d.Stats.ResyncBytes++
			continue
		}
		if len(rest) >= size {
			c.chunk(dir, rest[:size], at(off+size))
			off += size
			continue
		}
		if size <= smallChunk {
			return off // reassembly keeps the tail until the rest arrives
		}
		if why := c.bigChunk(size); why != "" {
			c.dropped(dir, rest, at(len(data)), why)
			st.skip = size
			continue
		}
		st.big = make([]byte, 0, size)
		st.bigN = size
		st.bigM = reassembly.Meta{}
	}
	return off
}

// bigChunk reserves the buffer of a chunk larger than reassembly holds,
// and says why it will not be kept ("" when it will): beyond the budget all
// connections share. A chunk larger than Hello/Acknowledge negotiated is
// still read (a lenient receiver may act on it) and flagged malformed: one
// chunk's memory is bounded by maxChunk and the budget, not by the
// negotiation.
func (c *Conn) bigChunk(size int) string {
	if !c.d.reserve(size) {
		c.d.Stats.TooLarge++
		return errTooLarge
	}
	return ""
}

// resync looks for the first offset in b where a plausible chunk starts:
// one that ends exactly where b ends (senders write whole chunks, so
// segments end on boundaries), is followed by another plausible header, or
// starts a segment right after a gap. A MSG or CLO chunk must name a
// channel the connection knows, when it knows any.
func (c *Conn) resync(b []byte, atSegment bool) (skip int, found bool) {
	for i := 0; i+hdrLen <= len(b); i++ {
		typ, size, ok := header(b[i:])
		if !ok {
			continue
		}
		end := i + size
		if i == 0 && atSegment && end <= len(b) {
			return i, true // a sender's write starts here
		}
		if !c.plausibleChannel(typ, b[i:]) {
			continue
		}
		switch {
		case end > len(b):
			return i, false
		case end == len(b):
			return i, true
		case end+hdrLen > len(b):
			return i, false
		default:
			if t2, _, ok := header(b[end:]); ok && c.plausibleChannel(t2, b[end:]) {
				return i, true
			}
		}
	}
	return max(0, len(b)-hdrLen+1), false
}

func (c *Conn) plausibleChannel(typ uint32, b []byte) bool {
	if (typ != typMSG && typ != typCLO) || len(c.channels) == 0 {
		return true
	}
	if len(b) < hdrLen+4 {
		return true
	}
	id := binary.LittleEndian.Uint32(b[hdrLen:])
	for i := range c.channels {
		if c.channels[i].id == id {
			return true
		}
	}
	return false
}

// framingError emits one event for bytes at a chunk boundary that are not
// a UACP header: another protocol on the port, a scanner, or an attack on
// the parser. One event per loss of framing.
func (c *Conn) framingError(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	c.d.Stats.FramingLost++
	ev := c.scratch(m)
	ev.Op = plcwatch.OpOther
	ev.Malformed = errHeader
	ev.Orphan = dir == reassembly.ServerToClient
	c.send(ev)
}

func (c *Conn) scratch(m reassembly.Meta) *plcwatch.Event {
	ev := &c.d.scratch
	*ev = c.base
	ev.Time, ev.Frame = m.Time, m.Frame
	return ev
}

// chunk handles one complete chunk.
func (c *Conn) chunk(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	c.d.Stats.Chunks++
	typ := binary.LittleEndian.Uint32(b) & 0xffffff
	lim := c.dirs[dir].limit.chunk
	if lim != 0 && uint32(len(b)) > lim {
		c.d.Stats.Oversized++
	}
	switch typ {
	case typHEL:
		c.hello(dir, b, m)
	case typACK:
		c.acknowledge(dir, b, m)
	case typERR:
		c.errorMessage(dir, b, m)
	case typRHE:
		c.reverseHello(dir, b, m)
	case typOPN:
		c.open(dir, b, m)
	case typCLO, typMSG:
		c.secureChunk(dir, typ, b, m)
	}
}

// wrongDirection reports a transport message sent the wrong way.
func (c *Conn) wrongDirection(service string, dir reassembly.Dir, m reassembly.Meta) {
	ev := c.scratch(m)
	ev.Op = plcwatch.OpSession
	ev.Service = service
	ev.Malformed = errDirection
	ev.Orphan = dir == reassembly.ServerToClient
	c.send(ev)
}

// hello handles HEL (§7.1.2.3): the client's buffer sizes and the
// endpoint it wants. Its answer is ACK or ERR.
func (c *Conn) hello(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	if dir != reassembly.ClientToServer {
		c.wrongDirection("Hello", dir, m)
		return
	}
	r := reader{b: b[hdrLen:]}
	r.u32() // protocol version
	recv, send, maxMsg, maxChunks := r.u32(), r.u32(), r.u32(), r.u32()
	sizesOK := r.ok()
	url := r.bytes()
	p := c.newPending(m)
	p.kind = pendHello
	p.ev.Op = plcwatch.OpSession
	p.ev.Service = "Hello"
	if sizesOK {
		p.ev.Hello = plcwatch.UACPBuffers{ReceiveBufferSize: recv, SendBufferSize: send, MaxMessageSize: maxMsg, MaxChunkCount: maxChunks}
		p.ev.Has |= plcwatch.FieldHello
	}
	if !r.ok() {
		p.ev.Malformed = r.why
	} else if len(url) > 4096 {
		p.ev.Malformed = "endpoint URL longer than 4096 bytes"
	}
	url = url[:min(len(url), 4096)]
	c.endpoint = string(url)
	p.ev.Endpoint = c.endpoint
	// What the server may send: chunks up to the client's receive buffer,
	// messages and chunk counts up to the client's maxima (until ACK
	// narrows them).
	c.dirs[reassembly.ServerToClient].limit = limits{chunk: recv, message: maxMsg, chunks: maxChunks}
	c.request(p)
}

// acknowledge handles ACK (§7.1.2.4): the server's answer to HEL.
func (c *Conn) acknowledge(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	if dir != reassembly.ServerToClient {
		c.wrongDirection("Acknowledge", dir, m)
		return
	}
	r := reader{b: b[hdrLen:]}
	r.u32()
	recv, send, maxMsg, maxChunks := r.u32(), r.u32(), r.u32(), r.u32()
	ack := plcwatch.UACPBuffers{ReceiveBufferSize: recv, SendBufferSize: send, MaxMessageSize: maxMsg, MaxChunkCount: maxChunks}
	if r.ok() {
		c.dirs[reassembly.ClientToServer].limit = limits{chunk: recv, message: maxMsg, chunks: maxChunks}
		c.dirs[reassembly.ServerToClient].limit.chunk = send
	}
	i := c.findHello()
	var ev *plcwatch.Event
	if i < 0 {
		ev = c.scratch(m)
		ev.Op, ev.Service, ev.Orphan = plcwatch.OpSession, "Acknowledge", true
		ev.Endpoint = c.endpoint
	} else {
		ev = &c.pending[i].ev
	}
	if r.ok() {
		// The server accepted: status Good, and the sizes it granted.
		ev.Acknowledge, ev.Has = ack, ev.Has|plcwatch.FieldAcknowledge
		ev.Absent &^= plcwatch.FieldStatus
	} else if ev.Malformed == "" {
		ev.Malformed = "response: " + r.why
	}
	if i < 0 {
		c.d.Stats.Orphans++
		c.send(ev)
		return
	}
	c.answer(i, m)
}

func (c *Conn) findHello() int {
	for i := range c.pending {
		if c.pending[i].kind == pendHello {
			return i
		}
	}
	return -1
}

// errorMessage handles ERR (§7.1.2.5): the server gives up on the
// connection with a status code and a reason. It answers a pending Hello;
// otherwise it is an event of its own.
func (c *Conn) errorMessage(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	if dir != reassembly.ServerToClient {
		c.wrongDirection("Error", dir, m)
		return
	}
	r := reader{b: b[hdrLen:]}
	code := r.u32()
	reason := r.bytes()
	why := r.why
	if i := c.findHello(); i >= 0 {
		p := &c.pending[i]
		c.setStatus(&p.ev, code)
		p.ev.Error = c.d.clip(reason, 512)
		if why != "" && p.ev.Malformed == "" {
			p.ev.Malformed = "response: " + why
		}
		c.answer(i, m)
		return
	}
	// The server closes the connection after an ERR (§7.1.5): what is
	// still waiting will not be answered, and the ERR says why.
	for len(c.pending) > 0 {
		p := &c.pending[0]
		if p.ev.Status == 0 {
			c.setStatus(&p.ev, code)
			p.ev.Error = c.d.clip(reason, 512)
		}
		c.finish(0, plcwatch.UnansweredClosed)
	}
	ev := c.scratch(m)
	ev.Op, ev.Service = plcwatch.OpSession, "Error"
	c.setStatus(ev, code)
	ev.Error = c.d.clip(reason, 512)
	ev.Malformed = why
	ev.Endpoint = c.endpoint
	c.send(ev)
}

// reverseHello handles RHE (§7.1.2.6): a server behind a firewall dials
// out to its client and says who it is.
func (c *Conn) reverseHello(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	if dir != reassembly.ServerToClient {
		c.wrongDirection("ReverseHello", dir, m)
		return
	}
	r := reader{b: b[hdrLen:]}
	uri := r.bytes()
	url := r.bytes()
	ev := c.scratch(m)
	ev.Op, ev.Service = plcwatch.OpSession, "ReverseHello"
	ev.Application = c.d.clip(uri, 4096)
	ev.Endpoint = c.d.clip(url, 4096)
	ev.Malformed = r.why
	c.send(ev)
}

// clip returns b as a string of at most n bytes.
func (d *Dissector) clip(b []byte, n int) string {
	return string(b[:min(len(b), n)])
}

// channel returns the state of channel id, creating it when the capture
// did not see it open (it started mid-session, or the channel moved to
// this connection). At most a few channels are kept per connection.
func (c *Conn) channel(id uint32) *channel {
	for i := range c.channels {
		if c.channels[i].id == id {
			return &c.channels[i]
		}
	}
	if len(c.channels) >= 4 {
		copy(c.channels, c.channels[1:])
		c.channels = c.channels[:3]
	}
	c.channels = append(c.channels, channel{id: id, sigLen: -1})
	return &c.channels[len(c.channels)-1]
}

// setChannel fills the security fields every event of a channel carries.
func setChannel(ev *plcwatch.Event, ch *channel) {
	ev.Channel = ch.id
	ev.Absent &^= plcwatch.FieldChannel
	ev.SecurityPolicy = ch.policy
	ev.SecurityMode = ch.mode
}

// Policies (OPC 10000-7) by the last part of their URI, with the length
// of their symmetric signature: HMAC-SHA1 is 20 bytes, HMAC-SHA256 32,
// HMAC-SHA384 48.
var policySig = map[string]int{
	"None":                   0,
	"Basic128Rsa15":          20,
	"Basic256":               20,
	"Basic256Sha256":         32,
	"Aes128_Sha256_RsaOaep":  32,
	"Aes256_Sha256_RsaPss":   32,
	"ECC_nistP256":           32,
	"ECC_brainpoolP256r1":    32,
	"ECC_nistP384":           48,
	"ECC_brainpoolP384r1":    48,
	"PubSub_Aes128_CTR":      32,
	"PubSub_Aes256_CTR":      32,
	"ECC_curve25519":         32,
	"ECC_curve448":           64,
	"Basic128":               20,
	"Aes128_Sha256_nistP256": 32,
}

// policyName returns the short name of a security policy URI
// (http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256 →
// Basic256Sha256); a URI of another form is returned whole.
func (d *Dissector) policyName(uri []byte) string {
	if i := bytes.LastIndexByte(uri, '#'); i >= 0 && bytes.HasPrefix(uri, []byte("http://opcfoundation.org/UA/SecurityPolicy")) {
		name := uri[i+1:]
		for k := range policySig {
			if string(name) == k {
				return k
			}
		}
		return d.clip(name, 256)
	}
	return d.clip(uri, 256)
}

var modeNames = [...]string{"Invalid", "None", "Sign", "SignAndEncrypt"}

// newPending appends a pending request stamped with m and returns it. The
// oldest request is evicted when MaxOutstanding are waiting.
func (c *Conn) newPending(m reassembly.Meta) *pending {
	if len(c.pending) >= c.d.cfg.MaxOutstanding {
		c.finish(0, plcwatch.UnansweredEvicted)
	}
	c.pending = append(c.pending, pending{})
	p := &c.pending[len(c.pending)-1]
	p.ev = c.base
	p.ev.Time, p.ev.Frame = m.Time, m.Frame
	p.session = -1
	p.start = time.Unix(0, m.ClockNs())
	p.deadline = p.start.Add(c.d.cfg.ResponseTimeout)
	return p
}

// dropPending forgets the newest pending request without an event: it
// turned out not to be one (an encrypted body).
func (c *Conn) dropPending() {
	n := len(c.pending) - 1
	c.pending[n] = pending{}
	c.pending = c.pending[:n]
}

// request counts the newest pending request and, with
// Config.EarlyRequests, emits its StageRequest event(s) at once: the rules
// that do not look at the response see it now, answered or not.
func (c *Conn) request(p *pending) {
	c.d.Stats.Requests++
	if c.cutting {
		p.ev.Malformed = cutReason(p.ev.Malformed)
	}
	if c.d.cfg.EarlyRequests {
		c.emitStage(p, plcwatch.StageRequest)
	}
}

// final is the stage of a request's last event: StageResponse after an
// early StageRequest, else StageWhole — the only event every rule sees.
func (c *Conn) final() plcwatch.Stage {
	if c.d.cfg.EarlyRequests {
		return plcwatch.StageResponse
	}
	return plcwatch.StageWhole
}

// answer emits request i with what its response filled in, and forgets it.
// m is the meta of the packet that completed the response.
func (c *Conn) answer(i int, m reassembly.Meta) {
	p := &c.pending[i]
	p.ev.RTT = c.rtt(p, m.Time.Sub(p.ev.Time))
	c.emitStage(p, c.final())
	c.remove(i)
}

// rtt is d, or 0 (left out) when the two packets' stamps are out of line:
// the response stamped before the request, or more than twice as late as
// the request may wait (docs/events.md "Times", as on the Modbus side).
func (c *Conn) rtt(p *pending, d time.Duration) time.Duration {
	if d < 0 || d > 2*p.deadline.Sub(p.start) {
		return 0
	}
	return d
}

// finish emits pending request i without a response and forgets it.
func (c *Conn) finish(i int, why string) {
	p := &c.pending[i]
	p.ev.Unanswered = why
	c.d.Stats.Unanswered++
	if why == plcwatch.UnansweredTimeout {
		c.d.Stats.Timeouts++
	}
	c.emitStage(p, c.final())
	c.remove(i)
}

func (c *Conn) remove(i int) {
	last := len(c.pending) - 1
	copy(c.pending[i:], c.pending[i+1:])
	c.pending[last] = pending{}
	c.pending = c.pending[:last]
}

func (c *Conn) send(ev *plcwatch.Event) {
	if c.cutting {
		ev.Malformed = cutReason(ev.Malformed)
	}
	if ev.Stage == plcwatch.StageRequest {
		// The early copy of a request: counted once, with its response.
		c.d.Stats.Early++
		c.emit(ev)
		return
	}
	c.d.Stats.Events++
	if ev.Malformed != "" {
		c.d.Stats.Malformed++
	}
	c.emit(ev)
}

// Expire emits the requests whose time to answer has passed at now
// (packet time when reading a file).
func (c *Conn) Expire(now time.Time) {
	for i := 0; i < len(c.pending); {
		if now.After(c.pending[i].deadline) {
			c.finish(i, plcwatch.UnansweredTimeout)
			continue
		}
		i++
	}
}

// Cut implements the engine's end of a connection: rest are dir's bytes
// Data left unconsumed — or, for a chunk too large for reassembly, what
// the Conn buffered of it — the start of a chunk whose rest never came. It
// is counted and, when its header came, handled as the final chunk it
// began, its size what came, so that the service decoder reports its
// fields up to the cut and says what is missing (Malformed starts with
// ErrCutShort). Off the hot path: it copies.
func (c *Conn) Cut(dir reassembly.Dir, rest []byte, m reassembly.Meta) {
	st := &c.dirs[dir]
	b := rest
	switch {
	case st.big != nil:
		b, m = st.big, st.bigM
	case st.tail > 0:
		m = st.tailM
	}
	if len(b) == 0 || st.lost || st.skip > 0 {
		return
	}
	c.d.Stats.CutShort++
	if _, _, ok := header(b); !ok {
		return // not even a header: counted only
	}
	cp := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(cp[4:], uint32(len(cp)))
	if cp[3] == 'C' {
		cp[3] = 'F' // the message ends here: decode what came of it
	}
	if _, _, ok := header(cp); !ok {
		return // shorter than its type's headers: counted only
	}
	c.cutting = true
	c.chunk(dir, cp, m)
	c.cutting = false
}

// Close emits every outstanding request with the given reason, the
// traffic counts of encrypted channels, and releases buffers: the
// connection is gone.
func (c *Conn) Close(why string) {
	for len(c.pending) > 0 {
		c.finish(0, why)
	}
	for i := range c.channels {
		ch := &c.channels[i]
		if ch.opaque && ch.msgs > 0 {
			ev := c.scratch(reassembly.Meta{Time: c.lastTime})
			c.channelSummary(ev, ch, "SecureChannel")
			c.send(ev)
			ch.msgs, ch.bytes = 0, 0
		}
	}
	for d := range c.dirs {
		c.Gap(reassembly.Dir(d), reassembly.Meta{})
		c.d.release(cap(c.dirs[d].spare))
		c.dirs[d].spare = nil
	}
}

// Outstanding returns the number of requests waiting for a response.
func (c *Conn) Outstanding() int { return len(c.pending) }
