package inventory

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch"
)

// TestUnitsJSON: units are a JSON array of numbers (docs/inventory.md:
// "units": [1, 2]), and a file written by a version that gave base64
// still loads.
func TestUnitsJSON(t *testing.T) {
	inv := New()
	for _, u := range []uint8{7, 0, 255, 1} {
		ev := wire("10.0.0.9:4000", "10.0.1.1:502", 3, 0, 1)
		ev.Unit = u
		inv.Observe(&ev, nil)
	}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	var shape struct {
		Servers []struct {
			Units []any `json:"units"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(b, &shape); err != nil {
		t.Fatal(err)
	}
	want := []any{0.0, 1.0, 7.0, 255.0}
	if len(shape.Servers) != 1 || !slices.Equal(shape.Servers[0].Units, want) {
		t.Fatalf("units %s, want [0,1,7,255]", b)
	}
	back, err := Parse(b)
	if err != nil || !slices.Equal(back.Servers[0].Units, Units{0, 1, 7, 255}) {
		t.Fatalf("round trip: %v %v", back.Servers[0].Units, err)
	}
	old := strings.Replace(string(b), "[0,1,7,255]", `"AAEH/w=="`, 1)
	back, err = Parse([]byte(old))
	if err != nil || !slices.Equal(back.Servers[0].Units, Units{0, 1, 7, 255}) {
		t.Fatalf("base64 units of an old file: %v %v", back.Servers[0].Units, err)
	}
}

// TestEmptyJSON: an inventory that saw nothing has empty lists, not null
// (docs/inventory.md's jq '.pairs[]' must work on it).
func TestEmptyJSON(t *testing.T) {
	b, err := json.Marshal(New())
	if err != nil || string(b) != `{"servers":[],"clients":[],"pairs":[]}` {
		t.Fatalf("%s %v", b, err)
	}
}

// TestOPCUAAttribution: an OPC UA ERR is the server's, not one of the
// client's requests; an encrypted OpenSecureChannel is counted under the
// name a clear-text one has.
func TestOPCUAAttribution(t *testing.T) {
	inv := New()
	ua := func(svc string) plcwatch.Event {
		return plcwatch.Event{Time: t0, Source: plcwatch.Wire, Protocol: plcwatch.ProtoOPCUA, Op: plcwatch.OpSession, Service: svc,
			Client: netip.MustParseAddrPort("10.0.0.7:50000"), Server: netip.MustParseAddrPort("10.0.1.5:4840"), Conn: 3}
	}
	for _, svc := range []string{"Hello", "OpenSecureChannelRequest", "OpenSecureChannel", "Error"} {
		ev := ua(svc)
		inv.Observe(&ev, nil)
	}
	p := inv.Snapshot().Pairs[0]
	if p.Requests != 3 || p.Services["Error"] != 0 || p.Services["OpenSecureChannelRequest"] != 2 || p.Services["OpenSecureChannel"] != 0 {
		t.Fatalf("requests %d services %v", p.Requests, p.Services)
	}
}
