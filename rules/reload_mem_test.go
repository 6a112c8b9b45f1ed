package rules

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// TestReloadMemory reports (it does not assert: the figure depends on the
// Go version and the machine) the live heap of a 10,000-rule set loaded
// and running, then after one reload of the same files, and the peak heap
// the reload reached — issue 8 §4: a reload must not hold two full copies
// longer than needed. Run it with -v to see the figures:
//
//	go test ./rules -run TestReloadMemory -v
//
// PLCWATCH_RULES_OUT=FILE also writes the generated rule file, for a
// measurement with the daemon (plcwatch run, then SIGHUP).
func TestReloadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 10,000 rules twice")
	}
	const n = 10000
	path := writeManyRules(t, n, false)
	if out := os.Getenv("PLCWATCH_RULES_OUT"); out != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := os.Stat(path)
	base := liveHeap()
	set, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set, Options{}, func(*plcwatch.Alert) {})
	set = nil
	loaded := liveHeap()

	// The peak: sample the heap in use while the new set is loaded and
	// swapped in, as the daemon does (load beside the running set, then
	// Reload between two events).
	var peak uint64
	var mu sync.Mutex
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	next, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e.Reload(next)
	next = nil
	close(stop)
	<-done
	sample()
	reloaded := liveHeap()
	runtime.KeepAlive(e)
	t.Logf("%d rules (%d KB file): live heap %.1f MB loaded, %.1f MB after one reload; heap in use peaked at %.1f MB during the reload",
		n, st.Size()/1024, mb(loaded-base), mb(reloaded-base), mb(peak-base))
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mb(b uint64) float64 { return float64(int64(b)) / (1 << 20) }
