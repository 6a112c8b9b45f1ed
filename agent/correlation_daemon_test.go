package agent_test

import (
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

// viewProxy stands between an HMI and a PLC. While rewrite is on, the
// connections it accepts get read responses (FC 3) whose registers all
// say 9999 — the Stuxnet pattern, the operator shown a value the PLC does
// not hold — and their single-register writes (FC 6) answered as done
// without reaching the PLC: a spoofed write response. Connections
// accepted before stay honest (plcwatch's poller).
type viewProxy struct {
	ln      net.Listener
	rewrite atomic.Bool
	wg      sync.WaitGroup
}

func newViewProxy(t *testing.T, upstream string) *viewProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &viewProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			rewrite := p.rewrite.Load()
			var mu sync.Mutex // both directions answer the client
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.requests(up, c, &mu, rewrite); up.Close() }()
			go func() { defer p.wg.Done(); p.responses(c, up, &mu, rewrite); c.Close() }()
		}
	}()
	return p
}

// responses copies ADUs from the PLC to the client, rewriting FC 3
// registers when rewrite.
func (p *viewProxy) responses(dst io.Writer, src io.Reader, mu *sync.Mutex, rewrite bool) {
	for {
		adu, err := readADU(src)
		if err != nil {
			return
		}
		if pdu := adu[7:]; rewrite && len(pdu) > 2 && pdu[0] == 3 {
			for i := 2; i+1 < len(pdu); i += 2 {
				be.BigEndian.PutUint16(pdu[i:], 9999)
			}
		}
		mu.Lock()
		_, err = dst.Write(adu)
		mu.Unlock()
		if err != nil {
			return
		}
	}
}

// requests forwards the client's ADUs to the PLC, but answers an FC 6
// itself (its echo, as the PLC would) when rewrite.
func (p *viewProxy) requests(up io.Writer, client io.ReadWriter, mu *sync.Mutex, rewrite bool) {
	for {
		adu, err := readADU(client)
		if err != nil {
			return
		}
		if rewrite && adu[7] == 6 {
			mu.Lock()
			_, err = client.Write(adu)
			mu.Unlock()
		} else {
			_, err = up.Write(adu)
		}
		if err != nil {
			return
		}
	}
}

// readADU reads one Modbus/TCP ADU: the MBAP header and its PDU.
func readADU(r io.Reader) ([]byte, error) {
	hdr := make([]byte, 7)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := int(be.BigEndian.Uint16(hdr[4:])) - 1
	if n < 1 {
		return nil, io.ErrUnexpectedEOF
	}
	adu := append(hdr, make([]byte, n)...)
	_, err := io.ReadFull(r, adu[7:])
	return adu, err
}

func (p *viewProxy) addr() string { return p.ln.Addr().String() }

