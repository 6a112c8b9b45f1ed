package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

// TestDaemonCaptureInterfaceDown: a capture interface that goes down (or
// is deleted) is that interface's problem (issue 8): the daemon keeps
// polling and delivering, says so in /readyz and /metrics, and captures
// again when the link is back. The interface is one end of a veth pair the
// test creates, the other end in a namespace of its own.
func TestDaemonCaptureInterfaceDown(t *testing.T) {
	needRoot(t)
	id := os.Getpid() % 10000
	host, ns := fmt.Sprintf("pwa%da", id), fmt.Sprintf("pwa%d", id)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "link", "del", host).Run()
	exec.Command("ip", "netns", "del", ns).Run()
	ip("netns", "add", ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	ip("link", "set", host, "up")

	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), &modbussim.Image{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plc.Close()
	dir := t.TempDir()
	writeRules(t, dir, fmt.Sprintf(writeRule, "w"))
	httpAddr, brokerAddr := mqtttest.FreeAddr(t), mqtttest.FreeAddr(t)
	d := startDaemon(t, dir, fmt.Sprintf(`site: s
gateway: g
capture: {interfaces: [%s], modbus_ports: [502]}
rules: {paths: [rules]}
mqtt: {embedded: {listen: %q}, heartbeat: 0s}
spool: {dir: spool}
http: {listen: %q}
modbus:
  devices:
    - name: plc
      address: %s
      interval: 100ms
      tags: [{name: t, register: "40001"}]
`, host, brokerAddr, httpAddr, plc.Addr))
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v (the daemon stopped?)", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cycles := func() string {
		_, m := get("/metrics")
		return regexp.MustCompile(`(?m)^plcwatch_poll_cycles_total\{[^}]*result="ok"[^}]*\} (\d+)`).FindString(m)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 30 s:\n%s", what, get2(get))
			}
		}
	}
	upIs := func(v string) func() bool {
		return func() bool {
			_, m := get("/metrics")
			return strings.Contains(m, fmt.Sprintf("plcwatch_capture_interface_up{interface=%q} %s", host, v))
		}
	}
	waitFor("interface up", upIs("1"))
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d before the link went down: %s", code, body)
	}
	for _, step := range []struct {
		name        string
		down, up    []string
		wantReopens string
	}{
		{"link down", []string{"link", "set", host, "down"}, []string{"link", "set", host, "up"}, "1"},
		{"veth deleted", []string{"link", "del", host}, []string{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns}, "2"},
	} {
		ip(step.down...)
		waitFor(step.name+": interface down in /metrics", upIs("0"))
		code, body := get("/readyz")
		if code != 503 || !strings.Contains(body, host) {
			t.Errorf("%s: /readyz %d %s, want 503 naming %s", step.name, code, body, host)
		}
		before := cycles()
		waitFor(step.name+": polling going on", func() bool { return cycles() != before })
		ip(step.up...)
		if step.name == "veth deleted" {
			ip("link", "set", host, "up")
		}
		waitFor(step.name+": interface back", upIs("1"))
		_, m := get("/metrics")
		if !strings.Contains(m, fmt.Sprintf("plcwatch_capture_interface_reopens_total{interface=%q} %s", host, step.wantReopens)) {
			t.Errorf("%s: reopens not %s", step.name, step.wantReopens)
		}
		if code, body := get("/readyz"); code != 200 {
			t.Errorf("%s: /readyz %d after the link came back: %s", step.name, code, body)
		}
	}
	// Logged once each way per failure, not once per reopen attempt.
	if n := strings.Count(d.Log(), "capture interface failed"); n != 2 {
		t.Errorf("%d failures logged, want 2:\n%s", n, d.Log())
	}
}

func get2(get func(string) (int, string)) string {
	_, b := get("/readyz")
	return b
}
