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
// saying both possibilities.
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
			if err := os.WriteFile(acl, []byte(tc.acl+"user admin\ntopic read #\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			broker := mqtttest.StartMosquitto(t, "acl_file "+acl)
			admin := mqtttest.SubscribeAs(t, broker.URL(), "admin", site+"#")
			sp := newSpool(t)
			pfx := site + tc.gateway
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
