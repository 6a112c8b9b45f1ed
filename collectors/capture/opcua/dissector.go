// Package opcua is plcwatch's passive OPC UA Binary dissector: it reads the
// OPC UA Connection Protocol (UACP, OPC 10000-6 §7.1) and Secure
// Conversation (§6.7) from reassembled TCP streams, reassembles message
// chunks per secure channel, decodes the services of OPC 10000-4 and turns
// them into plcwatch.Events: one per WriteValue and per method call, one
// per request otherwise, each paired with its response by secure channel
// and request id (issue 11).
//
// The hot services — Read and Publish and their responses, what a polling
// or subscribing client sends all day — are read by hand, without
// allocating; the rare, security-relevant ones (Write, Call, sessions,
// node management, history updates, ...) are decoded with gopcua's ua
// package, after a schema walk has proven the message safe for it to
// decode (schema.go). Encrypted bodies are counted, never guessed at.
package opcua

import (
	"net/netip"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// Config tunes the dissector. Zero fields take DefaultConfig's values.
type Config struct {
	// ResponseTimeout is how long a request waits for its response before
	// it is emitted as unanswered "timeout". A request whose header carries
	// a longer TimeoutHint waits that long (up to an hour); a
	// PublishRequest, which a server holds until it has something to
	// publish, waits at least PublishTimeout.
	ResponseTimeout time.Duration
	PublishTimeout  time.Duration
	// MaxOutstanding bounds the requests one connection may have waiting;
	// beyond it the oldest is emitted as unanswered "evicted".
	MaxOutstanding int
	// MaxMessage is the largest message (all chunks of one request or
	// response) plcwatch reassembles, in bytes; larger ones are reported
	// from their first chunk and counted in Stats.TooLarge.
	MaxMessage int
	// MaxChunks is the most chunks of one message.
	MaxChunks int
	// MaxBuffer bounds the bytes all connections together hold for
	// messages split over several chunks or large chunks not yet complete.
	MaxBuffer int
	// EarlyRequests emits every request twice: as plcwatch.StageRequest
	// the moment it is complete on the wire, and as StageResponse when it
	// is answered or given up on. Off, it is emitted once, StageWhole, at
	// the second moment. Set it when the consumer honours Event.Stage: an
	// alert on a Write, a Call or an ActivateSession then never waits for
	// a response that may never come (issue 9 §4), as on the Modbus side.
	EarlyRequests bool
}

// DefaultConfig is what the dissector uses when nothing is configured.
var DefaultConfig = Config{
	ResponseTimeout: 5 * time.Second,
	PublishTimeout:  10 * time.Minute,
	MaxOutstanding:  64,
	MaxMessage:      16 << 20,
	MaxChunks:       4096,
	MaxBuffer:       64 << 20,
}

// Stats count what the dissector saw. Plain counters, owned by the
// goroutine that feeds the dissector.
type Stats struct {
	Chunks       uint64 // UACP messages and secure conversation chunks framed
	Requests     uint64 // service requests (complete messages to the server)
	Responses    uint64 // service responses
	Events       uint64 // events emitted, one per request (its StageRequest copy is not counted)
	Early        uint64 // StageRequest events emitted (Config.EarlyRequests)
	Malformed    uint64 // of those, the ones whose Malformed is set
	Faults       uint64 // ServiceFault responses
	Orphans      uint64 // responses that matched no request
	Timeouts     uint64 // requests that got no response in time
	Unanswered   uint64 // requests emitted without a response, for any reason
	Encrypted    uint64 // chunks whose body is encrypted: counted, not decoded
	Aborted      uint64 // messages aborted by their sender (chunk type A)
	Oversized    uint64 // chunks, messages or chunk counts beyond what Hello/Acknowledge negotiated
	TooLarge     uint64 // messages dropped at MaxMessage, MaxChunks or MaxBuffer
	FramingLost  uint64 // times the stream stopped looking like UACP
	ResyncBytes  uint64 // bytes skipped looking for the next message header
	Resyncs      uint64 // times a message header was found again
	Panics       uint64 // gopcua panics recovered (reported as malformed)
	Rejected     uint64 // messages the schema walk kept from gopcua (malformed)
	BufferedPeak uint64 // most bytes held at once for incomplete messages
	CutShort     uint64 // messages their connection ended inside (reported as far as they came when their header had)
}

// Dissector makes Conns that share a configuration, statistics, the
// interned NodeId texts and the buffer budget. One capture goroutine owns
// it; it is not safe for concurrent use.
type Dissector struct {
	cfg      Config
	Stats    Stats
	services serviceIndex
	nodes    *interner
	held     int            // bytes held by all connections' buffers
	scratch  plcwatch.Event // events emitted at once
	rv       readValue      // the fast readers' scratch: kept here so that nothing escapes
	dv       dataValue
	tap      func(dir reassembly.Dir, msg []byte) // tests: every complete message
}

// New returns a dissector.
func New(cfg Config) *Dissector {
	d := DefaultConfig
	if cfg.ResponseTimeout > 0 {
		d.ResponseTimeout = cfg.ResponseTimeout
	}
	if cfg.PublishTimeout > 0 {
		d.PublishTimeout = cfg.PublishTimeout
	}
	if cfg.MaxOutstanding > 0 {
		d.MaxOutstanding = cfg.MaxOutstanding
	}
	if cfg.MaxMessage > 0 {
		d.MaxMessage = cfg.MaxMessage
	}
	if cfg.MaxChunks > 0 {
		d.MaxChunks = cfg.MaxChunks
	}
	if cfg.MaxBuffer > 0 {
		d.MaxBuffer = cfg.MaxBuffer
	}
	d.EarlyRequests = cfg.EarlyRequests
	return &Dissector{cfg: d, services: newServiceIndex(), nodes: newInterner(1 << 14)}
}

// Limits bound what reassembly holds for a connection: a chunk up to
// smallChunk waits there until complete; larger ones the Conn buffers
// itself, within the shared budget.
func (d *Dissector) Limits() reassembly.Limits {
	return reassembly.Limits{MaxPending: smallChunk, MaxSegments: 64}
}

// reserve takes n bytes from the shared buffer budget.
func (d *Dissector) reserve(n int) bool {
	if d.held+n > d.cfg.MaxBuffer {
		return false
	}
	d.held += n
	if uint64(d.held) > d.Stats.BufferedPeak {
		d.Stats.BufferedPeak = uint64(d.held)
	}
	return true
}

func (d *Dissector) release(n int) { d.held -= n }

// NewConn starts the state for connection id from client to server.
func (d *Dissector) NewConn(id uint64, client, server netip.AddrPort, emit plcwatch.Emit) *Conn {
	c := &Conn{d: d, emit: emit}
	c.base.Conn = id
	c.base.Source = plcwatch.Wire
	c.base.Protocol = plcwatch.ProtoOPCUA
	c.base.Client, c.base.Server = client, server
	c.base.Device = server.String()
	c.base.Value = plcwatch.NoValue
	// Known once a message carries them: a Hello has no channel or
	// request id, and a request never answered has no status.
	c.base.Absent = plcwatch.FieldStatus | plcwatch.FieldRequestID | plcwatch.FieldChannel
	return c
}
