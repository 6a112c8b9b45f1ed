package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/agent/publish"
	"github.com/plcwatch/plcwatch/agent/spool"
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

// binary is the plcwatch command, built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plcwatch-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "plcwatch")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/plcwatch").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building plcwatch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running plcwatch run.
type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.Write(p)
}

func (d *daemon) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// startDaemon writes config to dir and runs plcwatch on it until it logs
// that it runs.
func startDaemon(t *testing.T, dir, config string) *daemon {
	t.Helper()
	path := filepath.Join(dir, "plcwatch.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, done: make(chan struct{})}
	d.cmd = exec.Command(binary, "run", "--config", path)
	d.cmd.Stderr = d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.kill() })
	deadline := time.After(15 * time.Second)
	for !strings.Contains(d.Log(), "plcwatch running") {
		select {
		case <-d.done:
			t.Fatalf("plcwatch exited: %s", d.Log())
		case <-deadline:
			t.Fatalf("plcwatch did not start: %s", d.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return d
}

func (d *daemon) kill() {
	if d.cmd.Process != nil {
		d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) signal(s os.Signal) { d.cmd.Process.Signal(s) }

func (d *daemon) waitLog(s string) {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.Log(), s) {
		if time.Now().After(deadline) {
			d.t.Fatalf("no %q in the log:\n%s", s, d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func prefix(t *testing.T) string {
	return fmt.Sprintf("plcwatch-test/%s/%d", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
}

func statusIs(want string) func([]mqtttest.Message) bool {
	return func(msgs []mqtttest.Message) bool {
		for i := len(msgs) - 1; i >= 0; i-- {
			if strings.HasSuffix(msgs[i].Topic, "/status") {
				return string(msgs[i].Payload) == want
			}
		}
		return false
	}
}

func alerts(msgs []mqtttest.Message) []map[string]any {
	var out []map[string]any
	for _, m := range msgs {
		if strings.Contains(m.Topic, "/alerts/") {
			var a map[string]any
			if json.Unmarshal(m.Payload, &a) == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// modbusPeer is a simonvetter/modbus server and a client connected to it.
type modbusPeer struct {
	port   int
	client *modbus.ModbusClient
}

// newModbusPeer serves a simulated device and returns a client of it.
func newModbusPeer(t testing.TB) *modbusPeer {
	t.Helper()
	srv, err := modbussim.Serve(mqtttest.FreeAddr(t), &modbussim.Image{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	_, portText, _ := net.SplitHostPort(srv.Addr)
	port, _ := strconv.Atoi(portText)
	c, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "tcp://" + srv.Addr, Timeout: 2 * time.Second, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	return &modbusPeer{port: port, client: c}
}

const writeRule = `rules:
  - id: %s
    title: Modbus write
    severity: high
    attack: [T0855]
    match: {protocol: modbus, op: write}
    fold: 0s
`

func captureConfig(dir, broker, pfx string, port int) string {
	return fmt.Sprintf(`site: lab
gateway: gw-test
capture:
  interfaces: [lo]
  modbus_ports: [%d]
rules:
  paths: [rules]
mqtt:
  brokers: [%s]
  topic_prefix: %s
  client_id: %s
  heartbeat: 0s
spool:
  dir: %s
http:
  listen: %s
`, port, broker, pfx, clientID(pfx), filepath.Join(dir, "spool"), "127.0.0.1:0")
}

// clientID is a client id of the test's own: tests share the machine's
// Mosquitto, where one id means one connection.
func clientID(pfx string) string {
	return "plcwatch-" + strings.NewReplacer("/", "-", " ", "-").Replace(pfx)
}

func writeRules(t *testing.T, dir, text string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "rules"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "rules", "r.yaml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("live capture on lo needs root (CAP_NET_RAW), and CI runs as root")
		}
		t.Skip("live capture on lo needs root (CAP_NET_RAW); CI runs as root")
	}
}

func TestDaemonAlertsOverMQTTAndLastWill(t *testing.T) {
	needRoot(t)
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/#")
	peer := newModbusPeer(t)
	dir := t.TempDir()
	writeRules(t, dir, fmt.Sprintf(writeRule, "modbus-write"))
	cfg := captureConfig(dir, broker, pfx, peer.port)
	cfg = strings.Replace(cfg, "127.0.0.1:0", mqtttest.FreeAddr(t), 1)
	d := startDaemon(t, dir, cfg)
	if _, err := sub.WaitFor(10*time.Second, statusIs("online")); err != nil {
		t.Fatal("status never online")
	}
	if err := peer.client.Open(); err != nil {
		t.Fatal(err)
	}
	defer peer.client.Close()
	if err := peer.client.WriteRegisters(100, []uint16{7, 8, 9}); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.WaitFor(10*time.Second, func(m []mqtttest.Message) bool { return len(alerts(m)) == 1 })
	if err != nil {
		t.Fatalf("no alert: %s", d.Log())
	}
	var topic string
	for _, m := range msgs {
		if strings.Contains(m.Topic, "/alerts/") {
			topic = m.Topic
		}
	}
	a := alerts(msgs)[0]
	ev := a["event"].(map[string]any)
	rule := a["rule"].(map[string]any)
	if topic != pfx+"/alerts/high" || a["schema"] != "plcwatch.alert/v1" || a["site"] != "lab" || a["gateway"] != "gw-test" ||
		rule["id"] != "modbus-write" || fmt.Sprint(ev["values"]) != "[7 8 9]" || ev["address"] != 100.0 || a["count"] != 1.0 {
		t.Errorf("alert on %s: %v", topic, a)
	}
	if len(a["id"].(string)) != 32 {
		t.Errorf("alert id %q", a["id"])
	}
	// The metrics say so too. The subscriber can have the alert before
	// the broker's PUBACK is back at the agent: the spool empties soon
	// after, not at once.
	addr := strings.TrimSpace(strings.Split(strings.Split(d.Log(), `msg="http listening" address=`)[1], " ")[0])
	wants := []string{`plcwatch_alerts_total{rule="modbus-write",severity="high"} 1`, `plcwatch_mqtt_connected{broker="` + broker + `"} 1`,
		`plcwatch_capture_packets_total{interface="lo"}`, `plcwatch_spool_depth 0`,
		`plcwatch_capture_undecodable_packets_total{interface="lo",reason="header"} 0`, `plcwatch_capture_undecodable_packets_total{interface="lo",reason="unknown_link"} 0`}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		body = scrape(t, addr)
		missing := false
		for _, want := range wants {
			missing = missing || !strings.Contains(body, want)
		}
		if !missing || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// kill -9: the broker publishes the last will.
	d.kill()
	if _, err := sub.WaitFor(10*time.Second, statusIs("offline")); err != nil {
		t.Fatal("no offline status after kill -9")
	}
}

func TestDaemonSIGHUPReloadsRules(t *testing.T) {
	needRoot(t)
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/alerts/#")
	peer := newModbusPeer(t)
	dir := t.TempDir()
	writeRules(t, dir, fmt.Sprintf(writeRule, "writes-a"))
	d := startDaemon(t, dir, captureConfig(dir, broker, pfx, peer.port))
	if err := peer.client.Open(); err != nil {
		t.Fatal(err)
	}
	defer peer.client.Close()
	writeAndExpect := func(n int, rule string) {
		t.Helper()
		if err := peer.client.WriteRegister(1, uint16(n)); err != nil {
			t.Fatal(err)
		}
		msgs, err := sub.WaitFor(10*time.Second, func(m []mqtttest.Message) bool { return len(alerts(m)) == n })
		if err != nil {
			t.Fatalf("alert %d never came: %s", n, d.Log())
		}
		got := alerts(msgs)[n-1]["rule"].(map[string]any)["id"]
		if got != rule {
			t.Fatalf("alert %d from rule %v, want %s", n, got, rule)
		}
	}
	writeAndExpect(1, "writes-a")
	// A broken file: refused, the running rules stay.
	writeRules(t, dir, "rules:\n  - id: writes-b\n    title: broken\n    severity: catastrophic\n")
	d.signal(syscall.SIGHUP)
	d.waitLog("rule reload refused")
	if !strings.Contains(d.Log(), `severity \"catastrophic\"`) {
		t.Errorf("the refusal does not say what is wrong:\n%s", d.Log())
	}
	writeAndExpect(2, "writes-a")
	// A good file: swapped.
	writeRules(t, dir, fmt.Sprintf(writeRule, "writes-b"))
	d.signal(syscall.SIGHUP)
	d.waitLog("rules reloaded")
	writeAndExpect(3, "writes-b")
	// SIGTERM stops cleanly.
	d.signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no clean stop after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", code, d.Log())
	}
}

func TestDaemonKill9WhileDrainingLosesNothing(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	dir := t.TempDir()
	writeRules(t, dir, fmt.Sprintf(writeRule, "w"))
	// A full spool, as a long outage leaves it.
	const n = 60000
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(dir, "spool"), MaxBytes: 256 << 20, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		payload := fmt.Sprintf(`{"schema":"plcwatch.alert/v1","id":"a%06d","n":%d}`, i, i)
		if err := sp.Append(publish.Record(publish.AlertTopic(pfx, "high"), []byte(payload))); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	sub := mqtttest.Subscribe(t, broker, pfx+"/alerts/#")
	cfg := fmt.Sprintf("rules: {paths: [rules]}\nmqtt:\n  brokers: [%s]\n  topic_prefix: %s\n  client_id: %s\nspool: {dir: spool}\nhttp: {listen: \"off\"}\n", broker, pfx, clientID(pfx))
	d := startDaemon(t, dir, cfg)
	if _, err := sub.WaitFor(30*time.Second, func(m []mqtttest.Message) bool { return len(m) >= 2000 }); err != nil {
		t.Fatal("delivery did not start")
	}
	d.kill() // kill -9 in the middle of the drain
	got := len(sub.Messages())
	if got >= n {
		t.Fatalf("the drain finished (%d) before the kill: nothing was tested", got)
	}
	t.Logf("killed after %d of %d alerts", got, n)
	startDaemon(t, dir, cfg)
	msgs, err := sub.WaitFor(60*time.Second, func(m []mqtttest.Message) bool { return distinct(m) == n })
	if err != nil {
		t.Fatalf("%d of %d alerts after the restart", distinct(msgs), n)
	}
	last, dups := -1, 0
	seen := map[int]bool{}
	for _, m := range msgs {
		var a struct{ N int }
		json.Unmarshal(m.Payload, &a)
		if seen[a.N] {
			dups++
			continue
		}
		if a.N <= last {
			t.Fatalf("alert %d after %d: out of order", a.N, last)
		}
		seen[a.N], last = true, a.N
	}
	t.Logf("all %d alerts arrived in order; %d sent twice around the kill, with the same id", n, dups)
}

func distinct(msgs []mqtttest.Message) int {
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[string(m.Payload)] = true
	}
	return len(seen)
}

func TestDaemonRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plcwatch.yaml")
	os.WriteFile(path, []byte("rules: {paths: [rules]}\nmqtt:\n  qos: 1\n  brokerz: [tcp://x:1883]\n"), 0o644)
	out, err := exec.Command(binary, "run", "--config", path).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), path+`:4:3: unknown key "brokerz" in mqtt`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
	os.WriteFile(path, []byte("rules: {paths: [rules]}\nspool: {dir: spool, max_bytes: 12}\n"), 0o644)
	out, err = exec.Command(binary, "run", "--config", path).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), path+":2:32: spool.max_bytes: 12: want 1MiB-1TiB") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestDaemonPollsModbus runs the daemon with two polled devices: one
// serving a value a rule alerts on, one down at start (never fatal: it is
// retried, and comes up when it appears). Telemetry and the per-device
// metrics say what happened.
func TestDaemonPollsModbus(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/#")
	img := &modbussim.Image{}
	img.SetHolding(10, 975) // 97.5 degC
	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plc.Close()
	lateAddr := mqtttest.FreeAddr(t)
	dir := t.TempDir()
	writeRules(t, dir, `rules:
  - id: boiler-hot
    title: Boiler above 95 degC
    severity: critical
    match: {source: poll, device: boiler, tag: temperature}
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
rules: {paths: [rules]}
mqtt: {brokers: [%s], topic_prefix: %s, heartbeat: 0s, client_id: %s}
spool: {dir: spool}
http: {listen: %q}
telemetry: {enabled: true}
modbus:
  devices:
    - name: boiler
      address: %s
      interval: 200ms
      tags:
        - {name: temperature, register: "40011", scale: 0.1, uom: degC}
    - name: late
      address: %s
      interval: 200ms
      timeout: 200ms
      retries: 0
      tags:
        - {name: level, table: input, address: 0}
`, broker, pfx, clientID(pfx), httpAddr, plc.Addr, lateAddr)
	d := startDaemon(t, dir, cfg)
	msgs, err := sub.WaitFor(10*time.Second, func(m []mqtttest.Message) bool {
		rules := map[string]bool{}
		for _, a := range alerts(m) {
			rules[a["rule"].(map[string]any)["id"].(string)] = true
		}
		tele := false
		for _, msg := range m {
			tele = tele || msg.Topic == pfx+"/telemetry/boiler"
		}
		return rules["boiler-hot"] && rules["device-down"] && tele
	})
	if err != nil {
		t.Fatalf("alerts: %v\n%s", err, d.Log())
	}
	var tele map[string]any
	for _, m := range msgs {
		if m.Topic == pfx+"/telemetry/boiler" {
			json.Unmarshal(m.Payload, &tele)
		}
	}
	tags, _ := tele["tags"].(map[string]any)
	if temp, _ := tags["temperature"].(map[string]any); temp["value"] != 97.5 || temp["uom"] != "degC" {
		t.Errorf("telemetry %v", tele)
	}
	for _, a := range alerts(msgs) {
		if ev := a["event"].(map[string]any); a["rule"].(map[string]any)["id"] == "boiler-hot" &&
			(ev["value"] != 97.5 || ev["raw"] != 975.0 || ev["address"] != 10.0 || ev["source"] != "poll") {
			t.Errorf("alert event %v", ev)
		}
	}
	metrics := func() string {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := metrics()
	for _, want := range []string{`plcwatch_poll_up{device="boiler"} 1`, `plcwatch_poll_up{device="late"} 0`,
		`plcwatch_poll_planned_requests{device="boiler"} 1`, `plcwatch_telemetry_messages_total{result="sent"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The late device appears: it is polled from its next cycle.
	lateImg := &modbussim.Image{}
	late, err := modbussim.Serve(lateAddr, lateImg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(metrics(), `plcwatch_poll_up{device="late"} 1`); {
		if time.Now().After(deadline) {
			t.Fatalf("the late device never came up:\n%s", d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if img.Writes.Load() != 0 || lateImg.Writes.Load() != 0 {
		t.Error("a device saw a write")
	}
}

func TestDaemonEmbeddedBroker(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir, fmt.Sprintf(writeRule, "w"))
	addr := mqtttest.FreeAddr(t)
	cfg := fmt.Sprintf("site: s\ngateway: g\nrules: {paths: [rules]}\nmqtt:\n  embedded: {listen: %q}\nspool: {dir: spool}\nhttp: {listen: \"off\"}\n", addr)
	startDaemon(t, dir, cfg)
	sub := mqtttest.Subscribe(t, "tcp://"+addr, "plcwatch/s/g/status")
	if _, err := sub.WaitFor(10*time.Second, statusIs("online")); err != nil {
		t.Fatal("no status from the embedded broker")
	}
	// A second agent on the same address says why it cannot start.
	dir2 := t.TempDir()
	writeRules(t, dir2, fmt.Sprintf(writeRule, "w"))
	path := filepath.Join(dir2, "plcwatch.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	out, err := exec.Command(binary, "run", "--config", path).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "mqtt.embedded.listen: "+addr+": address already in use") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// BenchmarkWireToSubscriber measures the whole path: a Modbus request on
// lo, captured, matched by a rule, spooled, published and received by a
// QoS 1 subscriber of the broker (MQTT_URL, else in-process). One op is one
// request; p50 and p99 are reported. "write" is a register write its
// device answers; "listen-only-unanswered" an FC 8/4 (force listen only) to
// a device that never answers, whose alert must not wait for a response
// (issue 9 §4: p99 under 5 ms).
func BenchmarkWireToSubscriber(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("live capture on lo needs root")
	}
	broker := mqtttest.Broker(b, nil)
	pfx := fmt.Sprintf("plcwatch-bench/%d", time.Now().UnixNano())
	sub := mqtttest.SubscribeQoS(b, broker, pfx+"/alerts/#", 1)
	peer := newModbusPeer(b)
	// A device that takes the connection and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	silentPort := silent.Addr().(*net.TCPAddr).Port
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "rules"), 0o755)
	os.WriteFile(filepath.Join(dir, "rules", "r.yaml"), []byte(fmt.Sprintf(writeRule, "w")+
		"  - {id: listen-only, title: Force listen only, severity: high, match: {function: 8, subfunction: 4}, fold: 0s}\n"), 0o644)
	cfgPath := filepath.Join(dir, "plcwatch.yaml")
	cfg := strings.Replace(captureConfig(dir, broker, pfx, peer.port), fmt.Sprintf("modbus_ports: [%d]", peer.port),
		fmt.Sprintf("modbus_ports: [%d, %d]", peer.port, silentPort), 1)
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	cmd := exec.Command(binary, "run", "--config", cfgPath)
	d := &daemon{done: make(chan struct{})}
	cmd.Stderr = d
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Running (capturing) and connected: a fixed pause was not enough on
	// a loaded machine, and the first write went by before capture began.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.Log(), "plcwatch running") ||
		!strings.Contains(d.Log(), "connected to mqtt broker"); {
		if time.Now().After(deadline) {
			b.Fatalf("the daemon did not start: %s", d.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := peer.client.Open(); err != nil {
		b.Fatal(err)
	}
	defer peer.client.Close()
	plc, err := net.Dial("tcp", silent.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer plc.Close()
	tid := uint16(0)
	measure := func(b *testing.B, rule string, send func(i int) error) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			before := len(sub.Messages())
			start := time.Now()
			if err := send(i); err != nil {
				b.Fatal(err)
			}
			msgs, err := sub.WaitFor(5*time.Second, func(m []mqtttest.Message) bool { return len(m) > before })
			if err != nil {
				b.Fatalf("alert %d never arrived: %s", i, d.Log())
			}
			if !strings.Contains(string(msgs[before].Payload), `"id":"`+rule+`"`) {
				b.Fatalf("alert %d is not %s's: %s", i, rule, msgs[before].Payload)
			}
			lat = append(lat, msgs[before].At.Sub(start))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.Run("write", func(b *testing.B) {
		measure(b, "w", func(i int) error { return peer.client.WriteRegister(1, uint16(i)) })
	})
	b.Run("listen-only-unanswered", func(b *testing.B) {
		measure(b, "listen-only", func(int) error {
			tid++
			_, err := plc.Write([]byte{byte(tid >> 8), byte(tid), 0, 0, 0, 6, 1, 8, 0, 4, 0, 0})
			return err
		})
	})
}
