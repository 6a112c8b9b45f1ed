package agent

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/plcwatch/plcwatch/secret"
)

// agentUser is the agent's own user on its embedded broker; its password
// is made at every start and never leaves the process.
const agentUser = "plcwatch-agent"

// embeddedBroker is the in-process MQTT broker the agent starts when no
// broker is configured, so that it works alone and a dashboard can
// subscribe to the gateway itself. It lets no one in (issue 8: a local
// process published a fake alert and overwrote the retained status with
// "online-FAKE"): the agent alone publishes, and only under its topic
// prefix; configured users and, by default on loopback, anonymous clients
// read; nobody else may take the agent's client id or leave a last will
// (mochi publishes wills without an ACL check, so a read-only client's
// will could overwrite the retained status).
type embeddedBroker struct {
	server   *mochi.Server
	addr     string // where it listens (mqtt.embedded.listen, resolved)
	url      string // where the agent connects
	password string // the agent's
	auth     *brokerAuth
}

// startBroker opens the embedded broker's listeners and starts it.
func startBroker(cfg *Config, log *slog.Logger) (*embeddedBroker, error) {
	e := cfg.MQTT.Embedded
	var pw [24]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	auth := &brokerAuth{agentPass: []byte(hex.EncodeToString(pw[:])), clientID: cfg.MQTT.ClientID,
		prefix: cfg.MQTT.TopicPrefix, anonymous: e.Anonymous == "read", users: map[string][]byte{}}
	for i, u := range e.Users {
		p, err := secret.FileOrEnv(fmt.Sprintf("mqtt.embedded.users[%d]", i), u.PasswordFile, u.PasswordEnv)
		if err != nil {
			return nil, err
		}
		auth.users[u.Username] = []byte(p)
	}
	tlsCfg, err := e.TLS.serverConfig()
	if err != nil {
		return nil, fmt.Errorf("mqtt.embedded.tls: %w", err)
	}
	s := mochi.New(&mochi.Options{Logger: slog.New(brokerLog{slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "broker").Handler()})})
	auth.server = s
	if err := s.AddHook(auth, nil); err != nil {
		return nil, err
	}
	b := &embeddedBroker{server: s, password: string(auth.agentPass), auth: auth}
	ln, err := listen(e.Listen, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("embedded mqtt broker: listen %s: %w (another broker there? point mqtt.brokers at it, or set mqtt.embedded.listen)", e.Listen, err)
	}
	if err := s.AddListener(listeners.NewNet("plcwatch", ln)); err != nil {
		ln.Close()
		return nil, err
	}
	b.addr = ln.Addr().String()
	if tlsCfg == nil {
		b.url = "tcp://" + connectAddr(ln.Addr())
	} else {
		// The agent does not speak TLS to itself: it has a listener of
		// its own on loopback, which takes no one else.
		own, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("embedded mqtt broker: %w", err)
		}
		if err := s.AddListener(listeners.NewNet(agentListener, own)); err != nil {
			own.Close()
			s.Close()
			return nil, err
		}
		b.url = "tcp://" + own.Addr().String()
	}
	if err := s.Serve(); err != nil {
		s.Close()
		return nil, fmt.Errorf("embedded mqtt broker: %w", err)
	}
	log.Info("embedded mqtt broker listening", "address", ln.Addr().String(), "tls", tlsCfg != nil,
		"anonymous", e.Anonymous, "users", len(e.Users))
	return b, nil
}

// agentListener is the id of the agent's own listener.
const agentListener = "plcwatch-agent"

// listen opens a TCP listener, with TLS when tlsCfg is not nil.
func listen(addr string, tlsCfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err // "address already in use", without "listen tcp ...:" again
			var sys *os.SyscallError
			if errors.As(err, &sys) {
				err = sys.Err
			}
		}
		return nil, err
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	return ln, nil
}

