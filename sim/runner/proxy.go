package runner

import (
	"context"
	"io"
	"net"
	"sync"

	"github.com/plcwatch/plcwatch/sim/actors"
)

// proxy is a recording tap in front of a plant: it listens on the plant's
// address, forwards every connection to where the plant serves, and
// records each connection with the client's real address and port and the
// plant's address, as a tap on the wire would see it.
type proxy struct {
	ln    net.Listener
	to    string
	rec   *actors.Recorder
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// closed is set by close: a connection tracked after it is closed at
	// once, so that none outlives close (wg.Wait would wait for its client).
	closed bool
	// stop ends dials in flight when close is called.
	ctx  context.Context
	stop context.CancelFunc
}

func startProxy(listen, to string, rec *actors.Recorder) (*proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, to: to, rec: rec, conns: map[net.Conn]struct{}{}}
	p.ctx, p.stop = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// track adds c to the connections close closes, or removes it. Adding
// after close closes c and reports false.
func (p *proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.conns, c)
		return true
	}
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// serve forwards one connection both ways, recording what it forwards.
func (p *proxy) serve(c net.Conn) {
	defer c.Close()
	// Tracked before the dial: a close during the dial closes c, and
	// cancels the dial.
	if !p.track(c, true) {
		return
	}
	defer p.track(c, false)
	d := net.Dialer{Timeout: actors.Timeout}
	s, err := d.DialContext(p.ctx, "tcp", p.to)
	if err != nil {
		return
	}
	defer s.Close()
	if !p.track(s, true) {
		return
	}
	defer p.track(s, false)
	tap := p.rec.Tap(c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort())
	defer tap.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyRecorded(s, c, tap.Request)
		s.(*net.TCPConn).CloseWrite()
	}()
	copyRecorded(c, s, tap.Response)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

// copyRecorded copies src to dst, recording every chunk read.
func copyRecorded(dst io.Writer, src io.Reader, record func([]byte)) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			record(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.stop()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
