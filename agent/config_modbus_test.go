package agent

import (
	"errors"
	"strings"
	"testing"
)

// TestModbusTagProblemsHavePositions: a byte_order that does not fit its
// tag's type, and the other values a tag cannot use, are refused at the
// value's line and column (issue 9 §9).
func TestModbusTagProblemsHavePositions(t *testing.T) {
	text := `rules: {paths: [r]}
modbus:
  devices:
    - name: plc
      address: 10.0.1.10
      tags:
        - {name: a, register: 40001, type: uint16, byte_order: CDAB}
        - {name: b, register: 40002, type: float32, byte_order: BA}
        - {name: c, register: "00001", byte_order: ABCD}
        - {name: d, register: 40010, type: string, length: 2, scale: 0.1}
    - name: rtu
      transport: rtu-over-tcp
      address: 10.0.1.11:4001
      unit: 0
      tags: [{name: x, register: 40001}]
`
	want := []string{
		`7:64: modbus.devices[0].tags[0].byte_order: "CDAB": CDAB swaps the two registers of a 32-bit value; a uint16 is one register`,
		`8:65: modbus.devices[0].tags[1].byte_order: "BA": names 2 bytes; a float32 tag reads two registers (4 bytes)`,
		`9:52: modbus.devices[0].tags[2].byte_order: "ABCD": a coil or discrete input is one bit`,
		`10:70: modbus.devices[0].tags[3].scale: a string tag has no number to scale`,
		`14:13: modbus.devices[1].unit: 0 is the broadcast address on a serial line`,
	}
	_, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(text))
	var ce ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want problems, got %v", err)
	}
	if len(ce) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ce), len(want), err)
	}
	for i, w := range want {
		if i < len(ce) && !strings.HasPrefix(ce[i].Error(), "/etc/plcwatch/test.yaml:"+w) {
			t.Errorf("problem %d:\n got  %s\n want %s...", i, ce[i].Error(), w)
		}
	}
}
