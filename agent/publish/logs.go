package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
)

// summaryEvery is how often a line that repeats itself is logged again,
// with how many times it happened meanwhile (issue 9 §2: connect errors
// that repeat themselves).
const summaryEvery = 5 * time.Minute

// repeat is a log line being held back while it repeats.
type repeat struct {
	text   string    // what makes two lines the same
	n      int       // repeats not logged yet
	total  int       // repeats since it changed
	since  time.Time // when it started
	logged time.Time
}

// ephemeral matches the parts of an error that change from one attempt to
// the next without the error changing: the local address of a connection.
var ephemeral = regexp.MustCompile(`(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.%a-z0-9]+\]):\d+->`)

// sameness reduces a line's attributes to what says whether it changed.
func sameness(args []any) string {
	return ephemeral.ReplaceAllString(fmt.Sprint(args...), "")
}

// logRepeat logs a line the first time and when it changes; while it
// repeats, once every summaryEvery with the count.
func (p *Publisher) logRepeat(key string, level slog.Level, msg string, args ...any) {
	text := sameness(args)
	now := time.Now()
	p.mu.Lock()
	r := p.logs[key]
	if r == nil || r.text != text {
		p.logs[key] = &repeat{text: text, since: now, logged: now}
		p.mu.Unlock()
		p.log.Log(context.Background(), level, msg, args...)
		return
	}
	r.n++
	r.total++
	if now.Sub(r.logged) < summaryEvery {
		p.mu.Unlock()
		return
	}
	n, since := r.n, r.since
	r.n, r.logged = 0, now
	p.mu.Unlock()
	p.log.Log(context.Background(), level, msg+" (repeating)",
		append(args, "repeated", n, "for", now.Sub(since).Round(time.Second).String())...)
}

// settled ends a repeating line and returns how often it repeated and
// since when (0 when it was not held).
func (p *Publisher) settled(key string) (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.logs[key]
	delete(p.logs, key)
	if r == nil {
		return 0, time.Time{}
	}
	return r.total + 1, r.since
}

// connectFailed counts and logs a failed connection: a changed error at
// once, the same one every few minutes with a count, so that a wrong
// password is a clear log line and a metric, not a flood.
func (p *Publisher) connectFailed(err error) {
	kind := classify(err)
	msg := err.Error()
	p.mu.Lock()
	p.connErrs++
	p.lastErr = msg
	p.errKinds[kind]++
	p.mu.Unlock()
	p.logRepeat("connect", slog.LevelError, "cannot connect to mqtt broker; alerts stay in the spool until it works",
		"brokers", strings.Join(p.brokers, " "), "kind", kind, "err", msg)
}

// connectedOK logs a connection, and how long connecting failed before.
func (p *Publisher) connectedOK(broker string) {
	p.mu.Lock()
	p.lastErr = ""
	p.mu.Unlock()
	if n, since := p.settled("connect"); n > 0 {
		p.log.Info("connected to mqtt broker after failed attempts", "broker", broker, "client_id", p.cfg.ClientID,
			"failed_attempts", n, "for", time.Since(since).Round(time.Millisecond).String())
		return
	}
	p.logRepeat("connected", slog.LevelInfo, "connected to mqtt broker", "broker", broker, "client_id", p.cfg.ClientID)
}

// takeoverWindow: connections lost with no message at fault, soon after
// they were made, this many times within this long, are a takeover.
const (
	takeoverWindow = 2 * time.Minute
	takeoverCount  = 3
)

// disconnected logs a connection that ended. One lost soon after it was
// made, with no message in flight, again and again, is another client
// taking the connection over: with MQTT's client ids, the broker closes
// the older of two connections with the same id (MQTT 3.1.1 §3.1.4).
func (p *Publisher) disconnected(err error, lived time.Duration, fault bool) {
	if lived < p.cfg.StableAfter && !fault && errors.Is(err, errLost) {
		now := time.Now()
		recent := p.lostAt[:0]
		for _, t := range p.lostAt {
			if now.Sub(t) < takeoverWindow {
				recent = append(recent, t)
			}
		}
		p.lostAt = append(recent, now)
		if len(p.lostAt) >= takeoverCount {
			p.takeovers.Add(1)
			if now.Sub(p.takeoverLog) >= summaryEvery {
				p.takeoverLog = now
				p.log.Warn("mqtt connection taken over: the broker keeps closing it soon after it is made, with no message at fault; "+
					"another client is most likely connecting with the same client id. Give every agent its own mqtt.client_id "+
					"(the default, plcwatch-<site>-<gateway>, differs when site or gateway does)",
					"client_id", p.cfg.ClientID, "losses", len(p.lostAt), "within", takeoverWindow.String(), "err", err)
			}
			return
		}
	}
	p.logRepeat("disconnect", slog.LevelWarn, "mqtt connection failed; reconnecting and sending the unacknowledged alerts again",
		"err", err, "lived", lived.Round(time.Millisecond).String())
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

func jsonValid(b []byte) bool { return json.Valid(b) }
