package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// TestSimCommandLines: every numeric flag of sim is checked; a bad one is
// a usage error, exit 2, before anything runs (issue 12: --speed NaN ran).
func TestSimCommandLines(t *testing.T) {
	sc := "../../configs/scenarios/control.yaml"
	for _, args := range [][]string{
		{"sim", "--scenario", sc, "--speed", "NaN"},
		{"sim", "--scenario", sc, "--speed", "+Inf"},
		{"sim", "--scenario", sc, "--speed", "0"},
		{"sim", "--scenario", sc, "--speed", "101"},
		{"sim", "--scenario", sc, "--hold", "-5s"},
		{"sim", "--scenario", sc, "--hold", "169h"},
		{"sim", "check", "--scenario", sc, "--config", "../../configs/plcwatch.yaml", "--speed", "NaN"},
		{"sim", "pcap", "-o", "/dev/null", "--writes", "NaN"},
		{"sim", "pcap", "-o", "/dev/null", "--split", "1.5"},
		{"sim", "pcap", "-o", "/dev/null", "--protocol", "opcua", "--chunked", "-0.1"},
		{"sim", "pcap", "-o", "/dev/null", "--protocol", "opcua", "--nodes", "0"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != exitUsage {
			t.Errorf("%s: exit %d, want %d\n%s", strings.Join(args, " "), code, exitUsage, errb.String())
		}
	}
}

// freeScenario writes a scenario of one plant on a free loopback port and
// an HMI reading it every 50ms for duration, and returns its path.
func freeScenario(t *testing.T, duration string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := filepath.Join(t.TempDir(), "s.yaml")
	src := fmt.Sprintf(`name: free
duration: %s
plants:
  - {name: p, listen: "%s", points: [{name: x, table: holding, address: 0, value: 5}]}
actors:
  - {name: hmi, from: 127.0.0.77, target: p, do: hmi, reads: [x], every: 50ms}
expect:
  - {rule: "*", actor: hmi, at_most: 0}
`, duration, addr)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSimPcapUnwritable: a recording that cannot be written fails the run,
// exit 1, with the error (issue 12: /dev/full exited 0).
func TestSimPcapUnwritable(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"sim", "--scenario", freeScenario(t, "300ms"), "--pcap", "/dev/full"}, &out, &errb)
	if code != exitFail || !strings.Contains(errb.String(), "no space left on device") {
		t.Errorf("exit %d, want %d and the error\n%s", code, exitFail, errb.String())
	}
}

// TestSimKilledLeavesItsRecording: a sim killed with SIGKILL leaves a
// capture readable up to its last flush, not 0 bytes (issue 12: the
// 1 MiB buffer was written only at exit). The sim runs in a child
// process (this test binary, run again), killed once packets are on disk.
func TestSimKilledLeavesItsRecording(t *testing.T) {
	if os.Getenv("PLCWATCH_SIM_CHILD") != "" {
		args := strings.Split(os.Getenv("PLCWATCH_SIM_CHILD"), "\x1f")
		os.Exit(run(context.Background(), args, io.Discard, os.Stderr))
	}
	pcap := filepath.Join(t.TempDir(), "k.pcap")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimKilledLeavesItsRecording$")
	cmd.Env = append(os.Environ(), "PLCWATCH_SIM_CHILD="+strings.Join([]string{"sim", "--scenario", freeScenario(t, "10m"), "--pcap", pcap}, "\x1f"))
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Past the 24-byte header and a handshake: the periodic flush has run.
	deadline := time.Now().Add(time.Minute)
	for {
		if fi, err := os.Stat(pcap); err == nil && fi.Size() > 200 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the sim ended before it was killed: %v\n%s", err, errb.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("nothing written to %s within a minute (the recording is flushed only at exit?)", pcap)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("killed recording: %v", err)
	}
	n := 0
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("killed recording, packet %d: %v", n+1, err)
		}
		n++
	}
	if n < 3 {
		t.Errorf("killed recording holds %d packets, want the handshake and more", n)
	}
}

// TestSimCheckRefuses: sim check refuses what config check refuses (a
// rules folder without rules ran, and passed every at_most 0), and an
// expectation naming a rule no rule set has, at its file:line:col (a typo
// passed with at_most 0).
func TestSimCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, []byte("rules: {paths: [empty]}\n"), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte(`plants:
  - {name: p, listen: "127.0.0.13:25042", points: [{name: x, table: holding}]}
expect:
  - {rule: modbus-force-listen-only, at_most: 0}
  - {rule: modbus-force-listen-onyl, at_most: 0}
  - {rule: "opcua-nothing-*", at_most: 0}
`), 0o644)
	for _, c := range []struct {
		name, scenario, config string
		want                   []string
	}{
		{"empty rules folder", "../../configs/scenarios/control.yaml", empty, []string{"empty.yaml:1:17: rules.paths[0]:", "has no rule files"}},
		{"unknown rule id", typo, "../../configs/plcwatch.yaml", []string{
			`typo.yaml:5:12: expect[1].rule: "modbus-force-listen-onyl": no rule has this id`,
			`typo.yaml:6:12: expect[2].rule: "opcua-nothing-*": no rule id matches this pattern`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"sim", "check", "--offline", "--scenario", c.scenario, "--config", c.config}, &out, &errb)
			if code != exitFail {
				t.Errorf("exit %d, want %d\n%s%s", code, exitFail, out.String(), errb.String())
			}
			for _, w := range c.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("missing %q in\n%s", w, errb.String())
				}
			}
			if strings.Contains(out.String(), "held") {
				t.Errorf("ran:\n%s", out.String())
			}
		})
	}
}

// TestSimPrintsThePlantsProtocol: an OPC UA plant is said to be one (it was
// printed as "Modbus/TCP on ...").
func TestSimPrintsThePlantsProtocol(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := filepath.Join(t.TempDir(), "u.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("duration: 100ms\nplants:\n  - {name: p6, protocol: opcua, listen: %q, points: [{name: t}]}\n", addr)), 0o644)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"sim", "--scenario", path}, &out, &errb)
	if want := "plant p6: OPC UA on " + addr + " (1 points)"; code != exitOK || !strings.Contains(out.String(), want) {
		t.Errorf("exit %d, want %q in\n%s%s", code, want, out.String(), errb.String())
	}
}
