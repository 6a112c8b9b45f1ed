package modbus

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// python is Debian's interpreter, where python3-pymodbus installs.
const python = "/usr/bin/python3"

// missingPeer skips a test whose peer is not installed, except in CI
// (CI=true), which installs every peer: there a missing one is a failure,
// never a silent skip.
func missingPeer(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why + ": .ci/run must install it")
	}
	t.Skip(why + "; CI installs it")
}

// startPymodbus runs testdata/pymodbus_server.py with spec and returns its
// address once it accepts connections.
func startPymodbus(t *testing.T, spec any, rtu bool) string {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	mode := "tcp"
	if rtu {
		mode = "rtu"
	}
	runPymodbus(t, spec, port, mode)
	// "ready" comes before the socket listens: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("pymodbus server not listening on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runPymodbus starts the server script on target (a TCP port or a serial
// device) and waits for it to say it is ready.
func runPymodbus(t *testing.T, spec any, target, mode string) {
	t.Helper()
	if err := exec.Command(python, "-c", "import pymodbus").Run(); err != nil {
		missingPeer(t, "pymodbus is not installed (apt-get install python3-pymodbus)")
	}
	path := filepath.Join(t.TempDir(), "spec.json")
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "testdata/pymodbus_server.py", path, target, mode)
	out, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if s.Text() == "ready" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("pymodbus server exited: %s", stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("pymodbus server did not start: %s", stderr.String())
	}
}

// pymodbusSpec tells the server to encode, with pymodbus's own
// BinaryPayloadBuilder, every golden it can express at the addresses
// goldenDevice gives them.
func pymodbusSpec(t *testing.T, d Device) map[string]any {
	var holding []map[string]any
	for i, g := range goldens {
		if g.value == nil {
			continue
		}
		tag := d.Tags[i]
		v := map[string]any{"address": *tag.Address, "type": g.typ, "order": g.order, "value": g.value, "length": g.length}
		switch g.order {
		case "AB":
			v["order"] = "ABCD"
		case "BA":
			v["order"] = "BADC"
		}
		if g.typ == "bool" || g.typ == "bit" {
			v["type"] = "uint16" // the register that holds them
		}
		holding = append(holding, v)
	}
	return map[string]any{
		"holding":  holding,
		"input":    []map[string]any{{"address": 10, "type": "int16", "value": -250}},
		"coils":    []map[string]any{{"address": 7, "value": true}},
		"discrete": []map[string]any{{"address": 3, "value": true}},
	}
}

// TestGoldenValuesAgainstPymodbus reads values that a real, independent
// Modbus server (pymodbus, Debian's python3-pymodbus) encoded itself, over
// Modbus/TCP and over RTU framing on TCP.
func TestGoldenValuesAgainstPymodbus(t *testing.T) {
	for _, transport := range []string{"tcp", "rtu-over-tcp"} {
		t.Run(transport, func(t *testing.T) {
			d, _ := goldenDevice(t, "127.0.0.1:1")
			addr := startPymodbus(t, pymodbusSpec(t, d), transport == "rtu-over-tcp")
			d.Transport, d.Address = transport, addr
			p := mustPoller(t, d, Options{})
			var rec recorder
			p.cycle(context.Background(), rec.emit)
			got := map[string]plcwatch.Event{}
			for _, ev := range rec.take() {
				if ev.Op == plcwatch.OpStatus && ev.Quality != "up" {
					t.Fatalf("device %s: %s", ev.Quality, ev.Error)
				}
				got[ev.Tag] = ev
			}
			n := 0
			for i, g := range goldens {
				if g.value == nil {
					continue
				}
				n++
				ev := got[g.name(i)]
				if ev.Quality != "good" || !g.rawIs(ev.Raw) || ev.Text != g.text {
					t.Errorf("%s: pymodbus encoded %v; read raw %v text %q quality %s %s, want %v %q",
						g.name(i), g.value, ev.Raw, ev.Text, ev.Quality, ev.Error, g.want, g.text)
				}
			}
			if ev := got["coil_7"]; ev.Value != 1 {
				t.Errorf("coil 7: %+v", ev)
			}
			if ev := got["discrete_3"]; ev.Value != 1 {
				t.Errorf("discrete input 3: %+v", ev)
			}
			if ev := got["level"]; ev.Raw != -250 || ev.Value != -30 {
				t.Errorf("input register 10 (30011): raw %v value %v, want -250 -30", ev.Raw, ev.Value)
			}
			if st := p.Stats(); st.FailedCycles != 0 || st.Requests != uint64(p.Reads()) {
				t.Errorf("stats %+v, want %d requests", st, p.Reads())
			}
			t.Logf("%d golden encodings from pymodbus agree (%s, %d requests)", n, transport, p.Reads())
		})
	}
}

