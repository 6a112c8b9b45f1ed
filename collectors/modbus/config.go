// Package modbus polls Modbus devices (TCP, TCP+TLS, RTU over TCP, serial
// RTU) for configured tags and turns what it reads into events. It is
// read-only by construction: the only requests it can send are Read Coils,
// Read Discrete Inputs, Read Holding Registers and Read Input Registers
// (FC 1-4).
package modbus

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/hostport"
)

// Protocol limits of one read request (Modbus Application Protocol v1.1b3,
// 6.1-6.4).
const (
	MaxRegistersPerRead = 125
	MaxBitsPerRead      = 2000
)

// Device is one polled device as the configuration file describes it.
type Device struct {
	Name      string        `yaml:"name"`
	Transport string        `yaml:"transport"` // tcp (default), tcp+tls, rtu-over-tcp, rtu
	Address   string        `yaml:"address"`   // host:port (port 502 when left out), or a serial device
	Unit      *int          `yaml:"unit"`      // default 1 (0 and 255 are common on Modbus/TCP devices); a tag may name another
	Interval  time.Duration `yaml:"interval"`  // default 10s
	Timeout   time.Duration `yaml:"timeout"`   // per request, default 1s
	Retries   *int          `yaml:"retries"`   // more attempts after a timeout or a busy device, default 1
	Backoff   time.Duration `yaml:"backoff"`   // before a retry, jittered ±50%, doubling; default 100ms

	MaxRegisters int `yaml:"max_registers"` // per request, default and at most 125
	MaxBits      int `yaml:"max_bits"`      // per request, default and at most 2000
	MaxGap       int `yaml:"max_gap"`       // unused registers (or bits) read to merge two tags into one request, default 0

	Serial     SerialConfig `yaml:"serial"`
	TLS        TLSConfig    `yaml:"tls"`
	Workaround Workarounds  `yaml:"workarounds"`
	Tags       []Tag        `yaml:"tags"`
}

// SerialConfig is the line of a serial RTU device (and the speed that sets
// RTU frame timing over TCP).
type SerialConfig struct {
	Baud     int    `yaml:"baud"`      // default 19200
	DataBits int    `yaml:"data_bits"` // default 8
	Parity   string `yaml:"parity"`    // none (default), even, odd
	StopBits int    `yaml:"stop_bits"` // default 2 without parity, 1 with (the serial line spec)
}

// TLSConfig is Modbus/TCP Security (MBAPS): mutual TLS, so a client
// certificate is required.
type TLSConfig struct {
	CAFile   string `yaml:"ca_file"`   // CA or the server's own certificate (pinning)
	CertFile string `yaml:"cert_file"` // client certificate
	KeyFile  string `yaml:"key_file"`
}

// Workarounds for devices that do not follow the specification.
type Workarounds struct {
	PauseAfterConnect    time.Duration `yaml:"pause_after_connect"`    // some devices drop requests sent right after the connection opens
	PauseBetweenRequests time.Duration `yaml:"pause_between_requests"` // slow serial gateways
	CloseAfterPoll       bool          `yaml:"close_after_poll"`       // devices with too few connection slots to share
	OneRequestPerTag     bool          `yaml:"one_request_per_tag"`    // devices that reject reads spanning several of their variables
}

// Tag is one value read from a device.
type Tag struct {
	Name      string   `yaml:"name"`
	Table     string   `yaml:"table"`      // coil, discrete, input, holding
	Address   *int     `yaml:"address"`    // 0-based protocol address, as on the wire
	Register  string   `yaml:"register"`   // or the 1-based manual form with its table digit: 40001, 300010
	Unit      *int     `yaml:"unit"`       // the device's unit when left out
	Type      string   `yaml:"type"`       // bool (default for coil and discrete), uint16 (default for registers), ...
	Bit       int      `yaml:"bit"`        // type bit: 0 (least significant) to 15
	Length    int      `yaml:"length"`     // type string: registers
	ByteOrder string   `yaml:"byte_order"` // ABCD (default), DCBA, BADC, CDAB; AB and BA for 16-bit types
	Scale     *float64 `yaml:"scale"`      // engineering value = raw × scale + offset; default 1
	Offset    float64  `yaml:"offset"`
	UOM       string   `yaml:"uom"` // unit of measure, for telemetry: degC, bar, rpm
}

