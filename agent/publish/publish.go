// Package publish drains the spool to an MQTT broker: in order, at least
// once, acknowledging a record only after the broker's PUBACK. It keeps the
// agent's status retained at <prefix>/status ("online" on connect,
// "offline" as the last will and on a clean stop) and publishes a heartbeat.
//
// paho's tokens can hang, or complete without delivery, across a reconnect
// (eclipse/paho.mqtt.golang#613, #563). So every wait here is bounded, and a
// connection that fails once is thrown away: the next attempt is a new
// client, and what was not acknowledged is sent again from the spool, with
// the same content (and alert id).
package publish

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcwatch/plcwatch/agent/spool"
)

// Config configures a Publisher.
type Config struct {
	Brokers        []string // tcp://, ssl://, ws://, wss:// URLs; tried in order (failover)
	ClientID       string
	Username       string
	Password       string
	TLS            *tls.Config
	TopicPrefix    string
	QoS            byte
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	PublishTimeout time.Duration // bound on every wait for the broker
	Window         int           // publishes in flight at once
	Heartbeat      time.Duration // 0: none
	Logger         *slog.Logger
	// HeartbeatPayload returns the heartbeat message (counters, as JSON).
	HeartbeatPayload func() []byte
	// Published is told each publish's round trip to the broker.
	Published func(rtt time.Duration)
	// TelemetryQoS is the QoS of telemetry messages (Telemetry).
	TelemetryQoS byte
}

// Stats are the publisher's counters.
type Stats struct {
	Connected     bool
	Broker        string // the broker connected to
	Published     uint64 // records the broker acknowledged
	Failures      uint64 // publishes that failed or timed out (sent again later)
	ConnectErrors uint64
	LastError     string
	ErrorsByKind  map[string]uint64 // auth, tls, network, timeout, other
}

