// Package publish drains the spool to an MQTT broker: in order, at least
// once, acknowledging a record only after the broker acknowledged it
// (PUBACK at QoS 1, PUBCOMP at QoS 2). It keeps the agent's status
// retained at <prefix>/status ("online" on connect, "offline" as the last
// will and on a clean stop) and publishes a heartbeat.
//
// paho's tokens can hang, or complete without delivery, across a reconnect
// (eclipse/paho.mqtt.golang#613, #563). So every wait here is bounded, and a
// connection that fails once is thrown away: the next attempt is a new
// client, and what was not acknowledged is sent again from the spool, with
// the same content (and alert id).
//
// Delivery never stalls on one message or one name (issue 8 §8):
//
//   - A message the broker refuses (an MQTT 3.1.1 broker refuses by closing
//     the connection: Mosquitto past its max_packet_size) is found by
//     sending the messages that were in flight one at a time; one that fails
//     MaxAttempts times alone on a working connection is set aside in the
//     spool's dead-letter file, and delivery goes on.
//   - Connections that end soon after they were made back off like failed
//     connects, so a broker that takes the connection and drops it is not
//     hammered.
//   - A connection taken over by another client with the same client id
//     (lost soon after connect, repeatedly, with no message at fault) is
//     said to be one, in the log and in Stats.
//
// At QoS 2 no more publishes are in flight than the broker takes
// (Config.ReceiveMaximum): past its limit a broker drops a QoS 2 publish
// from an MQTT 3.1.1 client while acknowledging it — PUBREC, then PUBCOMP
// for the PUBREL — so no client can tell it was lost. Mosquitto 2.0 does
// (handle__publish: MQTT_RC_QUOTA_EXCEEDED, sent to a 3.1.1 client as a
// plain PUBREC), and EMQX past max_awaiting_rel. Not paho: its QoS 2 token
// completes on the broker's PUBCOMP.
//
// Storage errors of the spool are never taken for connection errors: the
// publisher keeps its connection and reads again after a pause.
package publish

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/agent/spool"
)

// Config configures a Publisher.
type Config struct {
	Brokers  []string // tcp://, ssl://, ws://, wss:// URLs; tried in order (failover)
	ClientID string
	Username string
	Password string
	TLS      *tls.Config
	// TopicPrefix: alerts go to <prefix>/alerts/<severity>, status to
	// <prefix>/status.
	TopicPrefix string
	QoS         byte
	// KeepAlive is MQTT's keep alive, in whole seconds (MQTT 3.1.1 §3.1.2.10;
	// at most 65535 s); 0 turns it off: no PINGREQ, and the broker never
	// times the agent out. A dead connection is then noticed at the next
	// publish, within PublishTimeout.
	KeepAlive      time.Duration
	ConnectTimeout time.Duration // default 10s
	PublishTimeout time.Duration // bound on every wait for the broker; default 10s
	Window         int           // publishes in flight at once; default 256
	Heartbeat      time.Duration // 0: none
	// MaxAttempts: a message that fails this many times alone on a
	// connection that works (it connected and took the status) is set
	// aside (spool.SetAside). 0 never sets one aside: delivery then waits
	// for the broker to take it, for ever.
	MaxAttempts int
	// StableAfter: a connection that lives this long resets the backoff
	// (default 10s); one that ends sooner backs off like a failed connect.
	StableAfter time.Duration
	Logger      *slog.Logger
	// HeartbeatPayload returns the heartbeat message (counters, as JSON).
	HeartbeatPayload func() []byte
	// Published is told each publish's round trip to the broker.
	Published func(rtt time.Duration)
	// TelemetryQoS is the QoS of telemetry messages (Telemetry).
	TelemetryQoS byte
	// ReceiveMaximum is how many QoS 1 and 2 publishes the broker takes in
	// flight from one client: MQTT 5.0 §3.2.2.3.3 Receive Maximum, which an
	// MQTT 3.1.1 client cannot learn from the broker — Mosquitto's
	// max_inflight_messages, EMQX's max_awaiting_rel. 1-65535; 0 means
	// DefaultReceiveMaximum.
	//
	// At QoS 2 the publisher never has more publishes in flight than this,
	// alerts and telemetry together (Window is cut to fit). A broker holds
	// a QoS 2 publish from its PUBLISH to its PUBREL, and past its limit
	// Mosquitto 2.0 and EMQX drop the publish while acknowledging it to an
	// MQTT 3.1.1 client, PUBREC then PUBCOMP as if delivered: a loss no
	// client can see. At QoS 1 Mosquitto frees the place before its PUBACK,
	// so the window is not cut.
	ReceiveMaximum int
	// VerifyTimeout: on every connection the agent reads back the
	// "online" it publishes at its status topic, within this time
	// (verify.go); one that does not come back means the broker may be
	// dropping what the agent publishes (an ACL, with MQTT 3.1.1), said
	// in the log, Stats.Verify and Stats.VerifyError. 0 turns the check
	// off.
	VerifyTimeout time.Duration
}

