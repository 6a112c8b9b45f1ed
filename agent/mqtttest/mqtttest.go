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
	"os/user"
	"path/filepath"
	"sync"
	"syscall"
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
	m := StartMosquitto(t, conf)
	return m.URL(), m.Log
}

// MosquittoProcess is a Mosquitto of the test's own that can be stopped
// and started again on the same port, with the same configuration and
// persistence folder: a broker restart.
type MosquittoProcess struct {
	t    testing.TB
	bin  string
	addr string
	conf string
	mu   sync.Mutex
	out  bytes.Buffer
	cmd  *exec.Cmd
	done chan struct{}
}

// StartMosquitto starts a Mosquitto as Mosquitto does, and returns it
// running. Persistence is off unless conf turns it on ("persistence
// true"); its folder is then the test's own. The broker is killed at the
// end of the test.
func StartMosquitto(t testing.TB, conf string) *MosquittoProcess {
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
	// Mosquitto started as root drops to the user "mosquitto", who cannot
	// write the test's folder: it stays whoever runs the test.
	me := "root"
	if u, err := user.Current(); err == nil {
		me = u.Username
	}
	text := fmt.Sprintf("user %s\nlistener %s %s\nallow_anonymous true\npersistence false\npersistence_location %s/\nlog_dest stderr\nlog_type all\n%s\n",
		me, port, host, dir, conf)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &MosquittoProcess{t: t, bin: bin, addr: addr, conf: path}
	t.Cleanup(func() {
		m.mu.Lock()
		cmd, done := m.cmd, m.done
		m.mu.Unlock()
		if cmd != nil {
			cmd.Process.Kill()
			<-done
		}
	})
	m.Start()
	return m
}

// URL is the broker's tcp:// URL; it stays the same across restarts.
func (m *MosquittoProcess) URL() string { return "tcp://" + m.addr }

// Log returns what the broker logged so far, across restarts.
func (m *MosquittoProcess) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// Start starts the broker and waits until it listens. It must be stopped.
func (m *MosquittoProcess) Start() {
	m.t.Helper()
	m.mu.Lock()
	if m.cmd != nil {
		m.mu.Unlock()
		m.t.Fatal("mosquitto is running already")
	}
	cmd := exec.Command(m.bin, "-c", m.conf)
	w := writerFunc(func(p []byte) (int, error) { m.mu.Lock(); defer m.mu.Unlock(); return m.out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		m.mu.Unlock()
		m.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", m.addr); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			m.t.Fatalf("mosquitto exited: %s", m.Log())
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto does not listen on %s: %s", m.addr, m.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the broker as an operator or systemd does, with SIGTERM: it
// closes its connections and writes its persistence file. It waits for
// the broker to exit.
func (m *MosquittoProcess) Stop() {
	m.t.Helper()
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd, m.done = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		m.t.Fatal("mosquitto is not running")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		m.t.Fatalf("mosquitto did not stop on SIGTERM within 10 s: %s", m.Log())
	}
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
	return subscribe(t, url, "", filter, qos)
}

// SubscribeAs is Subscribe with a broker username (no password): for a
// broker of the test's own whose ACL names users.
func SubscribeAs(t testing.TB, url, username, filter string) *Subscriber {
	t.Helper()
	return subscribe(t, url, username, filter, 0)
}

func subscribe(t testing.TB, url, username, filter string, qos byte) *Subscriber {
	t.Helper()
	s := &Subscriber{more: make(chan struct{}, 1)}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(true).SetOrderMatters(true).SetConnectTimeout(5 * time.Second)
	if username != "" {
		o.SetUsername(username)
	}
	s.c = mqtt.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect %s: %v", url, tok.Error())
	}
	tok := s.c.Subscribe(filter, qos, s.record)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

// SubscribeSession is SubscribeQoS with a persistent session (clean
// session off, a client id of its own), as a SOC consumer that must miss
// nothing subscribes: the broker keeps what it queues for the subscriber
// while it is away, and across its own restart when its persistence is on.
// The subscriber reconnects by itself and subscribes again on every
// connection, in case the broker lost the subscription.
func SubscribeSession(t testing.TB, url, filter string, qos byte) *Subscriber {
	t.Helper()
	return SubscribeSessionAs(t, url, "", filter, qos)
}

// SubscribeSessionAs is SubscribeSession with a broker username (no
// password), "" for none.
func SubscribeSessionAs(t testing.TB, url, username, filter string, qos byte) *Subscriber {
	t.Helper()
	s := &Subscriber{more: make(chan struct{}, 1)}
	subscribed := make(chan error, 1)
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(500 * time.Millisecond).
		SetOrderMatters(true).SetConnectTimeout(5 * time.Second)
	if username != "" {
		o.SetUsername(username)
	}
	o.SetDefaultPublishHandler(s.record) // what the session delivers before the SUBACK
	o.SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.Subscribe(filter, qos, s.record)
		go func() {
			tok.WaitTimeout(10 * time.Second)
			select {
			case subscribed <- tok.Error():
			default:
			}
		}()
	})
	s.c = mqtt.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect %s: %v", url, tok.Error())
	}
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("subscribe %s: %v", filter, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("subscribe %s: no SUBACK", filter)
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *Subscriber) record(_ mqtt.Client, m mqtt.Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, Message{Topic: m.Topic(), Payload: bytes.Clone(m.Payload()), Retained: m.Retained(), At: time.Now()})
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
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
