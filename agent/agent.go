package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/agent/eventlog"
	"github.com/plcwatch/plcwatch/agent/publish"
	"github.com/plcwatch/plcwatch/agent/rotate"
	"github.com/plcwatch/plcwatch/agent/spool"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/collectors/modbus"
	"github.com/plcwatch/plcwatch/collectors/opcua"
	"github.com/plcwatch/plcwatch/rules"
)

// Version is the agent's version, for the heartbeat and /metrics; main
// sets it.
var Version = "dev"

// Agent is the plcwatch daemon: sources → rules → spool → MQTT.
type Agent struct {
	cfg      *Config
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *metrics
	live     *capture.Live
	pollers  []plcwatch.Poller // every polled device, whatever its protocol
	set      *rules.Set
	baseline *rules.Baseline
	sp       *spool.Spool
	pub      *publish.Publisher
	broker   *embeddedBroker
	names    *deviceNames
	keep     *keeper                                // the passive inventory (inventory.go)
	decoder  func(device, tag string) rules.Decoder // polled tags' decoders, for the process image
	httpLn   net.Listener
	alertLog *rotate.File
	eventLog *eventlog.Log
	events   chan plcwatch.Event
	polled   chan plcwatch.Event // pollers' events: apart, so a poll burst never fills capture's queue
	stopping chan struct{}       // closed when the sources are told to stop
	reloads  chan *rules.Set
	started  time.Time
	jsonBuf  []byte // raise's buffers; only the rules goroutine touches them
	recBuf   []byte

	ready        atomic.Bool
	accepted     atomic.Uint64 // events into the pipeline
	dropped      atomic.Uint64 // events dropped because the pipeline was full
	alerts       atomic.Uint64
	spoolErrs    atomic.Uint64
	alertLogErrs atomic.Uint64
	hits         atomic.Pointer[[]rules.RuleHits]
	rulesN       atomic.Int64
}

