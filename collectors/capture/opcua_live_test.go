package capture_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// needRoot skips a live capture test outside root, and fails it in CI,
// which runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("live capture needs root (CAP_NET_RAW), and CI runs as root")
		}
		t.Skip("live capture needs root (CAP_NET_RAW); CI runs as root")
	}
}

// liveOPCUA captures OPC UA on lo, port port, until stop is called, and
// returns what it saw then.
func liveOPCUA(t *testing.T, port uint16) (stop func() []plcwatch.Event) {
	t.Helper()
	live, err := capture.NewLive(capture.Config{Interfaces: []string{"lo"}, OPCUAPorts: []uint16{port}, ModbusPorts: []uint16{port + 1}, EarlyRequests: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Open(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var evs []plcwatch.Event
	done := make(chan error, 1)
	go func() {
		done <- live.Run(ctx, func(ev *plcwatch.Event) {
			mu.Lock()
			evs = append(evs, *ev)
			mu.Unlock()
		})
	}()
	return func() []plcwatch.Event {
		// The client closed its sessions and connections: wait until the
		// capture has seen the end of every connection it tracks.
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := 0
			for _, ev := range evs {
				if ev.Service == "CloseSessionRequest" && ev.Stage == plcwatch.StageResponse {
					n++
				}
			}
			mu.Unlock()
			if n >= 2 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]plcwatch.Event(nil), evs...)
	}
}

// checkLive checks what every live OPC UA test expects: the writes and
// calls (answered), the identity of each session, and no trace of the
// password in any event.
func checkLive(t *testing.T, evs []plcwatch.Event, password string, writes, calls, sessions []string) {
	t.Helper()
	var gotW, gotC, gotS []string
	var all bytes.Buffer
	for _, ev := range evs {
		all.Write(ev.AppendJSON(nil))
		all.WriteByte('\n')
		if ev.Stage == plcwatch.StageRequest {
			continue
		}
		if ev.Malformed != "" || ev.Orphan {
			t.Errorf("unexpected event: %s", ev.AppendJSON(nil))
		}
		switch ev.Service {
		case "WriteRequest":
			gotW = append(gotW, fmt.Sprintf("%s %s=%s identity=%s user=%s status=%s", ev.Node, ev.ValueType, eventValue(&ev), ev.Identity, ev.User, ev.StatusName))
		case "CallRequest":
			gotC = append(gotC, fmt.Sprintf("%s on %s %s=%s identity=%s user=%s", ev.Node, ev.Object, ev.ValueType, eventValue(&ev), ev.Identity, ev.User))
		case "ActivateSessionRequest":
			gotS = append(gotS, fmt.Sprintf("%s %s status=%s", ev.Identity, ev.User, ev.StatusName))
		}
		if ev.SecurityPolicy != "None" || ev.SecurityMode != "None" {
			if ev.Service != "Hello" {
				t.Errorf("%s: security %q/%q, want None/None", ev.Service, ev.SecurityPolicy, ev.SecurityMode)
			}
		}
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"writes", gotW, writes}, {"calls", gotC, calls}, {"sessions", gotS, sessions}} {
		if strings.Join(c.got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s:\n got  %q\n want %q", c.what, c.got, c.want)
		}
	}
	if bytes.Contains(all.Bytes(), []byte(password)) {
		t.Errorf("the password %q is in the events", password)
	}
	if t.Failed() {
		t.Logf("events:\n%s", all.String())
	}
}

