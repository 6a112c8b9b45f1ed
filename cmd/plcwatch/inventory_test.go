package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestInventoryCommand: plcwatch inventory of a real plant capture (one
// master, 13 slaves) as JSON and as a table, and its usage errors.
func TestInventoryCommand(t *testing.T) {
	const plant = "../../testdata/pcaps/modbus/iti_ModbusTCP.pcap"
	code, out, errOut := plcwatch(t, "inventory", "--pcap", plant, "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var inv struct {
		Servers []struct{ Address string }
		Clients []struct{ Address string }
		Pairs   []struct {
			Functions map[string]int
			Writes    int
		}
	}
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatalf("not JSON: %v\n%.500s", err, out)
	}
	if len(inv.Servers) != 13 || len(inv.Clients) != 1 || inv.Clients[0].Address != "141.81.0.10" || len(inv.Pairs) != 13 {
		t.Fatalf("%d servers, %d clients, %d pairs; want 13, 1 (141.81.0.10), 13", len(inv.Servers), len(inv.Clients), len(inv.Pairs))
	}
	code, out, _ = plcwatch(t, "inventory", "--pcap", plant)
	if code != 0 || !strings.Contains(out, "SERVERS (13)") || !strings.Contains(out, "141.81.0.10 -> 141.81.0.24:502") {
		t.Fatalf("table (exit %d):\n%.800s", code, out)
	}
	for _, args := range [][]string{{"inventory"}, {"inventory", "--pcap", plant, "--format", "xml"}} {
		if code, _, _ := plcwatch(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := plcwatch(t, "inventory", "--pcap", "no-such.pcap"); code != 1 {
		t.Errorf("a missing capture: exit %d, want 1", code)
	}
}