// FieldError is a problem with one field, named as in YAML
// ("tags[3].type"): plcwatch.FieldError, shared by every collector.
type FieldError = plcwatch.FieldError

// Defaults fills what the device left out.
func (d *Device) Defaults() {
	if d.Transport == "" {
		d.Transport = "tcp"
	}
	if d.Unit == nil {
		one := 1
		d.Unit = &one
	}
	if d.Interval == 0 {
		d.Interval = 10 * time.Second
	}
	if d.Timeout == 0 {
		d.Timeout = time.Second
	}
	if d.Retries == nil {
		one := 1
		d.Retries = &one
	}
	if d.Backoff == 0 {
		d.Backoff = 100 * time.Millisecond
	}
	if d.MaxRegisters == 0 {
		d.MaxRegisters = MaxRegistersPerRead
	}
	if d.MaxBits == 0 {
		d.MaxBits = MaxBitsPerRead
	}
	if d.Serial.Baud == 0 {
		d.Serial.Baud = 19200
	}
	if d.Serial.DataBits == 0 {
		d.Serial.DataBits = 8
	}
	if d.Serial.Parity == "" {
		d.Serial.Parity = "none"
	}
	if d.Transport != "rtu" && d.Address != "" {
		if _, _, err := net.SplitHostPort(d.Address); err != nil && strings.Contains(err.Error(), "missing port") {
			d.Address = net.JoinHostPort(strings.Trim(d.Address, "[]"), "502")
		}
	}
}

// Validate checks a device after Defaults, without I/O. Its errors are
// *FieldError with fields relative to the device.
func (d *Device) Validate() []error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if d.Name == "" {
		bad("name", "every device needs a name")
	} else if strings.ContainsAny(d.Name, "/+#\x00") {
		bad("name", "%q: no / + # (it is part of MQTT topics)", d.Name)
	}
	switch d.Transport {
	case "tcp", "tcp+tls", "rtu-over-tcp":
		if err := hostport.Dial(d.Address); err != nil {
			bad("address", "%q: %v", d.Address, err)
		}
	case "rtu":
		if d.Address == "" {
			bad("address", "the serial device, like /dev/ttyUSB0")
		}
	default:
		bad("transport", "%q: want tcp, tcp+tls, rtu-over-tcp or rtu", d.Transport)
	}
	if d.Transport == "tcp+tls" && (d.TLS.CAFile == "" || d.TLS.CertFile == "" || d.TLS.KeyFile == "") {
		bad("tls", "tcp+tls (Modbus/TCP Security) is mutual TLS: give ca_file, cert_file and key_file")
	}
	if u := d.unitID(); u < 0 || u > 255 {
		bad("unit", "%d: want 0-255", u)
	} else if u == 0 && d.serialLine() {
		bad("unit", "0 is the broadcast address on a serial line (no device answers it): want 1-247")
	}
	if d.Interval < 10*time.Millisecond {
		bad("interval", "%v: at least 10ms", d.Interval)
	}
	if d.Timeout <= 0 {
		bad("timeout", "%v: must be positive", d.Timeout)
	}
	if *d.Retries < 0 || *d.Retries > 10 {
		bad("retries", "%d: want 0-10", *d.Retries)
	}
	if d.Backoff < 0 {
		bad("backoff", "must not be negative")
	}
	if d.MaxRegisters < 1 || d.MaxRegisters > MaxRegistersPerRead {
		bad("max_registers", "%d: want 1-%d", d.MaxRegisters, MaxRegistersPerRead)
	}
	if d.MaxBits < 1 || d.MaxBits > MaxBitsPerRead {
		bad("max_bits", "%d: want 1-%d", d.MaxBits, MaxBitsPerRead)
	}
	if d.MaxGap < 0 {
		bad("max_gap", "must not be negative")
	}
	switch d.Serial.Parity {
	case "none", "even", "odd":
	default:
		bad("serial.parity", "%q: want none, even or odd", d.Serial.Parity)
	}
	if d.Serial.StopBits != 0 && d.Serial.StopBits != 1 && d.Serial.StopBits != 2 {
		bad("serial.stop_bits", "%d: want 1 or 2", d.Serial.StopBits)
	}
	if d.Serial.DataBits < 5 || d.Serial.DataBits > 8 {
		bad("serial.data_bits", "%d: want 5-8", d.Serial.DataBits)
	}
	if len(d.Tags) == 0 {
		bad("tags", "a device needs at least one tag")
	}
	seen := map[string]bool{}
	for i := range d.Tags {
		t := &d.Tags[i]
		where := fmt.Sprintf("tags[%d]", i)
		if t.Name != "" && seen[t.Name] {
			bad(where+".name", "%q: a device's tag names must differ", t.Name)
		}
		seen[t.Name] = true
		if _, err := t.spec(d); err != nil {
			fe := err.(*FieldError)
			bad(where+"."+fe.Field, "%s", fe.Msg)
		}
	}
	return errs
}

