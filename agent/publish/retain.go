package publish

import (
	"bytes"
	"context"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// retained holds the latest payload of each retained topic (the passive
// inventory at <prefix>/inventory): published when it changes and again
// on every connection, so that a broker that lost it (restarted without
// persistence) has it back.
type retained struct {
	mu    sync.Mutex
	msgs  map[string][]byte
	dirty map[string]bool
	kick  chan struct{}
	once  sync.Once
}

func (r *retained) init() {
	r.once.Do(func() {
		r.msgs, r.dirty, r.kick = map[string][]byte{}, map[string]bool{}, make(chan struct{}, 1)
	})
}

// Retain publishes payload retained at topic, best effort, at the
// telemetry QoS: now if connected, else on the next connection; a newer
// payload for the topic replaces one not sent yet. It never blocks and
// copies payload.
func (p *Publisher) Retain(topic string, payload []byte) {
	r := &p.ret
	r.init()
	r.mu.Lock()
	r.msgs[topic], r.dirty[topic] = bytes.Clone(payload), true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// retryRetained is how long sendRetained waits after a failed publish
// before it tries again, unless a new payload comes first. Between a
// connection loss and serve cancelling ctx, paho fails every publish at
// once (ErrNotConnected): without the wait the loop spins a core.
const retryRetained = time.Second

// sendRetained publishes every retained topic on c, then each one that
// changes, until ctx ends. After a failed publish it waits for a new
// payload, retryRetained or ctx before the next one.
func (p *Publisher) sendRetained(ctx context.Context, c mqtt.Client) {
	r := &p.ret
	r.init()
	r.mu.Lock()
	for t := range r.msgs {
		r.dirty[t] = true
	}
	r.mu.Unlock()
	for {
		r.mu.Lock()
		var topic string
		var payload []byte
		for t := range r.dirty {
			topic, payload = t, r.msgs[t]
			delete(r.dirty, t)
			break
		}
		r.mu.Unlock()
		if topic == "" {
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
				continue
			}
		}
		tok := c.Publish(topic, p.cfg.TelemetryQoS, true, payload)
		if p.cfg.TelemetryQoS > 0 {
			if err := wait(ctx, tok, p.cfg.PublishTimeout); err != nil {
				r.mu.Lock()
				if _, newer := r.dirty[topic]; !newer {
					r.dirty[topic] = true // again on the next connection, or the next kick
				}
				r.mu.Unlock()
				t := time.NewTimer(retryRetained)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-r.kick:
				case <-t.C:
				}
				t.Stop()
			}
		}
	}
}