// New builds an agent from a validated configuration and opens everything
// that can fail — rules, spool, broker port, capture sockets, HTTP port —
// so that a wrong setup stops it before it runs half-working.
func New(cfg *Config, log *slog.Logger) (*Agent, error) {
	// The capture queue is only for capture: without interfaces nothing
	// sends to it, and its 8192 events (about 10 MB) would be carried for
	// nothing by a gateway that only polls.
	queue := cfg.Queue
	if len(cfg.Capture.Interfaces) == 0 {
		queue = 0
	}
	a := &Agent{cfg: cfg, log: log, reg: prometheus.NewRegistry(), started: time.Now(),
		events: make(chan plcwatch.Event, queue), reloads: make(chan *rules.Set, 1),
		polled: make(chan plcwatch.Event, pollQueue), stopping: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			a.closeAll()
		}
	}()
	// Check loaded the rules and the baseline already; a configuration
	// that did not go through it loads them here.
	set, baseline := cfg.ruleSet, cfg.baseline
	cfg.ruleSet, cfg.baseline = nil, nil
	var err error
	if set == nil {
		if set, err = rules.Load(cfg.Rules.Paths...); err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
	}
	a.set = set
	a.rulesN.Store(int64(len(set.Enabled())))
	if baseline == nil && cfg.Rules.BaselineFile != "" {
		if baseline, err = loadBaseline(cfg.Rules.BaselineFile, log); err != nil {
			return nil, err
		}
	}
	a.baseline = baseline
	if a.keep, err = newKeeper(cfg, log); err != nil {
		return nil, err
	}
	if a.names = cfg.names; a.names == nil {
		var conflicts []nameConflict
		if a.names, conflicts = cfg.deviceNames(); len(conflicts) > 0 {
			return nil, fmt.Errorf("%s: %s", conflicts[0].path, conflicts[0].msg)
		}
	}
	sync, _ := spool.ParseSync(cfg.Spool.Fsync)
	a.sp, err = spool.Open(spool.Options{Dir: cfg.Spool.Dir, MaxBytes: int64(cfg.Spool.MaxBytes),
		SegmentBytes: int64(cfg.Spool.SegmentBytes), Sync: sync, SyncInterval: cfg.Spool.FsyncEvery,
		MemoryBytes: int64(cfg.Spool.MemoryBytes), Logger: log.With("component", "spool")})
	if err != nil {
		return nil, err
	}
	brokers, user := cfg.MQTT.Brokers, cfg.MQTT.Username
	password, err := cfg.password()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	if len(brokers) == 0 {
		if a.broker, err = startBroker(cfg, log); err != nil {
			return nil, err
		}
		brokers, user, password, tlsCfg = []string{a.broker.url}, agentUser, a.broker.password, nil
	}
	a.metrics = newMetrics(a)
	a.reg.MustRegister(keeperMetrics{a.keep})
	var teleQoS byte // what telemetry takes of the broker's receive maximum
	if cfg.Telemetry.Enabled {
		teleQoS = byte(cfg.Telemetry.QoS)
	}
	a.pub = publish.New(publish.Config{
		Brokers: brokers, ClientID: cfg.MQTT.ClientID, Username: user, Password: password, TLS: tlsCfg,
		TopicPrefix: cfg.MQTT.TopicPrefix, QoS: byte(cfg.MQTT.QoS), KeepAlive: cfg.MQTT.KeepAlive,
		ConnectTimeout: cfg.MQTT.ConnectTimeout, PublishTimeout: cfg.MQTT.PublishTimeout,
		Window: cfg.MQTT.Window, ReceiveMaximum: cfg.MQTT.ReceiveMaximum,
		Heartbeat: cfg.MQTT.Heartbeat, HeartbeatPayload: a.heartbeat, Published: a.metrics.observePublish,
		TelemetryQoS: teleQoS, MaxAttempts: cfg.MQTT.MaxAttempts, VerifyTimeout: cfg.MQTT.VerifyTimeout, Logger: log.With("component", "mqtt"),
	}, a.sp)
	var tele func(device string, payload []byte)
	if cfg.Telemetry.Enabled {
		tele = a.telemetry
	}
	for _, d := range cfg.Modbus.Devices {
		p, err := modbus.New(d, modbus.Options{Logger: log.With("component", "modbus"), Site: cfg.Site, Gateway: cfg.Gateway, Telemetry: tele})
		if err != nil {
			return nil, err
		}
		a.pollers = append(a.pollers, p)
	}
	if len(cfg.OPCUA.Devices) > 0 {
		pki, err := opcua.OpenPKI(cfg.OPCUA.PKI)
		if err != nil {
			return nil, err
		}
		for _, d := range cfg.OPCUA.Devices {
			c, err := opcua.New(d, opcua.Options{Logger: log.With("component", "opcua"), Site: cfg.Site, Gateway: cfg.Gateway,
				Telemetry: tele, PKI: pki})
			if err != nil {
				return nil, err
			}
			a.pollers = append(a.pollers, c)
		}
	}
	// The pollers hold what they need of their devices; the agent keeps a
	// copy of the configuration without the tag lists (10,000 tags are a
	// few megabytes a gateway would carry for nothing).
	a.decoder = decoders(cfg.Modbus.Devices)
	kept := *cfg
	kept.Modbus.Devices = nil
	kept.OPCUA.Devices = nil
	a.cfg = &kept
	if len(cfg.Capture.Interfaces) > 0 {
		capCfg := cfg.Capture.Config
		capCfg.EarlyRequests = true // the rules honour Event.Stage: alerts never wait for a response (issue 9)
		if a.live, err = capture.NewLive(capCfg, log.With("component", "capture")); err != nil {
			return nil, err
		}
		if err := a.live.Open(); err != nil {
			return nil, err
		}
	}
	if cfg.HTTP.Listen != "" && cfg.HTTP.Listen != "off" {
		httpTLS, err := cfg.HTTP.TLS.serverConfig()
		if err != nil {
			return nil, fmt.Errorf("http.tls: %w", err)
		}
		if a.httpLn, err = listen(cfg.HTTP.Listen, httpTLS); err != nil {
			return nil, fmt.Errorf("http: listen %s: %w (set http.listen to another address, or off)", cfg.HTTP.Listen, err)
		}
	}
	if cfg.Alerts.Path != "" {
		if a.alertLog, err = rotate.Open(cfg.Alerts.Path, rotate.Options{MaxBytes: int64(cfg.Alerts.MaxBytes), Keep: cfg.Alerts.Keep}); err != nil {
			return nil, fmt.Errorf("alert log: %w", err)
		}
	}
	if e := cfg.Events; e.Path != "" {
		a.eventLog, err = eventlog.Open(eventlog.Config{Path: e.Path, MaxBytes: int64(e.MaxBytes), Keep: e.Keep, Ops: e.Ops,
			Protocols: e.Protocols, Sources: e.Sources, Queue: e.Queue, Logger: log.With("component", "event_log")})
		if err != nil {
			return nil, fmt.Errorf("event log: %w", err)
		}
	}
	ok = true
	return a, nil
}

