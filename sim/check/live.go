package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// liveAgent is the agent run beside a scenario by a live check.
type liveAgent struct {
	a        *agent.Agent
	alertLog string
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
	err      error
}

// startAgent builds the agent of cfg for a live check, changed so that it
// watches the scenario and touches nothing of the site's: live capture on
// lo with the plants' ports, an embedded broker on a free port (never the
// site's broker), no HTTP beyond a free loopback port, its spool and alert
// log in dir, no event log, its baseline in memory. Its rules and polling
// are the configuration's.
func startAgent(cfg *agent.Config, s *scenario.Scenario, dir string) (*liveAgent, error) {
	c := *cfg
	c.Capture.Interfaces = []string{"lo"}
	c.Capture.ModbusPorts = Ports(s, "modbus", c.Capture.ModbusPorts)
	c.Capture.OPCUAPorts = Ports(s, "opcua", c.Capture.OPCUAPorts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	brokerAddr := l.Addr().String()
	l.Close()
	c.MQTT.Brokers, c.MQTT.Username, c.MQTT.PasswordFile, c.MQTT.PasswordEnv = nil, "", "", ""
	c.MQTT.TLS = agent.TLSConfig{}
	c.MQTT.Embedded = agent.EmbeddedMQTT{Listen: brokerAddr, Anonymous: "read"}
	c.Spool.Dir = filepath.Join(dir, "spool")
	c.Alerts.Path = filepath.Join(dir, "alerts.jsonl")
	c.Events.Path = ""
	c.Rules.BaselineFile = ""
	c.Telemetry.Enabled = false
	c.Defaults() // for what was empty before: the alert log's size and keep
	// After Defaults: an http.listen the file did not write defaults to
	// 9108, the site's port, which a running daemon may hold (issue 12).
	c.HTTP.Listen = "127.0.0.1:0"
	a, err := agent.New(&c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, fmt.Errorf("start the agent: %w", err)
	}
	return &liveAgent{a: a, alertLog: c.Alerts.Path, done: make(chan struct{})}, nil
}

// run starts the agent and waits until it is ready (its capture open, its
// first polls done), at most a minute.
func (l *liveAgent) run(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(l.done)
		l.err = l.a.Run(ctx)
	}()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if addr := l.a.HTTPAddr(); addr != "" {
			if r, err := http.Get("http://" + addr + "/readyz"); err == nil {
				r.Body.Close()
				if r.StatusCode == http.StatusOK {
					return
				}
			}
		}
		select {
		case <-l.done:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	l.err = errors.New("not ready within a minute")
}

// stop stops the agent (its last alerts logged) and waits for it.
func (l *liveAgent) stop() {
	l.once.Do(func() {
		if l.cancel != nil {
			l.cancel()
			<-l.done
		}
	})
}
