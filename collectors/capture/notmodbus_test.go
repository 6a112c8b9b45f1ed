package capture_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/collectors/capture/modbustcp"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
	"github.com/plcwatch/plcwatch/sim/pki"
)

// chunk is what one read or write of a real peer carried.
type chunk struct {
	dir pcapgen.Dir
	b   []byte
}

// recorder wraps the server's end of a connection and notes every read
// (client to server) and write (server to client), in the order the server
// saw them: an order the wire could have had.
type recorder struct {
	net.Conn
	mu     *sync.Mutex
	chunks *[]chunk
}

func (r recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if n > 0 {
		r.mu.Lock()
		*r.chunks = append(*r.chunks, chunk{pcapgen.ToServer, append([]byte(nil), b[:n]...)})
		r.mu.Unlock()
	}
	return n, err
}

func (r recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	*r.chunks = append(*r.chunks, chunk{pcapgen.ToClient, append([]byte(nil), b...)})
	r.mu.Unlock()
	return r.Conn.Write(b)
}

// exchange runs a real client against a real server on 127.0.0.1 and
// returns the bytes that crossed.
func exchange(t *testing.T, serve func(net.Conn), client func(addr string)) []chunk {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var chunks []chunk
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		serve(recorder{c, &mu, &chunks})
	}()
	client(ln.Addr().String())
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(chunks) == 0 {
		t.Fatal("nothing crossed")
	}
	return chunks
}

// decodeConns writes each recorded connection into one capture, as traffic
// to port 502 from its own client port, and decodes it.
func decodeConns(t *testing.T, early bool, conns ...[]chunk) ([]plcwatch.Event, capture.Stats) {
	t.Helper()
	return run(t, pcapgen.Options{}, capture.Config{EarlyRequests: early}, func(w *pcapgen.Writer) {
		for i, chunks := range conns {
			client := withPort(client4, uint16(40000+i))
			c := w.Conn(client, server4, t0.Add(time.Duration(i)*time.Second), uint32(1000+i*7919))
			c.Handshake()
			for _, ch := range chunks {
				c.Send(ch.dir, ch.b)
			}
			c.Close()
		}
	})
}

// checkNotModbus asserts that n connections of bytes that are not Modbus
// gave one event each, saying so, and nothing a rule could take for a
// request or a response.
func checkNotModbus(t *testing.T, evs []plcwatch.Event, st capture.Stats, n int, reason string) {
	t.Helper()
	per := map[uint64]int{}
	for _, ev := range evs {
		per[ev.Conn]++
		if ev.Malformed == "" || ev.Stage == plcwatch.StageRequest {
			t.Errorf("a well-formed Modbus event from bytes that are not Modbus: %s", ev.AppendJSON(nil))
		}
		if !modbustcp.IsNotModbus(ev.Malformed) || (reason != "" && ev.Malformed != reason) {
			t.Errorf("malformed %q, want %q", ev.Malformed, reason)
		}
		if ev.Function != 0 || ev.TID != 0 || ev.Unit != 0 {
			t.Errorf("an event about bytes that are not Modbus carries Modbus fields: %s", ev.AppendJSON(nil))
		}
		// Nor shows them as 0 (issue 11 review: absent, not zero).
		if js := string(ev.AppendJSON(nil)); strings.Contains(js, `"tid"`) || strings.Contains(js, `"unit"`) || strings.Contains(js, `"function"`) {
			t.Errorf("an event about bytes that are not Modbus shows MBAP fields: %s", js)
		}
	}
	if len(per) != n {
		t.Errorf("%d connections reported, want %d", len(per), n)
	}
	for conn, k := range per {
		if k != 1 {
			t.Errorf("connection %d: %d events, want one", conn, k)
		}
	}
	if st.Modbus.NotModbus != uint64(n) || st.Modbus.Requests != 0 {
		t.Errorf("not modbus %d requests %d: want %d and 0", st.Modbus.NotModbus, st.Modbus.Requests, n)
	}
}