// minLevel passes on records at or above a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.min}
}

func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.min} }

// Reload loads the rule files again. A set with problems is refused and the
// running one kept; a good one replaces it between two events, so no event
// is evaluated by neither.
func (a *Agent) Reload() error {
	set, err := rules.Load(a.cfg.Rules.Paths...)
	if err != nil {
		a.metrics.reloads.WithLabelValues("refused").Inc()
		LogError(a.log, "rule reload refused: the running rules stay", err)
		return err
	}
	select {
	case <-a.reloads: // an older reload not applied yet: this one wins
	default:
	}
	a.reloads <- set
	a.metrics.reloads.WithLabelValues("ok").Inc()
	a.log.Info("rules reloaded", "rules", len(set.Rules), "enabled", len(set.Enabled()))
	return nil
}

// Run runs until ctx ends, then stops in the direction of the data: the
// sources, then the rules (their last alerts spooled), then the publisher,
// which delivers what it can within the drain timeout.
func (a *Agent) Run(ctx context.Context) error {
	defer a.closeAll()
	var wg sync.WaitGroup
	httpSrv := a.serveHTTP()
	rulesDone := make(chan struct{})
	go func() {
		defer close(rulesDone)
		a.evaluate()
	}()
	srcCtx, stopSources := context.WithCancel(ctx)
	defer stopSources()
	var srcErr error
	var errMu sync.Mutex
	if a.live != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.live.Run(srcCtx, a.emit); err != nil {
				errMu.Lock()
				srcErr = err
				errMu.Unlock()
				a.log.Error("capture stopped", "err", err)
				stopSources()
			}
		}()
	}
	context.AfterFunc(srcCtx, func() { close(a.stopping) })
	for _, p := range a.pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Run(srcCtx, a.emitWait)
		}()
	}
	// The publisher says "online" and sends the first heartbeat as soon as
	// it connects: give the polled devices their first cycle first, so that
	// it does not report every device down (issue 9), but never wait long:
	// alerts raised meanwhile wait in the spool.
	a.firstCycles(srcCtx, firstCycleWait)
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		if err := a.pub.Run(pubCtx); err != nil {
			a.log.Warn("mqtt publisher stopped", "err", err)
		}
	}()
	a.ready.Store(true)
	a.log.Info("plcwatch running", "site", a.cfg.Site, "gateway", a.cfg.Gateway,
		"interfaces", a.cfg.Capture.Interfaces, "polled_devices", len(a.pollers), "rules", a.rulesN.Load(),
		"topic_prefix", a.cfg.MQTT.TopicPrefix)
	<-srcCtx.Done()
	a.ready.Store(false)
	a.log.Info("stopping: sources, then rules, then delivery")
	wg.Wait()
	close(a.events)
	close(a.polled)
	<-rulesDone
	if err := a.sp.Sync(); err != nil {
		a.log.Error("spool sync", "err", err)
	}
	a.pub.Drain()
	select {
	case <-pubDone:
	case <-time.After(a.cfg.MQTT.DrainTimeout):
		depth := a.sp.Stats().Depth
		a.log.Warn("stopping with undelivered alerts: they stay in the spool for the next start", "alerts", depth)
		stopPub()
		<-pubDone
	}
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	a.log.Info("stopped")
	errMu.Lock()
	defer errMu.Unlock()
	return srcErr
}

