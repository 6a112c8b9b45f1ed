// Package mqtttest gives plcwatch's tests a broker — the one named by
// MQTT_URL (CI sets the machine's Mosquitto), or an in-process mochi-mqtt
// one — a TCP proxy that cuts and restores connections on demand, and a
// subscriber that records what it receives.
package mqtttest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// BrokerOptions configure an in-process broker.
type BrokerOptions struct {
	TLS      *tls.Config
	Username string // when set, only this user and Password may connect
	Password string
}

// Broker returns the URL of a broker for the test: MQTT_URL when set and no
// options need an in-process one, else a new in-process broker, stopped at
// the end of the test.
func Broker(t testing.TB, opts *BrokerOptions) string {
	t.Helper()
	if u := os.Getenv("MQTT_URL"); u != "" && opts == nil {
		return u
	}
	if opts == nil {
		opts = &BrokerOptions{}
	}
	addr := FreeAddr(t)
	s := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler), InlineClient: false})
	if opts.Username != "" {
		err := s.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{Auth: auth.AuthRules{
			{Username: auth.RString(opts.Username), Password: auth.RString(opts.Password), Allow: true},
		}}})
		if err != nil {
			t.Fatal(err)
		}
	} else if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr, TLSConfig: opts.TLS})); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { s.Close() })
	scheme := "tcp"
	if opts.TLS != nil {
		scheme = "ssl"
	}
	return scheme + "://" + addr
}

// Mosquitto starts a Mosquitto broker of the test's own on a free port of
// 127.0.0.1, with conf added to a private mosquitto.conf (for example
// "max_packet_size 1024"), and returns its URL and a function returning its
// log so far. It is stopped at the end of the test. Without the mosquitto
// binary the test skips, and fails in CI (CI=true), where it is installed.
func Mosquitto(t testing.TB, conf string) (url string, log func() string) {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto is not installed (CI installs it: .ci/run)")
		}
		t.Skip("mosquitto is not installed (apt-get install mosquitto)")
	}
	addr := FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	path := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf("listener %s %s\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n%s\n", port, host, conf)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", path)
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	logText := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("mosquitto exited: %s", logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto does not listen on %s: %s", addr, logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "tcp://" + addr, logText
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// FreeAddr returns a 127.0.0.1 address nobody listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proxy forwards TCP connections to a target; Cut drops every connection
// and refuses new ones until Restore.
type Proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

// NewProxy listens on 127.0.0.1 and forwards to target (host:port).
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() { l.Close(); p.Cut() })
	return p
}

// URL is the proxy's address with scheme.
func (p *Proxy) URL(scheme string) string { return scheme + "://" + p.l.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut drops every connection through the proxy and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore accepts connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Message is one message a Subscriber received.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
	At       time.Time
}

// Subscriber records every message on a topic filter.
type Subscriber struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs []Message
	more chan struct{}
}

// Subscribe connects a new client to url and subscribes to filter at QoS 0.
// QoS 0 on purpose: Mosquitto gives a QoS 1 subscriber 20 messages in
// flight and queues 1,000 more (max_queued_messages), dropping the rest
// ("Outgoing messages are being dropped"), so a QoS 1 test subscriber falls
// behind a fast publisher and loses messages the broker did accept. At QoS 0
// on loopback it reads at TCP speed. The leg under test is the publisher's,
// which is QoS 1.
func Subscribe(t testing.TB, url, filter string) *Subscriber {
	t.Helper()
	return SubscribeQoS(t, url, filter, 0)
}

// SubscribeQoS is Subscribe at a chosen QoS. A latency measurement wants
// QoS 1, as a SOC consumer subscribes: Mosquitto leaves Nagle's algorithm on
// (set_tcp_nodelay false), and a QoS 0 subscriber, which never sends, lets
// its delayed ACKs hold Mosquitto's next small message for up to 40 ms.
func SubscribeQoS(t testing.TB, url, filter string, qos byte) *Subscriber {
	t.Helper()
	s := &Subscriber{more: make(chan struct{}, 1)}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(true).SetOrderMatters(true).SetConnectTimeout(5 * time.Second)
	s.c = mqtt.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect %s: %v", url, tok.Error())
	}
	tok := s.c.Subscribe(filter, qos, func(_ mqtt.Client, m mqtt.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, Message{Topic: m.Topic(), Payload: bytes.Clone(m.Payload()), Retained: m.Retained(), At: time.Now()})
		s.mu.Unlock()
		select {
		case s.more <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

// Messages returns a copy of what was received so far.
func (s *Subscriber) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitFor waits until ok holds for what was received, or the timeout.
func (s *Subscriber) WaitFor(timeout time.Duration, ok func([]Message) bool) ([]Message, error) {
	deadline := time.After(timeout)
	for {
		msgs := s.Messages()
		if ok(msgs) {
			return msgs, nil
		}
		select {
		case <-s.more:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return msgs, errors.New("timed out")
		}
	}
}
