package agent_test

import (
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
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

// TestNoOutputShowsTheBrokerPassword plants a broker password — in the
// broker URL, in password_file, in password_env — runs the daemon at debug
// level until it has published its status, a heartbeat and alerts, and
// greps every output for it: the log, /metrics, /readyz, the local alert
// log, "config check", and every message on the broker (issue 8: the
// password of tcp://user:secret@host showed in config check, logs and
// /metrics labels). A wrong password, which fills the log with connection
// errors, and a password written where its file's name belongs are
// grepped too.
func TestNoOutputShowsTheBrokerPassword(t *testing.T) {
	const secret = "S3cret-Planted-7f3a9"
	broker := mqtttest.Broker(t, &mqtttest.BrokerOptions{Username: "alice", Password: secret})
	host := strings.TrimPrefix(broker, "tcp://")
	img := &modbussim.Image{}
	img.SetHolding(0, 42)
	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plc.Close()
	t.Setenv("PLCWATCH_TEST_MQTT_PASSWORD", secret)
	for _, tc := range []struct {
		name, mqtt string
		works      bool
	}{
		{"password in the URL", `brokers: ["tcp://alice:` + secret + `@` + host + `"]`, true},
		{"password_file", `brokers: ["` + broker + `"], username: alice, password_file: pw`, true},
		{"password_env", `brokers: ["` + broker + `"], username: alice, password_env: PLCWATCH_TEST_MQTT_PASSWORD`, true},
		{"wrong password in the URL", `brokers: ["tcp://alice:WRONG-` + secret + `@` + host + `"]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "pw"), []byte(secret+"\n"), 0o600)
			writeRules(t, dir, "rules:\n  - {id: polled, title: a polled value, severity: low, match: {source: poll, tag: t}, fold: 0s}\n")
			pfx := prefix(t)
			httpAddr := mqtttest.FreeAddr(t)
			cfg := fmt.Sprintf(`site: lab
gateway: gw-secret
log: {level: debug}
rules: {paths: [rules]}
mqtt: {%s, topic_prefix: %s, heartbeat: 1s, client_id: %s}
spool: {dir: spool}
http: {listen: %q}
alert_log: {path: alerts.jsonl}
modbus:
  devices:
    - {name: plc, address: %q, interval: 100ms, tags: [{name: t, register: "40001"}]}
`, tc.mqtt, pfx, strings.ReplaceAll(pfx, "/", "-"), httpAddr, plc.Addr)
			// config check says ok, or what is wrong, without the secret.
			os.WriteFile(filepath.Join(dir, "check.yaml"), []byte(cfg), 0o600)
			out, _ := exec.Command(binary, "config", "check", filepath.Join(dir, "check.yaml")).CombinedOutput()
			surfaces := map[string]string{"config check": string(out)}
			var sub *mqtttest.Subscriber
			if tc.works {
				sub = mqtttest.Subscribe(t, "tcp://alice:"+secret+"@"+host, pfx+"/#")
			}
			d := startDaemon(t, dir, cfg)
			if tc.works {
				_, err := sub.WaitFor(15*time.Second, func(m []mqtttest.Message) bool {
					var status, beat, alert bool
					for _, x := range m {
						status = status || strings.HasSuffix(x.Topic, "/status")
						beat = beat || strings.HasSuffix(x.Topic, "/heartbeat")
						alert = alert || strings.Contains(x.Topic, "/alerts/")
					}
					return status && beat && alert
				})
				if err != nil {
					t.Fatalf("no status, heartbeat and alert: %s", d.Log())
				}
			} else {
				d.waitLog("cannot connect to mqtt broker")
			}
			for _, path := range []string{"/metrics", "/readyz"} {
				resp, err := http.Get("http://" + httpAddr + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				surfaces[path] = string(body)
			}
			if !strings.Contains(surfaces["/metrics"], `plcwatch_mqtt_connected{broker="`) {
				t.Errorf("no broker label in /metrics:\n%s", surfaces["/metrics"])
			}
			d.signal(os.Interrupt)
			<-d.done
			surfaces["log"] = d.Log()
			alertLog, _ := os.ReadFile(filepath.Join(dir, "alerts.jsonl"))
			surfaces["alert log"] = string(alertLog)
			if sub != nil {
				var all strings.Builder
				for _, m := range sub.Messages() {
					fmt.Fprintf(&all, "%s %s\n", m.Topic, m.Payload)
				}
				surfaces["mqtt messages"] = all.String()
			}
			if tc.works && !strings.Contains(surfaces["alert log"], `"polled"`) {
				t.Errorf("no alert in the alert log")
			}
			for name, text := range surfaces {
				if strings.Contains(text, secret) || strings.Contains(text, "PLCWATCH_TEST_MQTT_PASSWORD="+secret) {
					i := strings.Index(text, secret)
					t.Errorf("%s shows the password: ...%s...", name, text[max(0, i-200):min(len(text), i+50)])
				}
			}
		})
	}
	// A password written where its file's name or its variable's name
	// belongs is not echoed by the problem that says so.
	dir := t.TempDir()
	writeRules(t, dir, "rules:\n  - {id: w, title: w, severity: low, match: {op: write}}\n")
	for _, mistake := range []string{"password_file: " + secret, "password_env: " + secret} {
		cfg := fmt.Sprintf("rules: {paths: [rules]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [%q], username: alice, %s}\n", broker, mistake)
		path := filepath.Join(dir, "plcwatch.yaml")
		os.WriteFile(path, []byte(cfg), 0o600)
		for _, args := range [][]string{{"config", "check", path}, {"run", "--config", path}} {
			out, err := exec.Command(binary, args...).CombinedOutput()
			if exitCode(err) != 1 || strings.Contains(string(out), secret) || !strings.Contains(string(out), "it might be the password itself") {
				t.Errorf("%s, %v: exit %d:\n%s", mistake, args, exitCode(err), out)
			}
		}
	}
	// A broker URL that does not parse with the password in it (a bad
	// %-escape, a space, a /) is refused at its place, never shown, and
	// run does not start connecting as tcp://xxxxx@host (breaker 1).
	for _, b := range []string{"tcp://alice:%zz" + secret + "@" + host, "tcp://alice:" + secret + " x/y@" + host, "tcp://alice:12/" + secret + "@" + host} {
		cfg := fmt.Sprintf("rules: {paths: [rules]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt:\n  brokers: [%q]\n", b)
		path := filepath.Join(dir, "plcwatch.yaml")
		os.WriteFile(path, []byte(cfg), 0o600)
		for _, args := range [][]string{{"config", "check", path}, {"run", "--config", path}} {
			out, err := exec.Command(binary, args...).CombinedOutput()
			if exitCode(err) != 1 || strings.Contains(string(out), secret) || !strings.Contains(string(out), "5:13: mqtt.brokers[0]: \"tcp://xxxxx@"+host+"\" is not a broker URL") {
				t.Errorf("%s, %v: exit %d:\n%s", b, args, exitCode(err), out)
			}
		}
	}
}

