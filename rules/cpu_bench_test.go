package rules

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"syscall"
	"testing"

	"github.com/plcwatch/plcwatch"
)

// TestEvaluateCPU reports the thread CPU time per quiet event (not wall
// time: the figure holds on a busy machine). PLCWATCH_CPU_BENCH=1 runs it.
func TestEvaluateCPU(t *testing.T) {
	if os.Getenv("PLCWATCH_CPU_BENCH") == "" {
		t.Skip("PLCWATCH_CPU_BENCH=1 runs it")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() int64 {
		var ru syscall.Rusage
		syscall.Getrusage(1, &ru) // RUSAGE_THREAD
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	for _, n := range []int{10, 1000, 10000} {
		set := manyRules(t, n)
		for k, ev := range quietEvents(set) {
			e := NewEngine(set, Options{}, func(*plcwatch.Alert) {})
			const iters = 5_000_000
			var runs []float64
			for r := 0; r < 7; r++ {
				c0 := cpu()
				for i := 0; i < iters; i++ {
					e.Process(&ev)
				}
				runs = append(runs, float64(cpu()-c0)/iters)
			}
			sort.Float64s(runs)
			fmt.Printf("cpu rules=%d/%s %.1f ns/event (median of 7 × %d)\n", n, []string{"read", "write-empty-block", "write-busy-block"}[k], runs[3], iters)
		}
	}
}
