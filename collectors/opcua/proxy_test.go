package opcua

import (
	"encoding/binary"
	"io"
	"net"
	"sort"
	"sync"
	"testing"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// proxy is a TCP proxy the test controls: it forwards to a server, can cut
// the network (a cable pulled: the connections go silent, nothing is
// closed, new connections get nowhere) and restore it, and records the
// service of every request a client sends (security None: the bodies are
// plain), so that a test can prove what a client sent.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu       sync.Mutex
	cut      bool
	conns    []net.Conn
	services map[string]int
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, services: map[string]int{}}
	go p.accept()
	t.Cleanup(func() { p.close() })
	return p
}

// addr is the proxy's host:port.
func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	cut := p.cut
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	if cut { // a dead network: the connection goes nowhere
		io.Copy(io.Discard, c)
		c.Close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	rec := &recorder{p: p}
	go func() {
		p.pipe(s, c, rec)
		s.Close()
	}()
	p.pipe(c, s, nil)
	c.Close()
}

// pipe copies src to dst unless the network is cut, recording what a
// client sends when rec is set.
func (p *proxy) pipe(dst, src net.Conn, rec *recorder) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			cut := p.cut
			p.mu.Unlock()
			if !cut {
				if rec != nil {
					rec.feed(buf[:n])
				}
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// setCut cuts the network (true) or restores it (false). Restoring closes
// the connections that were cut, as a peer's TCP would time them out.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if !cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// seen are the services requested so far and how often.
func (p *proxy) seen() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.services {
		out[k] = v
	}
	return out
}

func (p *proxy) seenNames() []string {
	var out []string
	for k := range p.seen() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// recorder frames one client-to-server stream of UACP messages (OPC
// 10000-6 §7.1.2: type, chunk type, size) and names each request: the
// encoding node id that starts a message body's first chunk (§5.2.2.16)
// looked up in gopcua's id names.
type recorder struct {
	p    *proxy
	buf  []byte
	cont bool // the next MSG chunk continues a message
}

func (r *recorder) feed(b []byte) {
	r.buf = append(r.buf, b...)
	for len(r.buf) >= 8 {
		size := int(binary.LittleEndian.Uint32(r.buf[4:8]))
		if size < 8 || size > 1<<24 {
			r.record("unframed")
			r.buf = nil
			return
		}
		if len(r.buf) < size {
			return
		}
		chunk := r.buf[:size]
		r.buf = r.buf[size:]
		typ, final := string(chunk[:3]), chunk[3]
		switch typ {
		case "HEL":
			r.record("Hello")
		case "OPN":
			r.record("OpenSecureChannelRequest")
		case "CLO":
			r.record("CloseSecureChannelRequest")
		case "MSG":
			if !r.cont {
				r.record(service(chunk))
			}
			r.cont = final == 'C'
		default:
			r.record("unknown chunk " + typ)
		}
	}
}

func (r *recorder) record(s string) {
	r.p.mu.Lock()
	r.p.services[s]++
	r.p.mu.Unlock()
}

// service names the request in a None MSG chunk: header (8), secure
// channel id, token id, sequence number, request id (4 each), then the
// type's node id.
func service(chunk []byte) string {
	body := chunk[8+16:]
	if len(body) < 1 {
		return "short"
	}
	var n uint32
	switch body[0] {
	case 0x00:
		n = uint32(body[1])
	case 0x01:
		n = uint32(binary.LittleEndian.Uint16(body[2:4]))
	case 0x02:
		n = binary.LittleEndian.Uint32(body[3:7])
	default:
		return "encrypted or unknown"
	}
	name := id.Name(n)
	if name == "" {
		return "type " + ua.NewNumericNodeID(0, n).String()
	}
	const suffix = "_Encoding_DefaultBinary"
	if len(name) > len(suffix) && name[len(name)-len(suffix):] == suffix {
		name = name[:len(name)-len(suffix)]
	}
	return name
}
