package agent_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
)

// TestExampleConfigRunsAsTheREADMESays runs the README's daemon section on
// configs/plcwatch.yaml, its fixed ports (PLC 5020, broker 18830, HTTP
// 9108) moved to free ones: the daemon polls the simulated PLC, publishes
// its telemetry to the embedded broker, and a write to the PLC seen on lo
// comes out as an alert whose event carries the configured name plc-1
// (issue 9: wire events to a polled device carried "127.0.0.1:5020", so
// "match: {device: plc-1}" never fired).
func TestExampleConfigRunsAsTheREADMESays(t *testing.T) {
	needRoot(t)
	peer := newModbusPeer(t)
	dir := t.TempDir()
	for _, f := range []string{"plcwatch.yaml", "example-rules.yaml"} {
		b, err := os.ReadFile(filepath.Join("../configs", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "rules"), 0o755)
	files, _ := filepath.Glob("../configs/rules/*.yaml")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(dir, "rules", filepath.Base(f)), b, 0o644)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "plcwatch.yaml"))
	brokerAddr, httpAddr := mqtttest.FreeAddr(t), mqtttest.FreeAddr(t)
	port := strconv.Itoa(peer.port)
	text := strings.NewReplacer("127.0.0.1:5020", "127.0.0.1:"+port, "[502, 5020]", "[502, "+port+"]",
		"127.0.0.1:18830", brokerAddr, "127.0.0.1:9108", httpAddr, "/var/lib/plcwatch/spool", filepath.Join(dir, "spool")).Replace(string(cfg))
	for _, fixed := range []string{"address: 127.0.0.1:5020", "listen: 127.0.0.1:18830", "listen: 127.0.0.1:9108", "dir: /var/lib"} {
		if strings.Contains(text, fixed) {
			t.Fatalf("the example's %q was not replaced", fixed)
		}
	}
	d := startDaemon(t, dir, text)
	sub := mqtttest.Subscribe(t, "tcp://"+brokerAddr, "plcwatch/#")
	if _, err := sub.WaitFor(10*time.Second, func(m []mqtttest.Message) bool {
		for _, x := range m {
			if strings.HasSuffix(x.Topic, "/telemetry/plc-1") {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("no telemetry of plc-1: %s", d.Log())
	}
	if err := peer.client.Open(); err != nil {
		t.Fatal(err)
	}
	defer peer.client.Close()
	if err := peer.client.WriteRegister(0, 123); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.WaitFor(10*time.Second, func(m []mqtttest.Message) bool { return len(alerts(m)) > 0 })
	if err != nil {
		t.Fatalf("no alert: %s", d.Log())
	}
	a := alerts(msgs)[0]
	ev := a["event"].(map[string]any)
	if a["rule"].(map[string]any)["id"] != "example-write-to-plc-1" || ev["device"] != "plc-1" || ev["source"] != "wire" {
		b, _ := json.Marshal(a)
		t.Errorf("alert: %s", b)
	}
}
