package rules

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"syscall"
	"testing"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// TestEvaluateCPU reports the thread CPU time per quiet event (not wall
// time: the figure holds on a busy machine). PLCWATCH_CPU_BENCH=1 runs it.
func TestEvaluateCPU(t *testing.T) {
	if os.Getenv("PLCWATCH_CPU_BENCH") == "" {
		t.Skip("PLCWATCH_CPU_BENCH=1 runs it")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := threadCPU
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

// TestDefaultRulesCPU reports the thread CPU time per event of the shipped
// rule set on synthetic polling traffic (3% writes), as
// BenchmarkDefaultRulesPoll does in wall time. PLCWATCH_CPU_BENCH=1 runs it.
func TestDefaultRulesCPU(t *testing.T) {
	if os.Getenv("PLCWATCH_CPU_BENCH") == "" {
		t.Skip("PLCWATCH_CPU_BENCH=1 runs it")
	}
	set, err := Load("../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	o := pcapgen.DefaultPoll
	o.Packets = 200000
	pcapgen.Poll(w, o)
	w.Flush()
	var evs []plcwatch.Event
	var cfg capture.Config
	cfg.Defaults()
	if err := capture.Read(context.Background(), &buf, capture.NewEngine(cfg, func(ev *plcwatch.Event) { evs = append(evs, *ev) })); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	e := NewEngine(set, Options{}, func(*plcwatch.Alert) {})
	for i := range evs {
		e.Process(&evs[i]) // warm up: every group exists
	}
	var runs []float64
	for r := 0; r < 7; r++ {
		c0 := threadCPU()
		for i := range evs {
			e.Process(&evs[i])
		}
		runs = append(runs, float64(threadCPU()-c0)/float64(len(evs)))
	}
	sort.Float64s(runs)
	fmt.Printf("cpu default rules on polling: %.1f ns/event (median of 7 × %d events)\n", runs[3], len(evs))
}

func threadCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return ru.Utime.Nano() + ru.Stime.Nano()
}
