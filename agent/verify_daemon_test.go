package agent_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

// TestDaemonPublishCheck: the agent behind a Mosquitto whose pattern ACL
// names the gateway by the broker username (issue 14: gateway gw-01,
// username gw-1: "connected … published=2" and nothing arrived). The
// failed check is an ERROR in the log, plcwatch_mqtt_publish_verified 0
// and a failing /readyz; with the username equal to the gateway the check
// passes and /readyz is ready.
func TestDaemonPublishCheck(t *testing.T) {
	for _, tc := range []struct {
		username string
		verified bool
	}{{"gw-1", false}, {"gw-01", true}} {
		t.Run(tc.username, func(t *testing.T) {
			dir := t.TempDir()
			acl := filepath.Join(dir, "acl")
			if err := os.WriteFile(acl, []byte("pattern write plcwatch/site-a/%u/#\npattern read plcwatch/site-a/%u/status\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			broker := mqtttest.StartMosquitto(t, "acl_file "+acl)
			plc, err := modbussim.Serve(mqtttest.FreeAddr(t), &modbussim.Image{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { plc.Close() })
			cfg := pollConfig(t, dir, "site-a", broker.URL(), "plcwatch/site-a/gw-01", plc.Addr, 1, "", false)
			cfg = strings.Replace(cfg, "heartbeat: 0s", fmt.Sprintf("heartbeat: 0s, username: %s, verify_timeout: 2s", tc.username), 1)
			addr := httpAddr(cfg)
			d := startDaemon(t, dir, cfg)
			eventually(t, 60*time.Second, "the publish check to end", func() bool {
				return strings.Contains(scrape(t, addr), "plcwatch_mqtt_publish_verified ")
			})
			m := scrape(t, addr)
			code, body := readyz(t, addr)
			if tc.verified {
				if metric(m, "plcwatch_mqtt_publish_verified ") != 1 || code != http.StatusOK || body["mqtt_publish_verified"] != "verified" {
					t.Fatalf("check should pass: metric %v, /readyz %d %v\n%s", metric(m, "plcwatch_mqtt_publish_verified "), code, body, d.Log())
				}
				return
			}
			if metric(m, "plcwatch_mqtt_publish_verified ") != 0 || code != http.StatusServiceUnavailable || body["mqtt_publish_verified"] != "failed" ||
				!strings.Contains(fmt.Sprint(body["mqtt_publish_error"]), "username must equal the gateway") {
				t.Fatalf("check should fail: metric %v, /readyz %d %v", metric(m, "plcwatch_mqtt_publish_verified "), code, body)
			}
			if n := strings.Count(d.Log(), "publish check failed"); n != 1 {
				t.Errorf("%d 'publish check failed' lines, want 1:\n%s", n, d.Log())
			}
		})
	}
}
