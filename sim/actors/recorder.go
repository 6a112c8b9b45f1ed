package actors

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// Recorder writes the connections of the clients given it to a capture:
// Ethernet/IPv4/TCP frames with the connections' real addresses and ports,
// a handshake, every request and answer as a segment with its sequence and
// acknowledgement numbers, and the FINs — what a tap between the actors and
// the plants would have captured, without root. It is safe for concurrent
// use.
type Recorder struct {
	mu     sync.Mutex
	w      *pcapgen.Writer
	stream bool
	rng    *rand.Rand
	err    error
}

// NewRecorder records to w. With stream, every segment is flushed at once,
// so that a reader of the file (plcwatch replay --pcap -) sees it live.
func NewRecorder(w *pcapgen.Writer, stream bool) *Recorder {
	return &Recorder{w: w, stream: stream, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
}

// Flush writes what is buffered; it returns the first error met.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	return r.err
}

// FlushEvery flushes every d until ctx ends, so that a recording killed
// (SIGKILL, a crash, a power cut) is readable up to its last flush rather
// than empty: the writer buffers 1 MiB (issue 12). Errors are kept for
// Flush to return.
func (r *Recorder) FlushEvery(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.Flush()
		}
	}
}

type recConn struct {
	r *Recorder
	c *pcapgen.Conn
}

// open records a new connection's handshake.
func (r *Recorder) open(client, server netip.AddrPort) *recConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.w.Conn(client, server, time.Now(), r.rng.Uint32())
	c.Step = time.Microsecond
	c.Handshake()
	r.flushLocked()
	return &recConn{r: r, c: c}
}

func (r *Recorder) flushLocked() {
	if r.stream {
		if err := r.w.Flush(); err != nil && r.err == nil {
			r.err = err
		}
	}
}

func (rc *recConn) segment(d pcapgen.Dir, payload []byte) {
	rc.r.mu.Lock()
	defer rc.r.mu.Unlock()
	rc.c.Time = time.Now()
	rc.c.Send(d, payload)
	rc.r.flushLocked()
}

func (rc *recConn) send(b []byte)    { rc.segment(pcapgen.ToServer, b) }
func (rc *recConn) receive(b []byte) { rc.segment(pcapgen.ToClient, b) }

func (rc *recConn) close() {
	rc.r.mu.Lock()
	defer rc.r.mu.Unlock()
	rc.c.Time = time.Now()
	rc.c.Close()
	rc.r.flushLocked()
}

// Tap is one recorded connection seen from outside its ends (a proxy's):
// Request records bytes the client sent, Response bytes the server sent.
type Tap struct{ rc *recConn }

// Tap starts recording a connection between client and server with its
// handshake.
func (r *Recorder) Tap(client, server netip.AddrPort) *Tap { return &Tap{r.open(client, server)} }

// Request records bytes from the client.
func (t *Tap) Request(b []byte) { t.rc.send(b) }

// Response records bytes from the server.
func (t *Tap) Response(b []byte) { t.rc.receive(b) }

// Close records the connection's end.
func (t *Tap) Close() { t.rc.close() }