// Publisher sends what the spool holds.
type Publisher struct {
	cfg   Config
	sp    *spool.Spool
	log   *slog.Logger
	drain chan struct{} // closed: deliver what is left, then stop

	connected atomic.Bool
	published atomic.Uint64
	failures  atomic.Uint64

	tele        chan telemetryMsg
	teleSent    atomic.Uint64
	teleDropped atomic.Uint64

	mu         sync.Mutex
	broker     string
	connErrs   uint64
	lastErr    string
	errKinds   map[string]uint64
	lastLogged map[string]time.Time
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
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	return &Publisher{cfg: cfg, sp: sp, log: cfg.Logger, drain: make(chan struct{}),
		errKinds: map[string]uint64{}, lastLogged: map[string]time.Time{}, tele: make(chan telemetryMsg, telemetryQueue)}
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
	return Stats{
		Connected: p.connected.Load(), Broker: p.broker, Published: p.published.Load(), Failures: p.failures.Load(),
		ConnectErrors: p.connErrs, LastError: p.lastErr, ErrorsByKind: kinds,
	}
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

// Run connects, publishes and reconnects until ctx ends or, after Drain,
// the spool is empty.
func (p *Publisher) Run(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		c, lost, err := p.connect(ctx)
		if err != nil {
			p.connectFailed(err)
			if p.draining() {
				return fmt.Errorf("stopping with the broker unreachable: %w", err)
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, 30*time.Second)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			case <-p.drain:
			}
			continue
		}
		backoff = 500 * time.Millisecond
		done, err := p.serve(ctx, c, lost)
		p.connected.Store(false)
		if done {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			p.log.Warn("mqtt connection failed; reconnecting and sending the unacknowledged alerts again", "err", err)
		}
		c.Disconnect(0)
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
	o.SetKeepAlive(p.cfg.KeepAlive)
	o.SetPingTimeout(min(p.cfg.PublishTimeout, p.cfg.KeepAlive))
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
	var tried string
	var failures []string
	o.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		nmu.Lock()
		defer nmu.Unlock()
		switch n := n.(type) {
		case mqtt.ConnectionNotificationBroker:
			tried = n.Broker.String()
		case mqtt.ConnectionNotificationBrokerFailed:
			failures = append(failures, fmt.Sprintf("%s: %v", n.Broker, n.Reason))
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
		if tried != "" {
			return nil, nil, fmt.Errorf("%s: %w", tried, err)
		}
		return nil, nil, err
	}
	if err := wait(ctx, c.Publish(p.StatusTopic(), 1, true, "online"), p.cfg.PublishTimeout); err != nil {
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
	p.log.Info("connected to mqtt broker", "broker", broker, "client_id", p.cfg.ClientID)
	return c, lost, nil
}

// inflight is a publish waiting for its PUBACK.
type inflight struct {
	seq  uint64
	tok  mqtt.Token
	sent time.Time
}

// ackEvery batches spool acknowledgements: an acknowledgement lost in a
// crash only means the same alerts are delivered again.
const ackEvery = 128

// serve publishes from the spool until the connection fails (done false),
// or the drain finished or ctx ended (done true). It keeps up to Window
// publishes in flight and sends more as PUBACKs come back, so the link
// stays busy: waiting for a whole batch before the next stalls on TCP's
// delayed ACKs (about 40 ms a batch against a broker with Nagle on).
func (p *Publisher) serve(ctx context.Context, c mqtt.Client, lost <-chan error) (done bool, err error) {
	teleCtx, stopTele := context.WithCancel(ctx)
	defer stopTele()
	go p.sendTelemetry(teleCtx, c)
	var beat <-chan time.Time
	if p.cfg.Heartbeat > 0 && p.cfg.HeartbeatPayload != nil {
		t := time.NewTicker(p.cfg.Heartbeat)
		defer t.Stop()
		beat = t.C
		p.heartbeat(c)
	}
	w := p.cfg.Window
	ring := make([]inflight, w)
	head, n := 0, 0
	var next, pendingAck uint64 // next seq to read (0: the head); last seq confirmed, not yet acked
	unacked := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ack := func() error {
		if unacked == 0 {
			return nil
		}
		p.published.Add(uint64(unacked))
		unacked = 0
		return p.sp.Ack(pendingAck)
	}
	defer func() {
		if aerr := ack(); err == nil && aerr != nil {
			err = aerr
		}
	}()
	for {
		if ctx.Err() != nil {
			return true, nil
		}
		if n <= w/2 {
			recs, err := p.sp.Read(next, w-n)
			if err != nil {
				return false, err
			}
			now := time.Now()
			for _, r := range recs {
				topic, payload := splitRecord(r.Data)
				ring[(head+n)%w] = inflight{seq: r.Seq, tok: c.Publish(topic, p.cfg.QoS, false, payload), sent: now}
				n++
				next = r.Seq + 1
			}
		}
		if n == 0 {
			if err := ack(); err != nil {
				return false, err
			}
			if p.draining() {
				p.stop(c)
				return true, nil
			}
			select {
			case <-p.sp.Notify():
			case <-beat:
				p.heartbeat(c)
			case err := <-lost:
				return false, fmt.Errorf("connection lost: %w", err)
			case <-p.drain:
			case <-ctx.Done():
				return true, nil
			}
			continue
		}
		select {
		case <-beat:
			p.heartbeat(c)
		default:
		}
		f := &ring[head]
		timer.Reset(p.cfg.PublishTimeout - time.Since(f.sent))
		select {
		case <-f.tok.Done():
			if err := f.tok.Error(); err != nil {
				p.failures.Add(1)
				return false, err
			}
		case <-timer.C:
			p.failures.Add(1)
			return false, errTimeout
		case err := <-lost:
			p.failures.Add(1)
			return false, fmt.Errorf("connection lost: %w", err)
		case <-ctx.Done():
			return true, nil
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
		pendingAck = f.seq
		unacked++
		*f = inflight{}
		head = (head + 1) % w
		n--
		if unacked >= ackEvery {
			if err := ack(); err != nil {
				return false, err
			}
		}
	}
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

// connectFailed counts and logs a failed connection: once per distinct
// error every few minutes, so that a wrong password is a clear log line and
// a metric, not a flood.
func (p *Publisher) connectFailed(err error) {
	kind := classify(err)
	msg := err.Error()
	p.mu.Lock()
	p.connErrs++
	p.lastErr = msg
	p.errKinds[kind]++
	logIt := time.Since(p.lastLogged[msg]) > 5*time.Minute
	if logIt {
		p.lastLogged[msg] = time.Now()
	}
	p.mu.Unlock()
	if logIt {
		p.log.Error("cannot connect to mqtt broker; alerts stay in the spool until it works", "brokers", p.cfg.Brokers, "kind", kind, "err", msg)
	}
}

// classify sorts connection errors for the metric.
func classify(err error) string {
	s := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, errTimeout) || strings.Contains(s, "timeout") || strings.Contains(s, "timed out"):
		return "timeout"
	case strings.Contains(s, "not authori") || strings.Contains(s, "bad user name or password") || strings.Contains(s, "identifier rejected"):
		return "auth"
	case strings.Contains(s, "x509") || strings.Contains(s, "tls") || strings.Contains(s, "certificate"):
		return "tls"
	case strings.Contains(s, "connection refused") || strings.Contains(s, "no route") || strings.Contains(s, "network") ||
		strings.Contains(s, "reset by peer") || strings.Contains(s, "eof") || strings.Contains(s, "no such host"):
		return "network"
	}
	return "other"
}
