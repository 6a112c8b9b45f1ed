// Package modbussim simulates Modbus/TCP devices: an in-memory image of the
// four tables served by github.com/simonvetter/modbus, with values that can
// move like a process. Integrators test plcwatch against it (plcwatch sim
// modbus), and so do plcwatch's own tests and benchmarks.
package modbussim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simonvetter/modbus"
)

// Size is the number of coils, discrete inputs, input registers and holding
// registers an Image holds; reads beyond get exception 2 (illegal data
// address), as from a real device with a smaller map.
const Size = 4096

// Table names one of an Image's four tables.
type Table uint8

const (
	Coils Table = iota
	DiscreteInputs
	InputRegisters
	HoldingRegisters
)

// Image is one device's tables. Its methods are safe for concurrent use.
type Image struct {
	mu       sync.RWMutex
	coils    [Size]bool
	discrete [Size]bool
	input    [Size]uint16
	holding  [Size]uint16
	holes    [4][Size / 64]uint64 // addresses absent from the map, by Table
	holey    bool

	// Function codes served, counted by the handler (1-6, 15, 16; other
	// codes are refused by the library before they reach it).
	Reads, Writes atomic.Uint64
	// Delay, in nanoseconds, holds every response back: a slow device.
	Delay atomic.Int64
	// Busy is how many of the next requests are answered with exception
	// 6, server device busy.
	Busy atomic.Int64
}

// SetHolding stores registers from addr.
func (m *Image) SetHolding(addr int, regs ...uint16) {
	m.mu.Lock()
	copy(m.holding[addr:], regs)
	m.mu.Unlock()
}

// SetInput stores input registers from addr.
func (m *Image) SetInput(addr int, regs ...uint16) {
	m.mu.Lock()
	copy(m.input[addr:], regs)
	m.mu.Unlock()
}

// SetCoil sets a coil.
func (m *Image) SetCoil(addr int, v bool) {
	m.mu.Lock()
	m.coils[addr] = v
	m.mu.Unlock()
}

// SetDiscrete sets a discrete input.
func (m *Image) SetDiscrete(addr int, v bool) {
	m.mu.Lock()
	m.discrete[addr] = v
	m.mu.Unlock()
}

// Unmap takes n addresses of table t from addr out of the device's map: a
// read or write that touches one is answered with exception 2 (illegal
// data address), as by a device whose register map has holes (issue 9 §7:
// tags at 0 and 2 around a missing 1).
func (m *Image) Unmap(t Table, addr, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a := addr; a < addr+n && a < Size; a++ {
		m.holes[t][a/64] |= 1 << (a % 64)
	}
	m.holey = true
}

// mapped reports whether every address of t in [addr, addr+qty) exists;
// the caller holds m.mu.
func (m *Image) mapped(t Table, addr, qty uint16) bool {
	if int(addr)+int(qty) > Size {
		return false
	}
	if !m.holey {
		return true
	}
	for a := int(addr); a < int(addr)+int(qty); a++ {
		if m.holes[t][a/64]&(1<<(a%64)) != 0 {
			return false
		}
	}
	return true
}

// Holding returns a holding register.
func (m *Image) Holding(addr int) uint16 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.holding[addr]
}

// Input returns an input register.
func (m *Image) Input(addr int) uint16 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.input[addr]
}

// Coil returns a coil.
func (m *Image) Coil(addr int) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.coils[addr]
}

// Discrete returns a discrete input.
func (m *Image) Discrete(addr int) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.discrete[addr]
}

// delay holds a response back, or says the device is busy.
func (m *Image) delay() error {
	if d := m.Delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if m.Busy.Add(-1) >= 0 {
		return modbus.ErrServerDeviceBusy
	}
	m.Busy.Store(0)
	return nil
}

