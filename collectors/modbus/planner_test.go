package modbus

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/plcwatch/plcwatch"
)

// feasible reports whether one request can serve every tag of block: one
// unit and table, no hole wider than maxGap between them, and the span
// within the size limit.
func feasible(specs []spec, block []int, lim limits) bool {
	if lim.onePerTag && len(block) > 1 {
		return false
	}
	b := slices.Clone(block)
	slices.SortFunc(b, func(x, y int) int { return int(specs[x].address) - int(specs[y].address) })
	first := &specs[b[0]]
	lo, end := int(first.address), int(first.address)+int(first.count)
	for _, i := range b[1:] {
		s := &specs[i]
		if s.unit != first.unit || s.table != first.table || int(s.address)-end > lim.maxGap {
			return false
		}
		end = max(end, int(s.address)+int(s.count))
	}
	limit := lim.maxRegisters
	if first.table == plcwatch.TableCoil || first.table == plcwatch.TableDiscrete {
		limit = lim.maxBits
	}
	return end-lo <= limit
}

// mayGrow reports whether block could still become feasible as tags join
// it: its unit, table and span already fit (a hole may yet be filled, so
// gaps are only judged on whole blocks).
func mayGrow(specs []spec, block []int, lim limits) bool {
	if lim.onePerTag && len(block) > 1 {
		return false
	}
	first := &specs[block[0]]
	lo, hi := 1<<20, 0
	for _, i := range block {
		s := &specs[i]
		if s.unit != first.unit || s.table != first.table {
			return false
		}
		lo, hi = min(lo, int(s.address)), max(hi, int(s.address)+int(s.count))
	}
	limit := lim.maxRegisters
	if first.table == plcwatch.TableCoil || first.table == plcwatch.TableDiscrete {
		limit = lim.maxBits
	}
	return hi-lo <= limit
}

// optimum is the fewest requests of any plan, by trying every partition
// of the tags into blocks (restricted growth strings), pruned by the best
// found so far.
func optimum(specs []spec, lim limits) int {
	n := len(specs)
	best := n + 1
	blocks := make([][]int, 0, n)
	var rec func(i int)
	rec = func(i int) {
		if len(blocks) >= best {
			return
		}
		if i == n {
			for _, b := range blocks {
				if !feasible(specs, b, lim) {
					return
				}
			}
			best = len(blocks)
			return
		}
		for b := range blocks {
			blocks[b] = append(blocks[b], i)
			if mayGrow(specs, blocks[b], lim) {
				rec(i + 1)
			}
			blocks[b] = blocks[b][:len(blocks[b])-1]
		}
		blocks = append(blocks, []int{i})
		rec(i + 1)
		blocks = blocks[:len(blocks)-1]
	}
	rec(0)
	return best
}

// checkPlan verifies that a plan serves every tag exactly once, within the
// limits, each tag wholly inside its request.
func checkPlan(t *testing.T, specs []spec, lim limits, reqs []request) {
	t.Helper()
	served := make([]int, len(specs))
	for _, r := range reqs {
		if !feasible(specs, r.tags, lim) {
			t.Fatalf("request %+v is not feasible", r)
		}
		for _, i := range r.tags {
			s := &specs[i]
			served[i]++
			if s.unit != r.unit || s.table != r.table || s.address < r.address || int(s.address)+int(s.count) > int(r.address)+int(r.count) {
				t.Fatalf("tag %+v is not inside request %+v", s, r)
			}
		}
		// The request reads nothing beyond its tags.
		lo, hi := 1<<20, 0
		for _, i := range r.tags {
			lo = min(lo, int(specs[i].address))
			hi = max(hi, int(specs[i].address)+int(specs[i].count))
		}
		if lo != int(r.address) || hi != int(r.address)+int(r.count) {
			t.Fatalf("request %+v reads beyond its tags [%d,%d)", r, lo, hi)
		}
	}
	for i, n := range served {
		if n != 1 {
			t.Fatalf("tag %d served %d times", i, n)
		}
	}
}

func TestPlanIsOptimalOnRandomMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tables := []plcwatch.Table{plcwatch.TableHolding, plcwatch.TableInput, plcwatch.TableCoil}
	for trial := range 3000 {
		n := 1 + rng.IntN(9)
		lim := limits{maxRegisters: 2 + rng.IntN(12), maxBits: 2 + rng.IntN(12), maxGap: rng.IntN(4)}
		if trial%50 == 0 {
			lim.onePerTag = true
		}
		span := 4 + rng.IntN(40)
		specs := make([]spec, n)
		for i := range specs {
			s := &specs[i]
			s.unit = uint8(1 + rng.IntN(2)*rng.IntN(2)) // mostly one unit
			s.table = tables[rng.IntN(len(tables))]
			s.count = 1
			if s.table != plcwatch.TableCoil {
				s.count = uint16([]int{1, 1, 2, 2, 4, 1 + rng.IntN(lim.maxRegisters)}[rng.IntN(6)])
				s.count = min(s.count, uint16(lim.maxRegisters))
			}
			s.address = uint16(rng.IntN(span))
		}
		reqs := plan(specs, lim)
		checkPlan(t, specs, lim, reqs)
		if want := optimum(specs, lim); len(reqs) != want {
			t.Fatalf("trial %d: %d requests, the optimum is %d\nlimits %+v\nspecs %+v\nplan %+v", trial, len(reqs), want, lim, specs, reqs)
		}
	}
}

func TestPlanCases(t *testing.T) {
	h := func(addr, count int) spec {
		return spec{unit: 1, table: plcwatch.TableHolding, address: uint16(addr), count: uint16(count)}
	}
	tests := []struct {
		name  string
		specs []spec
		lim   limits
		want  [][2]int // address, count of each request
	}{
		{"adjacent merge", []spec{h(0, 2), h(2, 2), h(4, 1)}, limits{maxRegisters: 125}, [][2]int{{0, 5}}},
		{"gap beyond max_gap splits", []spec{h(0, 1), h(3, 1)}, limits{maxRegisters: 125, maxGap: 1}, [][2]int{{0, 1}, {3, 1}}},
		{"gap within max_gap merges", []spec{h(0, 1), h(3, 1)}, limits{maxRegisters: 125, maxGap: 2}, [][2]int{{0, 4}}},
		{"125 registers is one request", []spec{h(0, 100), h(100, 25)}, limits{maxRegisters: 125}, [][2]int{{0, 125}}},
		{"126 registers are two", []spec{h(0, 100), h(100, 26)}, limits{maxRegisters: 125}, [][2]int{{0, 100}, {100, 26}}},
		{"overlapping tags share", []spec{h(10, 2), h(10, 1), h(11, 1)}, limits{maxRegisters: 125}, [][2]int{{10, 2}}},
		{"one per tag", []spec{h(0, 1), h(1, 1)}, limits{maxRegisters: 125, onePerTag: true}, [][2]int{{0, 1}, {1, 1}}},
		{"units apart", []spec{h(0, 1), {unit: 2, table: plcwatch.TableHolding, address: 1, count: 1}}, limits{maxRegisters: 125}, [][2]int{{0, 1}, {1, 1}}},
		{"2000 coils", []spec{{unit: 1, table: plcwatch.TableCoil, address: 0, count: 1}, {unit: 1, table: plcwatch.TableCoil, address: 1999, count: 1}},
			limits{maxRegisters: 125, maxBits: 2000, maxGap: 2000}, [][2]int{{0, 2000}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reqs := plan(tc.specs, tc.lim)
			checkPlan(t, tc.specs, tc.lim, reqs)
			var got [][2]int
			for _, r := range reqs {
				got = append(got, [2]int{int(r.address), int(r.count)})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("requests %v, want %v", got, tc.want)
			}
		})
	}
}

func BenchmarkPlan(b *testing.B) {
	specs := make([]spec, 100)
	for i := range specs {
		specs[i] = spec{unit: 1, table: plcwatch.TableHolding, address: uint16(3 * i), count: 2}
	}
	for b.Loop() {
		plan(specs, limits{maxRegisters: 125, maxGap: 1})
	}
}