// connectAddr is where to connect to reach a listener: 127.0.0.1 for one on
// every address.
func connectAddr(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// serverConfig is the TLS configuration of a listener (nil without TLS).
func (t ListenerTLS) serverConfig() (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file %s: no PEM certificate in it", t.ClientCAFile)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func (b *embeddedBroker) Close() { b.server.Close() }

// brokerAuth is the embedded broker's authentication and ACL (a mochi
// hook).
type brokerAuth struct {
	mochi.HookBase
	agentPass []byte
	clientID  string            // the agent's: no one else may take it over
	prefix    string            // the agent's topics
	anonymous bool              // clients without credentials may read
	users     map[string][]byte // subscribers: user -> password
	server    *mochi.Server

	refused atomic.Uint64 // publishes refused (plcwatch_mqtt_embedded_refused_publishes_total)
	mu      sync.Mutex
	logged  time.Time // the last refused publish logged
	quiet   uint64    // refused publishes not logged since
}

func (h *brokerAuth) ID() string { return "plcwatch-auth" }

func (h *brokerAuth) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnPacketRead
}

// refusedLogEvery is how often a refused publish is logged at most: a
// client refused in a loop must not fill the log (the others are counted).
const refusedLogEvery = 10 * time.Second

// OnPacketRead refuses every PUBLISH the agent would not make, the same
// way whatever its QoS and topic: the connection ends (MQTT 3.1.1
// §3.3.5: close the network connection; MQTT 5 §3.14: DISCONNECT with
// reason 0x87 Not authorized, or 0x90 Topic Name invalid). mochi alone
// drops a publish to $SYS or with a wildcard without a word, and a QoS 1
// client waits for its PUBACK forever (breaker 1); it answers a refused
// QoS 0 publish with nothing and a QoS 1 one with a disconnect, and logs
// each as a 3 KB packet dump. Here each is one short line, at most every
// refusedLogEvery, and counted.
func (h *brokerAuth) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return pk, nil
	}
	valid := mochi.IsValidFilter(pk.TopicName, true)
	if valid && h.OnACLCheck(cl, pk.TopicName, true) {
		return pk, nil
	}
	code := packets.ErrNotAuthorized
	if !valid {
		code = packets.ErrTopicNameInvalid
	}
	h.refused.Add(1)
	h.mu.Lock()
	if now := time.Now(); now.Sub(h.logged) >= refusedLogEvery {
		h.Log.Warn("embedded mqtt broker: refused a publish and closed the connection: only the agent publishes here, under its topic prefix",
			"client", clip(cl.ID, 64), "remote", cl.Net.Remote, "user", clip(string(cl.Properties.Username), 64),
			"topic", clip(pk.TopicName, 128), "reason", code.Reason, "not_logged_since", h.quiet)
		h.logged, h.quiet = now, 0
	} else {
		h.quiet++
	}
	h.mu.Unlock()
	if cl.Properties.ProtocolVersion == 5 && h.server != nil {
		_ = h.server.DisconnectClient(cl, code)
	}
	// The one error of this hook mochi does not ignore: the read fails
	// and the connection ends.
	return pk, packets.ErrRejectPacket
}

// clip bounds a client-chosen string for a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// OnConnectAuthenticate lets in the agent, the configured users with their
// password and, when allowed, anonymous clients; on the agent's own
// listener, the agent only. A client other than the agent may neither use
// the agent's client id (that would disconnect the agent and publish its
// last will) nor leave a will of its own (mochi publishes wills without
// asking the ACL).
func (h *brokerAuth) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	user, pass := string(pk.Connect.Username), pk.Connect.Password
	if user == agentUser {
		return subtle.ConstantTimeCompare(pass, h.agentPass) == 1
	}
	if cl.Net.Listener == agentListener {
		return false
	}
	switch want, ok := h.users[user]; {
	case user == "" && len(pass) == 0:
		if !h.anonymous {
			return false
		}
	case !ok || subtle.ConstantTimeCompare(pass, want) != 1:
		return false
	}
	if cl.ID == h.clientID || pk.Connect.ClientIdentifier == h.clientID {
		h.Log.Warn("embedded mqtt broker: refused a client that took the agent's client id", "remote", cl.Net.Remote, "user", user)
		return false
	}
	if pk.Connect.WillFlag {
		h.Log.Warn("embedded mqtt broker: refused a client with a last will: only the agent publishes here", "remote", cl.Net.Remote, "user", user, "will_topic", pk.Connect.WillTopic)
		return false
	}
	return true
}

// OnACLCheck lets everyone let in read, and the agent alone write, under
// its prefix only.
func (h *brokerAuth) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if !write {
		return true
	}
	return string(cl.Properties.Username) == agentUser && (topic == h.prefix || strings.HasPrefix(topic, h.prefix+"/"))
}

// brokerLog tidies mochi's log: its listeners log every connection that
// ends with an error as a warning with an empty message (issue 9: one on
// every clean stop). Those are said in words; the ends of connections that
// are no one's fault (the server stopping, the peer closing) go to debug.
type brokerLog struct{ slog.Handler }

func (h brokerLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "error processing packet" {
		// mochi adds the whole packet ("pk"): kilobytes a client chose.
		nr := slog.NewRecord(r.Time, r.Level, "embedded mqtt broker: error processing a packet", r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != "pk" {
				nr.AddAttrs(a)
			}
			return true
		})
		return h.Handler.Handle(ctx, nr)
	}
	if r.Message != "" {
		return h.Handler.Handle(ctx, r)
	}
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok && a.Key == "error" {
			err = e
			return false
		}
		return true
	})
	level, msg := slog.LevelWarn, "embedded mqtt broker: a client connection ended with an error"
	var code packets.Code
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET),
		errors.As(err, &code) && code == packets.ErrRejectPacket, // a refused publish: the hook logged it
		errors.As(err, &code) && code == packets.ErrServerShuttingDown,
		errors.As(err, &code) && code == packets.ErrSessionTakenOver,
		errors.As(err, &code) && code.Code == packets.CodeDisconnect.Code:
		level, msg = slog.LevelDebug, "embedded mqtt broker: client disconnected"
	case errors.As(err, &code) && slices.Contains([]byte{packets.ErrBadUsernameOrPassword.Code, packets.ErrNotAuthorized.Code}, code.Code):
		msg = "embedded mqtt broker: refused a client (credentials, client id or last will)"
	}
	if !h.Enabled(ctx, level) {
		return nil
	}
	nr := slog.NewRecord(r.Time, level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool { nr.AddAttrs(a); return true })
	return h.Handler.Handle(ctx, nr)
}

func (h brokerLog) WithAttrs(a []slog.Attr) slog.Handler { return brokerLog{h.Handler.WithAttrs(a)} }
func (h brokerLog) WithGroup(g string) slog.Handler      { return brokerLog{h.Handler.WithGroup(g)} }
