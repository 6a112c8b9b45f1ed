package inventory

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/plcwatch/plcwatch"
)

// TestFullInventorySeesNewWriters: a full inventory makes room for a new
// client (issue 13, F6: at 4,096 clients a new writer had no entry and no
// op asset event, so inventory-new-writer could never fire); a one-way
// flood of forged, never answered requests evicts its own entries first,
// not the clients that were answered.
func TestFullInventorySeesNewWriters(t *testing.T) {
	inv := New()
	inv.maxServers, inv.maxClients, inv.maxPairs = 4, 4, 4
	var assets []string
	found := func(ev *plcwatch.Event) { assets = append(assets, ev.Asset+" "+ev.Client.Addr().String()) }
	for i := 1; i <= 3; i++ { // the site: three answered clients
		ev := wire(fmt.Sprintf("10.0.0.%d:4000", i), "10.0.1.1:502", 3, 0, 1)
		ev.Conn = uint64(i)
		inv.Observe(&ev, found)
	}
	for i := 0; i < 100; i++ { // the flood: one-way, never answered
		ev := wire(fmt.Sprintf("192.168.%d.%d:1000", i/250, i%250+1), "10.0.1.1:502", 3, 0, 1)
		ev.Unanswered, ev.Conn = plcwatch.UnansweredTimeout, uint64(100+i)
		inv.Observe(&ev, found)
	}
	assets = nil
	w := wire("10.66.66.66:5000", "10.0.1.1:502", 6, 7, 1)
	w.Conn = 1000
	inv.Observe(&w, found)
	if !slices.Equal(assets, []string{"client 10.66.66.66", "writer 10.66.66.66"}) {
		t.Fatalf("asset events of a new writer to a full inventory: %v", assets)
	}
	s := inv.Snapshot()
	var clients []string
	for _, c := range s.Clients {
		clients = append(clients, c.Address)
	}
	if !slices.Equal(clients, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.66.66.66"}) {
		t.Errorf("clients %v: the flood evicted answered clients", clients)
	}
	if len(s.Pairs) != 4 || inv.Evicted != 2*100 || len(inv.clients) != 4 || len(inv.pairs) != 4 {
		t.Errorf("pairs %d, evicted %d (want 200: the flood's clients and pairs), clients %d", len(s.Pairs), inv.Evicted, len(inv.clients))
	}
	// An answered flood (a busy site) evicts the least recently seen.
	for i := 0; i < 4; i++ {
		ev := wire(fmt.Sprintf("172.16.0.%d:1000", i+1), "10.0.1.1:502", 3, 0, 1)
		ev.Time = ev.Time.Add(1e9)
		inv.Observe(&ev, nil)
	}
	if _, ok := inv.clients[netip.MustParseAddr("10.66.66.66")]; ok {
		t.Error("the least recently seen client is still there")
	}
	// A known connection whose entries were evicted is not counted on
	// them (the connection cache forgets them).
	again := w
	inv.Observe(&again, found)
	if c := inv.clients[netip.MustParseAddr("10.66.66.66")]; c == nil {
		t.Error("a client back after eviction has no entry")
	}
}
