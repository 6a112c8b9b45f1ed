package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/sim/opcuasim"
)

// TestDaemonPollsOPCUA runs the daemon with a Modbus-free configuration
// of two OPC UA servers (one up, with a user name whose password comes
// from a file; one not there): values become alerts, telemetry and the
// same per-device metrics Modbus devices have, the server that is not
// there is down (an alert) and comes up when it starts. The password
// shows in no log line, metric, readiness answer, MQTT message or config
// check output — not even while a wrong password fills the log.
func TestDaemonPollsOPCUA(t *testing.T) {
	const secret = "0pcua-Planted-Pa55-91c2"
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/#")
	srv, err := opcuasim.New(opcuasim.Config{Users: map[string]string{"plcwatch": secret}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Add("Tank.Level", 97.5)
	srv.Add("Tank.Mode", "auto")
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	late, err := opcuasim.New(opcuasim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	late.Add("Pump.Speed", int32(1450))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "opcua.pw"), []byte(secret+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong.pw"), []byte("WRONG-"+secret+"\n"), 0o600)
	writeRules(t, dir, `rules:
  - id: tank-high
    title: Tank above 95 %
    severity: critical
    match: {source: poll, protocol: opcua, device: tank, tag: level}
    when: value > 95
    fold: 1h
  - id: device-down
    title: Polled device down
    severity: medium
    match: {source: poll, op: status}
    when: quality == "down"
`)
	httpAddr := mqtttest.FreeAddr(t)
	cfg := fmt.Sprintf(`site: lab
gateway: gw-test
log: {level: debug}
rules: {paths: [rules]}
mqtt: {brokers: [%s], topic_prefix: %s, heartbeat: 1s, client_id: %s}
spool: {dir: spool}
http: {listen: %q}
telemetry: {enabled: true}
opcua:
  pki: {dir: pki}
  devices:
    - name: tank
      endpoint: %s
      security: {policy: None, mode: None}
      auth: {username: plcwatch, password_file: opcua.pw}
      interval: 200ms
      tags:
        - {name: level, node: "nsu=urn:plcwatch:sim;s=Tank.Level", uom: "%%"}
        - {name: mode, node: "ns=1;s=Tank.Mode", mode: read}
    - name: pump
      endpoint: %s
      interval: 200ms
      backoff: 100ms
      max_backoff: 500ms
      tags:
        - {name: speed, node: "ns=1;s=Pump.Speed"}
    - name: wrong-password
      endpoint: %s
      security: {policy: None, mode: None}
      auth: {username: plcwatch, password_file: wrong.pw}
      interval: 200ms
      tags:
        - {name: level, node: "ns=1;s=Tank.Level"}
`, broker, pfx, clientID(pfx), httpAddr, srv.Endpoint(), late.Endpoint(), srv.Endpoint())
	os.WriteFile(filepath.Join(dir, "check.yaml"), []byte(cfg), 0o600)
	out, err := exec.Command(binary, "config", "check", "--offline", filepath.Join(dir, "check.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("config check: %v\n%s", err, out)
	}
	surfaces := map[string]string{"config check": string(out)}
	d := startDaemon(t, dir, cfg)
	msgs, err := sub.WaitFor(20*time.Second, func(m []mqtttest.Message) bool {
		rules := map[string]int{}
		for _, a := range alerts(m) {
			rules[a["rule"].(map[string]any)["id"].(string)]++
		}
		tele := false
		for _, msg := range m {
			tele = tele || msg.Topic == pfx+"/telemetry/tank"
		}
		return rules["tank-high"] > 0 && rules["device-down"] >= 2 && tele
	})
	if err != nil {
		t.Fatalf("alerts: %v\n%s", err, d.Log())
	}
	for _, a := range alerts(msgs) {
		ev := a["event"].(map[string]any)
		if a["rule"].(map[string]any)["id"] == "tank-high" && (ev["value"] != 97.5 || ev["protocol"] != "opcua" ||
			ev["node"] != "nsu=urn:plcwatch:sim;s=Tank.Level" || ev["quality"] != "good" || ev["value_type"] != "Double" || ev["source_time"] == nil) {
			t.Errorf("alert event %v", ev)
		}
	}
	var tele map[string]any
	for _, m := range msgs {
		if m.Topic == pfx+"/telemetry/tank" {
			json.Unmarshal(m.Payload, &tele)
		}
	}
	if lvl, _ := tele["tags"].(map[string]any)["level"].(map[string]any); lvl["value"] != 97.5 || lvl["uom"] != "%" {
		t.Errorf("telemetry %v", tele)
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := get("/metrics")
	for _, want := range []string{`plcwatch_poll_up{device="tank"} 1`, `plcwatch_poll_up{device="pump"} 0`, `plcwatch_poll_up{device="wrong-password"} 0`,
		`plcwatch_poll_notifications_total{device="tank"}`, `plcwatch_poll_subscription_gaps_total{device="tank"} 0`,
		`plcwatch_poll_connects_total{device="tank"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := late.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(get("/metrics"), `plcwatch_poll_up{device="pump"} 1`); {
		if time.Now().After(deadline) {
			t.Fatalf("the late server never came up:\n%s", d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(d.Log(), "BadUserAccessDenied") {
		t.Errorf("the wrong password's refusal is not logged:\n%s", d.Log())
	}
	surfaces["/metrics"], surfaces["/readyz"] = get("/metrics"), get("/readyz")
	d.signal(os.Interrupt)
	<-d.done
	surfaces["log"] = d.Log()
	var all strings.Builder
	for _, m := range sub.Messages() {
		fmt.Fprintf(&all, "%s %s\n", m.Topic, m.Payload)
	}
	surfaces["mqtt messages"] = all.String()
	for name, text := range surfaces {
		if i := strings.Index(text, secret); i >= 0 {
			t.Errorf("%s shows the password: ...%s...", name, text[max(0, i-200):min(len(text), i+50)])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", "own", "certs", "plcwatch.der")); err != nil {
		t.Errorf("no client certificate made: %v", err)
	}
}
