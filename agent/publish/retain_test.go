package publish

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// failedToken is a publish token that is already done with err, as paho
// gives while it is not connected.
type failedToken struct{ err error }

func (t failedToken) Wait() bool                     { return true }
func (t failedToken) WaitTimeout(time.Duration) bool { return true }
func (t failedToken) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
func (t failedToken) Error() error { return t.err }

// notConnected is a client whose every publish fails at once.
type notConnected struct {
	mqtt.Client
	publishes atomic.Int64
}

func (c *notConnected) Publish(string, byte, bool, interface{}) mqtt.Token {
	c.publishes.Add(1)
	return failedToken{mqtt.ErrNotConnected}
}

// A publish that fails while ctx is live (connection lost, serve has not
// cancelled yet) must not be retried at once: it used to spin, hundreds
// of thousands of publishes a second.
func TestRetainedFailureDoesNotSpin(t *testing.T) {
	p := &Publisher{cfg: Config{TelemetryQoS: 1, PublishTimeout: time.Second}}
	p.Retain("plcwatch/test/inventory", []byte(`{}`))
	c := &notConnected{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.sendRetained(ctx, c) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sendRetained did not return after ctx ended")
	}
	if n := c.publishes.Load(); n < 1 || n > 3 {
		t.Errorf("publishes in 300ms with the broker unreachable = %d, want 1 (then a wait)", n)
	}
	// Still owed: the next connection sends it.
	p.ret.mu.Lock()
	dirty := p.ret.dirty["plcwatch/test/inventory"]
	p.ret.mu.Unlock()
	if !dirty {
		t.Error("the failed topic is not marked for the next connection")
	}
}