// TestLiveOPCUANodeOPCUA captures a node-opcua client talking to a
// node-opcua server on a non-standard port: a write and a method call in
// an anonymous session and in one of user "operator", whose password
// crosses the wire in clear text.
func TestLiveOPCUANodeOPCUA(t *testing.T) {
	needRoot(t)
	root := repoRoot(t)
	modules := filepath.Join(root, "tools", "node-opcua", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "node-opcua")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node-opcua is not installed (make node-opcua): %v", err)
		}
		t.Skip("node-opcua is not installed: make node-opcua")
	}
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed")
	}
	port := uint16(freePort(t))
	const password = "Nd-0pcua/Passw0rd!"
	stop := liveOPCUA(t, port)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(root, "collectors", "capture", "testdata", "node-opcua", "peer.js"), fmt.Sprint(port), password)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		stop()
		t.Fatalf("node peer: %v\n%s", err, stderr.String())
	}
	var peer struct {
		NS       int `json:"ns"`
		Sessions []struct {
			Identity string  `json:"identity"`
			User     string  `json:"user"`
			Value    float64 `json:"value"`
			Speed    int     `json:"speed"`
		} `json:"sessions"`
	}
	// node-opcua may print warnings first: the peer's result is the last line.
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &peer); err != nil {
		t.Fatalf("node peer output %q: %v", out, err)
	}
	evs := stop()
	var writes, calls, sessions []string
	for _, s := range peer.Sessions {
		writes = append(writes, fmt.Sprintf("ns=%d;s=Boiler.Setpoint Double=%v identity=%s user=%s status=", peer.NS, s.Value, s.Identity, s.User))
		calls = append(calls, fmt.Sprintf("ns=%d;s=Boiler.Start on ns=%d;s=Boiler Int32=%d identity=%s user=%s", peer.NS, peer.NS, s.Speed, s.Identity, s.User))
		sessions = append(sessions, fmt.Sprintf("%s %s status=", s.Identity, s.User))
	}
	checkLive(t, evs, password, writes, calls, sessions)
}

// TestLiveOPCUAGopcua does the same with gopcua's client and server: an
// anonymous session and one of user "engineer" (gopcua's server offers no
// user name policy on a None endpoint and does not check the token; the
// client sends it anyway, its password in clear text). gopcua's server
// does not implement Call: the calls are answered BadServiceUnsupported.
func TestLiveOPCUAGopcua(t *testing.T) {
	needRoot(t)
	port := uint16(freePort(t))
	const password = "g0pcua-Secret#42"
	stop := liveOPCUA(t, port)

	log.SetOutput(io.Discard) // gopcua's server logs its node sets through the standard logger
	defer log.SetOutput(os.Stderr)
	srv := server.New(server.EndPoint("127.0.0.1", int(port)), server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous), server.EnableAuthMode(ua.UserTokenTypeUserName))
	root, err := srv.Namespace(0)
	if err != nil {
		t.Fatal(err)
	}
	ns := server.NewNodeNameSpace(srv, "urn:plcwatch:test")
	srv.AddNamespace(ns)
	root.Objects().AddRef(ns.Objects(), id.HasComponent, true)
	ns.Objects().AddRef(ns.AddNewVariableStringNode("Setpoint", 1.5), id.HasComponent, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
	eps, err := opcua.GetEndpoints(ctx, endpoint)
	if err != nil || len(eps) == 0 {
		t.Fatalf("endpoints: %v", err)
	}
	node := ua.NewStringNodeID(ns.ID(), "Setpoint")
	method := ua.NewStringNodeID(ns.ID(), "Reset")
	var writes, calls, sessions []string
	for i, s := range []struct {
		identity, user string
		auth           opcua.Option
	}{
		{"anonymous", "", opcua.AuthAnonymous()},
		{"username", "engineer", opcua.AuthUsername("engineer", password)},
	} {
		c, err := opcua.NewClient(endpoint, opcua.SecurityPolicy("None"), opcua.SecurityMode(ua.MessageSecurityModeNone),
			s.auth, opcua.SecurityFromEndpoint(eps[0], ua.UserTokenTypeAnonymous), opcua.RequestTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		value := 20.5 + float64(i)
		if _, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{NodeID: node, AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(value)}}}}); err != nil {
			t.Fatal(err)
		}
		arg := int32(7 + i)
		c.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.NewNumericNodeID(0, id.ObjectsFolder), MethodID: method, InputArguments: []*ua.Variant{ua.MustVariant(arg)}})
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		writes = append(writes, fmt.Sprintf("ns=%d;s=Setpoint Double=%v identity=%s user=%s status=", ns.ID(), value, s.identity, s.user))
		calls = append(calls, fmt.Sprintf("ns=%d;s=Reset on i=85 Int32=%d identity=%s user=%s", ns.ID(), arg, s.identity, s.user))
		sessions = append(sessions, fmt.Sprintf("%s %s status=", s.identity, s.user))
	}
	checkLive(t, stop(), password, writes, calls, sessions)
}
