package modbus

import (
	"encoding/hex"
	"strings"
	"testing"
)

// TestByteOrderForEveryType: every type × byte_order either means
// something for that type or is refused with a message that says what the
// type takes (issue 9 §9: CDAB on a 16-bit tag was silently read as AB).
// The accepted ones decode a known wire value the way their name says.
func TestByteOrderForEveryType(t *testing.T) {
	// For each type, the value 0x0102[0304[05060708]] on the wire in each
	// accepted order; "" means refused.
	type want map[string]string
	orders := []string{"", "AB", "BA", "ABCD", "DCBA", "BADC", "CDAB", "abcd", "ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB", "ACBD", "BADCX"}
	sixteen := want{"": "0102", "AB": "0102", "BA": "0201", "ABCD": "0102", "DCBA": "0201", "BADC": "0201", "abcd": "0102"}
	thirtyTwo := want{"": "01020304", "ABCD": "01020304", "DCBA": "04030201", "BADC": "02010403", "CDAB": "03040102", "abcd": "01020304"}
	sixtyFour := want{"": "0102030405060708", "ABCD": "0102030405060708", "DCBA": "0807060504030201", "BADC": "0201040306050807",
		"CDAB": "0708050603040102", "abcd": "0102030405060708", "ABCDEFGH": "0102030405060708", "HGFEDCBA": "0807060504030201",
		"BADCFEHG": "0201040306050807", "GHEFCDAB": "0708050603040102"}
	tests := []struct {
		typ, table string
		want       want
	}{
		{"uint16", "holding", sixteen}, {"int16", "input", sixteen}, {"bit", "holding", sixteen}, {"bool", "holding", sixteen},
		{"uint32", "holding", thirtyTwo}, {"int32", "holding", thirtyTwo}, {"float32", "input", thirtyTwo},
		{"uint64", "holding", sixtyFour}, {"int64", "holding", sixtyFour}, {"float64", "holding", sixtyFour},
		{"string", "holding", want{"": "0102", "AB": "0102", "ABCD": "0102", "abcd": "0102", "BA": "0201", "BADC": "0201"}},
		{"bool", "coil", want{"": "-"}}, {"bool", "discrete", want{"": "-"}},
	}
	for _, tc := range tests {
		for _, order := range orders {
			t.Run(tc.typ+"/"+tc.table+"/"+order, func(t *testing.T) {
				d := Device{Name: "plc", Address: "10.0.0.1", Tags: []Tag{{Name: "t", Table: tc.table, Address: intp(0),
					Type: tc.typ, ByteOrder: order, Length: map[bool]int{true: 1}[tc.typ == "string"]}}}
				d.Defaults()
				errs := d.Validate()
				wire, accepted := tc.want[order]
				if !accepted {
					if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "tags[0].byte_order: ") {
						t.Fatalf("errors %v, want byte_order refused", errs)
					}
					t.Log(errs[0])
					return
				}
				if len(errs) > 0 {
					t.Fatalf("refused: %v", errs)
				}
				if wire == "-" {
					return
				}
				s := d.specs()[0]
				// The big-endian value 0x0102... sits on the wire as the
				// order names it: reordering back gives 0x0102...
				raw, _ := hex.DecodeString(wire)
				v := make([]byte, len(raw))
				if tc.typ == "string" {
					if got := decodeString(raw, s.order); got != "\x01\x02" {
						t.Errorf("string %x in %s read as %q", raw, order, got)
					}
					return
				}
				reorder(v, raw, s.order)
				if hex.EncodeToString(v) != "0102030405060708"[:2*len(v)] {
					t.Errorf("%x on the wire in %s read as %x", raw, order, v)
				}
			})
		}
	}
}

func TestOtherSilentAcceptances(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(d *Device)
		field string
	}{
		{"scale on a string", func(d *Device) { d.Tags[0].Type, d.Tags[0].Length, d.Tags[0].Scale = "string", 2, new(0.1) }, "tags[0].scale"},
		{"offset on a string", func(d *Device) { d.Tags[0].Type, d.Tags[0].Length, d.Tags[0].Offset = "string", 2, 3 }, "tags[0].offset"},
		{"unit 0 on RTU", func(d *Device) { d.Transport, d.Address, d.Unit = "rtu", "/dev/ttyUSB0", intp(0) }, "unit"},
		{"tag unit 0 on RTU over TCP", func(d *Device) { d.Transport, d.Tags[0].Unit = "rtu-over-tcp", intp(0) }, "tags[0].unit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Device{Name: "plc", Address: "10.0.0.1", Tags: []Tag{{Name: "t", Table: "holding", Address: intp(0)}}}
			tc.edit(&d)
			d.Defaults()
			errs := d.Validate()
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.field+": ") {
				t.Errorf("errors %v, want one on %s", errs, tc.field)
			}
		})
	}
}