// TestSerialRTUAgainstPymodbus polls pymodbus serving RTU on a serial line:
// a pseudo-terminal pair that socat makes, the poller on one end.
func TestSerialRTUAgainstPymodbus(t *testing.T) {
	if _, err := exec.LookPath("socat"); err != nil {
		missingPeer(t, "socat is not installed (apt-get install socat)")
	}
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	socat := exec.Command("socat", "pty,raw,echo=0,link="+ours, "pty,raw,echo=0,link="+theirs)
	if err := socat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { socat.Process.Kill(); socat.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(theirs); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socat made no pty pair")
		}
	}
	runPymodbus(t, map[string]any{
		"holding": []map[string]any{{"address": 5, "type": "float32", "order": "CDAB", "value": 123.456}},
		"coils":   []map[string]any{{"address": 2, "value": true}},
	}, theirs, "serial")
	d := Device{Name: "rtu", Transport: "rtu", Address: ours, Unit: intp(1), Timeout: time.Second, Tags: []Tag{
		{Name: "flow", Table: "holding", Address: intp(5), Type: "float32", ByteOrder: "CDAB"},
		{Name: "pump", Table: "coil", Address: intp(2)},
	}}
	p := mustPoller(t, d, Options{})
	var rec recorder
	p.cycle(context.Background(), rec.emit)
	got := rec.tags()
	if ev := got["flow"]; ev.Quality != "good" || ev.Value != 123.456 {
		t.Errorf("flow: %+v", ev)
	}
	if ev := got["pump"]; ev.Value != 1 {
		t.Errorf("pump: %+v", ev)
	}
}

// TestFaultsAgainstPymodbus checks the poller's handling of faults against
// pymodbus's own framing of them, over Modbus/TCP and RTU on TCP: every
// exception code 1-255 (pymodbus's ExceptionResponse) is an answer; a
// merged read over a hole in pymodbus's sparse register map is split; a
// silent unit behind the same address does not stop the others.
func TestFaultsAgainstPymodbus(t *testing.T) {
	for _, transport := range []string{"tcp", "rtu-over-tcp"} {
		t.Run(transport, func(t *testing.T) {
			const base = 2000
			addr := startPymodbus(t, map[string]any{
				"holding": []map[string]any{
					{"address": 0, "type": "uint16", "value": 100}, {"address": 2, "type": "uint16", "value": 102},
				},
				"holes":          []int{1},
				"exception_base": base,
				"units":          []int{1, 2},
				"ignore_missing": true,
			}, transport == "rtu-over-tcp")
			d := Device{Name: "py", Transport: transport, Address: addr, Timeout: 300 * time.Millisecond,
				Retries: intp(0), Tags: []Tag{
					{Name: "r0", Table: "holding", Address: intp(0)},
					{Name: "r1", Table: "holding", Address: intp(1)},
					{Name: "r2", Table: "holding", Address: intp(2)},
					{Name: "unit2", Unit: intp(2), Table: "holding", Address: intp(2)},
					{Name: "unit3", Unit: intp(3), Table: "holding", Address: intp(2)},
				}}
			for code := 1; code <= 255; code++ {
				d.Tags = append(d.Tags, Tag{Name: fmt.Sprintf("x%d", code), Table: "holding", Address: intp(base + 2*code)})
			}
			p := mustPoller(t, d, Options{})
			var rec recorder
			for range 2 {
				p.cycle(context.Background(), rec.emit)
			}
			n := map[string]int{}
			var status []plcwatch.Event
			for _, ev := range rec.take() {
				if ev.Op == plcwatch.OpStatus {
					status = append(status, ev)
					continue
				}
				n[ev.Tag]++
				var code int
				switch {
				case ev.Tag == "r1":
					if ev.Quality != "bad" || ev.Exception != 2 {
						t.Errorf("r1 (the hole): %+v", ev)
					}
				case ev.Tag == "unit3":
					t.Errorf("unit3: an event from the silent unit: %+v", ev)
				case strings.HasPrefix(ev.Tag, "x"):
					fmt.Sscanf(ev.Tag, "x%d", &code)
					if ev.Quality != "bad" || int(ev.Exception) != code || ev.HasValue() {
						t.Errorf("%s: quality %s exception %d (%s), want exception %d", ev.Tag, ev.Quality, ev.Exception, ev.Error, code)
					}
				default:
					if want := map[string]float64{"r0": 100, "r2": 102, "unit2": 102}[ev.Tag]; ev.Quality != "good" || ev.Value != want {
						t.Errorf("%s: %+v, want %v", ev.Tag, ev, want)
					}
				}
			}
			if len(n) != 4+255 {
				t.Errorf("%d tags with events, want %d", len(n), 4+255)
			}
			for tag, c := range n {
				if c != 2 {
					t.Errorf("%s: %d events in 2 cycles", tag, c)
				}
			}
			if len(status) != 3 {
				t.Errorf("status events %+v, want units 1 and 2 up, 3 down", status)
			}
			for _, ev := range status {
				if (ev.Unit == 3) != (ev.Quality == "down") {
					t.Errorf("unit %d %s (%s)", ev.Unit, ev.Quality, ev.Error)
				}
			}
		})
	}
}
