package opcua

import (
	"math/big"
	"time"
)

// MaxDateTime is OPC UA's latest DateTime: OPC 10000-6 §5.2.2.5 encodes
// every date at or after 9999-12-31 23:59:59 UTC as the maximum Int64, and
// a decoder turns it into its platform's latest date. plcwatch reports
// such a date as this one.
var MaxDateTime = time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)

// fixDateTime undoes gopcua v0.8.0's DateTime decoding
// (ua/buffer.go:191, time.Unix(0, int64((ticks-epoch)*100))), which
// overflows int64 nanoseconds outside 1677-09-21..2262-04-11: 9999-12-31
// came out as 1816-03-30. A DateTime is in 100 ns ticks, so a correct
// decode is a whole multiple of 100 ns; a wrapped one (off by k·2^64 ns,
// and 2^64 ≡ 16 mod 100) is not, which finds k. Dates after 9999-12-31
// are MaxDateTime. ok is false for OPC UA's "no date" (ticks 0, 1601-01-01:
// OPC 10000-6 §5.2.2.5), which gopcua makes the zero time.
func fixDateTime(t time.Time) (_ time.Time, ok bool) {
	if t.IsZero() {
		return t, false
	}
	if t.Nanosecond()%100 == 0 {
		return t, true
	}
	ns := new(big.Int).Mul(big.NewInt(t.Unix()), big.NewInt(1e9))
	ns.Add(ns, big.NewInt(int64(t.Nanosecond())))
	wrap := new(big.Int).Lsh(big.NewInt(1), 64)
	first := new(big.Int).Mul(big.NewInt(-11644473600), big.NewInt(1e9)) // 1601-01-01 in Unix ns
	hundred, m := big.NewInt(100), new(big.Int)
	ns.Sub(ns, wrap) // k from -1: dates between 1601 and 1677 wrap downwards
	for k := -1; k <= 60; k++ {
		if ns.Cmp(first) >= 0 && m.Mod(ns, hundred).Sign() == 0 {
			sec, nsec := new(big.Int).DivMod(ns, big.NewInt(1e9), new(big.Int))
			if !sec.IsInt64() || sec.Int64() > MaxDateTime.Unix() {
				return MaxDateTime, true
			}
			return time.Unix(sec.Int64(), nsec.Int64()).UTC(), true
		}
		ns.Add(ns, wrap)
	}
	return MaxDateTime, true
}
