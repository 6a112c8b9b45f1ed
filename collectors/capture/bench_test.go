package capture_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// packets reads every packet of a capture into memory.
func packets(b *testing.B, r io.Reader) ([][]byte, []time.Time) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		b.Fatal(err)
	}
	var data [][]byte
	var ts []time.Time
	for {
		d, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return data, ts
		}
		if err != nil {
			b.Fatal(err)
		}
		data = append(data, d)
		ts = append(ts, ci.Timestamp)
	}
}

// pollCapture is 20,000 packets of synthetic polling, held in memory.
func pollCapture(b *testing.B) ([][]byte, []time.Time) {
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	o := pcapgen.DefaultPoll
	o.Packets = 20000
	pcapgen.Poll(w, o)
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	return packets(b, &buf)
}

// BenchmarkEnginePoll measures the whole passive path per packet: link, IP
// and TCP decoding, flow lookup, reassembly, Modbus framing, decoding,
// pairing and the event handed to a consumer. One op is one packet. The
// first quarter of the capture warms the engine up (every connection open,
// every buffer grown) outside the timer, so the loop sees steady state.
func BenchmarkEnginePoll(b *testing.B) { benchEnginePoll(b, false) }

// BenchmarkEnginePollEarlyRequests is the same with every request emitted
// twice (capture.Config.EarlyRequests), as the daemon runs it.
func BenchmarkEnginePollEarlyRequests(b *testing.B) { benchEnginePoll(b, true) }

func benchEnginePoll(b *testing.B, early bool) {
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	o := pcapgen.DefaultPoll
	o.Packets = 400000
	pcapgen.Poll(w, o)
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	data, ts := packets(b, &buf)
	warm := len(data) / 4
	cfg := capture.Config{EarlyRequests: early}
	cfg.Defaults()
	events := 0
	var e *capture.Engine
	start := func() {
		e = capture.NewEngine(cfg, func(*plcwatch.Event) { events++ })
		for i := 0; i < warm; i++ {
			e.Packet(data[i], ts[i], capture.LinkEthernet)
		}
	}
	start()
	b.ReportAllocs()
	b.ResetTimer()
	k := warm
	for i := 0; i < b.N; i++ {
		if k == len(data) {
			b.StopTimer()
			start()
			k = warm
			b.StartTimer()
		}
		e.Packet(data[k], ts[k], capture.LinkEthernet)
		k++
	}
	b.StopTimer()
	if events == 0 {
		b.Fatal("no events")
	}
}

// BenchmarkBareGopacket is the floor: gopacket's DecodingLayerParser over
// Ethernet, IPv4 and TCP and nothing else, on the same kind of packets.
func BenchmarkBareGopacket(b *testing.B) {
	data, _ := pollCapture(b)
	var eth layers.Ethernet
	var ip4 layers.IPv4
	var tcp layers.TCP
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp)
	p.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = p.DecodeLayers(data[i%len(data)], &decoded)
	}
}

// BenchmarkReplayFile runs a capture file named by $PLCWATCH_BENCH_PCAP
// (make bench-data writes one) through the engine, as replay does, and
// BenchmarkBareGopacketFile reads the same file with the bare decoding loop.
// Both report packets/s; their ratio is the cost of everything plcwatch
// does beyond decoding headers.
func BenchmarkReplayFile(b *testing.B) {
	path := benchFile(b)
	var n uint64
	for i := 0; i < b.N; i++ {
		var cfg capture.Config
		cfg.Defaults()
		e := capture.NewEngine(cfg, func(*plcwatch.Event) {})
		if err := capture.ReadFile(context.Background(), path, e); err != nil {
			b.Fatal(err)
		}
		n += e.Stats().Packets
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "packets/s")
}

func BenchmarkBareGopacketFile(b *testing.B) {
	path := benchFile(b)
	var n uint64
	for i := 0; i < b.N; i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		r, err := pcapgo.NewReader(bufioReader(f))
		if err != nil {
			b.Fatal(err)
		}
		var eth layers.Ethernet
		var ip4 layers.IPv4
		var ip6 layers.IPv6
		var tcp layers.TCP
		p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &ip6, &tcp)
		p.IgnoreUnsupported = true
		decoded := make([]gopacket.LayerType, 0, 4)
		for {
			data, _, err := r.ZeroCopyReadPacketData()
			if err != nil {
				break
			}
			_ = p.DecodeLayers(data, &decoded)
			n++
		}
		f.Close()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "packets/s")
}

func benchFile(b *testing.B) string {
	path := os.Getenv("PLCWATCH_BENCH_PCAP")
	if path == "" {
		b.Skip("set PLCWATCH_BENCH_PCAP to a capture (make bench-data writes .bench/poll-1m.pcap)")
	}
	return path
}
