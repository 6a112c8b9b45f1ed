package inventory

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

var t0 = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func wire(client, server string, fc uint8, addr, count uint16) plcwatch.Event {
	ev := plcwatch.Event{Time: t0, Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Client: netip.MustParseAddrPort(client),
		Server: netip.MustParseAddrPort(server), Unit: 1, Function: fc, Address: addr, Count: count, Table: plcwatch.TableHolding, Op: plcwatch.OpRead}
	if fc == 6 || fc == 16 {
		ev.Op = plcwatch.OpWrite
	}
	return ev
}

// TestAssetEvents: a new server, a new client and a new writer each give
// one op asset event, once.
func TestAssetEvents(t *testing.T) {
	inv := New()
	var got []string
	found := func(ev *plcwatch.Event) {
		if ev.Op != plcwatch.OpAsset {
			t.Errorf("op %v", ev.Op)
		}
		got = append(got, ev.Asset+" "+ev.Client.Addr().String()+" "+ev.Server.String())
	}
	evs := []plcwatch.Event{
		wire("10.0.0.9:4000", "10.0.1.1:502", 3, 0, 10),
		wire("10.0.0.9:4001", "10.0.1.1:502", 3, 5, 10), // another port of the same client: nothing new
		wire("10.0.0.9:4001", "10.0.1.1:502", 16, 100, 2),
		wire("10.0.0.9:4001", "10.0.1.1:502", 6, 300, 1), // already a writer of this server
		wire("10.0.0.7:4000", "10.0.1.1:502", 3, 0, 1),
		wire("10.0.0.7:4000", "10.0.1.2:502", 6, 0, 1),
	}
	req := evs[0]
	req.Stage = plcwatch.StageRequest // the early copy: skipped
	inv.Observe(&req, found)
	for i := range evs {
		inv.Observe(&evs[i], found)
	}
	want := []string{
		"server 10.0.0.9 10.0.1.1:502", "client 10.0.0.9 10.0.1.1:502", "writer 10.0.0.9 10.0.1.1:502",
		"client 10.0.0.7 10.0.1.1:502", "server 10.0.0.7 10.0.1.2:502", "writer 10.0.0.7 10.0.1.2:502",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asset events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	s := inv.Snapshot()
	p := s.Pairs[2] // 10.0.0.9 -> 10.0.1.1:502 sorts after 10.0.0.7's two
	if p.Client != "10.0.0.9" || p.Read["holding"] != "0-14" || p.Written["holding"] != "100-101,300" || p.Writes != 2 || p.Requests != 4 {
		t.Fatalf("pair %+v", p)
	}
	if !inv.Changed() || inv.Changed() {
		t.Fatal("Changed: want true once, then false")
	}
	again := wire("10.0.0.9:4000", "10.0.1.1:502", 3, 2, 3)
	inv.Observe(&again, found)
	if inv.Changed() {
		t.Fatal("a request that adds nothing new changed the inventory")
	}
}

// TestSaveLoad: an inventory saved and loaded goes on as before: the same
// JSON, and nothing it knew is new again.
func TestSaveLoad(t *testing.T) {
	inv := New()
	ev := wire("10.0.0.9:4000", "10.0.1.1:502", 16, 100, 2)
	ev.Objects = []plcwatch.DeviceObject{{ID: 0, Value: "Acme"}, {ID: 1, Value: "PLC-9"}, {ID: 2, Value: "v1.2"}}
	inv.Observe(&ev, nil)
	path := filepath.Join(t.TempDir(), "inventory.json")
	if err := inv.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(inv)
	b, _ := json.Marshal(back)
	if !bytes.Equal(a, b) {
		t.Fatalf("after load:\n%s\nwant\n%s", b, a)
	}
	if !strings.Contains(string(a), `"vendor":"Acme","product":"PLC-9","revision":"v1.2"`) {
		t.Errorf("identity missing: %s", a)
	}
	n := 0
	again := ev
	back.Observe(&again, func(*plcwatch.Event) { n++ })
	if n != 0 {
		t.Fatalf("%d asset events for what the saved inventory knew", n)
	}
	if missing, err := Load(filepath.Join(t.TempDir(), "none.json")); err != nil || len(missing.Servers) != 0 {
		t.Fatalf("a missing file: %v %v", missing, err)
	}
}

// TestSpansBounded: a sweep over every other address keeps at most
// maxSpans ranges, each touched address inside one.
func TestSpansBounded(t *testing.T) {
	var s spans
	for a := 0; a < 2000; a += 2 {
		s.add(uint16(a), uint16(a))
	}
	if len(s.s) != maxSpans {
		t.Fatalf("%d spans, want %d", len(s.s), maxSpans)
	}
	for a := 0; a < 2000; a += 2 {
		in := false
		for _, r := range s.s {
			in = in || (r.lo <= uint16(a) && uint16(a) <= r.hi)
		}
		if !in {
			t.Fatalf("address %d lost", a)
		}
	}
	back, err := parseSpans(string(s.appendText(nil)))
	if err != nil || len(back.s) != len(s.s) {
		t.Fatalf("parse: %v, %d spans", err, len(back.s))
	}
	for _, bad := range []string{"x", "5-3", "70000"} {
		if _, err := parseSpans(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// BenchmarkObserve is the inventory's cost per wire event of a known
// connection: the daemon and replay with rules pay it for every request.
func BenchmarkObserve(b *testing.B) {
	inv := New()
	ev := wire("10.0.0.9:4000", "10.0.1.1:502", 3, 0, 10)
	ev.Conn = 7
	inv.Observe(&ev, nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		inv.Observe(&ev, nil)
	}
}

// TestForAssetsGivesTheSameEvents: the inventory replay keeps for op asset
// rules raises the asset events the full one does.
func TestForAssetsGivesTheSameEvents(t *testing.T) {
	evs := []plcwatch.Event{
		wire("10.0.0.9:4000", "10.0.1.1:502", 3, 0, 10),
		wire("10.0.0.9:4000", "10.0.1.1:502", 3, 0, 10),
		wire("10.0.0.9:4000", "10.0.1.1:502", 16, 100, 2),
		wire("10.0.0.9:4000", "10.0.1.1:502", 16, 100, 2),
		wire("10.0.0.7:4000", "10.0.1.2:502", 6, 0, 1),
	}
	for i := range evs {
		evs[i].Conn = uint64(1 + i/4)
	}
	var full, lite []string
	a, b := New(), NewForAssets()
	for i := range evs {
		a.Observe(&evs[i], func(ev *plcwatch.Event) { full = append(full, ev.Asset+" "+ev.Client.String()) })
		b.Observe(&evs[i], func(ev *plcwatch.Event) { lite = append(lite, ev.Asset+" "+ev.Client.String()) })
	}
	if strings.Join(full, ",") != strings.Join(lite, ",") || len(full) != 6 {
		t.Fatalf("full %v\nfor assets %v", full, lite)
	}
}
