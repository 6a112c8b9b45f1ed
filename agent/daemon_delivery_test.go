package agent_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

// scrape returns /metrics.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric sums the samples of a metric whose name and labels start with
// prefix (`plcwatch_alerts_total{` sums every rule).
func metric(body, prefix string) float64 {
	var sum float64
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			if f, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
				sum += f
			}
		}
	}
	return sum
}

func readyz(t *testing.T, addr string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func eventually(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tmpfs mounts a tmpfs of size bytes for the test (issue 8 §2: a full
// disk, for real). Root only; CI runs as root and fails without it.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs needs root, and CI runs as root")
		}
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0750", size)); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4096)
	for {
		if _, err := f.Write(b); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// pollConfig is a daemon polling one simulated device of n registers every
// interval, with a rule alerting on every value read.
// The client id is the test's own, unless defaultID: then the default
// (plcwatch-<site>-<gateway>).
func pollConfig(t *testing.T, dir, site, broker, pfx, plc string, n int, extra string, defaultID bool) string {
	t.Helper()
	id := ", client_id: " + clientID(pfx)
	if defaultID {
		id = ""
	}
	writeRules(t, dir, `rules:
  - id: every-value
    title: A value was read
    severity: low
    match: {source: poll}
    when: value >= 0
    fold: 0s
`)
	var tags strings.Builder
	for i := range n {
		fmt.Fprintf(&tags, "        - {name: r%d, table: holding, address: %d}\n", i, i)
	}
	return fmt.Sprintf(`site: %s
gateway: gw-1
rules: {paths: [rules]}
mqtt: {brokers: [%s], topic_prefix: %s, heartbeat: 0s%s}
spool: {dir: spool}
http: {listen: %q}
modbus:
  devices:
    - name: plc
      address: %s
      interval: 100ms
      tags:
%s%s`, site, broker, pfx, id, mqtttest.FreeAddr(t), plc, tags.String(), extra)
}

func httpAddr(cfg string) string {
	return regexp.MustCompile(`http: \{listen: "([^"]+)"\}`).FindStringSubmatch(cfg)[1]
}

// A full disk under a burst (issue 8 §2: the newest 1,426 of 3,000 alerts
// were dropped while counted as raised, /readyz stayed ready). Every alert
// is accounted for: delivered, or counted dropped with its reason; /readyz
// fails while the spool cannot write and recovers when it can; the log
// warned at start that the filesystem is smaller than max_bytes.
func TestDaemonFullDisk(t *testing.T) {
	mnt := tmpfs(t, 2<<20)
	broker := mqtttest.Broker(t, nil)
	u, _ := url.Parse(broker)
	proxy := mqtttest.NewProxy(t, u.Host)
	proxy.Cut() // the broker is away: everything waits in the spool
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/alerts/#")
	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), &modbussim.Image{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := pollConfig(t, dir, "lab", proxy.URL("tcp"), pfx, plc.Addr, 50, "", false)
	cfg = strings.Replace(cfg, "spool: {dir: spool}", fmt.Sprintf("spool: {dir: %s, max_bytes: 64MiB, memory_bytes: 1MiB}", filepath.Join(mnt, "spool")), 1)
	addr := httpAddr(cfg)
	d := startDaemon(t, dir, cfg)
	if !strings.Contains(d.Log(), "less room than spool.max_bytes") {
		t.Errorf("no warning that the filesystem is smaller than max_bytes:\n%s", d.Log())
	}
	fill(t, filepath.Join(mnt, "filler"))
	eventually(t, 60*time.Second, "alerts dropped for no space", func() bool {
		return metric(scrape(t, addr), `plcwatch_spool_dropped_total{reason="no_space"}`) > 0
	})
	code, body := readyz(t, addr)
	if code != http.StatusServiceUnavailable || body["spool_ok"] != false || !strings.Contains(fmt.Sprint(body["spool_error"]), "no space") {
		t.Errorf("/readyz %d %v while the spool cannot write", code, body)
	}
	m := scrape(t, addr)
	if metric(m, "plcwatch_spool_writable ") != 0 || metric(m, "plcwatch_spool_memory_alerts ") == 0 {
		t.Errorf("metrics while the disk is full:\n%s", grepMetrics(m, "plcwatch_spool"))
	}
	// The burst ends (the device goes away), space and the broker come
	// back.
	plc.Close()
	os.Remove(filepath.Join(mnt, "filler"))
	proxy.Restore()
	eventually(t, 60*time.Second, "the spool to be delivered", func() bool {
		m := scrape(t, addr)
		return metric(m, "plcwatch_spool_depth ") == 0 && metric(m, "plcwatch_spool_memory_alerts ") == 0
	})
	if code, body := readyz(t, addr); code != http.StatusOK || body["spool_ok"] != true {
		t.Errorf("/readyz %d %v after space came back", code, body)
	}
	m = scrape(t, addr)
	raised := metric(m, "plcwatch_alerts_total{")
	dropped := metric(m, "plcwatch_spool_dropped_total{")
	var delivered int
	eventually(t, 30*time.Second, "every delivered alert at the subscriber", func() bool {
		delivered = len(alerts(sub.Messages()))
		ids := map[any]bool{}
		for _, a := range alerts(sub.Messages()) {
			ids[a["id"]] = true
		}
		delivered = len(ids)
		return float64(delivered)+dropped == raised
	})
	if dropped == 0 || delivered == 0 || metric(m, `plcwatch_spool_dropped_total{reason="no_space"}`) != dropped {
		t.Errorf("raised %v, delivered %d, dropped %v:\n%s", raised, delivered, dropped, grepMetrics(m, "plcwatch_spool"))
	}
	t.Logf("raised %v = delivered %d + dropped %v (no_space); spooled %v", raised, delivered, dropped, metric(m, "plcwatch_alerts_spooled_total "))
}

func grepMetrics(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Two gateways named gw-1 at two sites on one broker (issue 8: with the
// client id plcwatch-<gateway> they took each other's connection over,
// dozens of reconnects). With the default id naming the site both deliver
// on one connection each.
func TestDaemonsOneGatewayNameTwoSites(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/+/alerts/#")
	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), &modbussim.Image{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plc.Close()
	var addrs []string
	run := fmt.Sprint(time.Now().UnixNano()) // sites apart from other runs on a shared broker
	for _, site := range []string{"north", "south"} {
		dir := t.TempDir()
		cfg := pollConfig(t, dir, site+run, broker, pfx+"/"+site, plc.Addr, 2, "", true)
		cfg = strings.Replace(cfg, "interval: 100ms", "interval: 500ms", 1)
		addrs = append(addrs, httpAddr(cfg))
		startDaemon(t, dir, cfg)
	}
	if _, err := sub.WaitFor(20*time.Second, func(m []mqtttest.Message) bool {
		sites := map[any]int{}
		for _, a := range alerts(m) {
			sites[a["site"]]++
		}
		return sites["north"+run] >= 10 && sites["south"+run] >= 10
	}); err != nil {
		t.Fatal("both agents did not deliver")
	}
	for i, addr := range addrs {
		m := scrape(t, addr)
		if metric(m, "plcwatch_mqtt_connects_total ") != 1 || metric(m, "plcwatch_mqtt_takeovers_total ") != 0 {
			t.Errorf("agent %d:\n%s", i, grepMetrics(m, "plcwatch_mqtt"))
		}
		if !strings.Contains(m, fmt.Sprintf(`plcwatch_mqtt_connected{broker=%q} 1`, broker)) {
			t.Errorf("agent %d: no connected series for %s:\n%s", i, broker, grepMetrics(m, "plcwatch_mqtt_connected"))
		}
	}
}

// The event log (issue 9 §5): every polled event as a JSON line, filtered,
// there while the daemon runs (a tail -f sees it), counted in /metrics.
func TestDaemonEventLog(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	img := &modbussim.Image{}
	img.SetHolding(1, 42)
	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := pollConfig(t, dir, "lab", broker, pfx, plc.Addr, 3,
		"event_log: {path: log/events.jsonl, max_bytes: 1MiB, keep: 2, sources: [poll], ops: [read, status]}\n", false)
	addr := httpAddr(cfg)
	startDaemon(t, dir, cfg)
	path := filepath.Join(dir, "log", "events.jsonl")
	var events []map[string]any
	read := func() {
		events = nil
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("a line that is not JSON: %q", sc.Text())
			}
			events = append(events, e)
		}
	}
	eventually(t, 20*time.Second, "polled events in the log while it runs", func() bool { read(); return len(events) >= 9 })
	for _, e := range events {
		if e["source"] != "poll" || (e["op"] != "read" && e["op"] != "status") || e["device"] != "plc" {
			t.Fatalf("event %v: want polled reads and status only", e)
		}
		if e["tag"] == "r1" && e["value"] != 42.0 {
			t.Errorf("r1 = %v, want 42", e["value"])
		}
	}
	// The device goes away: its status event is logged too.
	plc.Close()
	eventually(t, 20*time.Second, "the device's status in the log", func() bool {
		read()
		for _, e := range events {
			if e["op"] == "status" && e["quality"] == "down" {
				return true
			}
		}
		return false
	})
	if m := scrape(t, addr); metric(m, `plcwatch_event_log_events_total{result="written"}`) < 10 ||
		metric(m, `plcwatch_event_log_events_total{result="dropped"}`) != 0 {
		t.Errorf("%s", grepMetrics(m, "plcwatch_event_log"))
	}
}

// The event log of live capture, filtered to writes: each request once (a
// request emitted before its response, StageRequest, is not logged twice).
func TestDaemonEventLogWire(t *testing.T) {
	needRoot(t)
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	peer := newModbusPeer(t)
	dir := t.TempDir()
	writeRules(t, dir, fmt.Sprintf(writeRule, "w"))
	cfg := captureConfig(dir, broker, pfx, peer.port) + "event_log: {path: events.jsonl, ops: [write], protocols: [modbus]}\n"
	startDaemon(t, dir, cfg)
	if err := peer.client.Open(); err != nil {
		t.Fatal(err)
	}
	defer peer.client.Close()
	for i := range 5 {
		if _, err := peer.client.ReadRegisters(0, 2, 0); err != nil { // reads: not logged
			t.Fatal(err)
		}
		if err := peer.client.WriteRegister(uint16(10+i), uint16(i)); err != nil {
			t.Fatal(err)
		}
	}
	var lines []map[string]any
	eventually(t, 20*time.Second, "five writes in the event log", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(l), &e) == nil {
				lines = append(lines, e)
			}
		}
		return len(lines) >= 5
	})
	time.Sleep(500 * time.Millisecond) // a duplicate, if there were one, would be there by now
	b, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if n := strings.Count(string(b), "\n"); n != 5 {
		t.Fatalf("%d lines, want the 5 writes once each:\n%s", n, b)
	}
	for i, e := range lines {
		if e["op"] != "write" || e["address"] != float64(10+i) || e["source"] != "wire" {
			t.Errorf("line %d: %v", i, e)
		}
	}
}
