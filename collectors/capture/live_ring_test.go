package capture_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// modbusServer starts a Modbus server on a free loopback port.
func modbusServer(t *testing.T) (int, string) {
	t.Helper()
	port := freePort(t)
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: url, Timeout: 30 * time.Second, MaxClients: 64,
		Logger: log.New(io.Discard, "", 0)}, &registers{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	return port, url
}

// startLive runs a live capture on lo and collects its events.
func startLive(t *testing.T, cfg capture.Config) (*capture.Live, func() []plcwatch.Event) {
	t.Helper()
	if len(cfg.OPCUAPorts) == 0 {
		// The default, 4840, is where other tests (and simulated plants)
		// on this machine talk OPC UA over lo: hold a free port instead,
		// so only this test's traffic is captured.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		cfg.OPCUAPorts = []uint16{uint16(l.Addr().(*net.TCPAddr).Port)}
	}
	live, err := capture.NewLive(cfg, nil)
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
	stop := func() []plcwatch.Event {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return within 30 s of cancellation")
		}
		mu.Lock()
		defer mu.Unlock()
		return evs
	}
	return live, stop
}

// waitEvents waits (generously) until n events of the given function came.
func waitEvents(t *testing.T, live *capture.Live, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var got uint64
		for _, st := range live.Stats() {
			got += st.Stats.Modbus.Events
		}
		if got >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("fewer than %d events after 30 s: %+v", n, live.Stats())
}

