package agent

import (
	"encoding/json"
	"net/http"
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
	found     plcwatch.Emit // the engine's Process, bound once (a method value per event allocates)
}

// newKeeper loads the saved inventory (a missing file is an empty one).
func newKeeper(cfg *Config) (*keeper, error) {
	k := &keeper{file: cfg.Inventory.File, every: cfg.Inventory.PublishEvery}
	var err error
	if k.file != "" {
		if k.inv, err = inventory.Load(k.file); err != nil {
			return nil, err
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
	if k.inv.Changed() {
		k.dirty = true
	}
}

// tick publishes (retained), serves and saves a changed inventory, at most
// every publish_every.
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
		if err := k.inv.Save(k.file); err != nil {
			a.log.Error("saving the inventory failed", "err", err)
		}
	}
}

func (k *keeper) snapshot() []byte {
	b, _ := json.Marshal(k.inv)
	k.json.Store(&b)
	k.invOver.Store(k.inv.Overflow)
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
		"Servers, clients, pairs, address ranges and nodes the passive inventory did not keep because a bound was hit.", nil, nil)
)

// keeperMetrics exports the process image's and the inventory's bounds.
type keeperMetrics struct{ k *keeper }

func (m keeperMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descImageFull
	ch <- descInventoryOverflow
}

func (m keeperMetrics) Collect(ch chan<- prometheus.Metric) {
	var full uint64
	if f := m.k.imageFull.Load(); f != nil {
		full = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(descImageFull, prometheus.CounterValue, float64(full))
	ch <- prometheus.MustNewConstMetric(descInventoryOverflow, prometheus.CounterValue, float64(m.k.invOver.Load()))
}