func TestNotModbusOnThePort(t *testing.T) {
	ca, err := pki.New()
	if err != nil {
		t.Fatal(err)
	}
	// Two plausible ADUs back to back inside the ClientHello (as an ALPN
	// protocol name): framing that looks for a run of plausible headers
	// finds them, and took them for FC 9 requests.
	hidden := string(append(pcapgen.MBAP(7, 1, 9, 1, 2), pcapgen.MBAP(8, 1, 9, 3, 4)...))
	tlsPeer := func(alpn []string) []chunk {
		return exchange(t, func(c net.Conn) {
			s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{ca.Server}})
			if err := s.Handshake(); err != nil {
				t.Errorf("tls server: %v", err)
				return
			}
			b := make([]byte, 64)
			n, _ := s.Read(b)
			s.Write(b[:n])
			s.Close()
		}, func(addr string) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.CAPool, ServerName: "localhost", NextProtos: alpn})
			if err != nil {
				t.Fatalf("tls client: %v", err)
			}
			defer c.Close()
			c.Write([]byte("read holding 0+1, please"))
			io.ReadAll(c)
		})
	}
	httpPeer := func() []chunk {
		return exchange(t, func(c net.Conn) {
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				t.Errorf("http server: %v", err)
				return
			}
			resp := &http.Response{StatusCode: 404, ProtoMajor: 1, ProtoMinor: 1, Request: req,
				Body: io.NopCloser(strings.NewReader("not here\n")), ContentLength: 9, Close: true}
			resp.Write(c)
		}, func(addr string) {
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/cgi-bin/luci")
			if err != nil {
				t.Fatalf("http client: %v", err)
			}
			resp.Body.Close()
		})
	}
	tests := []struct {
		name   string
		conns  func(t *testing.T) [][]chunk
		reason string
	}{
		{"TLS", func(*testing.T) [][]chunk { return [][]chunk{tlsPeer(nil)} }, modbustcp.NotModbusTLS},
		{"TLS hiding plausible ADUs", func(*testing.T) [][]chunk { return [][]chunk{tlsPeer([]string{hidden, "h2"})} }, modbustcp.NotModbusTLS},
		{"HTTP", func(*testing.T) [][]chunk { return [][]chunk{httpPeer()} }, modbustcp.NotModbusHTTP},
		{"SSH", func(t *testing.T) [][]chunk { return [][]chunk{sshPeer(t)} }, modbustcp.NotModbusSSH},
		{"random bytes", func(*testing.T) [][]chunk { return randomConns(200) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conns := tc.conns(t)
			if tc.name == "TLS hiding plausible ADUs" && !strings.Contains(string(conns[0][0].b), hidden) {
				t.Fatal("the ClientHello does not carry the plausible ADUs")
			}
			for _, early := range []bool{false, true} {
				evs, st := decodeConns(t, early, conns...)
				checkNotModbus(t, evs, st, len(conns), tc.reason)
			}
			// And Modbus after it on the same port still is Modbus.
			mb := []chunk{{pcapgen.ToServer, writeReq}, {pcapgen.ToClient, writeResp}}
			evs, st := decodeConns(t, false, append(conns, mb)...)
			if last := evs[len(evs)-1]; render(&last) != wantWrite || st.Modbus.Confirmed != 1 {
				t.Errorf("the Modbus connection after them: %s (confirmed %d)", render(&last), st.Modbus.Confirmed)
			}
		})
	}
}

func TestNotModbusMidStream(t *testing.T) {
	// The capture starts after the handshake: the first bytes seen are a
	// ClientHello holding two plausible ADUs. Nothing confirms them, so
	// nothing is reported as a request; a Modbus client on the next
	// connection, seen mid-stream too, is.
	ca, err := pki.New()
	if err != nil {
		t.Fatal(err)
	}
	hidden := string(append(pcapgen.MBAP(7, 1, 9, 1, 2), pcapgen.MBAP(8, 1, 9, 3, 4)...))
	chunks := exchange(t, func(c net.Conn) {
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{ca.Server}})
		s.Handshake()
		s.Close()
	}, func(addr string) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.CAPool, ServerName: "localhost", NextProtos: []string{hidden}})
		if err != nil {
			t.Fatalf("tls client: %v", err)
		}
		io.ReadAll(c)
	})
	for _, early := range []bool{false, true} {
		evs, st := run(t, pcapgen.Options{}, capture.Config{EarlyRequests: early}, func(w *pcapgen.Writer) {
			c := w.Conn(client4, server4, t0, 1000)
			for _, ch := range chunks {
				c.Send(ch.dir, ch.b)
			}
			m := w.Conn(withPort(client4, 40001), server4, t0.Add(time.Second), 5000)
			m.Send(pcapgen.ToServer, writeReq)
			m.Send(pcapgen.ToClient, writeResp)
		})
		for _, ev := range evs {
			if ev.Conn == 1 && ev.Malformed == "" {
				t.Errorf("a well-formed Modbus event from a TLS connection seen mid-stream: %s", ev.AppendJSON(nil))
			}
		}
		if last := evs[len(evs)-1]; last.Conn != 2 || render(&last) != wantWrite || st.Modbus.Requests != 1 {
			t.Errorf("the Modbus connection: %s (requests %d)", render(&last), st.Modbus.Requests)
		}
	}
}