// TestNoProblemRepeatsAPlantedSecret plants a password where a file's or a
// variable's name belongs, in every key that names a secret (issue 10: the
// OPC UA auth keys echoed it), and checks that config check and run say
// so at that value's line and column without repeating it.
func TestNoProblemRepeatsAPlantedSecret(t *testing.T) {
	const planted = "S3cr3t-PW-xyz"
	opcuaDev := "opcua:\n  devices:\n    - name: plc\n      endpoint: opc.tcp://127.0.0.1:4840\n      tags: [{name: t, node: \"ns=2;s=t\"}]\n"
	for _, tc := range []struct{ key, yaml, at string }{
		{"mqtt.password_file", "mqtt: {brokers: [\"tcp://127.0.0.1:1883\"], username: alice, password_file: /tmp/x/" + planted + "}\n", "4:75"},
		{"mqtt.password_env", "mqtt: {brokers: [\"tcp://127.0.0.1:1883\"], username: alice, password_env: " + planted + "}\n", "4:74"},
		{"mqtt.embedded.users[0].password_file", "mqtt:\n  embedded:\n    listen: 127.0.0.1:0\n    users: [{username: scada, password_file: " + planted + "}]\n", "7:46"},
		{"mqtt.embedded.users[0].password_env", "mqtt:\n  embedded:\n    listen: 127.0.0.1:0\n    users: [{username: scada, password_env: " + planted + "}]\n", "7:45"},
		{"opcua.devices[0].auth.password_file", opcuaDev + "      auth: {username: u, password_file: /tmp/x/" + planted + "}\n", "9:42"},
		{"opcua.devices[0].auth.password_env", opcuaDev + "      auth:\n        username: u\n        password_env: " + planted + "\n", "11:23"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			dir := t.TempDir()
			writeRules(t, dir, "rules:\n  - {id: w, title: w, severity: low, match: {op: write}}\n")
			path := filepath.Join(dir, "plcwatch.yaml")
			os.WriteFile(path, []byte("rules: {paths: [rules]}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\n"+tc.yaml), 0o600)
			for _, args := range [][]string{{"config", "check", path}, {"run", "--config", path}} {
				out, err := exec.Command(binary, args...).CombinedOutput()
				want := path + ":" + tc.at + ": " + tc.key + ": "
				if exitCode(err) != 1 || strings.Contains(string(out), planted) || !strings.Contains(string(out), want) ||
					!strings.Contains(string(out), "it might be the password itself") {
					t.Errorf("%v: exit %d, want %q and no %s:\n%s", args, exitCode(err), want, planted, out)
				}
			}
		})
	}
}
