package publish

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Publish verification (Config.VerifyTimeout).
//
// An MQTT 3.1.1 broker cannot refuse a publish: one its ACL denies is
// acknowledged (PUBACK, or PUBREC and PUBCOMP) and dropped. Mosquitto with
// "pattern write plcwatch/site-a/%u/#" and an agent whose topic prefix
// holds a gateway name other than its broker username takes every alert,
// the agent removes them from its spool, and nobody receives one. So on
// every connection the agent subscribes to its own status topic before it
// publishes "online" there, and waits for that publish to come back live
// (the RETAIN flag 0: MQTT 3.1.1 §3.3.1.3 — a stale retained "online" from
// an earlier connection does not count).
//
// A subscription the broker refuses (SUBACK 0x80, Mosquitto 2.0 when the
// ACL does not allow reading the topic) cannot verify anything: it is
// reported as such, not as a drop.

// Verify states, as Stats.Verify says them.
const (
	VerifyOff     = ""         // the check is off (VerifyTimeout 0), or no connection checked yet
	VerifyPending = "pending"  // the first connection's check has not ended yet
	VerifyOK      = "verified" // the last check read our status back
	VerifyFailed  = "failed"   // the last check did not
)

const verifyOnlineMsg = "online"

// verifier is a connection's check: subscribed before "online" is
// published, ended by the message or the timeout.
type verifier struct {
	got     chan struct{}
	refused bool // SUBACK 0x80: the broker does not let us read the topic
}

// verifySubscribe subscribes c to the status topic, to read back the
// "online" about to be published. An error is the connection's (no SUBACK
// in time); a refused subscription is not an error.
func (p *Publisher) verifySubscribe(ctx context.Context, c mqtt.Client) (*verifier, error) {
	v := &verifier{got: make(chan struct{}, 1)}
	tok := c.Subscribe(p.StatusTopic(), 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Retained() || string(m.Payload()) != verifyOnlineMsg {
			return
		}
		select {
		case v.got <- struct{}{}:
		default:
		}
	})
	if err := wait(ctx, tok, p.cfg.PublishTimeout); err != nil {
		return nil, fmt.Errorf("subscribe to the status topic (publish check): %w", err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		if q, found := st.Result()[p.StatusTopic()]; found && q == 0x80 {
			v.refused = true
		}
	}
	return v, nil
}

// verifyWait waits for the check's message, then records the result and
// unsubscribes. It runs beside serve, and ends with ctx (the connection).
func (p *Publisher) verifyWait(ctx context.Context, c mqtt.Client, v *verifier) {
	ok := false
	if !v.refused {
		t := time.NewTimer(p.cfg.VerifyTimeout)
		defer t.Stop()
		select {
		case <-v.got:
			ok = true
		case <-t.C:
		case <-ctx.Done():
			return // the connection ended first: the next one checks
		}
	}
	// Best effort: the subscription only costs the status's own messages.
	c.Unsubscribe(p.StatusTopic())
	p.verifyResult(ok, v.refused)
}

// verifyResult records a check's result, and logs a failure once until a
// check passes again.
func (p *Publisher) verifyResult(ok, refused bool) {
	p.mu.Lock()
	was := p.verify
	if ok {
		p.verify, p.verifyErr = VerifyOK, ""
	} else {
		p.verify = VerifyFailed
	}
	p.mu.Unlock()
	topic := p.StatusTopic()
	user := p.cfg.Username
	switch {
	case ok && was == VerifyFailed:
		p.log.Info("publish check passed: the broker delivers what the agent publishes", "topic", topic)
	case ok:
		p.log.Debug("publish check passed", "topic", topic)
	case was == VerifyFailed:
		// Logged once already.
	case refused:
		msg := "the broker refuses the agent's subscription to its own status topic (SUBACK 0x80), so the agent cannot verify that its alerts are delivered: " +
			"the broker's ACL likely lets the agent write but not read its topics. Allow reading <prefix>/status " +
			"(Mosquitto: pattern read " + topic + " written with %u), or turn the check off (mqtt.verify_timeout: 0)"
		p.setVerifyErr(msg)
		p.log.Error("publish check failed: cannot read back the status", "topic", topic, "username", user, "cause", msg)
	default:
		msg := fmt.Sprintf("the agent published %q retained at %s and did not read it back within %s. Either the broker dropped the publish "+
			"(an MQTT 3.1.1 broker acknowledges and drops what its ACL denies: alerts are then lost too — with Mosquitto's "+
			"\"pattern write plcwatch/<site>/%%u/#\" the broker username must equal the gateway, and the site must match), "+
			"or the ACL lets the agent write but not read its status topic (allow reading <prefix>/status, or set mqtt.verify_timeout: 0)",
			verifyOnlineMsg, topic, p.cfg.VerifyTimeout)
		p.setVerifyErr(msg)
		p.log.Error("publish check failed: the broker may be dropping the agent's alerts", "topic", topic, "username", user, "cause", msg)
	}
}

func (p *Publisher) setVerifyErr(msg string) {
	p.mu.Lock()
	p.verifyErr = msg
	p.mu.Unlock()
}
