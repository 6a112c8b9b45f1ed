package modbus

import (
	"math"
	"strconv"
)

// Engineering values are decimal numbers: a register of 986 tenths is
// 98.6, not 986 × 0.1 = 98.60000000000001, and a float32 register holding
// 123.456f is 123.456, not its float64 widening 123.45600128173828. Values
// are rounded to the precision their inputs carry (issue 9 §8), so that
// events, telemetry and alerts print what the device meant and rules
// compare what an operator wrote (value == 98.6).

// shortest32 is the float64 that float32 f prints as: its shortest decimal
// form (strconv 'g', -1, 32) read back as a float64.
func shortest32(f float32) float64 {
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], float64(f), 'g', -1, 32)
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil { // NaN and ±Inf print as words that parse back; nothing else fails
		return float64(f)
	}
	return v
}

// decimals is how many digits follow the decimal point in the shortest
// decimal form of f: 0.1 → 1, 98.6 → 1, 1e-05 → 5, 1200 → 0, 0 → 0.
// NaN and ±Inf have none.
func decimals(f float64) int {
	if f == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // [-]d[.ddd]e±dd
	e := len(b) - 1
	for b[e] != 'e' {
		e--
	}
	frac := 0
	for i := 0; i < e; i++ {
		if b[i] == '.' {
			frac = e - i - 1
			break
		}
	}
	exp := 0
	for _, c := range b[e+2:] {
		exp = 10*exp + int(c-'0')
	}
	if b[e+1] == '-' {
		exp = -exp
	}
	return max(frac-exp, 0)
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// roundTo is the float64 nearest to v rounded to d decimal places.
func roundTo(v float64, d int) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) >= 1<<52 {
		return v // from 2^52 on, every float64 is a whole or half number
	}
	if d < len(pow10) {
		// 10^d is exact up to 1e22, and an integer below 2^53 divided by
		// it is correctly rounded: the nearest float64 to the decimal.
		if x := v * pow10[d]; math.Abs(x) < 1<<53 {
			return math.Round(x) / pow10[d]
		}
	}
	var buf [64]byte
	r, err := strconv.ParseFloat(string(strconv.AppendFloat(buf[:0], v, 'f', d, 64)), 64)
	if err != nil {
		return v
	}
	return r
}

// engineering is the engineering value of raw: raw × scale + offset,
// rounded to the decimals of an exact decimal product and sum. A whole
// number times a scale of d decimals has d decimals; a float register's
// own shortest form adds its decimals; the offset's count too.
func (s *spec) engineering(raw float64) float64 {
	if s.scale == 1 && s.offset == 0 {
		return raw // whole numbers, or a float already in its shortest form
	}
	v := raw*s.scale + s.offset
	d := max(s.scaleDecimals, s.offsetDecimals)
	if s.typ == TypeFloat32 || s.typ == TypeFloat64 {
		d = max(decimals(raw)+s.scaleDecimals, s.offsetDecimals)
	}
	return roundTo(v, d)
}
