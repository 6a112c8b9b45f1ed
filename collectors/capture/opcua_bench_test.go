package capture_test

import (
	"bytes"
	"syscall"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// BenchmarkEngineOPCUA measures the whole passive path per OPC UA message
// on a synthetic polling capture (pcapgen.DefaultOPCUA: Read and Publish,
// a few Writes and Calls, some chunked responses): link, IP and TCP
// decoding, reassembly, UACP framing, chunks, service decoding, pairing
// and the events handed to a consumer. One op is one packet (one message
// or chunk); the messages/s metric counts service messages. The first
// quarter warms the engine up outside the timer.
//
// read-publish has no Writes or Calls: every message is on the hand-read
// hot path, and allocs/op must be 0. mix is the default capture. The
// -early variants emit every request twice (capture.Config.EarlyRequests),
// as the daemon and replay with rules run the engine.
func BenchmarkEngineOPCUA(b *testing.B) {
	for _, early := range []bool{false, true} {
		suffix := ""
		if early {
			suffix = "-early"
		}
		b.Run("read-publish"+suffix, func(b *testing.B) {
			o := pcapgen.DefaultOPCUA
			o.Writes, o.Calls = 0, 0
			benchOPCUA(b, o, early)
		})
		b.Run("mix"+suffix, func(b *testing.B) { benchOPCUA(b, pcapgen.DefaultOPCUA, early) })
	}
}

func benchOPCUA(b *testing.B, o pcapgen.OPCUAOptions, early bool) {
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	o.Packets = 200000
	st := pcapgen.OPCUA(w, o)
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	data, ts := packets(b, &buf)
	msgsPerPacket := float64(st.Messages) / float64(len(data))
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
	cpu0 := cpuTime()
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
	cpu := cpuTime() - cpu0
	if events == 0 {
		b.Fatal("no events")
	}
	b.ReportMetric(float64(b.N)*msgsPerPacket/b.Elapsed().Seconds(), "messages/s")
	// On a shared machine wall time measures the neighbours too: the
	// process's CPU time (with -cpu 1, the loop's, warm-ups included when
	// the capture wraps) is the figure to compare.
	b.ReportMetric(float64(b.N)*msgsPerPacket/cpu.Seconds(), "messages/cpu-s")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
