// Package capture is plcwatch's passive eye: it reads packets live from
// network interfaces (AF_PACKET, with a kernel BPF filter) or from pcap and
// pcapng files, reassembles the TCP connections on the configured industrial
// ports, and hands the byte streams to the protocol dissectors, which turn
// them into plcwatch.Events.
package capture

import (
	"errors"
	"fmt"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Config configures capture. The zero value plus Defaults is a working
// offline configuration; live capture needs Interfaces.
type Config struct {
	// Interfaces to capture on live (Ethernet framing; "lo" works).
	Interfaces []string `yaml:"interfaces"`
	// Promiscuous puts the interfaces in promiscuous mode, as a SPAN or
	// mirror port needs.
	Promiscuous bool `yaml:"promiscuous"`
	// Snaplen is the most bytes kept of each packet.
	Snaplen int `yaml:"snaplen"`
	// SocketBuffer was the kernel receive buffer of the socket that read
	// one packet per system call. Capture reads a memory-mapped ring now
	// (RingBlockSize × RingBlocks); the key is still accepted, and
	// ignored, so that existing configurations load.
	SocketBuffer int `yaml:"socket_buffer"`
	// RingBlockSize is the size in bytes of each block of the TPACKET_V3
	// ring the kernel writes packets into: a power of two from 64 KiB to
	// 16 MiB, at least Snaplen plus 4 KiB (a packet never spans blocks).
	RingBlockSize int `yaml:"ring_block_size"`
	// RingBlocks is the number of blocks in the ring, 2 to 1024. The ring
	// (RingBlockSize × RingBlocks, per interface and fanout worker, locked
	// in memory) is the room bursts have before the kernel drops. All the
	// rings together (RingMemory) are at most MaxRingMemory, 4 GiB.
	RingBlocks int `yaml:"ring_blocks"`
	// Fanout is the number of workers per interface, 1 to 64: each has its
	// own ring and engine, and the kernel spreads packets over them by flow
	// hash (PACKET_FANOUT_HASH), both directions of a connection to the same
	// worker. More than 1 only helps when one core cannot keep up.
	Fanout int `yaml:"fanout"`
	// ModbusPorts are the TCP ports Modbus/TCP servers listen on.
	ModbusPorts []uint16 `yaml:"modbus_ports"`
	// OPCUAPorts are the TCP ports OPC UA servers listen on (opc.tcp).
	OPCUAPorts []uint16 `yaml:"opcua_ports"`
	// ResponseTimeout is how long a request waits for its response before
	// it becomes a timeout event.
	ResponseTimeout time.Duration `yaml:"response_timeout"`
	// MaxOutstanding bounds unanswered requests per connection.
	MaxOutstanding int `yaml:"max_outstanding"`
	// FlowIdleTimeout drops connections that carried nothing for this long.
	FlowIdleTimeout time.Duration `yaml:"flow_idle_timeout"`
	// MaxFlows bounds the connection table; the least recently active
	// connection makes room for a new one.
	MaxFlows int `yaml:"max_flows"`
	// MaxFlowBuffer bounds the out-of-order bytes kept per direction of a
	// connection while waiting for a missing segment.
	MaxFlowBuffer int `yaml:"max_flow_buffer"`
	// MaxBuffer bounds the out-of-order bytes kept by all connections.
	MaxBuffer int `yaml:"max_buffer"`

	// EarlyRequests makes the dissectors emit every request twice: as
	// plcwatch.StageRequest the moment it is complete on the wire, and as
	// StageResponse when it is answered or given up on; off, once, as
	// StageWhole, at the second moment. Whoever consumes the events sets
	// it when it honours Event.Stage — the daemon and replay with rules do,
	// so that an alert on a request never waits for its response (issue 9).
	// Not a configuration key.
	EarlyRequests bool `yaml:"-"`
}

// Defaults fills the zero fields of c.
func (c *Config) Defaults() {
	if c.Snaplen == 0 {
		c.Snaplen = 65535 + 14 + 8 // the largest IP packet, Ethernet and two VLAN tags
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = 8 << 20
	}
	if c.RingBlockSize == 0 {
		c.RingBlockSize = 1 << 20
	}
	if c.RingBlocks == 0 {
		c.RingBlocks = 32
	}
	if c.Fanout == 0 {
		c.Fanout = 1
	}
	if len(c.ModbusPorts) == 0 {
		c.ModbusPorts = []uint16{502}
	}
	if len(c.OPCUAPorts) == 0 {
		c.OPCUAPorts = []uint16{4840}
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = 5 * time.Second
	}
	if c.MaxOutstanding == 0 {
		c.MaxOutstanding = 64
	}
	if c.FlowIdleTimeout == 0 {
		c.FlowIdleTimeout = 10 * time.Minute
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = 16384
	}
	if c.MaxFlowBuffer == 0 {
		c.MaxFlowBuffer = 64 << 10
	}
	if c.MaxBuffer == 0 {
		c.MaxBuffer = 32 << 20
	}
}

// Bounds of the capture rings (issue: a configuration with each key in
// its range, 64 MiB blocks × 4096 × fanout 64, asked the kernel for 16 TiB
// and brought the machine's OOM killer). For scale: Zeek's af_packet source
// takes a 128 MiB ring per worker by default, plcwatch 32 MiB.
const (
	// MaxRingBlockSize is the largest ring block (capture.ring_block_size).
	MaxRingBlockSize = 16 << 20
	// MaxRingBlocks is the most blocks in one ring (capture.ring_blocks).
	MaxRingBlocks = 1024
	// MaxRingMemory bounds all the rings of a live capture together:
	// RingMemory, in bytes.
	MaxRingMemory int64 = 4 << 30
)

// RingMemory is the kernel memory the live capture's rings take together,
// in bytes: ring_block_size × ring_blocks × fanout × interfaces (at least
// one interface, for a configuration that names none yet).
func (c *Config) RingMemory() int64 {
	return int64(c.RingBlockSize) * int64(c.RingBlocks) * int64(c.Fanout) * int64(max(1, len(c.Interfaces)))
}

// Ports returns every server port capture listens for, all protocols:
// the kernel filter's ports.
func (c *Config) Ports() []uint16 {
	return append(append([]uint16(nil), c.ModbusPorts...), c.OPCUAPorts...)
}

// maxFilterPorts keeps the kernel filter's jumps within classic BPF's reach.
const maxFilterPorts = 32

// FieldError is a problem with one field of Config, named as in YAML
// ("snaplen", "modbus_ports[1]"): the one plcwatch.FieldError.
type FieldError = plcwatch.FieldError

// Validate checks c after Defaults, without I/O. Its errors are
// *FieldError, joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if c.Snaplen < 256 || c.Snaplen > 262144 {
		bad("snaplen", "%d: must be 256..262144", c.Snaplen)
	}
	if c.SocketBuffer < 0 {
		bad("socket_buffer", "%d: must not be negative", c.SocketBuffer)
	}
	rangesOK := true
	switch b := c.RingBlockSize; {
	case b < 64<<10 || b > MaxRingBlockSize || b&(b-1) != 0:
		bad("ring_block_size", "%d: must be a power of two from 65536 (64 KiB) to %d (16 MiB)", b, MaxRingBlockSize)
		rangesOK = false
	case b < c.Snaplen+4096:
		bad("ring_block_size", "%d: must be at least snaplen + 4096 (%d): a packet never spans blocks", b, c.Snaplen+4096)
	}
	if c.RingBlocks < 2 || c.RingBlocks > MaxRingBlocks {
		bad("ring_blocks", "%d: must be 2..%d", c.RingBlocks, MaxRingBlocks)
		rangesOK = false
	}
	if c.Fanout < 1 || c.Fanout > 64 {
		bad("fanout", "%d: must be 1..64 workers per interface", c.Fanout)
		rangesOK = false
	}
	if total := c.RingMemory(); rangesOK && total > MaxRingMemory {
		bad("ring_blocks", "the capture rings would take %d MiB (ring_block_size %d × ring_blocks %d × fanout %d × %d interfaces), more than %d MiB: lower them",
			total>>20, c.RingBlockSize, c.RingBlocks, c.Fanout, max(1, len(c.Interfaces)), MaxRingMemory>>20)
	}
	seen := map[uint16]string{}
	for _, list := range []struct {
		key   string
		ports []uint16
	}{{"modbus_ports", c.ModbusPorts}, {"opcua_ports", c.OPCUAPorts}} {
		for i, p := range list.ports {
			field := fmt.Sprintf("%s[%d]", list.key, i)
			switch {
			case p == 0:
				bad(field, "port 0 is not a port")
			case seen[p] == list.key:
				bad(field, "port %d listed twice", p)
			case seen[p] != "":
				bad(field, "port %d is in %s too: a port has one protocol", p, seen[p])
			}
			seen[p] = list.key
		}
	}
	if len(seen) > maxFilterPorts {
		bad("opcua_ports", "%d ports in modbus_ports and opcua_ports together, at most %d", len(seen), maxFilterPorts)
	}
	if c.ResponseTimeout < 10*time.Millisecond {
		bad("response_timeout", "%s: must be at least 10ms", c.ResponseTimeout)
	}
	if c.MaxOutstanding < 1 || c.MaxOutstanding > 65536 {
		bad("max_outstanding", "%d: must be 1..65536", c.MaxOutstanding)
	}
	if c.FlowIdleTimeout < time.Second {
		bad("flow_idle_timeout", "%s: must be at least 1s", c.FlowIdleTimeout)
	}
	if c.MaxFlows < 1 {
		bad("max_flows", "%d: must be at least 1", c.MaxFlows)
	}
	if c.MaxFlowBuffer < 1024 {
		bad("max_flow_buffer", "%d: must be at least 1024", c.MaxFlowBuffer)
	}
	if c.MaxBuffer < c.MaxFlowBuffer {
		bad("max_buffer", "%d: must be at least max_flow_buffer (%d)", c.MaxBuffer, c.MaxFlowBuffer)
	}
	for i, name := range c.Interfaces {
		if name == "" {
			bad(fmt.Sprintf("interfaces[%d]", i), "empty name")
		}
	}
	return errors.Join(errs...)
}
