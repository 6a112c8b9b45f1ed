package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// demo runs sim/demo.sh (make demo) with the test's plcwatch and returns
// its output and exit code.
func demo(t *testing.T, env ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", "sim/demo.sh")
	cmd.Dir = "../.."
	cmd.Env = append(append(os.Environ(), "BIN="+binary(t)), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("demo.sh: %v\n%s", err, out)
	return "", 0
}

// boundPort binds a port of host without listening: nobody answers there,
// yet nobody else can listen there either.
func boundPort(t *testing.T, host string) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	ip := net.ParseIP(host).To4()
	sa := &syscall.SockaddrInet4{}
	copy(sa.Addr[:], ip)
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return got.(*syscall.SockaddrInet4).Port
}

// freePort is a port of 127.0.0.1 nobody listens on, as a string.
func freePort(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestDemoFailsWhenAPlantCannotListen: make demo exited 0 while its plant
// could not bind its address and the demo went on against whatever held
// the port (issue 12). A port bound by another socket is a failure, said
// plainly, exit 1.
func TestDemoFailsWhenAPlantCannotListen(t *testing.T) {
	port := boundPort(t, "127.0.0.10")
	out, code := demo(t, "DEMO_SECONDS=5", "DEMO_MODBUS_PORT="+strconv.Itoa(port), "DEMO_OPCUA_PORT="+freePort(t, "127.0.0.12"))
	if code != 1 || !strings.Contains(out, "the demo plant did not start") || !strings.Contains(out, "address already in use") ||
		!strings.Contains(out, "make demo FAILED") {
		t.Fatalf("exit %d, want 1 saying the plant could not listen:\n%s", code, out)
	}
}

// TestDemoMovesOffTakenPortsAndFailsUnmetExpectations: a process listening
// on the plant's port (another simulator) makes the demo use the next free
// port, not talk to the stranger; and a demo too short for its
// expectations (5 s: the new-writer rule is still learning when the
// intruder writes) exits 1, where it used to exit 0.
func TestDemoMovesOffTakenPortsAndFailsUnmetExpectations(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.10:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	out, code := demo(t, "DEMO_SECONDS=5", "DEMO_MODBUS_PORT="+strconv.Itoa(port), "DEMO_OPCUA_PORT="+freePort(t, "127.0.0.12"))
	if !strings.Contains(out, "the scenario's plant ports are taken: the demo plant listens on Modbus port ") ||
		strings.Contains(out, "127.0.0.10:"+strconv.Itoa(port)+")") {
		t.Errorf("the demo did not move off the taken port %d:\n%s", port, out)
	}
	if code != 1 || !strings.Contains(out, "expectations were not all met") {
		t.Fatalf("exit %d, want 1 for unmet expectations:\n%s", code, out)
	}
}
