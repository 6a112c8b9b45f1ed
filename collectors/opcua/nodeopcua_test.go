package opcua

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/sim/opcuasim"
)

// nodeServer is a node-opcua server process (testdata/node-opcua/server.js).
type nodeServer struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  int
	ns    int
	out   chan string
	done  chan struct{}
}

const nodeURI = "urn:plcwatch:test:node-opcua"

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// needNode skips without node-opcua, and fails in CI.
func needNode(t testing.TB) string {
	t.Helper()
	modules := filepath.Join(repoRoot(t), "tools", "node-opcua", "node_modules")
	_, errM := os.Stat(filepath.Join(modules, "node-opcua"))
	_, errN := exec.LookPath("node")
	if err := errors.Join(errM, errN); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node-opcua is not installed (make node-opcua): %v", err)
		}
		t.Skipf("node-opcua is not installed (make node-opcua): %v", err)
	}
	return modules
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNode starts a node-opcua server on port with its certificates in
// pkiDir and n extra variables changing every second.
func startNode(t testing.TB, port int, pkiDir, password string, n int) *nodeServer {
	t.Helper()
	modules := needNode(t)
	cmd := exec.Command("node", filepath.Join(repoRoot(t), "collectors", "opcua", "testdata", "node-opcua", "server.js"),
		fmt.Sprint(port), pkiDir, fmt.Sprint(n))
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "PASSWORD="+password)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &nodeServer{t: t, cmd: cmd, stdin: stdin, port: port, out: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "{") {
				s.out <- sc.Text()
			}
		}
		cmd.Wait()
		close(s.done)
	}()
	select {
	case line := <-s.out:
		var r struct{ NS int }
		json.Unmarshal([]byte(line), &r)
		s.ns = r.NS
	case <-s.done:
		t.Fatalf("node-opcua server exited: %s", stderr.String())
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("node-opcua server did not start: %s", stderr.String())
	}
	t.Cleanup(s.stop)
	return s
}

func (s *nodeServer) endpoint() string { return fmt.Sprintf("opc.tcp://127.0.0.1:%d", s.port) }

// set sets a variable's value (JSON) and status (a status code name, or "").
func (s *nodeServer) set(name, value, status string) {
	fmt.Fprintf(s.stdin, "set %s %s %s\n", name, value, status)
	select {
	case <-s.out:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("node-opcua: set %s not acknowledged", name)
	}
}

// stop ends the process (as a crash would: the server says nothing).
func (s *nodeServer) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}

// TestNodeOPCUANoneAnonymous: against node-opcua, security None and an
// anonymous session: every built-in type and the arrays by subscription
// and by read, then Uncertain and Bad status codes.
func TestNodeOPCUANoneAnonymous(t *testing.T) {
	s := startNode(t, freePort(t), t.TempDir(), "", 0)
	d := Device{Name: "node", Endpoint: s.endpoint(), Interval: 200 * time.Millisecond, Security: Security{Policy: "None", Mode: "None"}}
	for _, b := range opcuasim.Builtins() {
		node := fmt.Sprintf("nsu=%s;s=%s", nodeURI, b.Name)
		d.Tags = append(d.Tags, Tag{Name: "sub." + b.Name, Node: node}, Tag{Name: "read." + b.Name, Node: node, Mode: "read"})
	}
	w := start(t, d, Options{})
	byName := map[string]opcuasim.Builtin{}
	for _, b := range opcuasim.Builtins() {
		byName[b.Name] = b
	}
	seen := map[string]bool{}
	w.until(60*time.Second, "every tag by subscription and by read", func(ev *plcwatch.Event) bool {
		if ev.Op != plcwatch.OpRead || seen[ev.Tag] {
			return false
		}
		seen[ev.Tag] = true
		checkBuiltin(t, byName[ev.Tag[strings.IndexByte(ev.Tag, '.')+1:]], ev)
		return len(seen) == len(d.Tags)
	})
	s.set("Double", "7.5", "UncertainLastUsableValue")
	s.set("Int32", "5", "BadSensorFailure")
	got := map[string]bool{}
	w.until(30*time.Second, "Uncertain and Bad by both ways", func(ev *plcwatch.Event) bool {
		switch {
		case strings.HasSuffix(ev.Tag, ".Double") && ev.Quality == "uncertain" && ev.Value == 7.5 && ev.StatusName == "UncertainLastUsableValue":
			got[ev.Tag] = true
		case strings.HasSuffix(ev.Tag, ".Int32") && ev.Quality == "bad" && !ev.HasValue() && ev.Error == "BadSensorFailure":
			got[ev.Tag] = true
		}
		return len(got) == 4
	})
}

