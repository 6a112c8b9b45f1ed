package inventory

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch/collectors/capture"
)

// truth is what tshark's fields say of a capture: servers (ip:port),
// clients, units per server, and function codes with counts per
// client→server pair, from the frames sent to port 502 (queries) and from
// it (responses).
type truth struct {
	servers, clients map[string]bool
	units            map[string]map[int]bool
	functions        map[string]map[string]uint64 // "client -> server" → fc → queries
}

// readTruth reads a truth file of ../shared/pcaps/truth (README.md there:
// tshark 4.0.17 fields, one row per frame, | between the ADUs of a frame).
func readTruth(t *testing.T, path string) truth {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := truth{servers: map[string]bool{}, clients: map[string]bool{}, units: map[string]map[int]bool{}, functions: map[string]map[string]uint64{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var col map[string]int
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "\t")
		if col == nil {
			col = map[string]int{}
			for i, c := range cells {
				col[c] = i
			}
			continue
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(cells) {
				return cells[i]
			}
			return ""
		}
		src, dst := get("ip.src")+get("ipv6.src"), get("ip.dst")+get("ipv6.dst")
		if strings.Contains(src, "|") || strings.Contains(dst, "|") {
			continue // tunnelled: not what a gateway sees
		}
		sp, dp := get("tcp.srcport"), get("tcp.dstport")
		units, fcs := strings.Split(get("mbtcp.unit_id"), "|"), strings.Split(get("modbus.func_code"), "|")
		if dp == "502" {
			server := netip.AddrPortFrom(netip.MustParseAddr(dst), 502).String()
			tr.servers[server], tr.clients[src] = true, true
			pair := src + " -> " + server
			if tr.functions[pair] == nil {
				tr.functions[pair] = map[string]uint64{}
			}
			if tr.units[server] == nil {
				tr.units[server] = map[int]bool{}
			}
			for i, fc := range fcs {
				if fc == "" {
					continue
				}
				tr.functions[pair][fc]++
				if i < len(units) {
					u, _ := strconv.Atoi(units[i])
					tr.units[server][u] = true
				}
			}
		} else if sp == "502" && get("modbus.func_code") != "" {
			tr.servers[netip.AddrPortFrom(netip.MustParseAddr(src), 502).String()], tr.clients[dst] = true, true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestInventoryAgreesWithTshark: the inventory of every Modbus capture of
// the shared set has the servers, clients, units and function codes per
// pair that tshark's fields give (iti_ModbusTCP: one master, 13 slaves).
func TestInventoryAgreesWithTshark(t *testing.T) {
	// The captures copied into testdata (CI has them), and those of the
	// shared folder next to the checkout when it is there.
	truthOf := map[string]string{}
	var pcaps []string
	for _, root := range []string{filepath.Join("..", "testdata", "pcaps"), filepath.Join("..", "..", "shared", "pcaps")} {
		found, _ := filepath.Glob(filepath.Join(root, "modbus", "*.pcap"))
		for _, p := range found {
			name := strings.TrimSuffix(filepath.Base(p), ".pcap")
			if _, ok := truthOf[name]; !ok {
				truthOf[name] = filepath.Join(root, "truth", name+".tsv")
				pcaps = append(pcaps, p)
			}
		}
	}
	if len(pcaps) < 16 {
		t.Fatalf("%d captures found, want at least the 16 of testdata/pcaps/modbus", len(pcaps))
	}
	for _, path := range pcaps {
		name := strings.TrimSuffix(filepath.Base(path), ".pcap")
		t.Run(name, func(t *testing.T) {
			want := readTruth(t, truthOf[name])
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			inv, _, err := ReadCapture(context.Background(), f, capture.Config{}, nil, nil)
			if inv == nil {
				t.Fatal(err)
			}
			got := inv.Snapshot()
			gotServers, gotClients := map[string]bool{}, map[string]bool{}
			gotUnits := map[string]map[int]bool{}
			for _, s := range got.Servers {
				gotServers[s.Address] = true
				gotUnits[s.Address] = map[int]bool{}
				for _, u := range s.Units {
					gotUnits[s.Address][int(u)] = true
				}
			}
			for _, c := range got.Clients {
				gotClients[c.Address] = true
			}
			gotFuncs := map[string]map[string]uint64{}
			for _, p := range got.Pairs {
				gotFuncs[p.Client+" -> "+p.Server] = p.Functions
			}
			same(t, "servers", keys(gotServers), keys(want.servers))
			same(t, "clients", keys(gotClients), keys(want.clients))
			for s, units := range want.units {
				same(t, "units of "+s, keysInt(gotUnits[s]), keysInt(units))
			}
			same(t, "pairs", keys(gotFuncs), keys(want.functions))
			for fix, n := range disagreements[name] {
				want.functions[fix.pair][fix.fc] += n
			}
			for pair, fcs := range want.functions {
				if !maps.Equal(gotFuncs[pair], fcs) {
					t.Errorf("%s: functions %v, tshark %v", pair, gotFuncs[pair], fcs)
				}
			}
			if name == "iti_ModbusTCP" && (len(got.Clients) != 1 || len(got.Servers) != 13) {
				t.Errorf("iti_ModbusTCP: %d clients and %d servers, want 1 master and 13 slaves", len(got.Clients), len(got.Servers))
			}
		})
	}
}

// disagreements are the requests plcwatch decodes and tshark does not
// (collectors/capture/truth_test.go says why plcwatch is right on each).
var disagreements = map[string]map[struct{ pair, fc string }]uint64{
	// Frame 1131 retransmits 12 bytes and carries four new FC 4 requests
	// that tshark does not dissect.
	"iti_mb2": {{"141.81.0.10 -> 141.81.0.86:502", "4"}: 4},
	// Frame 7 carries a whole FC 34 ADU that tshark takes as the rest of
	// the stray bytes before it.
	"zeek_fuzz-72": {{"192.168.66.235 -> 166.161.16.230:502", "34"}: 1},
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func keysInt(m map[int]bool) []int { return slices.Sorted(maps.Keys(m)) }

func same[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: %v, tshark %v", what, got, want)
	}
}

var _ = fmt.Sprint
