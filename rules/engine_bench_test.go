package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// manyRules writes n rules of the kinds a large site has — protected
// register ranges, per-device function allowlists, writer allowlists,
// thresholds and expressions on registers — and loads them.
func manyRules(tb testing.TB, n int) *Set { return rulesOfKinds(tb, n, false) }

// rulesOfKinds adds, when flagged, rules about malformed, exception and
// orphan events.
func rulesOfKinds(tb testing.TB, n int, flagged bool) *Set {
	set, err := Load(writeManyRules(tb, n, flagged))
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// writeManyRules writes the rules rulesOfKinds loads and returns the file.
func writeManyRules(tb testing.TB, n int, flagged bool) string {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 0; i < n; i++ {
		addr := rng.IntN(60000)
		fmt.Fprintf(&b, "  - id: r%d\n    title: rule %d\n    severity: high\n    attack: [T0855]\n", i, i)
		kinds := 5
		if flagged {
			kinds = 12
		}
		switch i % kinds {
		case 0:
			fmt.Fprintf(&b, "    match: {protocol: modbus, op: write, table: holding, address: \"%d-%d\"}\n", addr, addr+10)
		case 1:
			fmt.Fprintf(&b, "    match: {protocol: modbus, function: [5, 15], unit: %d, server: 10.1.%d.0/24}\n", 1+i%200, i%250)
		case 2:
			fmt.Fprintf(&b, "    match: {protocol: modbus, op: write, client: [\"!10.0.0.5\", \"!10.0.2.0/24\"], server: 10.2.%d.%d, register: %d}\n", i%250, 1+i%200, 400001+addr)
		case 3:
			fmt.Fprintf(&b, "    match: {protocol: modbus, op: write, table: coil, address: %d}\n    threshold: {count: 20, window: 10s}\n", addr)
		case 4:
			fmt.Fprintf(&b, "    match: {protocol: modbus, op: write, register: %d}\n    when: \"any(values, # > 500)\"\n", 400001+addr)
		case 5:
			fmt.Fprintf(&b, "    match: {malformed: %v, unit: %d}\n", i%2 == 0, i%256)
		case 6:
			fmt.Fprintf(&b, "    match: {exception: [%d, %d], orphan: %v}\n", i%3, 1+i%11, i%2 == 0)
		case 7:
			fmt.Fprintf(&b, "    match: {exception: %v, table: holding, address: \"%d-%d\"}\n", i%2 == 0, addr, addr+500)
		case 8:
			fmt.Fprintf(&b, "    match: {protocol: modbus, exception: %v, orphan: %v}\n", i%3 == 0, i%4 == 0)
		case 9:
			fmt.Fprintf(&b, "    match: {malformed: %v}\n", i%3 == 0)
		case 10:
			fmt.Fprintf(&b, "    match: {source: poll, op: %s}\n", []string{"status", "read", "[read, status]"}[i/12%3])
		case 11:
			fmt.Fprintf(&b, "    match: {source: wire, protocol: modbus, op: [write, status], unit: %d}\n", i%256)
		}
	}
	dir := tb.TempDir()
	path := filepath.Join(dir, "many.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// quietEvents are events no rule of set matches: a read of input registers
// (no rule is about reads), a write to holding registers in the last block,
// which no random range reaches, and a write inside the busiest address
// block that overlaps none of its ranges (its candidates are evaluated and
// rejected).
func quietEvents(set *Set) []plcwatch.Event {
	base := plcwatch.Event{
		Time: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus,
		Client: netip.MustParseAddrPort("10.0.0.5:40000"), Server: netip.MustParseAddrPort("10.9.9.9:502"), Unit: 1,
	}
	read := base
	read.Op, read.Function, read.Table, read.Address, read.Count = plcwatch.OpRead, 4, plcwatch.TableInput, 100, 10
	write := base
	write.Op, write.Function, write.Table, write.Address, write.Count = plcwatch.OpWrite, 16, plcwatch.TableHolding, 65530, 4
	write.Values.SetWords([]byte{0, 1, 0, 2, 0, 3, 0, 4})
	busy := write
	busy.Address, busy.Count = busyGap(set)
	return []plcwatch.Event{read, write, busy}
}

// busyGap finds the FC 16 address block with the most rules and an address
// in it that none of them covers.
func busyGap(set *Set) (uint16, uint16) {
	b := set.index.byFunc[16]
	best := 0
	for blk := range b.blocks {
		if len(b.blocks[blk]) > len(b.blocks[best]) {
			best = blk
		}
	}
	for a := best << 8; a < best<<8+256; a++ {
		ev := plcwatch.Event{Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpWrite, Function: 16, Table: plcwatch.TableHolding, Address: uint16(a), Count: 1}
		hit := false
		for _, ri := range b.blocks[best] {
			if set.enabled[ri].match.overlaps(&ev) {
				hit = true
				break
			}
		}
		if !hit {
			return uint16(a), 1
		}
	}
	panic("no gap in the busiest block")
}

func TestQuietEventsDoNotAllocate(t *testing.T) {
	set := manyRules(t, 1000)
	e := NewEngine(set, Options{}, func(a *plcwatch.Alert) { t.Fatalf("alert on a quiet event: %s", a.AppendJSON(nil)) })
	evs := quietEvents(set)
	for i := range evs {
		e.Process(&evs[i]) // warm up
	}
	for _, ev := range evs {
		if allocs := testing.AllocsPerRun(1000, func() { e.Process(&ev) }); allocs != 0 {
			t.Errorf("%s to %s: %.1f allocations per event, want 0", ev.Op, ev.Table, allocs)
		}
	}
}

func TestIndexDoesNotMissMatches(t *testing.T) {
	// Every rule of a large set must still be found by the events it is
	// about: compare the index against evaluating every rule.
	set := rulesOfKinds(t, 800, true)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		ev := plcwatch.Event{Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Unit: uint8(rng.IntN(256)),
			Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(3)), byte(rng.IntN(256))}), 40000),
			Server: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(1 + rng.IntN(2)), byte(rng.IntN(250)), byte(rng.IntN(256))}), 502)}
		ev.Function = []uint8{1, 3, 5, 6, 15, 16, 22, 23}[rng.IntN(8)]
		ev.Op = opOfForTest(ev.Function)
		ev.Table = tableOfForTest(ev.Function)
		ev.Address, ev.Count = uint16(rng.IntN(65536)), uint16(1+rng.IntN(100))
		if rng.IntN(4) == 0 {
			ev.Malformed = "PDU shorter than its function needs"
		}
		if rng.IntN(3) == 0 {
			ev.Exception = uint8(1 + rng.IntN(11))
		}
		ev.Orphan = rng.IntN(5) == 0
		switch rng.IntN(6) {
		case 0: // a polled device's status
			ev = plcwatch.Event{Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpStatus, Unit: ev.Unit, Quality: "down"}
		case 1: // a polled tag
			ev.Source, ev.Client, ev.Orphan, ev.Malformed = plcwatch.Poll, netip.AddrPort{}, false, ""
			ev.Function = uint8(1 + rng.IntN(4))
			ev.Op, ev.Table = plcwatch.OpRead, tableOfForTest(ev.Function)
		}
		seen := make([]uint32, len(set.enabled))
		cand := set.index.candidates(&ev, nil, seen, 1)
		for _, ri := range cand {
			if r := set.enabled[ri]; r.match.decided && !r.match.matches(&ev) {
				t.Fatalf("rule %s is decided by the index, offered %s, and does not match it", r.ID, ev.AppendJSON(nil))
			}
		}
		for ri, r := range set.enabled {
			if r.match.matches(&ev) && !containsI32(cand, int32(ri)) {
				t.Fatalf("rule %s matches %s but the index did not offer it", r.ID, ev.AppendJSON(nil))
			}
		}
	}
}

