package publish

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
)

// lockedBuffer is a log sink the publisher's goroutines share with the
// test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPublishCheck: with Mosquitto's pattern ACLs, an agent whose gateway
// is not its broker username has every publish acknowledged and dropped
// (issue 14: "connected … published=2", nothing arrives). The publish
// check finds it; with the username equal to the gateway it passes; with
// an ACL that lets the agent write but not read its status it fails too,
// saying both possibilities. A retained "online" left at the status topic
// from before does not pass for the connection's own.
func TestPublishCheck(t *testing.T) {
	const site = "plcwatch/site-a/"
	for _, tc := range []struct {
		name, acl, username, gateway string
		want                         string
		delivered                    bool // an admin subscriber receives the alerts
	}{
		{"username is the gateway", "pattern write plcwatch/site-a/%u/#\npattern read plcwatch/site-a/%u/status\n", "gw-01", "gw-01", VerifyOK, true},
		{"username differs from the gateway", "pattern write plcwatch/site-a/%u/#\npattern read plcwatch/site-a/%u/status\n", "gw-1", "gw-01", VerifyFailed, false},
		{"ACL without read", "pattern write plcwatch/site-a/%u/#\n", "gw-01", "gw-01", VerifyFailed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			acl := filepath.Join(dir, "acl")
			// The admin reads everything, to see what the broker delivers.
			if err := os.WriteFile(acl, []byte(tc.acl+"user admin\ntopic readwrite #\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			broker := mqtttest.StartMosquitto(t, "acl_file "+acl)
			pfx := site + tc.gateway
			// A retained "online" left from an earlier connection must not
			// pass for this one's.
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetUsername("admin").SetClientID("admin-pub"))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			if tok := c.Publish(pfx+"/status", 1, true, "online"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			c.Disconnect(100)
			admin := mqtttest.SubscribeAs(t, broker.URL(), "admin", site+"+/alerts/#")
			sp := newSpool(t)
			appendAlerts(t, sp, pfx, 0, 2)
			var logs lockedBuffer
			p, _ := start(t, Config{Brokers: []string{broker.URL()}, Username: tc.username, TopicPrefix: pfx, QoS: 1,
				VerifyTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, sp)
			deadline := time.Now().Add(30 * time.Second)
			for p.Stats().Verify == VerifyPending && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			st := p.Stats()
			if st.Verify != tc.want {
				t.Fatalf("Verify %q, want %q (error %q); log:\n%s\nbroker:\n%s", st.Verify, tc.want, st.VerifyError, logs.String(), broker.Log())
			}
			// The publisher took both alerts either way: the broker
			// acknowledged them.
			for p.Stats().Published < 2 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if got := p.Stats().Published; got != 2 {
				t.Fatalf("published %d, want 2", got)
			}
			msgs, _ := admin.WaitFor(3*time.Second, func(m []mqtttest.Message) bool { return countDistinct(m) == 2 })
			if got := countDistinct(msgs) == 2; got != tc.delivered {
				t.Fatalf("alerts delivered: %v, want %v (%d messages)", got, tc.delivered, len(msgs))
			}
			errs := strings.Count(logs.String(), "level=ERROR msg=\"publish check failed")
			if tc.want == VerifyFailed {
				for _, s := range []string{"dropped the publish", "username must equal the gateway", "write but not read", "mqtt.verify_timeout: 0"} {
					if !strings.Contains(st.VerifyError, s) {
						t.Errorf("VerifyError %q does not say %q", st.VerifyError, s)
					}
				}
				if errs != 1 {
					t.Errorf("%d ERROR lines, want 1:\n%s", errs, logs.String())
				}
			} else if errs != 0 || st.VerifyError != "" {
				t.Errorf("check passed but logged %d ERROR lines, error %q", errs, st.VerifyError)
			}
		})
	}
}

// TestPublishCheckMochi: mochi-mqtt, the embedded broker's library, sends
// an established subscription's message with RETAIN 0 as MQTT 3.1.1 says:
// the check passes there too (the embedded broker lets everyone read).
func TestPublishCheckMochi(t *testing.T) {
	broker := mqtttest.Broker(t, &mqtttest.BrokerOptions{})
	sp := newSpool(t)
	p, _ := start(t, Config{Brokers: []string{broker}, TopicPrefix: prefix(t), QoS: 1, VerifyTimeout: 5 * time.Second}, sp)
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Verify == VerifyPending && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Stats(); st.Verify != VerifyOK {
		t.Fatalf("Verify %q: %s", st.Verify, st.VerifyError)
	}
}
