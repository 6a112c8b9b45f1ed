package opcua

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// The package's own tests cannot use collectors/capture (it imports this
// package), so they read captures with gopacket and a small in-order
// stream feeder: enough for the clean third-party captures; the engine's
// tests cover reassembly proper.

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// opcuaPcaps are the OPC UA captures in testdata, with their server ports.
func opcuaPcaps(t testing.TB) map[string]uint16 {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "testdata", "pcaps", "opcua", "*.pcap"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no OPC UA captures in testdata: %v", err)
	}
	out := map[string]uint16{}
	for _, f := range files {
		port := uint16(4840)
		switch filepath.Base(f) {
		case "icsnpp_open62541_client-server_mainloop-not-localhost-non-standard-port.pcap":
			port = 48010
		case "iti_opc-ua-ap-method-wireshark-freeze.pcap":
			port = 12001
		}
		out[f] = port
	}
	return out
}

type flowKey struct {
	client, server netip.AddrPort
}

type testFlow struct {
	conn *Conn
	next [2]uint32
	seen [2]bool
	buf  [2][]byte
}

// replayPcap feeds the TCP payloads of a capture to connections of d, in
// order, with gaps where bytes are missing.
func replayPcap(t testing.TB, path string, port uint16, d *Dissector, emit plcwatch.Emit) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, _ := br.Peek(4)
	type source interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var src source
	var link layers.LinkType
	if binary.LittleEndian.Uint32(magic) == 0x0A0D0D0A {
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatal(err)
		}
		src, link = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		src, link = r, r.LinkType()
	}
	flows := map[flowKey]*testFlow{}
	id := uint64(0)
	frame := uint64(0)
	var last time.Time
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frame++
		last = ci.Timestamp
		first := layers.LayerTypeEthernet
		if link == layers.LinkTypeNull || link == layers.LinkTypeLoop {
			first = layers.LayerTypeLoopback
		}
		pkt := gopacket.NewPacket(data, first, gopacket.NoCopy)
		tl, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tl == nil {
			continue
		}
		var src, dst netip.Addr
		if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			src, _ = netip.AddrFromSlice(ip.SrcIP)
			dst, _ = netip.AddrFromSlice(ip.DstIP)
		} else if ip, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
			src, _ = netip.AddrFromSlice(ip.SrcIP)
			dst, _ = netip.AddrFromSlice(ip.DstIP)
		}
		sa, da := netip.AddrPortFrom(src.Unmap(), uint16(tl.SrcPort)), netip.AddrPortFrom(dst.Unmap(), uint16(tl.DstPort))
		var key flowKey
		var dir reassembly.Dir
		switch port {
		case da.Port():
			key, dir = flowKey{sa, da}, reassembly.ClientToServer
		case sa.Port():
			key, dir = flowKey{da, sa}, reassembly.ServerToClient
		default:
			continue
		}
		fl := flows[key]
		if fl == nil {
			id++
			fl = &testFlow{conn: d.NewConn(id, key.client, key.server, emit)}
			flows[key] = fl
		}
		seq := tl.Seq
		if tl.SYN {
			fl.next[dir], fl.seen[dir] = seq+1, true
			continue
		}
		payload := tl.Payload
		if len(payload) == 0 {
			continue
		}
		m := reassembly.Meta{Time: ci.Timestamp, Frame: frame}
		if !fl.seen[dir] {
			fl.seen[dir] = true
			fl.next[dir] = seq
			fl.conn.Gap(dir, m)
		}
		if diff := int32(seq - fl.next[dir]); diff < 0 {
			if -int(diff) >= len(payload) {
				continue // a retransmission
			}
			payload = payload[-diff:]
		} else if diff > 0 {
			fl.buf[dir] = fl.buf[dir][:0]
			fl.conn.Gap(dir, m)
		}
		fl.next[dir] = seq + uint32(len(tl.Payload))
		b := append(fl.buf[dir], payload...)
		used := fl.conn.Data(dir, b, m)
		fl.buf[dir] = append(fl.buf[dir][:0], b[used:]...)
		fl.conn.Expire(ci.Timestamp)
	}
	for _, fl := range flows {
		fl.conn.lastTime = last
		fl.conn.Close(plcwatch.UnansweredEOF)
	}
}

// capturedMessages returns every complete message (type id and body) of
// the testdata captures, by direction.
func capturedMessages(t testing.TB) (toServer, toClient [][]byte) {
	for path, port := range opcuaPcaps(t) {
		d := New(Config{})
		d.tap = func(dir reassembly.Dir, msg []byte) {
			cp := append([]byte(nil), msg...)
			if dir == reassembly.ClientToServer {
				toServer = append(toServer, cp)
			} else {
				toClient = append(toClient, cp)
			}
		}
		replayPcap(t, path, port, d, func(*plcwatch.Event) {})
	}
	return toServer, toClient
}