// pollQueue is the room for polled events between the pollers and the
// rules. Pollers wait when it is full, so it only smooths bursts (every
// device polls on the same second).
const pollQueue = 1024

// emitWait is the pollers' way into the pipeline: their own queue, so that
// the burst of a poll cycle (10,000 tags at the top of every second) never
// takes the room capture needs, and a poller waits for room (DESIGN.md)
// until the agent stops: nothing it read is dropped.
func (a *Agent) emitWait(ev *plcwatch.Event) {
	select {
	case a.polled <- *ev:
		a.accepted.Add(1)
	case <-a.stopping:
	}
}

// telemetry publishes a poll cycle's values beside the alerts.
func (a *Agent) telemetry(device string, payload []byte) {
	a.pub.Telemetry(a.cfg.MQTT.TopicPrefix+"/telemetry/"+device, payload)
}

// emit is the sources' way into the pipeline. It never blocks: a full
// pipeline drops the event and counts it, so capture never stalls the
// kernel's ring.
func (a *Agent) emit(ev *plcwatch.Event) {
	a.names.Name(ev)
	select {
	case a.events <- *ev:
		if ev.Stage != plcwatch.StageRequest { // one event per request, as replay counts them
			a.accepted.Add(1)
		}
	default:
		if n := a.dropped.Add(1); n&(n-1) == 0 { // 1, 2, 4, 8 ...: warn without flooding
			a.log.Warn("event pipeline full: events dropped", "dropped_total", n)
		}
	}
}

// evaluate is the rules goroutine: it alone owns the rule engine's state.
func (a *Agent) evaluate() {
	engine := rules.NewEngine(a.set, rules.Options{Site: a.cfg.Site, Gateway: a.cfg.Gateway, Baseline: a.baseline,
		Decoder: a.decoder}, a.raise)
	imageFull := engine.ImageFull
	a.keep.imageFull.Store(&imageFull)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastSave := time.Now()
	publishHits := func() {
		h := engine.Hits()
		a.hits.Store(&h)
	}
	// One event variable for the loop: Process takes its address, so a
	// per-iteration variable would be a heap allocation per event.
	var ev plcwatch.Event
	var ok bool
	events, polled := a.events, a.polled
	for events != nil || polled != nil {
		select {
		case ev, ok = <-events:
			if !ok {
				events = nil
				continue
			}
			if a.eventLog != nil {
				a.eventLog.Offer(&ev)
			}
			a.keep.observe(&ev, engine)
			engine.Process(&ev)
		case ev, ok = <-polled:
			if !ok {
				polled = nil
				continue
			}
			if a.eventLog != nil {
				a.eventLog.Offer(&ev)
			}
			engine.Process(&ev)
		case set := <-a.reloads:
			engine.Reload(set)
			a.set = set
			a.rulesN.Store(int64(len(set.Enabled())))
			publishHits()
			// The old set and the loader's garbage are unreachable now:
			// give their memory back rather than keep the reload's peak
			// for good (issue 8 §4). Off this goroutine: events go on.
			go debug.FreeOSMemory()
		case now := <-tick.C:
			engine.Tick(now)
			publishHits()
			a.keep.tick(now, a)
			if err := a.sp.Sync(); err != nil {
				a.log.Error("spool sync", "err", err)
			}
			if a.baseline != nil && a.baseline.Dirty() && now.Sub(lastSave) > time.Minute {
				a.saveBaseline()
				lastSave = now
			}
		}
	}
	engine.Close()
	publishHits()
	a.saveBaseline()
	a.keep.flush(a)
}

func (a *Agent) saveBaseline() {
	if a.baseline == nil {
		return
	}
	if err := a.baseline.Save(); err != nil {
		a.log.Error("saving the baseline failed", "err", err)
	}
}

