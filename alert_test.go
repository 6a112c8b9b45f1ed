package plcwatch

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

func TestByteSetText(t *testing.T) {
	for _, tt := range []struct {
		in   []uint8
		want string
	}{
		{nil, ""}, {[]uint8{5}, "5"}, {[]uint8{0, 1, 2, 4}, "0-2,4"}, {[]uint8{255, 254, 0}, "0,254-255"},
	} {
		var s ByteSet
		for _, v := range tt.in {
			s.Add(v)
		}
		if got := string(s.AppendText(nil)); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestActivityJSON(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var a Alert
	for i := 0; i < 12; i++ {
		ev := Event{Time: t0.Add(time.Duration(i) * time.Second), Protocol: ProtoModbus, Op: OpWrite, Function: 16,
			Unit: uint8(1 + i%3), Table: TableHolding, Address: uint16(100 + i), Count: 2,
			Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1000)}
		a.Activity.Note(&ev)
	}
	var doc map[string]any
	if err := json.Unmarshal(a.AppendJSON(nil), &doc); err != nil {
		t.Fatal(err)
	}
	act, _ := doc["activity"].(map[string]any)
	want := map[string]any{"first": "2026-03-02T09:00:00.000000000Z", "last": "2026-03-02T09:00:11.000000000Z", "events": 12.0,
		"functions": "16", "units": "1-3", "addresses": "100-112", "clients_more": true}
	for k, v := range want {
		if act[k] != v {
			t.Errorf("activity %s = %v, want %v (%v)", k, act[k], v, act)
		}
	}
	if n := len(act["clients"].([]any)); n != MaxActivityNames {
		t.Errorf("%d clients listed, want %d", n, MaxActivityNames)
	}
	var none Alert
	doc = nil
	if err := json.Unmarshal(none.AppendJSON(nil), &doc); err != nil || doc["activity"] != nil {
		t.Errorf("an alert without activity writes one: %s", none.AppendJSON(nil))
	}
}