// DefaultReceiveMaximum is Mosquitto's default max_inflight_messages.
const DefaultReceiveMaximum = 20

// BrokerState is a configured broker and whether the agent is connected to
// it.
type BrokerState struct {
	URL       string // as configured, the password replaced by xxxxx
	Connected bool
}

// Stats are the publisher's counters.
type Stats struct {
	Connected     bool
	Broker        string        // the broker connected to (credentials redacted); "" while disconnected
	Brokers       []BrokerState // every configured broker, in order
	Published     uint64        // records the broker acknowledged
	Failures      uint64        // publishes that failed or timed out (sent again later)
	Connects      uint64        // connections made (the status published)
	ConnectErrors uint64
	LastError     string
	ErrorsByKind  map[string]uint64 // auth, tls, network, timeout, other
	SetAside      uint64            // messages set aside (dead letters)
	Takeovers     uint64            // connections lost soon after connect with no message at fault
	StorageErrors uint64            // spool reads that failed (retried)
	// Verify is the publish check's state: VerifyOff, VerifyPending,
	// VerifyOK or VerifyFailed; VerifyError says why it failed.
	Verify      string
	VerifyError string
}

// Publisher sends what the spool holds.
type Publisher struct {
	cfg     Config
	window  int // alerts in flight at most
	sp      *spool.Spool
	log     *slog.Logger
	drain   chan struct{} // closed: deliver what is left, then stop
	brokers []string      // configured, redacted

	connected atomic.Bool
	published atomic.Uint64
	failures  atomic.Uint64
	connects  atomic.Uint64
	setAside  atomic.Uint64
	takeovers atomic.Uint64
	storage   atomic.Uint64

	tele        chan telemetryMsg
	ret         retained // retained topics (retain.go)
	teleSent    atomic.Uint64
	teleDropped atomic.Uint64

	// Owned by Run's goroutine.
	probeUntil  uint64      // send one message at a time up to this seq
	strikeSeq   uint64      // the message alone in flight when a connection failed
	strikes     int         // how many times in a row
	lostAt      []time.Time // recent connections lost soon after connect with nothing at fault
	takeoverLog time.Time
	ver         *verifier // the check of the connection connect made

	mu        sync.Mutex
	broker    int // index of the broker connected to; -1 none
	connErrs  uint64
	lastErr   string
	errKinds  map[string]uint64
	logs      map[string]*repeat // repeated log lines, by kind
	verify    string             // Stats.Verify
	verifyErr string
}

