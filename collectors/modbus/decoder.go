package modbus

import (
	"math"

	"github.com/plcwatch/plcwatch"
)

// Decoders returns, by tag name, the function that turns a tag's registers
// as they cross the wire (2 bytes each, big-endian; a coil or discrete
// input as one byte, 0 or 1) into its engineering value, as the poller
// decodes them: the rules engine's process image compares wire reads and
// writes with polled values through them (docs/correlation.md). A string
// tag, wire bytes of the wrong length and a NaN or infinite value give
// ok false. Call after Defaults and Validate; the functions are for one
// goroutine at a time.
func (d *Device) Decoders() map[string]func(wire []byte) (value float64, ok bool) {
	out := map[string]func([]byte) (float64, bool){}
	for _, s := range d.specs() {
		if s.typ == TypeString {
			continue
		}
		var scratch [8]byte
		bits := s.table == plcwatch.TableCoil || s.table == plcwatch.TableDiscrete
		out[s.name] = func(wire []byte) (float64, bool) {
			var raw float64
			switch {
			case bits:
				if len(wire) != 1 {
					return 0, false
				}
				raw = float64(wire[0] & 1)
			case len(wire) != 2*int(s.count):
				return 0, false
			default:
				raw, _ = decodeRegisters(&s, wire, &scratch)
			}
			v := s.engineering(raw)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, false
			}
			return v, true
		}
	}
	return out
}
