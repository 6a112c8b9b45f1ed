package modbus

import (
	"encoding/binary"
	"math"
	"testing"
)

// TestDecoders: the process image's decoders give what the poller gives
// for the same registers.
func TestDecoders(t *testing.T) {
	addr := func(a int) *int { return &a }
	scale := 0.1
	d := Device{Name: "plc", Address: "127.0.0.1:502", Tags: []Tag{
		{Name: "sp", Table: "holding", Address: addr(0), Scale: &scale},
		{Name: "flow", Table: "input", Address: addr(1), Type: "float32", ByteOrder: "CDAB"},
		{Name: "run", Table: "coil", Address: addr(0)},
		{Name: "label", Table: "holding", Address: addr(10), Type: "string", Length: 2},
	}}
	d.Defaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	dec := d.Decoders()
	f := math.Float32bits(23.7)
	cdab := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, uint16(f)), uint16(f>>16))
	for _, c := range []struct {
		tag  string
		wire []byte
		want float64
		ok   bool
	}{
		{"sp", []byte{0x03, 0xda}, 98.6, true},
		{"sp", []byte{0x03}, 0, false},
		{"flow", cdab, 23.7, true},
		{"run", []byte{1}, 1, true},
	} {
		v, ok := dec[c.tag](c.wire)
		if v != c.want || ok != c.ok {
			t.Errorf("%s % x: %v %v, want %v %v", c.tag, c.wire, v, ok, c.want, c.ok)
		}
	}
	if dec["label"] != nil {
		t.Error("a string tag has a decoder")
	}
}