// access is what every handler does: hold the response back (or say the
// device is busy), refuse addresses beyond the image or in its holes, then
// read or write table t.
func access[T bool | uint16](m *Image, t Table, table []T, addr, qty uint16, write bool, args []T) ([]T, error) {
	if err := m.delay(); err != nil {
		return nil, err
	}
	if write {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.mapped(t, addr, qty) {
			return nil, modbus.ErrIllegalDataAddress
		}
		m.Writes.Add(1)
		copy(table[addr:], args)
		return nil, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.mapped(t, addr, qty) {
		return nil, modbus.ErrIllegalDataAddress
	}
	m.Reads.Add(1)
	return slices.Clone(table[addr : addr+qty]), nil
}

func (m *Image) HandleCoils(r *modbus.CoilsRequest) ([]bool, error) {
	return access(m, Coils, m.coils[:], r.Addr, r.Quantity, r.IsWrite, r.Args)
}

func (m *Image) HandleDiscreteInputs(r *modbus.DiscreteInputsRequest) ([]bool, error) {
	return access(m, DiscreteInputs, m.discrete[:], r.Addr, r.Quantity, false, nil)
}

func (m *Image) HandleHoldingRegisters(r *modbus.HoldingRegistersRequest) ([]uint16, error) {
	return access(m, HoldingRegisters, m.holding[:], r.Addr, r.Quantity, r.IsWrite, r.Args)
}

func (m *Image) HandleInputRegisters(r *modbus.InputRegistersRequest) ([]uint16, error) {
	return access(m, InputRegisters, m.input[:], r.Addr, r.Quantity, false, nil)
}

// Gateway is several devices behind one address, told apart by unit id,
// as behind a Modbus/TCP-to-RTU gateway. A request to a unit it does not
// hold is answered with exception 11 (gateway target device failed to
// respond), as gateways do for a unit that stays silent on their serial
// side.
type Gateway map[uint8]*Image

func (g Gateway) unit(id uint8) (*Image, error) {
	if m := g[id]; m != nil {
		return m, nil
	}
	return nil, modbus.ErrGWTargetFailedToRespond
}

func (g Gateway) HandleCoils(r *modbus.CoilsRequest) ([]bool, error) {
	m, err := g.unit(r.UnitId)
	if err != nil {
		return nil, err
	}
	return m.HandleCoils(r)
}

func (g Gateway) HandleDiscreteInputs(r *modbus.DiscreteInputsRequest) ([]bool, error) {
	m, err := g.unit(r.UnitId)
	if err != nil {
		return nil, err
	}
	return m.HandleDiscreteInputs(r)
}

func (g Gateway) HandleHoldingRegisters(r *modbus.HoldingRegistersRequest) ([]uint16, error) {
	m, err := g.unit(r.UnitId)
	if err != nil {
		return nil, err
	}
	return m.HandleHoldingRegisters(r)
}

func (g Gateway) HandleInputRegisters(r *modbus.InputRegistersRequest) ([]uint16, error) {
	m, err := g.unit(r.UnitId)
	if err != nil {
		return nil, err
	}
	return m.HandleInputRegisters(r)
}

// Server is a running simulated device.
type Server struct {
	Addr  string // host:port it listens on
	Image *Image // nil for a Gateway
	srv   *modbus.ModbusServer
}

// Serve starts a device on addr (host:port) serving img.
func Serve(addr string, img *Image, logger *log.Logger) (*Server, error) {
	return serve(&modbus.ServerConfiguration{URL: "tcp://" + addr}, addr, img, logger)
}

// ServeGateway starts a gateway on addr serving the units of g.
func ServeGateway(addr string, g Gateway, logger *log.Logger) (*Server, error) {
	return serve(&modbus.ServerConfiguration{URL: "tcp://" + addr}, addr, g, logger)
}

// ServeTLS starts a Modbus/TCP Security (MBAPS) device: TLS with cert,
// requiring a client certificate signed by one of clientCAs.
func ServeTLS(addr string, img *Image, cert tls.Certificate, clientCAs *x509.CertPool, logger *log.Logger) (*Server, error) {
	return serve(&modbus.ServerConfiguration{URL: "tcp+tls://" + addr, TLSServerCert: &cert, TLSClientCAs: clientCAs}, addr, img, logger)
}

func serve(conf *modbus.ServerConfiguration, addr string, h modbus.RequestHandler, logger *log.Logger) (*Server, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0) // the library logs to stdout otherwise
	}
	conf.Timeout, conf.MaxClients, conf.Logger = 5*time.Minute, 16, logger
	srv, err := modbus.NewServer(conf, h)
	if err != nil {
		return nil, fmt.Errorf("modbussim: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("modbussim: listen %s: %w", addr, err)
	}
	img, _ := h.(*Image)
	return &Server{Addr: addr, Image: img, srv: srv}, nil
}

// Close stops the device.
func (s *Server) Close() error { return s.srv.Stop() }

// Process moves a device's values like a slow plant: every tick, holding
// registers 0..n-1 follow sine waves around 500 (0-1000, a temperature in
// tenths or a level in per mille), shifted by their index and by phase (so
// that devices differ), input registers 0..n-1 count up, and coil 0 flips
// every ten ticks. It runs until ctx ends.
func Process(ctx context.Context, img *Image, n int, tick time.Duration, phase float64) {
	t := time.NewTicker(tick)
	defer t.Stop()
	regs := make([]uint16, n)
	for step := 0; ; step++ {
		for i := range regs {
			regs[i] = uint16(500 + 500*math.Sin(float64(step)/20+float64(i)+phase))
		}
		img.SetHolding(0, regs...)
		for i := range regs {
			regs[i] = uint16(step + i)
		}
		img.SetInput(0, regs...)
		img.SetCoil(0, step/10%2 == 1)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
