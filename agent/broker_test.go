package agent

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcwatch/plcwatch/sim/pki"
)

// client is an MQTT client of the embedded broker, for the tests.
type client struct {
	t    *testing.T
	c    mqtt.Client
	mu   sync.Mutex
	msgs map[string]string // topic -> last payload
}

// dial connects to url; err is the broker's refusal, if any.
func dial(t *testing.T, url, id, user, pass string, opts func(*mqtt.ClientOptions)) (*client, error) {
	t.Helper()
	cl := &client{t: t, msgs: map[string]string{}}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetCleanSession(true)
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		cl.mu.Lock()
		cl.msgs[m.Topic()] = string(m.Payload())
		cl.mu.Unlock()
	})
	if opts != nil {
		opts(o)
	}
	cl.c = mqtt.NewClient(o)
	tok := cl.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { cl.c.Disconnect(0) })
	return cl, nil
}

func (cl *client) publish(topic, payload string, retain bool) error {
	tok := cl.c.Publish(topic, 1, retain, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("publish timed out")
	}
	return tok.Error()
}

func (cl *client) subscribe(filter string) {
	cl.t.Helper()
	tok := cl.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		cl.t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

// waitFor waits until topic's last message is payload.
func (cl *client) waitFor(topic, payload string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		cl.mu.Lock()
		got := cl.msgs[topic]
		cl.mu.Unlock()
		if got == payload {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

func (cl *client) last(topic string) string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.msgs[topic]
}

func brokerConfig(t *testing.T, text string) *Config {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "r"), 0o755)
	os.WriteFile(filepath.Join(dir, "scada.pw"), []byte("scada-password\n"), 0o600)
	path := filepath.Join(dir, "plcwatch.yaml")
	cfg, err := ParseConfig(path, []byte("site: s\ngateway: g\nrules: {paths: [r]}\n"+text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestEmbeddedBrokerLetsNoOneIn (issue 8): a local process published a
// fake alert and overwrote the retained status. Now the agent alone
// publishes, under its prefix; subscribers read; nobody else takes the
// agent's client id or leaves a last will.
func TestEmbeddedBrokerLetsNoOneIn(t *testing.T) {
	cfg := brokerConfig(t, `mqtt:
  embedded:
    listen: 127.0.0.1:0
    users: [{username: scada, password_file: scada.pw}]
`)
	b, err := startBroker(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := "tcp://" + b.addr
	pfx := cfg.MQTT.TopicPrefix
	agent, err := dial(t, b.url, cfg.MQTT.ClientID, agentUser, b.password, func(o *mqtt.ClientOptions) {
		o.SetWill(pfx+"/status", "offline", 1, true)
	})
	if err != nil {
		t.Fatalf("the agent cannot connect: %v", err)
	}
	if err := agent.publish(pfx+"/status", "online", true); err != nil {
		t.Fatal(err)
	}
	// A subscriber (configured) and an anonymous client on loopback read.
	scada, err := dial(t, url, "scada-1", "scada", "scada-password", nil)
	if err != nil {
		t.Fatalf("a configured subscriber cannot connect: %v", err)
	}
	scada.subscribe(pfx + "/#")
	anon, err := dial(t, url, "anon-1", "", "", nil)
	if err != nil {
		t.Fatalf("an anonymous reader on loopback cannot connect: %v", err)
	}
	anon.subscribe(pfx + "/#")
	if !scada.waitFor(pfx+"/status", "online") || !anon.waitFor(pfx+"/status", "online") {
		t.Fatal("the readers do not see the retained status")
	}
	if err := agent.publish(pfx+"/alerts/high", `{"real":true}`, false); err != nil {
		t.Fatal(err)
	}
	if !scada.waitFor(pfx+"/alerts/high", `{"real":true}`) {
		t.Fatal("the subscriber does not get the agent's alert")
	}
	// Nobody but the agent writes: a fake alert and a fake status go
	// nowhere (QoS 0 dropped; QoS 1 from MQTT 3.1.1 ends the connection).
	for _, c := range []*client{anon, scada} {
		c.c.Publish(pfx+"/status", 0, true, "online-FAKE").WaitTimeout(time.Second)
		c.c.Publish(pfx+"/alerts/critical", 0, false, `{"fake":true}`).WaitTimeout(time.Second)
		_ = c.publish(pfx+"/alerts/critical", `{"fake":true}`, false)
	}
	if err := agent.publish(pfx+"/alerts/high", `{"after":true}`, false); err != nil {
		t.Fatal(err)
	}
	watcher, err := dial(t, url, "watcher", "scada", "scada-password", nil)
	if err != nil {
		t.Fatal(err)
	}
	watcher.subscribe(pfx + "/#")
	if !watcher.waitFor(pfx+"/status", "online") {
		t.Errorf("retained status is %q, want online", watcher.last(pfx+"/status"))
	}
	if got := watcher.last(pfx + "/alerts/critical"); got != "" {
		t.Errorf("a fake alert reached a subscriber: %s", got)
	}
	// Refused at the door: a wrong password, an unknown user, the agent's
	// user without its password, a will (mochi sends wills without an ACL
	// check: it would overwrite the status), the agent's client id.
	for name, try := range map[string]func() (*client, error){
		"wrong password": func() (*client, error) { return dial(t, url, "x1", "scada", "guess", nil) },
		"unknown user":   func() (*client, error) { return dial(t, url, "x2", "root", "root", nil) },
		"agent user":     func() (*client, error) { return dial(t, url, "x3", agentUser, "guess", nil) },
		"will": func() (*client, error) {
			return dial(t, url, "x4", "", "", func(o *mqtt.ClientOptions) { o.SetWill(pfx+"/status", "online-FAKE", 1, true) })
		},
		"agent's client id": func() (*client, error) { return dial(t, url, cfg.MQTT.ClientID, "scada", "scada-password", nil) },
	} {
		if _, err := try(); err == nil {
			t.Errorf("%s: let in", name)
		}
	}
	if !agent.c.IsConnectionOpen() {
		t.Error("the agent lost its connection to a client taking its id")
	}
	if err := agent.publish(pfx+"/status", "still-online", true); err != nil || !watcher.waitFor(pfx+"/status", "still-online") {
		t.Errorf("the agent's status after the attempts: %v, %q", err, watcher.last(pfx+"/status"))
	}
	// The agent itself writes only under its prefix: QoS 1 outside it is
	// refused (MQTT 3.1.1 has no negative PUBACK: the broker disconnects).
	if err := agent.publish("elsewhere/x", "x", false); err == nil && agent.c.IsConnectionOpen() {
		t.Error("the agent published outside its prefix")
	}
}

// TestEmbeddedBrokerAnonymousNone: anonymous: none keeps out clients
// without credentials.
func TestEmbeddedBrokerAnonymousNone(t *testing.T) {
	cfg := brokerConfig(t, "mqtt:\n  embedded: {listen: \"127.0.0.1:0\", anonymous: none}\n")
	b, err := startBroker(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := dial(t, "tcp://"+b.addr, "anon", "", "", nil); err == nil {
		t.Error("anonymous client let in")
	}
	if _, err := dial(t, b.url, "plcwatch-g", agentUser, b.password, nil); err != nil {
		t.Errorf("the agent: %v", err)
	}
}

// TestEmbeddedBrokerTLS: beyond loopback the broker speaks TLS (with
// client certificates when client_ca_file is set); the agent reaches it on
// a loopback listener of its own that takes no one else.
func TestEmbeddedBrokerTLS(t *testing.T) {
	p, err := pki.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := p.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := brokerConfig(t, fmt.Sprintf("mqtt:\n  embedded:\n    listen: 127.0.0.1:0\n    tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n",
		files.ServerCert, files.ServerKey, files.CA))
	b, err := startBroker(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.url == "tcp://"+b.addr {
		t.Fatal("the agent connects to the TLS listener")
	}
	if _, err := dial(t, "tcp://"+b.addr, "plain", "", "", nil); err == nil {
		t.Error("a plain client got in on the TLS listener")
	}
	tlsCfg := &tls.Config{RootCAs: p.CAPool, ServerName: "localhost"}
	if _, err := dial(t, "ssl://"+b.addr, "no-cert", "", "", func(o *mqtt.ClientOptions) { o.SetTLSConfig(tlsCfg) }); err == nil {
		t.Error("a client without a certificate got in")
	}
	withCert := &tls.Config{RootCAs: p.CAPool, ServerName: "localhost", Certificates: []tls.Certificate{p.Client}}
	if _, err := dial(t, "ssl://"+b.addr, "with-cert", "", "", func(o *mqtt.ClientOptions) { o.SetTLSConfig(withCert) }); err != nil {
		t.Errorf("a client with a certificate: %v", err)
	}
	if _, err := dial(t, b.url, "anon-internal", "", "", nil); err == nil {
		t.Error("the agent's own listener let an anonymous client in")
	}
	if _, err := dial(t, b.url, cfg.MQTT.ClientID, agentUser, b.password, nil); err != nil {
		t.Errorf("the agent on its listener: %v", err)
	}
}

// TestBrokerLogSaysWhat: mochi's connection errors come with an empty
// message (issue 9: a WARN with an empty message on every clean stop);
// ordinary ends go to debug, refusals are said.
func TestBrokerLogSaysWhat(t *testing.T) {
	var out strings.Builder
	log := slog.New(brokerLog{slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})})
	log.Warn("", "error", fmt.Errorf("read: %w", net.ErrClosed))
	if out.Len() != 0 {
		t.Errorf("a clean end is logged: %s", out.String())
	}
	cfg := brokerConfig(t, "mqtt:\n  embedded: {listen: \"127.0.0.1:0\", anonymous: none}\n")
	var logs strings.Builder
	b, err := startBroker(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	dial(t, "tcp://"+b.addr, "anon", "", "", nil)
	c, err := dial(t, b.url, "plcwatch-g", agentUser, b.password, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c
	b.Close()
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, `msg=""`) || (strings.Contains(l, "level=WARN") && !strings.Contains(l, "refused a client")) {
			t.Errorf("log line: %s", l)
		}
	}
	if !strings.Contains(logs.String(), "refused a client") {
		t.Errorf("the refused client is not logged:\n%s", logs.String())
	}
}

// TestEmbeddedBrokerRefusesEveryPublishAlike (breaker 1): an anonymous
// QoS 1 publish to $SYS/x was neither acknowledged nor refused, and the
// client waited forever, while other refused topics disconnected; each
// refusal was logged as a 3 KB packet dump. Now every refused publish, any
// topic and QoS, ends the connection (MQTT 5: DISCONNECT with a reason
// code), is counted, and is logged in one short line at most every 10 s.
func TestEmbeddedBrokerRefusesEveryPublishAlike(t *testing.T) {
	cfg := brokerConfig(t, "mqtt:\n  embedded: {listen: \"127.0.0.1:0\"}\n")
	var logs strings.Builder
	var mu sync.Mutex
	b, err := startBroker(cfg, slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url, pfx := "tcp://"+b.addr, cfg.MQTT.TopicPrefix
	n := 0
	for _, topic := range []string{"$SYS/x", pfx + "/alerts/high", "elsewhere/x"} {
		for _, qos := range []byte{0, 1, 2} {
			n++
			c, err := dial(t, url, fmt.Sprintf("anon-%d", n), "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			c.c.Publish(topic, qos, false, strings.Repeat("x", 3000))
			deadline := time.Now().Add(10 * time.Second)
			for c.c.IsConnectionOpen() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if c.c.IsConnectionOpen() {
				t.Errorf("%s QoS %d: the connection stays open (MQTT 3.1.1 §3.3.5: acknowledge or close)", topic, qos)
			}
		}
	}
	// MQTT 5: a DISCONNECT saying why.
	for topic, reason := range map[string]byte{"$SYS/x": 0x90, pfx + "/status": 0x87} {
		n++
		conn, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		id := fmt.Sprintf("v5-%d", n)
		connect := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, byte(len(id))}, id...)
		conn.Write(append([]byte{0x10, byte(len(connect))}, connect...))
		ack := make([]byte, 64)
		if k, err := conn.Read(ack); err != nil || k < 4 || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK: % x, %v", ack[:k], err)
		}
		pub := append(append([]byte{0, byte(len(topic))}, topic...), 0, 1, 0, 'x')
		conn.Write(append([]byte{0x32, byte(len(pub))}, pub...))
		got, _ := io.ReadAll(conn)
		conn.Close()
		if len(got) < 3 || got[0] != 0xe0 || got[2] != reason {
			t.Errorf("MQTT 5 QoS 1 to %s: got % x, want a DISCONNECT with reason 0x%02x", topic, got, reason)
		}
	}
	if got := b.auth.refused.Load(); got != uint64(n) {
		t.Errorf("%d refused publishes counted, want %d", got, n)
	}
	mu.Lock()
	defer mu.Unlock()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "refused a publish") || !strings.Contains(lines[0], "topic=$SYS/x") || len(lines[0]) > 600 {
		t.Errorf("want one short warning for %d refused publishes within 10 s, got:\n%s", n, strings.Join(lines, "\n"))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
