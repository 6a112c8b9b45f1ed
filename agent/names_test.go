package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch"
)

func namesOf(t testing.TB, text string) *deviceNames {
	t.Helper()
	cfg, err := ParseConfig("/etc/plcwatch/test.yaml", []byte("rules: {paths: [r]}\n"+text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.names
}

const namesConfig = `modbus:
  devices:
    - name: plc-1
      address: 10.0.0.5
      tags: [{name: a, register: 40001}, {name: b, register: 40002, unit: 3}]
    - name: rtu
      transport: rtu
      address: /dev/ttyUSB0
      tags: [{name: a, register: 40001}]
    - name: gw-a
      address: 10.0.0.8:502
      unit: 1
      tags: [{name: a, register: 40001}]
    - name: gw-b
      address: 10.0.0.8:502
      unit: 2
      tags: [{name: a, register: 40001}]
assets:
  - {name: meter-2, address: "10.0.0.5:502", unit: 2, tags: {zone: cell-3, line: "2"}}
  - {name: hmi, address: 10.0.0.6}
  - {name: opc-1, address: "10.0.0.7:4840"}
  - {name: gw-any, address: "10.0.0.9:502"}
  - {name: gw-unit-7, address: "10.0.0.9:502", unit: 7}
`

// TestDeviceNames: a wire event carries the name of the device or asset
// at its server's address, the most specific one (issue 9).
func TestDeviceNames(t *testing.T) {
	n := namesOf(t, namesConfig)
	modbus := func(server string, unit uint8) *plcwatch.Event {
		return &plcwatch.Event{Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Server: netip.MustParseAddrPort(server), Unit: unit, Device: server}
	}
	opcua := &plcwatch.Event{Source: plcwatch.Wire, Protocol: plcwatch.ProtoOPCUA, Server: netip.MustParseAddrPort("10.0.0.7:4840"), Device: "10.0.0.7:4840"}
	poll := &plcwatch.Event{Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Server: netip.MustParseAddrPort("10.0.0.5:502"), Unit: 2, Device: "plc-1"}
	tests := []struct {
		name string
		ev   *plcwatch.Event
		want string
	}{
		{"polled device, its unit", modbus("10.0.0.5:502", 1), "plc-1"},
		{"polled device, a tag's unit", modbus("10.0.0.5:502", 3), "plc-1"},
		{"an asset's unit behind it wins", modbus("10.0.0.5:502", 2), "meter-2"},
		{"polled device, another unit", modbus("10.0.0.5:502", 9), "plc-1"},
		{"polled device, IPv4 in IPv6", modbus("[::ffff:10.0.0.5]:502", 1), "plc-1"},
		{"another port of it", modbus("10.0.0.5:503", 1), "10.0.0.5:503"},
		{"gateway, unit 1", modbus("10.0.0.8:502", 1), "gw-a"},
		{"gateway, unit 2", modbus("10.0.0.8:502", 2), "gw-b"},
		{"gateway, another unit: ambiguous", modbus("10.0.0.8:502", 3), "10.0.0.8:502"},
		{"asset on every port", modbus("10.0.0.6:1502", 0), "hmi"},
		{"asset for one unit wins over the address", modbus("10.0.0.9:502", 7), "gw-unit-7"},
		{"asset for the address", modbus("10.0.0.9:502", 8), "gw-any"},
		{"OPC UA server", opcua, "opc-1"},
		{"unknown", modbus("10.9.9.9:502", 1), "10.9.9.9:502"},
		{"polled events keep theirs", poll, "plc-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := *tc.ev
			n.Name(&ev)
			if ev.Device != tc.want {
				t.Errorf("device %q, want %q", ev.Device, tc.want)
			}
		})
	}
	if tags := n.Tags("meter-2"); len(tags) != 2 || tags[0] != (plcwatch.Label{Key: "line", Value: "2"}) || tags[1].Key != "zone" {
		t.Errorf("tags %v", tags)
	}
	if n.Tags("plc-1") != nil || (*deviceNames)(nil).Tags("x") != nil {
		t.Error("tags where there are none")
	}
	var none *deviceNames
	ev := *modbus("10.0.0.5:502", 1)
	none.Name(&ev)
	if ev.Device != "10.0.0.5:502" {
		t.Error("no names changed a name")
	}
}

// TestDeviceNamesDoNotAllocate: naming runs for every wire event.
func TestDeviceNamesDoNotAllocate(t *testing.T) {
	n := namesOf(t, namesConfig)
	ev := plcwatch.Event{Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Server: netip.MustParseAddrPort("10.0.0.9:502"), Unit: 8}
	if a := testing.AllocsPerRun(1000, func() { n.Name(&ev) }); a != 0 {
		t.Errorf("%v allocations per event", a)
	}
}

// BenchmarkDeviceNames: the cost per wire event, named or not.
func BenchmarkDeviceNames(b *testing.B) {
	n := namesOf(b, namesConfig)
	for _, bc := range []struct{ name, server string }{{"named", "10.0.0.9:502"}, {"unnamed", "10.9.9.9:502"}} {
		b.Run(bc.name, func(b *testing.B) {
			ev := plcwatch.Event{Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Server: netip.MustParseAddrPort(bc.server), Unit: 8}
			b.ReportAllocs()
			for b.Loop() {
				n.Name(&ev)
			}
		})
	}
}

// TestOPCUADeviceNames: a polled OPC UA server names the wire traffic to
// its endpoint's address (a Write an HMI sends it carries the device's
// name), a host name names nothing, and a name is unique across Modbus
// and OPC UA devices.
func TestOPCUADeviceNames(t *testing.T) {
	n := namesOf(t, `opcua:
  devices:
    - {name: line-3, endpoint: "opc.tcp://10.0.1.20:4840/UA/Server", tags: [{name: a, node: "ns=2;s=a"}]}
    - {name: by-name, endpoint: "opc.tcp://plc.example:4840", tags: [{name: a, node: "ns=2;s=a"}]}
`)
	for _, tc := range []struct {
		server, want string
	}{{"10.0.1.20:4840", "line-3"}, {"10.0.1.20:4841", "10.0.1.20:4841"}} {
		ev := &plcwatch.Event{Source: plcwatch.Wire, Protocol: plcwatch.ProtoOPCUA, Op: plcwatch.OpWrite, Server: netip.MustParseAddrPort(tc.server), Device: tc.server}
		n.Name(ev)
		if ev.Device != tc.want {
			t.Errorf("%s: device %q, want %q", tc.server, ev.Device, tc.want)
		}
	}
	_, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(`rules: {paths: [r]}
modbus: {devices: [{name: plc, address: 10.0.0.5, tags: [{name: a, register: 40001}]}]}
opcua: {devices: [{name: plc, endpoint: "opc.tcp://10.0.0.6:4840", tags: [{name: a, node: "i=2258"}]}]}
`))
	if err == nil || !strings.Contains(err.Error(), `opcua.devices[0].name: "plc": modbus.devices[0] has this name too`) {
		t.Errorf("one name for a Modbus and an OPC UA device: %v", err)
	}
}