// sshPeer records a real OpenSSH client's banner and key exchange init
// against a server that answers with its banner.
func sshPeer(t *testing.T) []chunk {
	path, err := exec.LookPath("ssh")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ssh (openssh-client) is missing; .ci/run installs it")
		}
		t.Skip("ssh (openssh-client) is not installed")
	}
	return exchange(t, func(c net.Conn) {
		c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"))
		var got []byte
		b := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		// The client's banner line, then its KEXINIT packet (message 20).
		for !(strings.Contains(string(got), "\r\n") && len(got) > strings.Index(string(got), "\r\n")+6+2) {
			n, err := c.Read(b)
			got = append(got, b[:n]...)
			if err != nil {
				break
			}
		}
	}, func(addr string) {
		host, port, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, path, "-p", port, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-F", "/dev/null", "plc@"+host, "true")
		var exitErr *exec.ExitError
		if err := cmd.Run(); err != nil && !errors.As(err, &exitErr) {
			t.Fatalf("ssh: %v", err)
		}
	})
}

// randomConns is n connections of random bytes both ways: what a fuzzer or
// a broken device puts on the port.
func randomConns(n int) [][]chunk {
	r := rand.New(rand.NewPCG(9, 502))
	conns := make([][]chunk, n)
	for i := range conns {
		for k := 1 + r.IntN(4); k > 0; k-- {
			b := make([]byte, 1+r.IntN(600))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			conns[i] = append(conns[i], chunk{pcapgen.Dir(r.IntN(2)), b})
		}
	}
	return conns
}

func TestZeekModbusAndNotModbusOnPort502(t *testing.T) {
	pcap, _, ok := capturePaths(t, "zeek_modbus-and-non-modbus-p502")
	if !ok {
		t.Skip("zeek_modbus-and-non-modbus-p502.pcap is not in testdata")
	}
	for _, early := range []bool{false, true} {
		cfg := capture.Config{EarlyRequests: early}
		cfg.Defaults()
		var evs []plcwatch.Event
		e := capture.NewEngine(cfg, func(ev *plcwatch.Event) { evs = append(evs, *ev) })
		if err := capture.ReadFile(context.Background(), pcap, e); err != nil {
			t.Fatal(err)
		}
		// Zeek confirms the one Modbus connection and finds six that are
		// not (reference/zeek/modbus_and_non_modbus_on_port_502): a
		// DCE/RPC bind, TLS, HTTP, a TPKT and two other probes.
		var modbus, other []string
		for _, ev := range evs {
			if ev.Stage == plcwatch.StageRequest {
				continue
			}
			if ev.Client.Port() == 3082 {
				if ev.Malformed != "" || ev.Orphan || ev.Unanswered != "" {
					t.Errorf("the Modbus connection: %s", ev.AppendJSON(nil))
				}
				modbus = append(modbus, modbustcp.FunctionName(ev.Function))
				continue
			}
			if !modbustcp.IsNotModbus(ev.Malformed) {
				t.Errorf("a scanner's bytes decoded as Modbus: %s", ev.AppendJSON(nil))
			}
			other = append(other, ev.Client.String()+" "+strings.TrimPrefix(ev.Malformed, modbustcp.NotModbus))
		}
		want := "read_coils read_coils read_holding_registers write_single_coil write_single_coil write_single_register"
		if strings.Join(modbus, " ") != want {
			t.Errorf("Modbus connection: %v, want %s", modbus, want)
		}
		wantOther := []string{
			"87.236.176.106:38129  (DCE/RPC): MBAP protocol id is not 0",
			"87.236.176.96:60175 : MBAP protocol id is not 0",
			"66.175.213.4:58380  (TLS): MBAP protocol id is not 0",
			"198.74.56.135:60293  (HTTP): MBAP protocol id is not 0",
			"159.203.208.13:33752 : MBAP protocol id is not 0",
			"62.122.184.123:7488  (TPKT: S7comm, RDP, ISO-TSAP): MBAP protocol id is not 0",
		}
		if strings.Join(other, "\n") != strings.Join(wantOther, "\n") {
			t.Errorf("not Modbus:\n%s\nwant\n%s", strings.Join(other, "\n"), strings.Join(wantOther, "\n"))
		}
		if st := e.Stats(); st.Modbus.NotModbus != 6 || st.Modbus.Confirmed != 1 {
			t.Errorf("not modbus %d confirmed %d, want 6 and 1", st.Modbus.NotModbus, st.Modbus.Confirmed)
		}
	}
}

func withPort(ap netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr(), port)
}