// TestLiveLoopbackOnce: on lo the kernel hands a packet socket every packet
// twice, as sent (PACKET_OUTGOING) and as received. The ring's filter keeps
// one copy: one event per request, and no packet seen twice (the second
// copy would count as a retransmission).
func TestLiveLoopbackOnce(t *testing.T) {
	needRoot(t)
	port, url := modbusServer(t)
	live, stop := startLive(t, capture.Config{Interfaces: []string{"lo"}, ModbusPorts: []uint16{uint16(port)}})
	client, err := modbus.NewClient(&modbus.ClientConfiguration{URL: url, Timeout: 10 * time.Second, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Open(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := client.WriteRegister(uint16(i), uint16(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	client.Close()
	waitEvents(t, live, n)
	time.Sleep(200 * time.Millisecond) // a duplicate would come right behind
	evs := stop()
	if len(evs) != n {
		t.Errorf("%d events for %d requests", len(evs), n)
	}
	for i, ev := range evs {
		if ev.Function != 6 || ev.Address != uint16(i) || ev.Unanswered != "" || ev.Orphan {
			t.Errorf("event %d: %s", i, ev.AppendJSON(nil))
		}
	}
	st := live.Stats()[0]
	if st.Stats.Reassembly.Retransmitted != 0 || st.Stats.Reassembly.OverlapBytes != 0 {
		t.Errorf("packets seen twice: %d retransmissions, %d overlapping bytes", st.Stats.Reassembly.Retransmitted, st.Stats.Reassembly.OverlapBytes)
	}
	if st.KernelPackets < st.Stats.Packets || st.KernelDrops != 0 {
		t.Errorf("kernel says %d packets (%d dropped), the engine saw %d", st.KernelPackets, st.KernelDrops, st.Stats.Packets)
	}
}

// TestLiveFanoutKeepsFlowsTogether runs 4 fanout workers on lo and 24
// connections: PACKET_FANOUT_HASH hashes a flow symmetrically, so every
// request finds its response in the same worker (no unanswered request, no
// orphan response), each connection's events come from one worker (the
// connection id carries it), and the connections spread over workers.
func TestLiveFanoutKeepsFlowsTogether(t *testing.T) {
	needRoot(t)
	port, url := modbusServer(t)
	live, stop := startLive(t, capture.Config{Interfaces: []string{"lo"}, ModbusPorts: []uint16{uint16(port)}, Fanout: 4})
	const conns, reqs = 24, 5
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, err := modbus.NewClient(&modbus.ClientConfiguration{URL: url, Timeout: 10 * time.Second, Logger: log.New(io.Discard, "", 0)})
			if err != nil {
				t.Error(err)
				return
			}
			if err := client.Open(); err != nil {
				t.Error(err)
				return
			}
			defer client.Close()
			for i := range reqs {
				if _, err := client.ReadRegisters(uint16(c*10+i), 2, modbus.HOLDING_REGISTER); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitEvents(t, live, conns*reqs)
	evs := stop()
	if len(evs) != conns*reqs {
		t.Errorf("%d events, want %d", len(evs), conns*reqs)
	}
	workerOf := map[uint16]uint64{} // client port -> worker
	workers := map[uint64]bool{}
	for _, ev := range evs {
		if ev.Unanswered != "" || ev.Orphan || len(ev.Response.Ints(nil)) != 2 {
			t.Errorf("a request and its response were split: %s", ev.AppendJSON(nil))
		}
		w := ev.Conn >> 48
		if prev, ok := workerOf[ev.Client.Port()]; ok && prev != w {
			t.Errorf("connection from port %d decoded by workers %d and %d", ev.Client.Port(), prev, w)
		}
		workerOf[ev.Client.Port()] = w
		workers[w] = true
	}
	if len(workerOf) != conns || len(workers) < 2 {
		t.Errorf("%d connections over %d workers: want %d over at least 2", len(workerOf), len(workers), conns)
	}
	st := live.Stats()
	if len(st) != 1 || st[0].Workers != 4 || st[0].Stats.Flows != conns || st[0].KernelDrops != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestLiveStopsPromptly: on a quiet wire Run returns soon after
// cancellation (each wait for the ring is bounded), with requests still
// waiting emitted as stopped.
func TestLiveStopsPromptly(t *testing.T) {
	needRoot(t)
	_, stop := startLive(t, capture.Config{Interfaces: []string{"lo"}, ModbusPorts: []uint16{uint16(freePort(t))}, Fanout: 2})
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	stop() // fails after 30 s
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %s to return after cancellation", d)
	}
}

// TestRingConfig checks the ring keys' ranges.
func TestRingConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  capture.Config
		want string // "" valid
	}{
		{capture.Config{}, ""},
		{capture.Config{RingBlockSize: 128 << 10, RingBlocks: 2, Fanout: 64}, ""},
		{capture.Config{RingBlockSize: 100000}, "ring_block_size: 100000: must be a power of two"},
		{capture.Config{RingBlockSize: 128 << 20}, "ring_block_size: 134217728: must be a power of two"},
		{capture.Config{RingBlockSize: 32 << 20}, "ring_block_size: 33554432: must be a power of two from 65536 (64 KiB) to 16777216 (16 MiB)"},
		{capture.Config{RingBlockSize: 16 << 20, RingBlocks: 256}, ""}, // 4 GiB: the bound itself
		{capture.Config{RingBlockSize: 16 << 20, RingBlocks: 257}, "ring_blocks: the capture rings would take 4112 MiB"},
		{capture.Config{RingBlockSize: 1 << 20, RingBlocks: 256, Fanout: 4, Interfaces: []string{"a", "b", "c", "d", "e"}}, "would take 5120 MiB (ring_block_size 1048576 × ring_blocks 256 × fanout 4 × 5 interfaces), more than 4096 MiB"},
		{capture.Config{RingBlockSize: 64 << 20, RingBlocks: 4096, Fanout: 64}, "ring_blocks: 4096: must be 2..1024"}, // the issue's: each key named, no total of a sum that overflows
		{capture.Config{RingBlockSize: 64 << 10}, "must be at least snaplen + 4096"},
		{capture.Config{RingBlockSize: 64 << 10, Snaplen: 1500}, ""},
		{capture.Config{RingBlocks: 1}, "ring_blocks: 1: must be 2..1024"},
		{capture.Config{RingBlocks: 1025}, "ring_blocks: 1025"},
		{capture.Config{Fanout: 65}, "fanout: 65: must be 1..64"},
		{capture.Config{Fanout: -1}, "fanout: -1"},
	} {
		tc.cfg.Defaults()
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
