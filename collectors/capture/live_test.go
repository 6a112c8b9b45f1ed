package capture_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// registers is a minimal in-memory Modbus server handler.
type registers struct {
	mu      sync.Mutex
	coils   [1024]bool
	holding [1024]uint16
}

func (r *registers) HandleCoils(req *modbus.CoilsRequest) ([]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.IsWrite {
		copy(r.coils[req.Addr:], req.Args)
		return nil, nil
	}
	return append([]bool(nil), r.coils[req.Addr:req.Addr+req.Quantity]...), nil
}

func (r *registers) HandleDiscreteInputs(req *modbus.DiscreteInputsRequest) ([]bool, error) {
	return make([]bool, req.Quantity), nil
}

func (r *registers) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.IsWrite {
		copy(r.holding[req.Addr:], req.Args)
		return nil, nil
	}
	return append([]uint16(nil), r.holding[req.Addr:req.Addr+req.Quantity]...), nil
}

func (r *registers) HandleInputRegisters(req *modbus.InputRegistersRequest) ([]uint16, error) {
	return make([]uint16, req.Quantity), nil
}

// freePort returns a TCP port nobody listens on at 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestLiveCaptureOnLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("live capture needs root (CAP_NET_RAW), and CI runs as root")
		}
		t.Skip("live capture needs root (CAP_NET_RAW); CI runs as root")
	}
	port := freePort(t)
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: url, Timeout: 10 * time.Second, MaxClients: 4,
		Logger: log.New(io.Discard, "", 0)}, &registers{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	live, err := capture.NewLive(capture.Config{Interfaces: []string{"lo"}, ModbusPorts: []uint16{uint16(port)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Open(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan plcwatch.Event, 64)
	done := make(chan error, 1)
	go func() { done <- live.Run(ctx, func(ev *plcwatch.Event) { events <- *ev }) }()

	client, err := modbus.NewClient(&modbus.ClientConfiguration{URL: url, Timeout: 2 * time.Second, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Open(); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(client.WriteRegisters(100, []uint16{1, 2, 3}))
	must(client.WriteCoil(7, true))
	must(client.WriteRegister(5, 4242))
	must(client.WriteCoils(10, []bool{true, false, true}))
	if _, err := client.ReadRegisters(100, 3, modbus.HOLDING_REGISTER); err != nil {
		t.Fatal(err)
	}
	client.Close()

	want := []string{
		"fc=16 op=write table=holding addr=100 count=3 values=[1 2 3] resp=[]",
		"fc=5 op=write table=coil addr=7 count=1 values=[1] resp=[]",
		"fc=6 op=write table=holding addr=5 count=1 values=[4242] resp=[]",
		"fc=15 op=write table=coil addr=10 count=3 values=[1 0 1] resp=[]",
		"fc=3 op=read table=holding addr=100 count=3 values=[] resp=[1 2 3]",
	}
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.Unit != 1 || ev.Server.Port() != uint16(port) || ev.Exception != 0 || ev.Malformed != "" || ev.Unanswered != "" {
				t.Errorf("unexpected event: %s", ev.AppendJSON(nil))
			}
			got = append(got, fmt.Sprintf("fc=%d op=%s table=%s addr=%d count=%d values=%v resp=%v",
				ev.Function, ev.Op, ev.Table, ev.Address, ev.Count, ev.Values.Ints(nil), ev.Response.Ints(nil)))
		case <-deadline:
			t.Fatalf("after 10 s, %d of %d events: %v", len(got), len(want), got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got  %s\n want %s", i, got[i], want[i])
		}
	}
	select {
	case ev := <-events:
		t.Errorf("an event more than the client caused: %s", ev.AppendJSON(nil))
	default:
	}
	st := live.Stats()
	if len(st) != 1 || st[0].Stats.Flows != 1 || st[0].KernelDrops != 0 {
		t.Errorf("stats: %+v", st)
	}
}