// New returns a publisher for sp.
func New(cfg Config, sp *spool.Spool) *Publisher {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Window <= 0 {
		cfg.Window = 256
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.KeepAlive < 0 {
		cfg.KeepAlive = 0
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 10 * time.Second
	}
	if cfg.ReceiveMaximum <= 0 {
		cfg.ReceiveMaximum = DefaultReceiveMaximum
	}
	p := &Publisher{cfg: cfg, window: alertWindow(cfg), sp: sp, log: cfg.Logger, drain: make(chan struct{}), broker: -1,
		errKinds: map[string]uint64{}, logs: map[string]*repeat{}, tele: make(chan telemetryMsg, telemetryQueue)}
	for _, b := range cfg.Brokers {
		p.brokers = append(p.brokers, Redact(b))
	}
	if cfg.VerifyTimeout > 0 {
		p.verify = VerifyPending
	}
	return p
}

// alertWindow is how many alerts cfg lets be in flight at once: Window, and
// at QoS 2 no more than the broker takes (ReceiveMaximum), less the one
// telemetry publish that may be in flight beside them at QoS 1 or 2 (a
// Mosquitto without room drops a QoS 1 publish too). Never less than one:
// with a ReceiveMaximum of 1 and telemetry above QoS 0 the two can meet,
// which the agent's configuration refuses.
func alertWindow(cfg Config) int {
	w := cfg.Window
	if cfg.QoS == 2 {
		room := cfg.ReceiveMaximum
		if cfg.TelemetryQoS > 0 {
			room--
		}
		w = min(w, room)
	}
	return max(w, 1)
}

// Redact returns a broker URL with its password replaced by xxxxx (issue 8
// §5): for logs, metrics labels and errors.
func Redact(broker string) string {
	u, err := url.Parse(broker)
	if err != nil {
		if i := strings.LastIndexByte(broker, '@'); i >= 0 {
			return "xxxxx" + broker[i:]
		}
		return broker
	}
	return u.Redacted()
}

// telemetryQueue bounds the telemetry messages waiting for the broker.
const telemetryQueue = 1024

type telemetryMsg struct {
	topic   string
	payload []byte
}

// Telemetry publishes a message beside the alerts, best effort: it is not
// spooled, and while the broker is away or the queue is full it is dropped
// and counted (the next poll cycle brings fresh values). It never blocks
// and copies payload.
func (p *Publisher) Telemetry(topic string, payload []byte) {
	if !p.connected.Load() {
		p.teleDropped.Add(1)
		return
	}
	select {
	case p.tele <- telemetryMsg{topic, bytes.Clone(payload)}:
	default:
		p.teleDropped.Add(1)
	}
}

// TelemetryStats returns telemetry messages handed to the broker and
// dropped.
func (p *Publisher) TelemetryStats() (sent, dropped uint64) {
	return p.teleSent.Load(), p.teleDropped.Load()
}

// sendTelemetry publishes queued telemetry on c until ctx ends.
func (p *Publisher) sendTelemetry(ctx context.Context, c mqtt.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-p.tele:
			tok := c.Publish(m.topic, p.cfg.TelemetryQoS, false, m.payload)
			if p.cfg.TelemetryQoS > 0 {
				// Bounded, so a dead connection cannot hold this loop.
				if err := wait(ctx, tok, p.cfg.PublishTimeout); err != nil {
					p.teleDropped.Add(1)
					continue
				}
			}
			p.teleSent.Add(1)
		}
	}
}

// StatusTopic is where the agent's status is retained.
func (p *Publisher) StatusTopic() string { return p.cfg.TopicPrefix + "/status" }

// AlertTopic is where alerts of a severity go.
func AlertTopic(prefix, severity string) string { return prefix + "/alerts/" + severity }

// Record frames an alert for the spool: its topic, a NUL, its JSON.
func Record(topic string, payload []byte) []byte {
	return AppendRecord(make([]byte, 0, len(topic)+1+len(payload)), topic, payload)
}

// AppendRecord appends Record(topic, payload) to b.
func AppendRecord(b []byte, topic string, payload []byte) []byte {
	b = append(b, topic...)
	b = append(b, 0)
	return append(b, payload...)
}

func splitRecord(data []byte) (string, []byte) {
	i := bytes.IndexByte(data, 0)
	if i < 0 {
		return "", data
	}
	return string(data[:i]), data[i+1:]
}

