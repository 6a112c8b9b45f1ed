package capture

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// frame returns the Ethernet frame of one data segment pcapgen writes for a
// connection from a client port to a server port.
func frame(t *testing.T, link pcapgen.Link, v6 bool, sport, dport uint16) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{Link: link})
	a, b := "10.0.0.1", "10.0.0.2"
	if v6 {
		a, b = "fd00::1", "fd00::2"
	}
	c := w.Conn(netip.AddrPortFrom(netip.MustParseAddr(a), sport), netip.AddrPortFrom(netip.MustParseAddr(b), dport), time.Unix(0, 0), 1)
	c.Send(pcapgen.ToServer, []byte("hello"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[24+16:] // skip the file and record headers
}

func TestFilter(t *testing.T) {
	raw, err := Filter([]uint16{502, 5020}, 9000)
	if err != nil {
		t.Fatal(err)
	}
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		link         pcapgen.Link
		v6           bool
		sport, dport uint16
		want         bool
	}{
		{"ipv4 to 502", pcapgen.Ethernet, false, 40000, 502, true},
		{"ipv4 from 502", pcapgen.Ethernet, false, 502, 40000, true},
		{"ipv4 to 5020", pcapgen.Ethernet, false, 40000, 5020, true},
		{"ipv4 other port", pcapgen.Ethernet, false, 40000, 80, false},
		{"ipv6 to 502", pcapgen.Ethernet, true, 40000, 502, true},
		{"ipv6 other port", pcapgen.Ethernet, true, 40000, 443, false},
		{"vlan ipv4 to 502", pcapgen.EthernetVLAN, false, 40000, 502, true},
		{"vlan ipv6 from 5020", pcapgen.EthernetVLAN, true, 5020, 40000, true},
		{"vlan other port", pcapgen.EthernetVLAN, false, 40000, 22, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := vm.Run(frame(t, tc.link, tc.v6, tc.sport, tc.dport))
			if err != nil {
				t.Fatal(err)
			}
			if got := n > 0; got != tc.want {
				t.Errorf("accepted=%v (%d bytes), want %v", got, n, tc.want)
			}
			if tc.want && n != 9000 {
				t.Errorf("accepted %d bytes, want the snap length 9000", n)
			}
		})
	}
	t.Run("udp to 502", func(t *testing.T) {
		f := frame(t, pcapgen.Ethernet, false, 40000, 502)
		f[14+9] = 17 // protocol UDP
		if n, _ := vm.Run(f); n != 0 {
			t.Error("UDP accepted")
		}
	})
	t.Run("later ipv4 fragment", func(t *testing.T) {
		f := frame(t, pcapgen.Ethernet, false, 40000, 502)
		f[14+7] = 0x10 // fragment offset 16
		if n, _ := vm.Run(f); n != 0 {
			t.Error("non-first fragment accepted")
		}
	})
	t.Run("arp", func(t *testing.T) {
		f := frame(t, pcapgen.Ethernet, false, 40000, 502)
		f[12], f[13] = 0x08, 0x06
		if n, _ := vm.Run(f); n != 0 {
			t.Error("ARP accepted")
		}
	})
	t.Run("most ports still assemble", func(t *testing.T) {
		ports := make([]uint16, maxFilterPorts)
		for i := range ports {
			ports[i] = uint16(1000 + i)
		}
		if _, err := Filter(ports, 65535); err != nil {
			t.Fatal(err)
		}
	})
}
