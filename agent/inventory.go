package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/modbus"
	"github.com/plcwatch/plcwatch/inventory"
	"github.com/plcwatch/plcwatch/rules"
)

// keeper is the daemon's side of the passive inventory and the process
// image (docs/inventory.md, docs/correlation.md). The inventory lives in
// the rules goroutine with the engine; readers get its JSON, made when it
// changes, at most every inventory.publish_every.
type keeper struct {
	inv       *inventory.Inventory
	file      string
	every     time.Duration
	dirty     bool // changed since the last publish
	lastPub   time.Time
	json      atomic.Pointer[[]byte]
	imageFull atomic.Pointer[func() uint64]
	invOver   atomic.Uint64
	invEvict  atomic.Uint64
	found     plcwatch.Emit // the engine's Process, bound once (a method value per event allocates)
}

// newKeeper loads the saved inventory (a missing file is an empty one; a
// damaged one is moved aside to FILE.bad with a warning, and the
// inventory starts empty: docs/inventory.md).
func newKeeper(cfg *Config, log *slog.Logger) (*keeper, error) {
	k := &keeper{file: cfg.Inventory.File, every: cfg.Inventory.PublishEvery}
	if k.file != "" {
		var damaged error
		if k.inv, damaged = inventory.LoadOrReset(k.file); damaged != nil {
			log.Warn("the saved inventory is damaged: moved aside, starting an empty one", "file", k.file, "moved_to", k.file+".bad", "err", damaged)
		}
	} else {
		k.inv = inventory.New()
	}
	k.snapshot()
	return k, nil
}

// decoders maps every polled tag to its decoder, for the process image's
// engineering values.
func decoders(devices []modbus.Device) func(device, tag string) rules.Decoder {
	byDevice := map[string]map[string]func([]byte) (float64, bool){}
	for i := range devices {
		byDevice[devices[i].Name] = devices[i].Decoders()
	}
	return func(device, tag string) rules.Decoder {
		if f := byDevice[device][tag]; f != nil {
			return f
		}
		return nil
	}
}

// observe adds a wire event to the inventory; what it finds new goes
// through the rules as an op asset event.
func (k *keeper) observe(ev *plcwatch.Event, engine *rules.Engine) {
	if ev.Source != plcwatch.Wire {
		return
	}
	if k.found == nil {
		k.found = engine.Process
	}
	k.inv.Observe(ev, k.found)
	// Counts and last-seen times count too: a stable site's inventory
	// must not freeze at its last new entry (published and saved at
	// most every publish_every, and at stop).
	if k.inv.Changed() || k.inv.Seen() {
		k.dirty = true
	}
}

// tick publishes (retained), serves and saves an inventory that changed
// (new entries, or only counts and last-seen times), at most every
// publish_every.
func (k *keeper) tick(now time.Time, a *Agent) {
	if !k.dirty || k.every == 0 || now.Sub(k.lastPub) < k.every {
		return
	}
	k.flush(a)
	k.lastPub = now
}

// flush makes the inventory's JSON, publishes it retained and saves it.
func (k *keeper) flush(a *Agent) {
	if !k.dirty {
		return
	}
	k.dirty = false
	b := k.snapshot()
	if k.every > 0 {
		a.pub.Retain(a.cfg.MQTT.TopicPrefix+"/inventory", b)
	}
	if k.file != "" {
		if err := inventory.SaveJSON(k.file, b); err != nil { // b: made once for both
			a.log.Error("saving the inventory failed", "err", err)
		}
	}
}

func (k *keeper) snapshot() []byte {
	b, _ := json.Marshal(k.inv)
	k.json.Store(&b)
	k.invOver.Store(k.inv.Overflow)
	k.invEvict.Store(k.inv.Evicted)
	return b
}

// serveInventory is GET /inventory: the inventory as of its last publish.
func (k *keeper) serveInventory(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if b := k.json.Load(); b != nil {
		w.Write(*b)
	}
}

var (
	descImageFull = prometheus.NewDesc("plcwatch_process_image_full_total",
		"Polls of tags the process image had no room for (docs/correlation.md): they are not correlated with the wire.", nil, nil)
	descInventoryOverflow = prometheus.NewDesc("plcwatch_inventory_overflow_total",
		"Address ranges, nodes and names the passive inventory did not keep because a bound was hit.", nil, nil)
	descInventoryEvicted = prometheus.NewDesc("plcwatch_inventory_evicted_total",
		"Servers, clients and pairs the passive inventory evicted (never answered first, then least recently seen) to make room for new ones.", nil, nil)
)

// keeperMetrics exports the process image's and the inventory's bounds.
type keeperMetrics struct{ k *keeper }

func (m keeperMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descImageFull
	ch <- descInventoryOverflow
	ch <- descInventoryEvicted
}

func (m keeperMetrics) Collect(ch chan<- prometheus.Metric) {
	var full uint64
	if f := m.k.imageFull.Load(); f != nil {
		full = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(descImageFull, prometheus.CounterValue, float64(full))
	ch <- prometheus.MustNewConstMetric(descInventoryOverflow, prometheus.CounterValue, float64(m.k.invOver.Load()))
	ch <- prometheus.MustNewConstMetric(descInventoryEvicted, prometheus.CounterValue, float64(m.k.invEvict.Load()))
}

// loadBaseline reads the baseline file as rules.LoadBaseline does; a
// damaged one (not JSON, truncated, empty) does not stop a monitoring
// agent: it is moved aside to FILE.bad with a warning and the baseline
// rules start learning again (docs/rules.md). A file that cannot be read
// (permissions) is still an error: it is not damaged, and moving it could
// lose a good one.
func loadBaseline(path string, log *slog.Logger) (*rules.Baseline, error) {
	b, err := rules.LoadBaseline(path)
	if err == nil {
		return b, nil
	}
	if !baselineDamaged(path) {
		return nil, err
	}
	if rerr := os.Rename(path, path+".bad"); rerr != nil {
		return nil, fmt.Errorf("%w (moving it aside: %v)", err, rerr)
	}
	log.Warn("the baseline file is damaged: moved aside, baseline rules learn again", "file", path, "moved_to", path+".bad", "err", err)
	return rules.NewBaseline(path), nil
}

// baselineDamaged reports whether path can be read but is not a
// baseline.
func baselineDamaged(path string) bool {
	_, err := os.ReadFile(path)
	return err == nil
}