func containsI32(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		set := manyRules(b, n)
		for k, ev := range quietEvents(set) {
			b.Run(fmt.Sprintf("rules=%d/%s", n, []string{"read", "write-empty-block", "write-busy-block"}[k]), func(b *testing.B) {
				e := NewEngine(set, Options{}, func(*plcwatch.Alert) {})
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					e.Process(&ev)
				}
			})
		}
	}
}

func opOfForTest(fc uint8) plcwatch.Op {
	if fc <= 4 {
		return plcwatch.OpRead
	}
	return plcwatch.OpWrite
}

func tableOfForTest(fc uint8) plcwatch.Table {
	switch fc {
	case 1, 5, 15:
		return plcwatch.TableCoil
	case 2:
		return plcwatch.TableDiscrete
	case 4:
		return plcwatch.TableInput
	}
	return plcwatch.TableHolding
}

// BenchmarkGroupSweep is a write sweep over addresses against a rule that
// keeps state per address: once the rule's groups are full, every event
// makes a new group and evicts one. Its cost must not grow with the bound
// (it scanned every group per event once).
func BenchmarkGroupSweep(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "r.yaml")
	os.WriteFile(path, []byte("rules:\n  - id: toggled\n    title: t\n    severity: low\n    match: {op: write}\n    change: {count: 10, window: 10s}\n"), 0o644)
	set, err := Load(path)
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(set, Options{}, func(*plcwatch.Alert) {})
	ev := plcwatch.Event{Time: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus,
		Op: plcwatch.OpWrite, Function: 6, Table: plcwatch.TableHolding, Count: 1,
		Client: netip.MustParseAddrPort("10.0.0.5:40000"), Server: netip.MustParseAddrPort("10.9.9.9:502"), Unit: 1}
	ev.Values.SetWord(1)
	for i := 0; i < DefaultMaxGroups; i++ { // fill the groups
		ev.Address, ev.Unit = uint16(i), uint8(i>>16)
		e.Process(&ev)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev.Address, ev.Unit = uint16(i), uint8(1+i>>16)
		e.Process(&ev)
	}
}