// Type is how a tag's registers or bits are read.
type Type uint8

const (
	TypeBool Type = iota + 1
	TypeBit
	TypeInt16
	TypeUint16
	TypeInt32
	TypeUint32
	TypeInt64
	TypeUint64
	TypeFloat32
	TypeFloat64
	TypeString
)

var typeNames = map[string]Type{
	"bool": TypeBool, "bit": TypeBit, "int16": TypeInt16, "uint16": TypeUint16, "int32": TypeInt32,
	"uint32": TypeUint32, "int64": TypeInt64, "uint64": TypeUint64, "float32": TypeFloat32,
	"float64": TypeFloat64, "string": TypeString,
}

// registers returns how many registers a value of type t takes.
func (t Type) registers() int {
	switch t {
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	}
	return 1
}

// Order is the byte order of a multi-byte value, named by where the bytes
// of the big-endian value ABCD(EFGH) sit on the wire.
type Order uint8

const (
	OrderABCD Order = iota // big-endian (the Modbus specification's order)
	OrderDCBA              // little-endian
	OrderBADC              // big-endian words, bytes swapped in each
	OrderCDAB              // little-endian words ("word swap"), bytes big-endian in each
)

// serialLine reports whether the device speaks RTU, whose unit 0 is the
// broadcast address (Modbus over Serial Line v1.02, 2.2).
func (d *Device) serialLine() bool { return d.Transport == "rtu" || d.Transport == "rtu-over-tcp" }

// unitID is the device's unit id: 1 until Defaults has run.
func (d *Device) unitID() int {
	if d.Unit == nil {
		return 1
	}
	return *d.Unit
}

// spec is a validated tag, ready for the planner and the decoder.
type spec struct {
	name    string
	unit    uint8
	table   plcwatch.Table
	address uint16
	count   uint16 // registers or bits
	typ     Type
	bit     uint8
	order   Order
	scale   float64
	offset  float64
	uom     string

	scaleDecimals, offsetDecimals int // decimals of scale and offset: the precision of the engineering value
}

