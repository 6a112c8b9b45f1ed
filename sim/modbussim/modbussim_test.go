package modbussim

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

func serveForTest(t *testing.T, serve func(addr string) (*Server, error)) *modbus.ModbusClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv, err := serve(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "tcp://" + addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHoles: a read or write that touches an unmapped address is refused
// with exception 2; the addresses around it answer.
func TestHoles(t *testing.T) {
	img := &Image{}
	img.SetHolding(0, 10, 11, 12)
	img.Unmap(HoldingRegisters, 1, 1)
	img.Unmap(Coils, 5, 2)
	c := serveForTest(t, func(addr string) (*Server, error) { return Serve(addr, img, nil) })
	if _, err := c.ReadRegisters(0, 3, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrIllegalDataAddress) {
		t.Errorf("read over the hole: %v, want illegal data address", err)
	}
	for _, a := range []uint16{0, 2} {
		if v, err := c.ReadRegister(a, modbus.HOLDING_REGISTER); err != nil || v != 10+a {
			t.Errorf("register %d: %v %v", a, v, err)
		}
	}
	if err := c.WriteRegister(1, 5); !errors.Is(err, modbus.ErrIllegalDataAddress) {
		t.Errorf("write into the hole: %v", err)
	}
	if _, err := c.ReadRegisters(1, 1, modbus.INPUT_REGISTER); err != nil {
		t.Errorf("input register 1 is mapped: %v", err)
	}
	if _, err := c.ReadCoils(0, 8); !errors.Is(err, modbus.ErrIllegalDataAddress) {
		t.Errorf("coils over their hole: %v", err)
	}
	if _, err := c.ReadCoils(7, 8); err != nil {
		t.Errorf("coils past the hole: %v", err)
	}
}

// TestGateway: units are told apart; a unit the gateway does not hold is
// answered with exception 11.
func TestGateway(t *testing.T) {
	one, two := &Image{}, &Image{}
	one.SetHolding(0, 1)
	two.SetHolding(0, 2)
	c := serveForTest(t, func(addr string) (*Server, error) { return ServeGateway(addr, Gateway{1: one, 2: two}, nil) })
	for _, u := range []uint8{1, 2} {
		c.SetUnitId(u)
		if v, err := c.ReadRegister(0, modbus.HOLDING_REGISTER); err != nil || v != uint16(u) {
			t.Errorf("unit %d: %v %v", u, v, err)
		}
	}
	c.SetUnitId(3)
	if _, err := c.ReadRegister(0, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrGWTargetFailedToRespond) {
		t.Errorf("unit 3: %v, want gateway target failed to respond", err)
	}
}
