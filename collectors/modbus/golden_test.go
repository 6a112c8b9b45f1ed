package modbus

import (
	"encoding/hex"
	"fmt"
	"math"
	"testing"
)

// golden is one encoding: a value as a device manual would state it, and the
// bytes that carry it on the wire, worked out from the byte-order names
// (where the bytes of the big-endian value ABCD sit) and Python's struct
// module, not from this package.
type golden struct {
	typ    string
	order  string
	bit    int
	length int
	wire   string  // hex, as the registers come off the wire
	want   float64 // raw value
	text   string
	value  any // what the pymodbus server is told to encode (nil: not encodable there)
}

var goldens = []golden{
	{typ: "uint16", order: "AB", wire: "c822", want: 51234, value: 51234},
	{typ: "uint16", order: "BA", wire: "22c8", want: 51234, value: 51234},
	{typ: "int16", order: "ABCD", wire: "fb2e", want: -1234, value: -1234},
	{typ: "int16", order: "DCBA", wire: "2efb", want: -1234, value: -1234},
	{typ: "int32", order: "ABCD", wire: "f8a432eb", want: -123456789, value: -123456789},
	{typ: "int32", order: "DCBA", wire: "eb32a4f8", want: -123456789, value: -123456789},
	{typ: "int32", order: "BADC", wire: "a4f8eb32", want: -123456789, value: -123456789},
	{typ: "int32", order: "CDAB", wire: "32ebf8a4", want: -123456789, value: -123456789},
	{typ: "uint32", order: "ABCD", wire: "b2d05e00", want: 3000000000, value: int64(3000000000)},
	{typ: "uint32", order: "DCBA", wire: "005ed0b2", want: 3000000000, value: int64(3000000000)},
	{typ: "uint32", order: "BADC", wire: "d0b2005e", want: 3000000000, value: int64(3000000000)},
	{typ: "uint32", order: "CDAB", wire: "5e00b2d0", want: 3000000000, value: int64(3000000000)},
	{typ: "float32", order: "ABCD", wire: "42f6e979", want: 123.456, value: 123.456},
	{typ: "float32", order: "DCBA", wire: "79e9f642", want: 123.456, value: 123.456},
	{typ: "float32", order: "BADC", wire: "f64279e9", want: 123.456, value: 123.456},
	{typ: "float32", order: "CDAB", wire: "e97942f6", want: 123.456, value: 123.456},
	{typ: "int64", order: "ABCD", wire: "fffffee08e04fb35", want: -1234567890123, value: int64(-1234567890123)},
	{typ: "int64", order: "DCBA", wire: "35fb048ee0feffff", want: -1234567890123, value: int64(-1234567890123)},
	{typ: "int64", order: "BADC", wire: "ffffe0fe048e35fb", want: -1234567890123, value: int64(-1234567890123)},
	{typ: "int64", order: "CDAB", wire: "fb358e04fee0ffff", want: -1234567890123, value: int64(-1234567890123)},
	{typ: "uint64", order: "ABCD", wire: "0123456789abcdef", want: 81985529216486895, value: uint64(81985529216486895)},
	{typ: "uint64", order: "DCBA", wire: "efcdab8967452301", want: 81985529216486895, value: uint64(81985529216486895)},
	{typ: "uint64", order: "BADC", wire: "23016745ab89efcd", want: 81985529216486895, value: uint64(81985529216486895)},
	{typ: "uint64", order: "CDAB", wire: "cdef89ab45670123", want: 81985529216486895, value: uint64(81985529216486895)},
	{typ: "float64", order: "ABCD", wire: "c0f81cd6e9e1b08a", want: -98765.4321, value: -98765.4321},
	{typ: "float64", order: "DCBA", wire: "8ab0e1e9d61cf8c0", want: -98765.4321, value: -98765.4321},
	{typ: "float64", order: "BADC", wire: "f8c0d61ce1e98ab0", want: -98765.4321, value: -98765.4321},
	{typ: "float64", order: "CDAB", wire: "b08ae9e11cd6c0f8", want: -98765.4321, value: -98765.4321},
	{typ: "string", order: "ABCD", length: 4, wire: "504c432d37000000", text: "PLC-7", value: "PLC-7"},
	{typ: "string", order: "BADC", length: 4, wire: "4c502d4300370000", text: "PLC-7", value: "PLC-7"},
	{typ: "string", order: "ABCD", length: 2, wire: "4f4b2020", text: "OK", value: "OK  "},
	{typ: "bit", bit: 0, wire: "8001", want: 1, value: 0x8001},
	{typ: "bit", bit: 15, wire: "8001", want: 1, value: 0x8001},
	{typ: "bit", bit: 3, wire: "8001", want: 0, value: 0x8001},
	{typ: "bool", wire: "0100", want: 1, value: 256},
	{typ: "bool", wire: "0000", want: 0, value: 0},
}

// registers returns a golden's wire bytes as register values.
func (g *golden) registers(t testing.TB) []uint16 {
	b, err := hex.DecodeString(g.wire)
	if err != nil || len(b)%2 != 0 {
		t.Fatalf("golden %+v: bad hex", g)
	}
	regs := make([]uint16, len(b)/2)
	for i := range regs {
		regs[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return regs
}

// rawIs says whether f is the golden's raw number: none (NaN) for a
// string, which has only its text.
func (g *golden) rawIs(f float64) bool {
	if g.typ == "string" {
		return math.IsNaN(f)
	}
	return f == g.want
}

func (g *golden) name(i int) string { return fmt.Sprintf("%s_%s_%d", g.typ, g.order, i) }

func TestDecodeGoldens(t *testing.T) {
	for i, g := range goldens {
		t.Run(g.name(i), func(t *testing.T) {
			d := Device{MaxRegisters: 125, MaxBits: 2000}
			addr := 0
			tag := Tag{Name: "x", Table: "holding", Address: &addr, Type: g.typ, ByteOrder: g.order, Bit: g.bit, Length: g.length}
			s, err := tag.spec(&d)
			if err != nil {
				t.Fatal(err)
			}
			wire, _ := hex.DecodeString(g.wire)
			if int(s.count)*2 != len(wire) {
				t.Fatalf("%s takes %d registers, the golden has %d bytes", g.typ, s.count, len(wire))
			}
			var scratch [8]byte
			got, text := decodeRegisters(&s, wire, &scratch)
			if !g.rawIs(got) || text != g.text {
				t.Errorf("decoded %v %q, want %v %q", got, text, g.want, g.text)
			}
		})
	}
}

func TestDecodeNaNIsBad(t *testing.T) {
	s := spec{typ: TypeFloat32, count: 2}
	var scratch [8]byte
	if v, _ := decodeRegisters(&s, []byte{0x7f, 0xc0, 0, 0}, &scratch); !math.IsNaN(v) {
		t.Fatalf("got %v, want NaN (the poller marks it bad)", v)
	}
}
