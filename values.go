package plcwatch

import (
	"encoding/binary"
	"math"
)

// MaxValueBytes is the largest data part a Modbus PDU can carry (a PDU is at
// most 253 bytes, one of which is the function code). Every legal read or
// write fits: 2000 coils are 250 bytes, 125 registers 250 bytes.
const MaxValueBytes = 252

// ValueKind says how the bytes of a Values are to be read.
type ValueKind uint8

const (
	NoValues ValueKind = iota
	Bits               // coils and discrete inputs, packed LSB first as on the wire; each value is 0 or 1
	Words              // 16-bit registers, big-endian as on the wire
	Bytes              // raw bytes (e.g. the FC 17 server id)
	Floats             // float64 numbers, native byte order (OPC UA arrays), at most MaxFloats
)

// MaxFloats is how many float64 values a Values holds.
const MaxFloats = MaxValueBytes / 8

// Values holds the values one Modbus PDU carries, in their wire encoding, in
// a fixed array: an Event never allocates for them and copying one copies the
// values too. The zero Values is empty and absent (Kind NoValues).
type Values struct {
	kind ValueKind
	n    uint16
	raw  [MaxValueBytes]byte
}

// Kind returns how the values are encoded; NoValues when none were set.
func (v *Values) Kind() ValueKind { return v.kind }

// Len returns the number of values.
func (v *Values) Len() int { return int(v.n) }

// Reset empties v and marks it absent.
func (v *Values) Reset() { v.kind, v.n = NoValues, 0 }

// At returns value i: a register, a bit as 0 or 1, or a byte; for Floats
// the value converted to uint16 (use Float).
func (v *Values) At(i int) uint16 {
	switch v.kind {
	case Floats:
		return uint16(v.Float(i))
	case Bits:
		return uint16(v.raw[i>>3]>>(uint(i)&7)) & 1
	case Words:
		return binary.BigEndian.Uint16(v.raw[2*i:])
	default:
		return uint16(v.raw[i])
	}
}

// SetWords stores big-endian registers from raw (an odd last byte is
// ignored). It reports false and stores what fits when raw is too long.
func (v *Values) SetWords(raw []byte) bool {
	v.kind = Words
	n := copy(v.raw[:], raw)
	v.n = uint16(n / 2)
	return n == len(raw)
}

// SetBits stores n bits packed LSB first from packed. It reports false and
// stores what fits when packed is shorter than n bits or n is too large.
func (v *Values) SetBits(packed []byte, n int) bool {
	v.kind = Bits
	ok := true
	if n > 8*len(packed) {
		n, ok = 8*len(packed), false
	}
	if n > 8*MaxValueBytes {
		n, ok = 8*MaxValueBytes, false
	}
	copy(v.raw[:], packed[:(n+7)/8])
	v.n = uint16(n)
	return ok
}

// SetBytes stores raw bytes.
func (v *Values) SetBytes(raw []byte) bool {
	v.kind = Bytes
	n := copy(v.raw[:], raw)
	v.n = uint16(n)
	return n == len(raw)
}

// Float returns value i as a float64, whatever the kind.
func (v *Values) Float(i int) float64 {
	if v.kind == Floats {
		return math.Float64frombits(binary.NativeEndian.Uint64(v.raw[8*i:]))
	}
	return float64(v.At(i))
}

// SetFloats stores numbers. It reports false and stores the first
// MaxFloats when there are more.
func (v *Values) SetFloats(f []float64) bool {
	v.kind = Floats
	n := min(len(f), MaxFloats)
	for i := range n {
		binary.NativeEndian.PutUint64(v.raw[8*i:], math.Float64bits(f[i]))
	}
	v.n = uint16(n)
	return n == len(f)
}

// SetWord stores a single register.
func (v *Values) SetWord(w uint16) {
	v.kind = Words
	binary.BigEndian.PutUint16(v.raw[:], w)
	v.n = 1
}

// SetBit stores a single bit.
func (v *Values) SetBit(on bool) {
	v.kind = Bits
	v.raw[0] = 0
	if on {
		v.raw[0] = 1
	}
	v.n = 1
}

// AppendWord adds a register; it reports false when v is full. Bits and
// bytes already in v are dropped: a Values holds one kind.
func (v *Values) AppendWord(w uint16) bool {
	if v.kind != Words {
		v.kind, v.n = Words, 0
	}
	if 2*int(v.n)+2 > MaxValueBytes {
		return false
	}
	binary.BigEndian.PutUint16(v.raw[2*v.n:], w)
	v.n++
	return true
}

// Ints appends the values to dst as ints: handy for tests and expressions.
func (v *Values) Ints(dst []int) []int {
	for i := 0; i < int(v.n); i++ {
		dst = append(dst, int(v.At(i)))
	}
	return dst
}

// Number is a Go numeric or Boolean value (what OPC UA's built-in scalar
// types decode to: Boolean, SByte ... Double) as a float64; true is 1.
// ok is false for every other type (strings, byte strings, structures).
func Number(v any) (f float64, ok bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case int8:
		return float64(x), true
	case uint8:
		return float64(x), true
	case int16:
		return float64(x), true
	case uint16:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}