// raise takes an alert from the rules: it is raised (counted) and queued
// for delivery — in the spool, or, while the disk refuses writes, in the
// spool's memory queue (the spool counts what it could not keep).
func (a *Agent) raise(al *plcwatch.Alert) {
	// One bounded MQTT message (issue 8 §8): long fields cut, and said.
	al = publish.Bound(al)
	// Both buffers are reused: the spool and the alert log copy what they
	// keep, and raise runs only on the rules goroutine.
	al.DeviceTags = a.names.Tags(al.Event.Device)
	a.jsonBuf = al.AppendJSON(a.jsonBuf[:0])
	payload := a.jsonBuf
	a.recBuf = publish.AppendRecord(a.recBuf[:0], publish.AlertTopic(a.cfg.MQTT.TopicPrefix, al.Rule.Severity), payload)
	a.alerts.Add(1)
	a.metrics.alerts.WithLabelValues(al.Rule.ID, al.Rule.Severity).Inc()
	if err := a.sp.Append(a.recBuf); err != nil {
		if n := a.spoolErrs.Add(1); n&(n-1) == 0 {
			a.log.Error("cannot queue alert for delivery", "rule", al.Rule.ID, "id", al.ID, "err", err, "errors_total", n)
		}
	}
	if a.alertLog != nil {
		if err := a.alertLog.WriteLine(payload); err != nil {
			if n := a.alertLogErrs.Add(1); n&(n-1) == 0 {
				a.log.Error("alert log", "err", err, "errors_total", n)
			}
		}
	}
}

// heartbeat is the periodic message at <prefix>/heartbeat.
func (a *Agent) heartbeat() []byte {
	up, pending := a.devicesUp()
	st := a.sp.Stats()
	p := a.pub.Stats()
	b, _ := json.Marshal(map[string]any{
		"time": time.Now().UTC().Format(plcwatch.TimeFormat), "site": a.cfg.Site, "gateway": a.cfg.Gateway,
		"version": Version, "uptime_s": int64(time.Since(a.started).Seconds()),
		"events": a.accepted.Load(), "events_dropped": a.dropped.Load(), "alerts": a.alerts.Load(),
		"spool_depth": st.Depth, "spool_dropped": st.Dropped, "spool_memory": st.Memory, "spool_corrupt": st.Corrupt,
		"spool_writable": st.WriteError == "", "dead_letters": st.DeadLetters, "mqtt_published": p.Published,
		"rules": a.rulesN.Load(), "devices": len(a.pollers), "devices_up": up, "devices_pending": pending,
	})
	return b
}

// devicesUp counts the polled devices whose last request was answered,
// and those not polled yet (right after the start).
func (a *Agent) devicesUp() (up, pending int) {
	for _, p := range a.pollers {
		switch st := p.Stats(); {
		case !st.Known:
			pending++
		case st.Up:
			up++
		}
	}
	return up, pending
}

// firstCycleWait bounds how long the start waits for the polled devices'
// first cycle: a device that answers takes milliseconds; one that is down
// may take its timeout and retries, or a TCP connect timeout.
const firstCycleWait = 3 * time.Second

// firstCycles waits until every polled device has had its first cycle, at
// most max.
func (a *Agent) firstCycles(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, pending := a.devicesUp(); pending == 0 || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) serveHTTP() *http.Server {
	if a.httpLn == nil {
		return nil
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server", "err", err)
		}
	}()
	a.log.Info("http listening", "address", a.httpLn.Addr().String(), "paths", "/healthz /readyz /metrics /inventory")
	return srv
}

// HTTPAddr is the address the health and metrics server listens on.
func (a *Agent) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

func (a *Agent) closeAll() {
	if a.live != nil {
		a.live.Close()
	}
	if a.broker != nil {
		a.broker.Close()
	}
	if a.httpLn != nil {
		a.httpLn.Close()
	}
	if a.alertLog != nil {
		a.alertLog.Close()
	}
	if a.eventLog != nil {
		a.eventLog.Close()
	}
	if a.sp != nil {
		a.sp.Close()
	}
}
