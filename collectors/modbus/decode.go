package modbus

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
)

// decodeRegisters reads the value of s from its registers as they came off
// the wire (2 bytes each, big-endian as the protocol sends them). It
// returns the number (a float32 as the float64 of its shortest decimal
// form) and, for string tags, the text and no number (NaN, NoValue: a
// string's raw is absent in events and telemetry, not 0). scratch is
// reused for the reordered bytes.
func decodeRegisters(s *spec, wire []byte, scratch *[8]byte) (float64, string) {
	if s.typ == TypeString {
		return math.NaN(), decodeString(wire, s.order)
	}
	v := scratch[:len(wire)]
	reorder(v, wire, s.order)
	switch s.typ {
	case TypeBool:
		return b2f(binary.BigEndian.Uint16(v) != 0), ""
	case TypeBit:
		return float64(binary.BigEndian.Uint16(v) >> s.bit & 1), ""
	case TypeInt16:
		return float64(int16(binary.BigEndian.Uint16(v))), ""
	case TypeUint16:
		return float64(binary.BigEndian.Uint16(v)), ""
	case TypeInt32:
		return float64(int32(binary.BigEndian.Uint32(v))), ""
	case TypeUint32:
		return float64(binary.BigEndian.Uint32(v)), ""
	case TypeInt64:
		return float64(int64(binary.BigEndian.Uint64(v))), ""
	case TypeUint64:
		return float64(binary.BigEndian.Uint64(v)), ""
	case TypeFloat32:
		return shortest32(math.Float32frombits(binary.BigEndian.Uint32(v))), ""
	case TypeFloat64:
		return math.Float64frombits(binary.BigEndian.Uint64(v)), ""
	}
	return 0, ""
}

// reorder writes into v (big-endian) the value whose bytes sit on the wire
// in order o. Orders name where the bytes of the big-endian value ABCD sit:
// DCBA is little-endian, BADC swaps the bytes of each register, CDAB swaps
// the registers. For one register, ABCD and CDAB are the same (AB), as are
// DCBA and BADC (BA).
func reorder(v, wire []byte, o Order) {
	n := len(wire)
	switch o {
	case OrderABCD:
		copy(v, wire)
	case OrderDCBA:
		for i := range n {
			v[i] = wire[n-1-i]
		}
	case OrderBADC:
		for i := 0; i+1 < n; i += 2 {
			v[i], v[i+1] = wire[i+1], wire[i]
		}
	case OrderCDAB:
		for i := 0; i+1 < n; i += 2 {
			v[i], v[i+1] = wire[n-2-i], wire[n-1-i]
		}
	}
}

// decodeString reads text two characters a register, the first in the
// high byte (ABCD, CDAB) or in the low byte (BADC, DCBA), up to the first
// NUL, without trailing spaces (devices pad with either).
func decodeString(wire []byte, o Order) string {
	b := make([]byte, len(wire))
	if o == OrderBADC || o == OrderDCBA {
		reorder(b, wire, OrderBADC)
	} else {
		copy(b, wire)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), " ")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