// lockedBuffer is a log sink the collector writes to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNodeOPCUASecure: Basic256Sha256 SignAndEncrypt with a user name
// against node-opcua. The server's certificate is refused at first, with
// its thumbprint in the error and a copy in rejected/certs; moved to
// trusted/certs it is taken at the next attempt, without a restart. Then
// the server process is killed and a new one started on the same port:
// values resume within 10 s, with a down and an up event between. The
// client certificate made at the first start is the same file after the
// collector is made again. The password appears in no event and no log.
func TestNodeOPCUASecure(t *testing.T) {
	const password = "N0de-Secret/pa55!"
	serverPKI, clientPKI := t.TempDir(), t.TempDir()
	port := freePort(t)
	s := startNode(t, port, serverPKI, password, 0)
	pwFile := filepath.Join(t.TempDir(), "opcua.pw")
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
	p, err := OpenPKI(PKIConfig{Dir: clientPKI})
	if err != nil {
		t.Fatal(err)
	}
	ownCert, err := os.ReadFile(filepath.Join(clientPKI, "own", "certs", "plcwatch.der"))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	opts := Options{PKI: p, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	d := Device{Name: "secure", Endpoint: s.endpoint(), Interval: 200 * time.Millisecond, Timeout: 2 * time.Second,
		Backoff: 200 * time.Millisecond, MaxBackoff: time.Second,
		Security: Security{Policy: "Basic256Sha256", Mode: "SignAndEncrypt"},
		Auth:     Auth{Username: "operator", PasswordFile: pwFile},
		Tags: []Tag{{Name: "level", Node: "nsu=" + nodeURI + ";s=Level"}, {Name: "double", Node: "nsu=" + nodeURI + ";s=Double", Mode: "read"},
			{Name: "text", Node: "nsu=" + nodeURI + ";s=String"}}}
	w := start(t, d, opts)
	var events bytes.Buffer
	record := func(ev *plcwatch.Event) { events.Write(ev.AppendJSON(nil)); events.WriteByte('\n') }
	var refused string
	w.until(60*time.Second, "the untrusted certificate refused", func(ev *plcwatch.Event) bool {
		record(ev)
		if ev.Op == plcwatch.OpStatus && ev.Quality == "down" && strings.Contains(ev.Error, "not trusted") {
			refused = ev.Error
			return true
		}
		return false
	})
	rejected, _ := filepath.Glob(filepath.Join(clientPKI, "rejected", "certs", "*.der"))
	if len(rejected) != 1 {
		t.Fatalf("rejected/certs holds %v", rejected)
	}
	der, _ := os.ReadFile(rejected[0])
	if !strings.Contains(refused, "thumbprint "+Thumbprint(der)) || !strings.Contains(filepath.Base(rejected[0]), Thumbprint(der)) {
		t.Errorf("refusal %q does not name the thumbprint of %s", refused, rejected[0])
	}
	if n := strings.Count(logs.String(), "opcua server certificate refused"); n != 1 {
		t.Errorf("%d log lines about the refused certificate, want one", n)
	}
	// The operator trusts it: moved, not copied; no restart.
	if err := os.Rename(rejected[0], filepath.Join(clientPKI, "trusted", "certs", filepath.Base(rejected[0]))); err != nil {
		t.Fatal(err)
	}
	w.until(30*time.Second, "values over Basic256Sha256", func(ev *plcwatch.Event) bool {
		record(ev)
		return ev.Tag == "level" && ev.Value == 1 && ev.SecurityPolicy == "Basic256Sha256" && ev.SecurityMode == "SignAndEncrypt"
	})
	// A new server process on the same port, the same certificate.
	s.stop()
	w.until(30*time.Second, "a down event", func(ev *plcwatch.Event) bool {
		record(ev)
		return ev.Op == plcwatch.OpStatus && ev.Quality == "down"
	})
	s = startNode(t, port, serverPKI, password, 0)
	back := time.Now()
	s.set("Level", "2.5", "")
	up := false
	w.until(10*time.Second, "up and values from the new process", func(ev *plcwatch.Event) bool {
		record(ev)
		if ev.Op == plcwatch.OpStatus && ev.Quality == "up" {
			up = true
		}
		return up && ev.Tag == "level" && ev.Value == 2.5
	})
	t.Logf("values back %v after the new server process", time.Since(back))
	// The client certificate is never made again.
	if _, err := OpenPKI(PKIConfig{Dir: clientPKI}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(clientPKI, "own", "certs", "plcwatch.der")); !bytes.Equal(again, ownCert) {
		t.Error("the client certificate changed")
	}
	for what, text := range map[string]string{"events": events.String(), "logs": logs.String()} {
		if strings.Contains(text, password) {
			t.Errorf("the password is in the %s", what)
		}
	}
	if !strings.Contains(logs.String(), "opcua server up") {
		t.Errorf("logs: %s", logs.String())
	}
}