// Stats returns the counters.
func (p *Publisher) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	kinds := make(map[string]uint64, len(p.errKinds))
	for k, v := range p.errKinds {
		kinds[k] = v
	}
	connected := p.connected.Load()
	st := Stats{
		Connected: connected, Published: p.published.Load(), Failures: p.failures.Load(), Connects: p.connects.Load(),
		ConnectErrors: p.connErrs, LastError: p.lastErr, ErrorsByKind: kinds, SetAside: p.setAside.Load(),
		Takeovers: p.takeovers.Load(), StorageErrors: p.storage.Load(), Verify: p.verify, VerifyError: p.verifyErr,
	}
	for i, b := range p.brokers {
		on := connected && i == p.broker
		st.Brokers = append(st.Brokers, BrokerState{URL: b, Connected: on})
		if on {
			st.Broker = b
		}
	}
	return st
}

// Drain asks Run to deliver what the spool holds and then stop, cleanly:
// "offline" is published and the connection closed. Run still stops when
// its context ends.
func (p *Publisher) Drain() {
	select {
	case <-p.drain:
	default:
		close(p.drain)
	}
}

func (p *Publisher) draining() bool {
	select {
	case <-p.drain:
		return true
	default:
		return false
	}
}

const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Run connects, publishes and reconnects until ctx ends or, after Drain,
// the spool is empty.
func (p *Publisher) Run(ctx context.Context) error {
	backoff := minBackoff
	pause := func() {
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, maxBackoff)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		case <-p.drain:
		}
	}
	for ctx.Err() == nil {
		c, lost, err := p.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.connectFailed(err)
			if p.draining() {
				return fmt.Errorf("stopping with the broker unreachable: %w", err)
			}
			pause()
			continue
		}
		start := time.Now()
		done, fault, err := p.serve(ctx, c, lost)
		p.connected.Store(false)
		if done {
			return nil
		}
		lived := time.Since(start)
		c.Disconnect(0)
		if err != nil && ctx.Err() == nil {
			p.disconnected(err, lived, fault)
		}
		if lived >= p.cfg.StableAfter {
			backoff = minBackoff
			continue
		}
		// Gone soon after it was made: back off as for a failed connect
		// (issue 8: 1,325 connects in 15 s against a broker that dropped
		// each at once).
		if p.draining() {
			continue
		}
		pause()
	}
	return nil
}