// spec checks t and returns it in the form the poller uses. Its error is a
// *FieldError with the field relative to the tag.
func (t *Tag) spec(d *Device) (spec, error) {
	bad := func(field, format string, a ...any) (spec, error) {
		return spec{}, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	s := spec{name: t.Name, unit: uint8(d.unitID()), scale: 1, offset: t.Offset, uom: t.UOM}
	if t.Name == "" {
		return bad("name", "every tag needs a name")
	}
	if t.Unit != nil {
		if *t.Unit < 0 || *t.Unit > 255 {
			return bad("unit", "%d: want 0-255", *t.Unit)
		}
		if *t.Unit == 0 && d.serialLine() {
			return bad("unit", "0 is the broadcast address on a serial line (no device answers it): want 1-247")
		}
		s.unit = uint8(*t.Unit)
	}
	switch {
	case t.Register != "" && (t.Address != nil || t.Table != ""):
		return bad("register", "give register (like 40001), or table and address, not both")
	case t.Register != "":
		table, addr, err := plcwatch.ParseRegisterRef(t.Register)
		if err != nil {
			return bad("register", "%q: %v", t.Register, err)
		}
		s.table, s.address = table, addr
	default:
		table, ok := plcwatch.ParseTable(t.Table)
		if !ok || table == plcwatch.TableFile {
			return bad("table", "%q: want coil, discrete, input or holding (or give register: 40001)", t.Table)
		}
		if t.Address == nil {
			return bad("address", "give the 0-based address (or register: 40001)")
		}
		if *t.Address < 0 || *t.Address > 65535 {
			return bad("address", "%d: want 0-65535", *t.Address)
		}
		s.table, s.address = table, uint16(*t.Address)
	}
	bits := s.table == plcwatch.TableCoil || s.table == plcwatch.TableDiscrete
	typ := t.Type
	if typ == "" {
		typ = "uint16"
		if bits {
			typ = "bool"
		}
	}
	var ok bool
	if s.typ, ok = typeNames[typ]; !ok {
		return bad("type", "%q: want bool, bit, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string", typ)
	}
	if bits && s.typ != TypeBool {
		return bad("type", "%s: a %s is one bit, read it as bool", typ, s.table)
	}
	switch {
	case bits:
		s.count = 1
	case s.typ == TypeString:
		if t.Length < 1 || t.Length > MaxRegistersPerRead {
			return bad("length", "%d: a string tag needs its length in registers, 1-%d", t.Length, MaxRegistersPerRead)
		}
		s.count = uint16(t.Length)
	default:
		s.count = uint16(s.typ.registers())
	}
	if t.Length != 0 && s.typ != TypeString {
		return bad("length", "only string tags have a length")
	}
	if s.typ == TypeBit {
		if t.Bit < 0 || t.Bit > 15 {
			return bad("bit", "%d: want 0 (least significant) to 15", t.Bit)
		}
		s.bit = uint8(t.Bit)
	} else if t.Bit != 0 {
		return bad("bit", "only bit tags name a bit")
	}
	if int(s.address)+int(s.count) > 65536 {
		return bad("address", "%d registers from %d run past 65535", s.count, s.address)
	}
	max := d.MaxRegisters
	if bits {
		max = d.MaxBits
	}
	if int(s.count) > max {
		return bad("length", "%d registers: more than one request may read (max_registers %d)", s.count, max)
	}
	var msg string
	if s.order, msg = parseOrder(t.ByteOrder, s.typ, bits); msg != "" {
		return bad("byte_order", "%q: %s", t.ByteOrder, msg)
	}
	if t.Scale != nil {
		if *t.Scale == 0 || math.IsNaN(*t.Scale) || math.IsInf(*t.Scale, 0) {
			return bad("scale", "%v: want a finite number other than 0", *t.Scale)
		}
		s.scale = *t.Scale
	}
	if math.IsNaN(t.Offset) || math.IsInf(t.Offset, 0) {
		return bad("offset", "%v: want a finite number", t.Offset)
	}
	if s.typ == TypeString && t.Scale != nil {
		return bad("scale", "a string tag has no number to scale")
	}
	if s.typ == TypeString && t.Offset != 0 {
		return bad("offset", "a string tag has no number to offset")
	}
	s.scaleDecimals, s.offsetDecimals = decimals(s.scale), decimals(s.offset)
	return s, nil
}

// parseOrder reads a tag's byte_order for its type, or says why it does
// not fit: every name must describe the type's bytes, so that a tag whose
// type is wrong (a float32 configured as uint16 with the word swap of its
// manual) is refused, not read as half a value (issue 9 §9). Names are
// where the bytes of the big-endian value sit on the wire:
//
//	type                     accepted                       read as
//	coil, discrete (bits)    none                           -
//	16-bit: bool, bit,       AB (default), ABCD             AB
//	int16, uint16            BA, DCBA, BADC                 BA (bytes swapped)
//	string                   AB (default), ABCD             first character in the high byte
//	                         BA, BADC                       first character in the low byte
//	32-bit: int32, uint32,   ABCD (default), DCBA, BADC,    as named
//	float32                  CDAB
//	64-bit: int64, uint64,   the 32-bit names, or           ABCD = ABCDEFGH, DCBA = HGFEDCBA,
//	float64                  ABCDEFGH, HGFEDCBA,            BADC = BADCFEHG, CDAB = GHEFCDAB
//	                         BADCFEHG, GHEFCDAB
//
// CDAB swaps registers: a 16-bit value has one, a string's characters have
// no word order, so it is refused there rather than read as AB.
func parseOrder(name string, t Type, bits bool) (Order, string) {
	name = strings.ToUpper(name)
	if bits {
		if name != "" {
			return 0, "a coil or discrete input is one bit: it has no byte order"
		}
		return OrderABCD, ""
	}
	var o Order
	switch name {
	case "", "ABCD", "AB":
		o = OrderABCD
	case "DCBA":
		o = OrderDCBA
	case "BADC":
		o = OrderBADC
	case "BA":
		o = OrderBADC // one register: the same as DCBA
	case "CDAB":
		o = OrderCDAB
	case "ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB":
		if t == TypeString {
			return 0, "names 8 bytes: a string wants AB or BA"
		}
		if t.registers() != 4 {
			return 0, fmt.Sprintf("names 8 bytes; %s tag reads %s: want %s", t.article(), t.size(), t.orders())
		}
		return map[string]Order{"ABCDEFGH": OrderABCD, "HGFEDCBA": OrderDCBA, "BADCFEHG": OrderBADC, "GHEFCDAB": OrderCDAB}[name], ""
	default:
		return 0, "want " + t.orders()
	}
	switch {
	case t == TypeString && (o == OrderCDAB || o == OrderDCBA):
		return 0, "a string has two characters a register and no word order: want AB (the first character in the high byte, the default) or BA (in the low byte)"
	case t.registers() == 1 && o == OrderCDAB:
		return 0, fmt.Sprintf("CDAB swaps the two registers of a 32-bit value; %s is one register: want AB (the default) or BA (bytes swapped). Is the type right?", t.article())
	case t.registers() == 1 && o == OrderDCBA:
		o = OrderBADC // one register: bytes swapped either way
	case t.registers() > 1 && t != TypeString && len(name) == 2:
		return 0, fmt.Sprintf("names 2 bytes; %s tag reads %s: want %s", t.article(), t.size(), t.orders())
	}
	return o, ""
}

// orders lists the byte orders a type takes, for messages.
func (t Type) orders() string {
	switch {
	case t == TypeString:
		return "AB or BA"
	case t.registers() == 1:
		return "AB or BA (ABCD, DCBA and BADC are accepted for them)"
	case t.registers() == 2:
		return "ABCD, DCBA, BADC or CDAB"
	}
	return "ABCD, DCBA, BADC or CDAB (or ABCDEFGH, HGFEDCBA, BADCFEHG, GHEFCDAB)"
}

// size says how much a value of the type takes, for messages.
func (t Type) size() string {
	switch t.registers() {
	case 1:
		return "one register (2 bytes)"
	case 2:
		return "two registers (4 bytes)"
	}
	return "four registers (8 bytes)"
}

// article is the type's name with its article: "an int32", "a float32".
func (t Type) article() string {
	if strings.HasPrefix(t.String(), "int") {
		return "an " + t.String()
	}
	return "a " + t.String()
}

// String is the type's name in the configuration.
func (t Type) String() string {
	for name, v := range typeNames {
		if v == t {
			return name
		}
	}
	return "unknown"
}

// specs returns the device's tags ready for polling; call after Validate.
func (d *Device) specs() []spec {
	out := make([]spec, 0, len(d.Tags))
	for i := range d.Tags {
		if s, err := d.Tags[i].spec(d); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// serverAddr is the device's address for events, when it is an IP address
// (zero for host names and serial lines).
func (d *Device) serverAddr() netip.AddrPort {
	if d.Transport == "rtu" {
		return netip.AddrPort{}
	}
	host, port, err := net.SplitHostPort(d.Address)
	if err != nil {
		return netip.AddrPort{}
	}
	addr, err1 := netip.ParseAddr(host)
	p, err2 := strconv.ParseUint(port, 10, 16)
	if err1 != nil || err2 != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(p))
}