func modbusClient(t *testing.T, addr string) *modbus.ModbusClient {
	t.Helper()
	c, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "tcp://" + addr, Timeout: 2 * time.Second, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDaemonCorrelatesPollsAndWire runs the daemon against a simulated PLC
// it polls and captures on lo (issue 13), with the default correlation
// rules:
//   - a setpoint changed through a second server port the capture does not
//     see raises correlation-change-without-write for that tag; one
//     changed through a captured write raises nothing;
//   - a proxy rewriting the read responses an HMI gets raises
//     correlation-view-differs; the same reads through it honest, nothing;
//   - a write the PLC refuses (exception 2), and one the proxy answers
//     as done without passing it on, raise correlation-write-not-taken;
//
// and the daemon keeps the passive inventory: op asset events a rule
// matches, GET /inventory, the retained <prefix>/inventory, the file.
func TestDaemonCorrelatesPollsAndWire(t *testing.T) {
	needRoot(t)
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/#")
	img := &modbussim.Image{}
	img.SetHolding(10, 500) // setpoint: changed behind the gateway's back
	img.SetHolding(11, 600) // setpoint_hmi: changed by a captured write
	img.SetHolding(20, 100) // level: what the HMI is shown
	img.SetHolding(30, 50)  // limit: a write to it is refused
	img.SetHolding(40, 1)   // mode: a write to it is swallowed by the proxy
	img.SetHolding(50, 0x4142)
	img.SetHolding(51, 0x4344) // label "ABCD": a string, changed behind the gateway's back
	img.Unmap(modbussim.HoldingRegisters, 31, 1)
	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plc.Close()
	hidden, err := modbussim.Serve(mqtttest.FreeAddr(t), img, nil) // the same PLC, on a port the capture does not see
	if err != nil {
		t.Fatal(err)
	}
	defer hidden.Close()
	proxy := newViewProxy(t, plc.Addr)
	_, plcPort, _ := net.SplitHostPort(plc.Addr)
	_, proxyPort, _ := net.SplitHostPort(proxy.addr())
	// No OPC UA here: a port nothing listens on, so that other tests'
	// OPC UA servers on lo (4840) stay out of this inventory.
	_, unused, _ := net.SplitHostPort(mqtttest.FreeAddr(t))

	dir := t.TempDir()
	writeRules(t, dir, `rules:
  - id: new-server
    title: A server not seen before
    severity: info
    match: {op: asset}
    when: asset == "server"
    fold: 0s
`)
	defaults, _ := filepath.Abs("../configs/rules/correlation.yaml")
	httpAddr := mqtttest.FreeAddr(t)
	invFile := filepath.Join(dir, "inventory.json")
	cfg := fmt.Sprintf(`site: lab
gateway: gw-test
capture: {interfaces: [lo], modbus_ports: [%s, %s], opcua_ports: [%s]}
rules: {paths: [rules, %q]}
mqtt: {brokers: [%s], topic_prefix: %s, heartbeat: 0s, client_id: %s}
spool: {dir: spool}
http: {listen: %q}
inventory: {file: %q, publish_every: 1s}
modbus:
  devices:
    - name: plc
      address: %s
      interval: 300ms
      tags:
        - {name: setpoint, table: holding, address: 10}
        - {name: setpoint_hmi, table: holding, address: 11}
        - {name: limit, table: holding, address: 30}
        - {name: label, table: holding, address: 50, type: string, length: 2}
    - name: plc-via-hmi-switch
      address: %s
      interval: 300ms
      tags:
        - {name: level, table: holding, address: 20, scale: 0.1}
        - {name: mode, table: holding, address: 40}
`, plcPort, proxyPort, unused, defaults, broker, pfx, clientID(pfx), httpAddr, invFile, plc.Addr, proxy.addr())
	d := startDaemon(t, dir, cfg)
	time.Sleep(2 * time.Second) // a few cycles: the setpoints hold still, the capture sees the PLC

	// What must raise nothing: a captured write, honest reads.
	hmi := modbusClient(t, plc.Addr)
	if err := hmi.WriteRegister(11, 777); err != nil {
		t.Fatal(err)
	}
	honest := modbusClient(t, proxy.addr())
	for i := 0; i < 10; i++ {
		if v, err := honest.ReadRegister(20, modbus.HOLDING_REGISTER); err != nil || v != 100 {
			t.Fatalf("honest read through the proxy: %d %v", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The attacks.
	if err := modbusClient(t, hidden.Addr).WriteRegister(10, 1234); err != nil {
		t.Fatal(err)
	}
	if err := modbusClient(t, hidden.Addr).WriteRegister(50, 0x5a5a); err != nil {
		t.Fatal(err)
	}
	if err := hmi.WriteRegisters(30, []uint16{70, 1}); err == nil {
		t.Fatal("the write to an unmapped register was taken")
	}
	proxy.rewrite.Store(true)
	deceived := modbusClient(t, proxy.addr())
	if err := deceived.WriteRegister(40, 2); err != nil {
		t.Fatalf("the proxy's spoofed write response: %v", err)
	}
	for i := 0; i < 15; i++ {
		if v, err := deceived.ReadRegister(20, modbus.HOLDING_REGISTER); err != nil || v != 9999 {
			t.Fatalf("rewritten read: %d %v", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := []string{"correlation-change-without-write label", "correlation-change-without-write setpoint", "correlation-view-differs level",
		"correlation-write-not-taken limit", "correlation-write-not-taken mode"}
	have := func(msgs []mqtttest.Message) []string {
		var out []string
		for _, a := range alerts(msgs) {
			id := a["rule"].(map[string]any)["id"].(string)
			if strings.HasPrefix(id, "new-server") {
				continue
			}
			ev := a["event"].(map[string]any)
			tag, _ := ev["tag"].(string)
			if tag == "" {
				tag, _ = ev["polled_tag"].(string)
			}
			out = append(out, id+" "+tag)
		}
		sort.Strings(out)
		return out
	}
	msgs, err := sub.WaitFor(20*time.Second, func(m []mqtttest.Message) bool { return len(have(m)) >= len(want) })
	if err != nil {
		t.Fatalf("alerts %v, want %v: %v\n%s", have(msgs), want, err, d.Log())
	}
	time.Sleep(time.Second) // anything more would come now
	msgs = sub.Messages()
	if got := have(msgs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("alerts:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), d.Log())
	}
	for _, a := range alerts(msgs) {
		ev := a["event"].(map[string]any)
		switch a["rule"].(map[string]any)["id"] {
		case "correlation-view-differs":
			if ev["polled"] != 10.0 || ev["viewed"] != 999.9 || ev["server"] != proxy.addr() {
				t.Errorf("view differs: %v", ev)
			}
		case "correlation-write-not-taken":
			if ev["tag"] == "limit" && (ev["written_value"] != 70.0 || ev["value"] != 50.0 || ev["writer"] != "127.0.0.1") ||
				ev["tag"] == "mode" && (ev["written_value"] != 2.0 || ev["value"] != 1.0) {
				t.Errorf("not taken: %v", ev)
			}
		case "correlation-change-without-write":
			if ev["tag"] == "label" && (ev["text"] != "ZZCD" || ev["unwritten"] != true) {
				t.Errorf("string change without write: %v", ev)
			} else if ev["tag"] == "setpoint" && (ev["value"] != 1234.0 || ev["device"] != "plc" || ev["unwritten"] != true) {
				t.Errorf("change without write: %v", ev)
			}
		}
	}
	// The inventory: op asset events through the rules, /inventory, the
	// retained topic, the file.
	newServers := 0
	for _, a := range alerts(msgs) {
		if a["rule"].(map[string]any)["id"] == "new-server" {
			newServers++
		}
	}
	if newServers != 2 {
		t.Errorf("%d new-server alerts, want 2 (the PLC and the proxy)", newServers)
	}
	resp, err := http.Get("http://" + httpAddr + "/inventory")
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Servers []struct {
			Address string `json:"address"`
			Device  string `json:"device"`
		} `json:"servers"`
		Pairs []struct {
			Server  string            `json:"server"`
			Written map[string]string `json:"written"`
		} `json:"pairs"`
	}
	json.NewDecoder(resp.Body).Decode(&inv)
	resp.Body.Close()
	servers := map[string]string{}
	for _, s := range inv.Servers {
		servers[s.Address] = s.Device
	}
	if servers[plc.Addr] != "plc" || servers[proxy.addr()] != "plc-via-hmi-switch" || len(servers) != 2 {
		t.Errorf("/inventory servers %v", servers)
	}
	written := ""
	for _, p := range inv.Pairs {
		if p.Server == plc.Addr {
			written = p.Written["holding"]
		}
	}
	if written != "11,30-31" {
		t.Errorf("/inventory: holding written %q, want 11,30-31", written)
	}
	retained := false
	for _, m := range msgs {
		retained = retained || (m.Topic == pfx+"/inventory" && strings.Contains(string(m.Payload), plc.Addr))
	}
	if !retained {
		t.Errorf("nothing published at %s/inventory", pfx)
	}
	d.signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("no stop:\n%s", d.Log())
	}
	saved, err := os.ReadFile(invFile)
	if err != nil || !strings.Contains(string(saved), plc.Addr) {
		t.Fatalf("inventory file: %v %.300s", err, saved)
	}
}