// connect makes a new client and connects it, publishing "online". The
// channel says when paho sees the connection lost.
func (p *Publisher) connect(ctx context.Context) (mqtt.Client, <-chan error, error) {
	o := mqtt.NewClientOptions()
	for _, b := range p.cfg.Brokers {
		o.AddBroker(b)
	}
	servers := o.Servers
	o.SetClientID(p.cfg.ClientID)
	if p.cfg.Username != "" {
		o.SetUsername(p.cfg.Username)
		o.SetPassword(p.cfg.Password)
	}
	if p.cfg.TLS != nil {
		o.SetTLSConfig(p.cfg.TLS)
	}
	o.SetCleanSession(true)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	// 0 is "off" in MQTT and in paho (no keepalive goroutine, 0 sent in
	// CONNECT): honoured, not replaced by a default (issue 8).
	o.SetKeepAlive(p.cfg.KeepAlive)
	if p.cfg.KeepAlive > 0 {
		o.SetPingTimeout(min(p.cfg.PublishTimeout, p.cfg.KeepAlive))
	}
	o.SetConnectTimeout(p.cfg.ConnectTimeout)
	o.SetWriteTimeout(p.cfg.PublishTimeout)
	o.SetWill(p.StatusTopic(), "offline", 1, true)
	lost := make(chan error, 1)
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case lost <- err:
		default:
		}
	})
	// paho tells which broker it tries and why one failed; its own error
	// for "every broker failed" says no more than "network error".
	var nmu sync.Mutex
	tried := -1
	var failures []string
	index := func(u *url.URL) int {
		for i, s := range servers {
			if s == u {
				return i
			}
		}
		return -1
	}
	o.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		nmu.Lock()
		defer nmu.Unlock()
		switch n := n.(type) {
		case mqtt.ConnectionNotificationBroker:
			tried = index(n.Broker)
		case mqtt.ConnectionNotificationBrokerFailed:
			failures = append(failures, fmt.Sprintf("%s: %v", n.Broker.Redacted(), n.Reason))
		}
	})
	c := mqtt.NewClient(o)
	tok := c.Connect()
	// paho tries each broker in turn, each bounded by the connect timeout.
	if err := wait(ctx, tok, p.cfg.ConnectTimeout*time.Duration(len(p.cfg.Brokers)+1)); err != nil {
		c.Disconnect(0)
		nmu.Lock()
		defer nmu.Unlock()
		if len(failures) > 0 {
			return nil, nil, fmt.Errorf("%w (%s)", err, strings.Join(failures, "; "))
		}
		if tried >= 0 {
			return nil, nil, fmt.Errorf("%s: %w", p.brokers[tried], err)
		}
		return nil, nil, err
	}
	p.ver = nil
	if p.cfg.VerifyTimeout > 0 {
		v, err := p.verifySubscribe(ctx, c)
		if err != nil {
			c.Disconnect(0)
			return nil, nil, err
		}
		p.ver = v
	}
	if err := wait(ctx, c.Publish(p.StatusTopic(), 1, true, verifyOnlineMsg), p.cfg.PublishTimeout); err != nil {
		c.Disconnect(0)
		return nil, nil, fmt.Errorf("publish status: %w", err)
	}
	nmu.Lock()
	broker := tried
	nmu.Unlock()
	p.mu.Lock()
	p.broker = broker
	p.mu.Unlock()
	p.connected.Store(true)
	p.connects.Add(1)
	name := ""
	if broker >= 0 {
		name = p.brokers[broker]
	}
	p.connectedOK(name)
	return c, lost, nil
}

// inflight is a publish waiting for its PUBACK.
type inflight struct {
	seq   uint64
	tok   mqtt.Token
	sent  time.Time
	topic string
	data  []byte // the payload, for a dead letter
}

// ackEvery batches spool acknowledgements: an acknowledgement lost in a
// crash only means the same alerts are delivered again.
const ackEvery = 128

// errLost is a connection paho saw lost.
var errLost = errors.New("connection lost")

