package plcwatch

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

func TestEventJSON(t *testing.T) {
	ev := Event{
		Time:     time.Date(2026, 3, 1, 8, 0, 0, 1234, time.UTC),
		Source:   Wire,
		Protocol: ProtoModbus,
		Op:       OpWrite,
		Device:   "10.0.0.2:502",
		Client:   netip.MustParseAddrPort("10.0.0.1:40000"),
		Server:   netip.MustParseAddrPort("10.0.0.2:502"),
		Frame:    7,
		TID:      42, Unit: 1, Function: 16, Table: TableHolding, Address: 100, Count: 2,
		RTT: 1500 * time.Microsecond,
	}
	ev.Values.SetWords([]byte{0, 1, 0xff, 0xff})
	want := `{"time":"2026-03-01T08:00:00.000001234Z","source":"wire","protocol":"modbus","op":"write",` +
		`"device":"10.0.0.2:502","client":"10.0.0.1:40000","server":"10.0.0.2:502","frame":7,"tid":42,"unit":1,` +
		`"function":16,"table":"holding","address":100,"count":2,"values":[1,65535],"exception":0,"malformed":"","rtt_us":1500}`
	if got := string(ev.AppendJSON(nil)); got != want {
		t.Errorf("\n got  %s\n want %s", got, want)
	}
	b, err := json.Marshal(&ev)
	if err != nil || string(b) != want {
		t.Errorf("MarshalJSON: %s, %v", b, err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = ev.AppendJSON(b[:0]) }); allocs != 0 {
		t.Errorf("AppendJSON allocates %.0f times", allocs)
	}
}

func TestEventJSONShapes(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "orphan read response: address unknown",
			ev:   Event{Source: Wire, Protocol: ProtoModbus, Op: OpRead, Function: 3, Table: TableHolding, Orphan: true},
			want: `{"time":"0001-01-01T00:00:00.000000000Z","source":"wire","protocol":"modbus","op":"read","tid":0,"unit":0,"function":3,"table":"holding","exception":0,"malformed":"","orphan":true}`,
		},
		{
			name: "mask write and identification objects",
			ev: Event{Source: Wire, Protocol: ProtoModbus, Op: OpIdentify, Function: 43, HasSub: true, SubFunction: 14,
				Objects: []DeviceObject{{0, "ACME \"PLC\"\n"}, {0x80, "\xff"}}, Unanswered: "timeout"},
			want: `{"time":"0001-01-01T00:00:00.000000000Z","source":"wire","protocol":"modbus","op":"identify","tid":0,"unit":0,"function":43,"subfunction":14,"objects":[{"id":0,"name":"VendorName","value":"ACME \"PLC\"\n"},{"id":128,"value":"\ufffd"}],"exception":0,"malformed":"","unanswered":"timeout"}`,
		},
		{
			name: "polled tag",
			ev:   Event{Source: Poll, Protocol: ProtoModbus, Op: OpRead, Device: "boiler", Unit: 1, Function: 3, Table: TableHolding, Address: 0, Count: 2, Tag: "temp", Value: 81.5, Raw: 815, Quality: "good"},
			want: `{"time":"0001-01-01T00:00:00.000000000Z","source":"poll","protocol":"modbus","op":"read","device":"boiler","unit":1,"function":3,"table":"holding","address":0,"count":2,"exception":0,"malformed":"","tag":"temp","value":81.5,"raw":815,"quality":"good"}`,
		},
		{
			name: "polled string tag, bad",
			ev: Event{Source: Poll, Protocol: ProtoModbus, Op: OpRead, Device: "boiler", Unit: 1, Function: 4, Table: TableInput, Address: 10, Count: 4,
				Tag: "serial", Text: "SN-42", Quality: "bad", Exception: 2, Error: "illegal data address"},
			want: `{"time":"0001-01-01T00:00:00.000000000Z","source":"poll","protocol":"modbus","op":"read","device":"boiler","unit":1,"function":4,"table":"input","address":10,"count":4,"exception":2,"malformed":"","tag":"serial","value":0,"raw":0,"text":"SN-42","quality":"bad","error":"illegal data address"}`,
		},
		{
			name: "device down",
			ev:   Event{Source: Poll, Protocol: ProtoModbus, Op: OpStatus, Device: "boiler", Server: netip.MustParseAddrPort("10.0.1.10:502"), Unit: 3, Quality: "down", Error: "dial tcp 10.0.1.10:502: connection refused"},
			want: `{"time":"0001-01-01T00:00:00.000000000Z","source":"poll","protocol":"modbus","op":"status","device":"boiler","server":"10.0.1.10:502","unit":3,"quality":"down","error":"dial tcp 10.0.1.10:502: connection refused"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.ev.AppendJSON(nil)
			if string(got) != tc.want {
				t.Errorf("\n got  %s\n want %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Error("not valid JSON")
			}
		})
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f", "<html>&", "bad\xc3utf8\xff", "line\u2028sep", "ünïcødé ✓"} {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, encoding/json %s", s, got, want)
		}
	}
}

func TestValues(t *testing.T) {
	var v Values
	if v.Kind() != NoValues || v.Len() != 0 {
		t.Fatal("zero Values is not empty")
	}
	if !v.SetBits([]byte{0b101, 0xff}, 10) || v.Len() != 10 || v.At(0) != 1 || v.At(1) != 0 || v.At(2) != 1 || v.At(9) != 1 {
		t.Errorf("bits: %v", v.Ints(nil))
	}
	if v.SetBits([]byte{1}, 9) || v.Len() != 8 {
		t.Errorf("SetBits past the data: len %d", v.Len())
	}
	big := make([]byte, MaxValueBytes+2)
	if v.SetWords(big) || v.Len() != MaxValueBytes/2 {
		t.Errorf("SetWords past capacity: len %d", v.Len())
	}
	v.Reset()
	for i := 0; i < MaxValueBytes/2; i++ {
		if !v.AppendWord(uint16(i)) {
			t.Fatalf("AppendWord %d refused", i)
		}
	}
	if v.AppendWord(1) {
		t.Error("AppendWord past capacity accepted")
	}
}
