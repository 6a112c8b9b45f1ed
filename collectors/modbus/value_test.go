package modbus

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestEngineeringValues: a scaled value is the decimal the scale implies
// (986 × 0.1 is 98.6, not 98.60000000000001), a float32 register is its
// shortest form (23.7, not 23.700000762939453), in events, telemetry and
// alerts alike, since all print Value with strconv 'g' -1 (issue 9 §8).
func TestEngineeringValues(t *testing.T) {
	f32 := func(f float32) []byte { return binary.BigEndian.AppendUint32(nil, math.Float32bits(f)) }
	f64 := func(f float64) []byte { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	tests := []struct {
		name          string
		typ           string
		wire          []byte
		scale, offset float64
		raw, value    string // as printed (strconv 'g', -1, 64)
	}{
		{"tenths", "uint16", u16(986), 0.1, 0, "986", "98.6"},
		{"tenths of 237", "uint16", u16(237), 0.1, 0, "237", "23.7"},
		{"tenths of 3", "uint16", u16(3), 0.1, 0, "3", "0.3"},
		{"thousandths", "uint16", u16(12345), 0.001, 0, "12345", "12.345"},
		{"hundredths with a Kelvin offset", "uint16", u16(30000), 0.01, -273.15, "30000", "26.85"},
		{"negative tenths with offset", "int16", u16(0xffff - 249), 0.1, -5, "-250", "-30"},
		{"offset with decimals, scale 1", "uint16", u16(20), 1, 0.5, "20", "20.5"},
		{"scale 1e-5", "int32", u32(123456789), 1e-5, 0, "1.23456789e+08", "1234.56789"},
		{"scale of 2 decimals on a large count", "uint32", u32(4000000001), 0.25, 0, "4.000000001e+09", "1.00000000025e+09"},
		{"float32 as read", "float32", f32(23.7), 1, 0, "23.7", "23.7"},
		{"float32 123.456", "float32", f32(123.456), 1, 0, "123.456", "123.456"},
		{"float32 scaled", "float32", f32(123.456), 0.1, 0, "123.456", "12.3456"},
		{"float32 with offset", "float32", f32(0.1), 1, 0.2, "0.1", "0.3"},
		{"float32 largest", "float32", f32(math.MaxFloat32), 1, 0, "3.4028235e+38", "3.4028235e+38"},
		{"float32 tiny", "float32", f32(1.5e-7), 0.001, 0, "1.5e-07", "1.5e-10"},
		{"float64 0.1 × 3", "float64", f64(0.1), 3, 0, "0.1", "0.3"},
		{"float64 kept", "float64", f64(-98765.4321), 1, 0, "-98765.4321", "-98765.4321"},
		{"float64 scaled", "float64", f64(1.1), 1.1, 0, "1.1", "1.21"},
		{"uint64 beyond 2^53", "uint64", binary.BigEndian.AppendUint64(nil, 1<<60+1), 1, 0, "1.152921504606847e+18", "1.152921504606847e+18"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := 0
			tag := Tag{Name: "x", Table: "holding", Address: &addr, Type: tc.typ, Scale: &tc.scale, Offset: tc.offset}
			s, err := tag.spec(&Device{MaxRegisters: 125, MaxBits: 2000})
			if err != nil {
				t.Fatal(err)
			}
			var scratch [8]byte
			raw, _ := decodeRegisters(&s, tc.wire, &scratch)
			v := s.engineering(raw)
			if got := strconv.FormatFloat(raw, 'g', -1, 64); got != tc.raw {
				t.Errorf("raw %s, want %s", got, tc.raw)
			}
			if got := strconv.FormatFloat(v, 'g', -1, 64); got != tc.value {
				t.Errorf("value %s, want %s", got, tc.value)
			}
			if want, _ := strconv.ParseFloat(tc.value, 64); v != want {
				t.Errorf("value == %s is false: rules compare what an operator writes", tc.value)
			}
		})
	}
}

// TestRoundToIsTheExactDecimal checks roundTo on scaled integers against
// exact arithmetic: the float64 nearest to raw × scale, the scale taken as
// the decimal it is written as, for every raw whose scaled value has at
// most 15 significant digits with its decimals (float64 holds 15 exactly;
// past them the product's own rounding error reaches the last decimal).
func TestRoundToIsTheExactDecimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	scales := []string{"0.1", "0.01", "0.001", "0.0001", "0.00001", "0.000001", "0.25", "0.5", "0.2", "0.3", "0.7", "1.5", "2.5", "0.125", "10", "3"}
	for range 200000 {
		text := scales[r.IntN(len(scales))]
		scale, _ := strconv.ParseFloat(text, 64)
		d := decimals(scale)
		limit := int64(1e15) / int64(pow10[d]) / int64(math.Ceil(scale)) // raw × scale × 10^d below 10^15
		raw := r.Int64N(2*limit) - limit
		exact, _ := new(big.Rat).SetString(text)
		want, _ := exact.Mul(exact, new(big.Rat).SetInt64(raw)).Float64()
		if got := roundTo(float64(raw)*scale, d); got != want {
			t.Fatalf("%d × %s: roundTo(%v, %d) = %v, the exact decimal is %v", raw, text, float64(raw)*scale, d, got, want)
		}
	}
}

// TestShortest32 checks that every float32 reads as the float64 its
// shortest form names, for random bit patterns.
func TestShortest32(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		f := math.Float32frombits(r.Uint32())
		got := shortest32(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(got) {
				t.Fatalf("%v: %v", f, got)
			}
			continue
		}
		if float32(got) != f {
			t.Fatalf("%v (%08x) read as %v, which is another float32", f, math.Float32bits(f), got)
		}
		if strconv.FormatFloat(got, 'g', -1, 64) != strconv.FormatFloat(float64(f), 'g', -1, 32) {
			t.Fatalf("%08x prints as %v, want %v", math.Float32bits(f), got, strconv.FormatFloat(float64(f), 'g', -1, 32))
		}
	}
}

func TestDecimals(t *testing.T) {
	for f, want := range map[float64]int{0: 0, 1: 0, 0.1: 1, 0.25: 2, 98.6: 1, 1e-5: 5, 1200: 0, -273.15: 2, 1.5e-10: 11, 3.4028235e38: 0, 0.30000000000000004: 17} {
		if got := decimals(f); got != want {
			t.Errorf("decimals(%v) = %d, want %d", f, got, want)
		}
	}
}