// serve publishes from the spool until the connection fails (done false),
// or the drain finished or ctx ended (done true). It keeps up to Window
// publishes in flight and sends more as PUBACKs come back, so the link
// stays busy: waiting for a whole batch before the next stalls on TCP's
// delayed ACKs (about 40 ms a batch against a broker with Nagle on).
//
// fault says whether messages were in flight when the connection failed
// (they may be why).
func (p *Publisher) serve(ctx context.Context, c mqtt.Client, lost <-chan error) (done, fault bool, err error) {
	teleCtx, stopTele := context.WithCancel(ctx)
	defer stopTele()
	go p.sendTelemetry(teleCtx, c)
	go p.sendRetained(teleCtx, c)
	if p.ver != nil {
		go p.verifyWait(teleCtx, c, p.ver)
	}
	var beat <-chan time.Time
	if p.cfg.Heartbeat > 0 && p.cfg.HeartbeatPayload != nil {
		t := time.NewTicker(p.cfg.Heartbeat)
		defer t.Stop()
		beat = t.C
		p.heartbeat(c)
	}
	w := p.window
	// More are read from the spool once half the window is free, a read
	// for many records. At QoS 2 the window is the broker's limit, small,
	// and an alert takes two round trips: a place is filled as soon as it
	// frees, so the agent keeps sending and its packets carry the TCP ACKs
	// the broker's next PUBREC or PUBCOMP waits for (Mosquitto leaves
	// Nagle's algorithm on). Refilling by halves, QoS 2 made about 400
	// alerts/s to a local Mosquitto; place by place, 2,000 to 3,500.
	refill := w / 2
	if p.cfg.QoS == 2 {
		refill = w - 1
	}
	ring := make([]inflight, w)
	head, n := 0, 0
	var next, pendingAck uint64 // next seq to read (0: the head); last seq confirmed, not yet acked
	unacked := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var retryRead <-chan time.Time // set while the spool cannot be read
	readBackoff := 100 * time.Millisecond
	ack := func() {
		if unacked == 0 {
			return
		}
		p.published.Add(uint64(unacked))
		unacked = 0
		if err := p.sp.Ack(pendingAck); err != nil && !errors.Is(err, spool.ErrClosed) {
			p.logRepeat("ack", slog.LevelError, "spool: cannot acknowledge delivered alerts", "err", err)
		}
	}
	defer ack()
	// fail ends the connection. A message alone in flight is the
	// suspect; with more in flight, the next messages go one at a time
	// until the suspects are past.
	fail := func(e error) (bool, bool, error) {
		p.failures.Add(1)
		if n == 0 {
			return false, false, e
		}
		f := &ring[head]
		last := ring[(head+n-1)%w].seq
		if n == 1 {
			p.strike(f, e)
		} else {
			p.strikeSeq, p.strikes = 0, 0
		}
		p.probeUntil = max(p.probeUntil, last)
		return false, true, e
	}
	for {
		if ctx.Err() != nil {
			return true, false, nil
		}
		limit := w
		if p.probeUntil > 0 && (next == 0 || next <= p.probeUntil) {
			limit = 1 // finding the message the broker refuses
		}
		if n < limit && (n <= refill || limit == 1) && retryRead == nil {
			recs, err := p.sp.Read(next, limit-n)
			switch {
			case errors.Is(err, spool.ErrClosed):
				return true, false, nil
			case err != nil:
				// The disk, not the broker: keep the connection, read
				// again after a pause (issue 8: a reader error taken for
				// a connection failure made a reconnect loop).
				p.storage.Add(1)
				p.logRepeat("storage", slog.LevelError, "spool cannot be read: trying again", "err", err)
				retryRead = time.After(readBackoff)
				readBackoff = min(2*readBackoff, 10*time.Second)
			default:
				readBackoff = 100 * time.Millisecond
			}
			now := time.Now()
			for _, r := range recs {
				topic, payload := splitRecord(r.Data)
				ring[(head+n)%w] = inflight{seq: r.Seq, tok: c.Publish(topic, p.cfg.QoS, false, payload), sent: now, topic: topic, data: payload}
				n++
				next = r.Seq + 1
			}
		}
		if n == 0 {
			ack()
			if p.draining() && retryRead == nil && p.sp.Stats().Depth == 0 {
				p.stop(c)
				return true, false, nil
			}
			if p.draining() && retryRead == nil {
				// Records the reader cannot see yet (memory moving to
				// disk): look again shortly.
				retryRead = time.After(50 * time.Millisecond)
			}
			select {
			case <-p.sp.Notify():
			case <-retryRead:
				retryRead = nil
			case <-beat:
				p.heartbeat(c)
			case err := <-lost:
				return fail(fmt.Errorf("%w: %w", errLost, err))
			case <-p.drain:
			case <-ctx.Done():
				return true, false, nil
			}
			continue
		}
		select {
		case <-beat:
			p.heartbeat(c)
		case <-retryRead:
			retryRead = nil
		default:
		}
		f := &ring[head]
		timer.Reset(p.cfg.PublishTimeout - time.Since(f.sent))
		select {
		case <-f.tok.Done():
			if err := f.tok.Error(); err != nil {
				return fail(err)
			}
		case <-timer.C:
			return fail(errTimeout)
		case err := <-lost:
			return fail(fmt.Errorf("%w: %w", errLost, err))
		case <-ctx.Done():
			return true, false, nil
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if p.cfg.Published != nil {
			p.cfg.Published(time.Since(f.sent))
		}
		if f.seq == p.strikeSeq {
			p.strikeSeq, p.strikes = 0, 0
		}
		if f.seq >= p.probeUntil {
			p.probeUntil = 0 // the suspects are past
		}
		pendingAck = f.seq
		unacked++
		*f = inflight{}
		head = (head + 1) % w
		n--
		if unacked >= ackEvery || p.probeUntil > 0 {
			ack()
		}
	}
}

// strike counts a failure of a message alone in flight on a connection
// that had connected and taken the status; at MaxAttempts the message is
// set aside.
func (p *Publisher) strike(f *inflight, cause error) {
	if f.seq != p.strikeSeq {
		p.strikeSeq, p.strikes = f.seq, 0
	}
	p.strikes++
	if p.cfg.MaxAttempts <= 0 || p.strikes < p.cfg.MaxAttempts {
		return
	}
	id := alertID(f.data)
	line := deadLetter(f, p.strikes, cause)
	if err := p.sp.SetAside(f.seq, line); err != nil {
		p.log.Error("cannot set the refused message aside", "seq", f.seq, "id", id, "err", err)
		return
	}
	p.setAside.Add(1)
	p.log.Error("the broker refuses a message again and again: set aside in the dead-letter file, delivery goes on",
		"id", id, "topic", f.topic, "bytes", len(f.data), "attempts", p.strikes, "err", cause, "file", spool.DeadLetterFile)
	p.strikeSeq, p.strikes = 0, 0
}

// deadLetter is the dead-letter file's line for f: when, why, and the
// message itself.
func deadLetter(f *inflight, attempts int, cause error) []byte {
	b := []byte(`{"time":"`)
	b = time.Now().UTC().AppendFormat(b, plcwatch.TimeFormat)
	b = append(b, `","seq":`...)
	b = fmt.Appendf(b, "%d", f.seq)
	b = append(b, `,"id":`...)
	b = plcwatch.AppendJSONString(b, alertID(f.data))
	b = append(b, `,"topic":`...)
	b = plcwatch.AppendJSONString(b, f.topic)
	b = append(b, `,"attempts":`...)
	b = fmt.Appendf(b, "%d", attempts)
	b = append(b, `,"error":`...)
	b = plcwatch.AppendJSONString(b, cause.Error())
	b = append(b, `,"bytes":`...)
	b = fmt.Appendf(b, "%d", len(f.data))
	if isJSONObject(f.data) {
		b = append(b, `,"message":`...)
		b = append(b, f.data...)
	} else {
		b = append(b, `,"message_text":`...)
		b = plcwatch.AppendJSONString(b, string(f.data))
	}
	return append(b, '}')
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' && bytes.IndexByte(b, '\n') < 0 && jsonValid(b)
}

var idRE = regexp.MustCompile(`"id":"([0-9a-zA-Z_-]{1,64})"`)

// alertID is the id of an alert's JSON, "" if it has none.
func alertID(payload []byte) string {
	if m := idRE.FindSubmatch(payload); m != nil {
		return string(m[1])
	}
	return ""
}

func (p *Publisher) heartbeat(c mqtt.Client) {
	// Fire and forget: a lost heartbeat is replaced by the next one.
	c.Publish(p.cfg.TopicPrefix+"/heartbeat", 0, false, p.cfg.HeartbeatPayload())
}

// stop says "offline" and disconnects: the clean end of a drain.
func (p *Publisher) stop(c mqtt.Client) {
	if err := wait(context.Background(), c.Publish(p.StatusTopic(), 1, true, "offline"), p.cfg.PublishTimeout); err != nil {
		p.log.Warn("could not publish offline status", "err", err)
	}
	c.Disconnect(250)
	p.log.Info("disconnected from mqtt broker", "published", p.published.Load())
}

var errTimeout = errors.New("timed out waiting for the broker")

// wait waits for a token, bounded by d and ctx.
func wait(ctx context.Context, tok mqtt.Token, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return errTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}
