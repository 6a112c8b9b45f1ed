package agent

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/agent/publish"
	"github.com/plcwatch/plcwatch/agent/spool"
)

// metrics are the agent's Prometheus metrics. Counters that the event path
// keeps (capture, spool, publisher) are read at scrape time by a collector,
// so the event path pays nothing for them.
type metrics struct {
	alerts      *prometheus.CounterVec
	reloads     *prometheus.CounterVec
	publishTime prometheus.Histogram
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plcwatch_alerts_total",
			Help: "Alerts raised, by rule and severity (plcwatch_alerts_spooled_total: those written to disk)."}, []string{"rule", "severity"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plcwatch_rule_reloads_total",
			Help: "Rule reloads (SIGHUP), by result: ok or refused."}, []string{"result"}),
		publishTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "plcwatch_mqtt_publish_seconds",
			Help:    "Time from publishing an alert to the broker's acknowledgement (PUBACK).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
	}
	a.reg.MustRegister(m.alerts, m.reloads, m.publishTime, &snapshot{a: a},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observePublish(d time.Duration) { m.publishTime.Observe(d.Seconds()) }

var (
	descInfo           = prometheus.NewDesc("plcwatch_info", "Build and site information.", []string{"version", "go", "site", "gateway"}, nil)
	descPackets        = prometheus.NewDesc("plcwatch_capture_packets_total", "Packets captured.", []string{"interface"}, nil)
	descBytes          = prometheus.NewDesc("plcwatch_capture_bytes_total", "Bytes captured.", []string{"interface"}, nil)
	descUndecodable    = prometheus.NewDesc("plcwatch_capture_undecodable_packets_total", "Packets not decoded: reason unknown_link (a link type plcwatch does not decode) or header (a link, IP or TCP header cut short or invalid).", []string{"interface", "reason"}, nil)
	descBrokerRefused  = prometheus.NewDesc("plcwatch_mqtt_embedded_refused_publishes_total", "Publishes the embedded broker refused (only the agent publishes, under its prefix); each closed its client's connection.", nil, nil)
	descCutShort       = prometheus.NewDesc("plcwatch_capture_cut_short_total", "Modbus ADUs and OPC UA messages their connection ended inside (reported as malformed events when enough of them came).", []string{"interface", "protocol"}, nil)
	descInterfaceUp    = prometheus.NewDesc("plcwatch_capture_interface_up", "1 while capture runs on the interface, 0 while it is down or gone (capture reopens it when it returns).", []string{"interface"}, nil)
	descReopens        = prometheus.NewDesc("plcwatch_capture_interface_reopens_total", "Times capture reopened the interface after it went down or disappeared.", []string{"interface"}, nil)
	descKernelPackets  = prometheus.NewDesc("plcwatch_capture_kernel_packets_total", "Packets the kernel filter passed.", []string{"interface"}, nil)
	descKernelDrops    = prometheus.NewDesc("plcwatch_capture_kernel_drops_total", "Packets the kernel dropped: the capture ring was full.", []string{"interface"}, nil)
	descKernelFreezes  = prometheus.NewDesc("plcwatch_capture_kernel_freezes_total", "Times the capture ring was full (TPACKET_V3 queue freezes).", []string{"interface"}, nil)
	descFlows          = prometheus.NewDesc("plcwatch_capture_flows_total", "TCP connections tracked.", []string{"interface"}, nil)
	descActiveFlows    = prometheus.NewDesc("plcwatch_capture_flows", "TCP connections tracked now.", []string{"interface"}, nil)
	descFlowEvictions  = prometheus.NewDesc("plcwatch_capture_flow_evictions_total", "Connections dropped to make room (max_flows).", []string{"interface"}, nil)
	descGaps           = prometheus.NewDesc("plcwatch_capture_gaps_total", "Holes in TCP streams skipped (capture loss).", []string{"interface"}, nil)
	descNotModbus      = prometheus.NewDesc("plcwatch_capture_not_modbus_total", "Connections on a Modbus port that showed they are not Modbus/TCP (TLS, SSH, HTTP, scanners' probes).", []string{"interface"}, nil)
	descModbusPDUs     = prometheus.NewDesc("plcwatch_modbus_pdus_total", "Modbus/TCP ADUs framed, by direction.", []string{"interface", "direction"}, nil)
	descOPCUAMessages  = prometheus.NewDesc("plcwatch_opcua_messages_total", "OPC UA service messages decoded, by direction, and chunks of encrypted channels counted.", []string{"interface", "direction"}, nil)
	descOPCUALimits    = prometheus.NewDesc("plcwatch_opcua_limits_total", "OPC UA messages beyond a limit, by kind: negotiated (larger than Hello/Acknowledge allowed), dropped (beyond plcwatch's own), rejected (unsafe to decode), panics (gopcua, recovered), framing (stream lost UACP framing).", []string{"interface", "kind"}, nil)
	descEvents         = prometheus.NewDesc("plcwatch_events_total", "Events decoded from the wire.", []string{"interface", "protocol"}, nil)
	descMalformed      = prometheus.NewDesc("plcwatch_malformed_total", "Malformed events.", []string{"interface", "protocol"}, nil)
	descPipeline       = prometheus.NewDesc("plcwatch_pipeline_events_total", "Events accepted into the rules pipeline.", nil, nil)
	descPipelineDrops  = prometheus.NewDesc("plcwatch_pipeline_drops_total", "Events dropped because the rules pipeline was full.", nil, nil)
	descRules          = prometheus.NewDesc("plcwatch_rules_enabled", "Enabled rules loaded.", nil, nil)
	descRuleMatches    = prometheus.NewDesc("plcwatch_rule_matches_total", "Events that matched a rule.", []string{"rule"}, nil)
	descRuleErrors     = prometheus.NewDesc("plcwatch_rule_errors_total", "Expression errors of a rule.", []string{"rule"}, nil)
	descRuleOverflow   = prometheus.NewDesc("plcwatch_rule_state_overflow_total", "Rule state not kept because a bound was hit (open folds, baseline tuples).", []string{"rule"}, nil)
	descSpoolDepth     = prometheus.NewDesc("plcwatch_spool_depth", "Alerts in the spool, not yet acknowledged by the broker.", nil, nil)
	descSpoolBytes     = prometheus.NewDesc("plcwatch_spool_bytes", "Bytes the spool takes on disk.", nil, nil)
	descSpoolOldest    = prometheus.NewDesc("plcwatch_spool_oldest_age_seconds", "Age of the oldest undelivered alert.", nil, nil)
	descSpoolDropped   = prometheus.NewDesc("plcwatch_spool_dropped_total", "Alerts dropped undelivered, by reason: max_bytes (the spool was full), no_space (the disk and the memory queue were full), write_error (the disk failed and the memory queue was full).", []string{"reason"}, nil)
	descSpoolErrors    = prometheus.NewDesc("plcwatch_spool_errors_total", "Alerts that could not be queued at all (larger than a spool record, or raised while stopping).", nil, nil)
	descSpooled        = prometheus.NewDesc("plcwatch_alerts_spooled_total", "Alerts written to the spool on disk (at once, or from the memory queue when the disk took writes again).", nil, nil)
	descSpoolCorrupt   = prometheus.NewDesc("plcwatch_spool_corrupt_records_total", "Spooled alerts lost to damage on disk, found at start or while reading.", nil, nil)
	descSpoolMemory    = prometheus.NewDesc("plcwatch_spool_memory_alerts", "Alerts waiting in memory because the disk refuses writes.", nil, nil)
	descSpoolWritable  = prometheus.NewDesc("plcwatch_spool_writable", "1 while the spool's disk takes writes, 0 while it refuses them (full or failing).", nil, nil)
	descSpoolWriteErrs = prometheus.NewDesc("plcwatch_spool_write_errors_total", "Writes to the spool's disk that failed.", nil, nil)
	descSpoolReadErrs  = prometheus.NewDesc("plcwatch_spool_read_errors_total", "Reads of the spool's files that failed (retried; a segment that keeps failing is skipped).", nil, nil)
	descDeadLetters    = prometheus.NewDesc("plcwatch_mqtt_dead_letters_total", "Alerts the broker refused again and again, set aside in the dead-letter file.", nil, nil)
	descMQTTConnected  = prometheus.NewDesc("plcwatch_mqtt_connected", "1 while connected to this configured broker, 0 otherwise (credentials redacted).", []string{"broker"}, nil)
	descMQTTVerified   = prometheus.NewDesc("plcwatch_mqtt_publish_verified", "1 when the agent read back the status it published on its last checked connection, 0 when it did not (the broker may be dropping its alerts: see the log); absent until a check ended, or with mqtt.verify_timeout 0.", nil, nil)
	descMQTTConnects   = prometheus.NewDesc("plcwatch_mqtt_connects_total", "Connections made to the broker (CONNACK and status taken).", nil, nil)
	descMQTTTakeovers  = prometheus.NewDesc("plcwatch_mqtt_takeovers_total", "Connections lost soon after they were made with no message at fault, again and again: another client with the same client id.", nil, nil)
	descEventLog       = prometheus.NewDesc("plcwatch_event_log_events_total", "Events in the event log, by result: written, dropped (the writer was behind), failed (could not be written).", []string{"result"}, nil)
	descMQTTPublished  = prometheus.NewDesc("plcwatch_mqtt_published_total", "Alerts the broker acknowledged.", nil, nil)
	descMQTTFailures   = prometheus.NewDesc("plcwatch_mqtt_publish_failures_total", "Publishes that failed or timed out (sent again).", nil, nil)
	descPollUp         = prometheus.NewDesc("plcwatch_poll_up", "1 while the device answers (any of its units), 0 while it is down (absent before its first cycle).", []string{"device"}, nil)
	descPollUnitUp     = prometheus.NewDesc("plcwatch_poll_unit_up", "1 while the unit answers, 0 while it is down: one per unit id a device's tags are read from (several behind a gateway).", []string{"device", "unit"}, nil)
	descPollDiscarded  = prometheus.NewDesc("plcwatch_poll_discarded_responses_total", "Responses set aside: late answers to requests that timed out, other transaction ids, other units.", []string{"device"}, nil)
	descPollCycles     = prometheus.NewDesc("plcwatch_poll_cycles_total", "Poll cycles, by result: ok, or failed (a request got no answer: the device or one of its units did not answer).", []string{"device", "result"}, nil)
	descPollSeconds    = prometheus.NewDesc("plcwatch_poll_cycle_seconds_total", "Time spent in poll cycles: with the cycle count, the mean duration.", []string{"device"}, nil)
	descPollLast       = prometheus.NewDesc("plcwatch_poll_last_cycle_seconds", "Duration of the last poll cycle.", []string{"device"}, nil)
	descPollRequests   = prometheus.NewDesc("plcwatch_poll_requests_total", "Requests sent: Modbus reads (retries included); OPC UA Read, CreateSubscription and CreateMonitoredItems.", []string{"device"}, nil)
	descPollPlanned    = prometheus.NewDesc("plcwatch_poll_planned_requests", "Read requests one cycle makes: Modbus reads as the planner merged the tags; OPC UA Reads, one per MaxNodesPerRead chunk of the read tags.", []string{"device"}, nil)
	descPollExceptions = prometheus.NewDesc("plcwatch_poll_exceptions_total", "Modbus exception responses; OPC UA service faults and bad service results.", []string{"device"}, nil)
	descPollTimeouts   = prometheus.NewDesc("plcwatch_poll_timeouts_total", "Requests that got no answer in time, each attempt (a wrong transaction id until the deadline included).", []string{"device"}, nil)
	descPollConnects   = prometheus.NewDesc("plcwatch_poll_connects_total", "Connections opened to the device (OPC UA: sessions).", []string{"device"}, nil)
	descPollOverruns   = prometheus.NewDesc("plcwatch_poll_overruns_total", "Cycles skipped because the previous one ran past the interval.", []string{"device"}, nil)
	descPollNotifs     = prometheus.NewDesc("plcwatch_poll_notifications_total", "Values received from OPC UA subscriptions (monitored items).", []string{"device"}, nil)
	descPollGaps       = prometheus.NewDesc("plcwatch_poll_subscription_gaps_total", "OPC UA subscriptions lost and made again after a reconnect: values that changed in between were not seen.", []string{"device"}, nil)
	descTelemetry      = prometheus.NewDesc("plcwatch_telemetry_messages_total", "Telemetry messages, by result: sent, or dropped (broker away or queue full).", []string{"result"}, nil)
	descMQTTConnErrors = prometheus.NewDesc("plcwatch_mqtt_connect_errors_total", "Failed connections to the broker, by kind: auth, tls, network, timeout, other.", []string{"kind"}, nil)
)

// snapshot collects the counters other parts keep.
type snapshot struct{ a *Agent }

// Describe lists the descriptions without collecting: registration happens
// before the parts the collector reads exist.
func (s *snapshot) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descBrokerRefused, descCutShort, descPackets, descBytes, descUndecodable, descInterfaceUp, descReopens, descKernelPackets, descKernelDrops, descKernelFreezes, descFlows,
		descActiveFlows, descFlowEvictions, descGaps, descNotModbus, descModbusPDUs, descOPCUAMessages, descOPCUALimits, descEvents, descMalformed, descPipeline,
		descPipelineDrops, descRules, descRuleMatches, descRuleErrors, descRuleOverflow, descSpoolDepth, descSpoolBytes, descSpoolOldest,
		descSpoolDropped, descSpoolErrors, descSpooled, descSpoolCorrupt, descSpoolMemory, descSpoolWritable, descSpoolWriteErrs,
		descSpoolReadErrs, descDeadLetters, descMQTTConnects, descMQTTVerified, descMQTTTakeovers, descEventLog,
		descMQTTConnected, descMQTTPublished, descMQTTFailures, descMQTTConnErrors,
		descPollUp, descPollCycles, descPollSeconds, descPollLast, descPollRequests, descPollPlanned, descPollExceptions,
		descPollTimeouts, descPollConnects, descPollOverruns, descPollUnitUp, descPollDiscarded, descPollNotifs, descPollGaps, descTelemetry} {
		ch <- d
	}
}

func (s *snapshot) Collect(ch chan<- prometheus.Metric) {
	a := s.a
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descInfo, 1, Version, runtime.Version(), a.cfg.Site, a.cfg.Gateway)
	if a.broker != nil {
		counter(descBrokerRefused, float64(a.broker.auth.refused.Load()))
	}
	if a.live != nil {
		for _, st := range a.live.Stats() {
			i := st.Interface
			if i == "" {
				continue
			}
			counter(descPackets, float64(st.Stats.Packets), i)
			counter(descBytes, float64(st.Stats.Bytes), i)
			counter(descUndecodable, float64(st.Stats.UnknownLink), i, "unknown_link")
			counter(descUndecodable, float64(st.Stats.Undecodable), i, "header")
			gauge(descInterfaceUp, b2f(st.Up), i)
			counter(descReopens, float64(st.Reopens), i)
			counter(descCutShort, float64(st.Stats.Modbus.CutShort), i, "modbus")
			counter(descCutShort, float64(st.Stats.OPCUA.CutShort), i, "opcua")
			counter(descKernelPackets, float64(st.KernelPackets), i)
			counter(descKernelDrops, float64(st.KernelDrops), i)
			counter(descKernelFreezes, float64(st.KernelFreezes), i)
			counter(descFlows, float64(st.Stats.Flows), i)
			gauge(descActiveFlows, float64(st.Stats.ActiveFlows), i)
			counter(descFlowEvictions, float64(st.Stats.FlowEvictions), i)
			counter(descGaps, float64(st.Stats.Reassembly.Gaps), i)
			counter(descNotModbus, float64(st.Stats.Modbus.NotModbus), i)
			counter(descModbusPDUs, float64(st.Stats.Modbus.Requests), i, "request")
			counter(descModbusPDUs, float64(st.Stats.Modbus.Responses), i, "response")
			counter(descEvents, float64(st.Stats.Modbus.Events), i, "modbus")
			counter(descMalformed, float64(st.Stats.Modbus.Malformed), i, "modbus")
			counter(descOPCUAMessages, float64(st.Stats.OPCUA.Requests), i, "request")
			counter(descOPCUAMessages, float64(st.Stats.OPCUA.Responses), i, "response")
			counter(descOPCUAMessages, float64(st.Stats.OPCUA.Encrypted), i, "encrypted")
			counter(descOPCUALimits, float64(st.Stats.OPCUA.Oversized), i, "negotiated")
			counter(descOPCUALimits, float64(st.Stats.OPCUA.TooLarge), i, "dropped")
			counter(descOPCUALimits, float64(st.Stats.OPCUA.Rejected), i, "rejected")
			counter(descOPCUALimits, float64(st.Stats.OPCUA.Panics), i, "panics")
			counter(descOPCUALimits, float64(st.Stats.OPCUA.FramingLost), i, "framing")
			counter(descEvents, float64(st.Stats.OPCUA.Events), i, "opcua")
			counter(descMalformed, float64(st.Stats.OPCUA.Malformed), i, "opcua")
		}
	}
	counter(descPipeline, float64(a.accepted.Load()))
	counter(descPipelineDrops, float64(a.dropped.Load()))
	gauge(descRules, float64(a.rulesN.Load()))
	if h := a.hits.Load(); h != nil {
		for _, r := range *h {
			counter(descRuleMatches, float64(r.Matched), r.ID)
			counter(descRuleErrors, float64(r.Errors), r.ID)
			counter(descRuleOverflow, float64(r.Overflow), r.ID)
		}
	}
	for _, p := range a.pollers {
		st := p.Stats()
		d := st.Device
		if st.Known {
			gauge(descPollUp, b2f(st.Up), d)
		}
		for _, u := range st.Units {
			gauge(descPollUnitUp, b2f(u.Up), d, strconv.Itoa(int(u.Unit)))
		}
		counter(descPollDiscarded, float64(st.Discarded), d)
		counter(descPollCycles, float64(st.Cycles-st.FailedCycles), d, "ok")
		counter(descPollCycles, float64(st.FailedCycles), d, "failed")
		counter(descPollSeconds, st.CycleTime.Seconds(), d)
		gauge(descPollLast, st.LastCycle.Seconds(), d)
		counter(descPollRequests, float64(st.Requests), d)
		gauge(descPollPlanned, float64(st.PlannedReads), d)
		counter(descPollExceptions, float64(st.Exceptions), d)
		counter(descPollTimeouts, float64(st.Timeouts), d)
		counter(descPollConnects, float64(st.Reconnects), d)
		counter(descPollOverruns, float64(st.Overruns), d)
		if st.Protocol == plcwatch.ProtoOPCUA {
			counter(descPollNotifs, float64(st.Notifications), d)
			counter(descPollGaps, float64(st.Gaps), d)
		}
	}
	if a.cfg.Telemetry.Enabled {
		sent, dropped := a.pub.TelemetryStats()
		counter(descTelemetry, float64(sent), "sent")
		counter(descTelemetry, float64(dropped), "dropped")
	}
	st := a.sp.Stats()
	gauge(descSpoolDepth, float64(st.Depth))
	gauge(descSpoolBytes, float64(st.Bytes))
	gauge(descSpoolOldest, st.OldestAge.Seconds())
	for r := spool.DropReason(0); r < spool.NumDropReasons; r++ {
		counter(descSpoolDropped, float64(st.DroppedBy[r]), r.String())
	}
	counter(descSpoolErrors, float64(a.spoolErrs.Load()))
	counter(descSpooled, float64(st.Spooled))
	counter(descSpoolCorrupt, float64(st.Corrupt))
	gauge(descSpoolMemory, float64(st.Memory))
	gauge(descSpoolWritable, b2f(st.WriteError == ""))
	counter(descSpoolWriteErrs, float64(st.WriteErrors))
	counter(descDeadLetters, float64(st.DeadLetters))
	p := a.pub.Stats()
	counter(descSpoolReadErrs, float64(p.StorageErrors))
	// One series per configured broker, at all times (issue 9: the label
	// was empty while disconnected).
	for _, b := range p.Brokers {
		gauge(descMQTTConnected, b2f(b.Connected), b.URL)
	}
	counter(descMQTTConnects, float64(p.Connects))
	if p.Verify == publish.VerifyOK || p.Verify == publish.VerifyFailed {
		gauge(descMQTTVerified, b2f(p.Verify == publish.VerifyOK))
	}
	counter(descMQTTTakeovers, float64(p.Takeovers))
	if a.eventLog != nil {
		el := a.eventLog.Stats()
		counter(descEventLog, float64(el.Written), "written")
		counter(descEventLog, float64(el.Dropped), "dropped")
		counter(descEventLog, float64(el.Errors), "failed")
	}
	counter(descMQTTPublished, float64(p.Published))
	counter(descMQTTFailures, float64(p.Failures))
	for _, kind := range []string{"auth", "tls", "network", "timeout", "other"} {
		counter(descMQTTConnErrors, float64(p.ErrorsByKind[kind]), kind)
	}
}

// handler serves /healthz (the process answers), /readyz (sources running,
// rules loaded, and the spool writing to disk; the broker is not required:
// the spool holds alerts) and /metrics.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		p := a.pub.Stats()
		st := a.sp.Stats()
		// The spool failing to write is not ready (issue 8 §2): alerts
		// then live in memory only, and go when it is full.
		//
		// Nor is a broker that drops what the agent publishes (the publish
		// check failed): the spool empties into nothing.
		ready := a.ready.Load() && st.WriteError == "" && p.Verify != publish.VerifyFailed
		// A capture interface down or gone is a source not running: not
		// ready, and named (capture reopens it when it returns).
		capDown := map[string]string{}
		if a.live != nil {
			for _, c := range a.live.Stats() {
				if c.Interface != "" && !c.Up {
					capDown[c.Interface] = c.Error
					ready = false
				}
			}
		}
		up, pending := a.devicesUp()
		body := map[string]any{"ready": ready, "rules": a.rulesN.Load(), "mqtt_connected": p.Connected,
			"mqtt_broker": p.Broker, "mqtt_last_error": p.LastError, "spool_depth": st.Depth, "spool_ok": st.WriteError == "",
			"spool_error": st.WriteError, "spool_memory": st.Memory, "devices": len(a.pollers), "devices_up": up,
			"devices_pending": pending, "capture_interfaces_down": capDown}
		if p.Verify != publish.VerifyOff {
			body["mqtt_publish_verified"] = p.Verify
			if p.VerifyError != "" {
				body["mqtt_publish_error"] = p.VerifyError
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(body)
	})
	mux.HandleFunc("/inventory", a.keep.serveInventory)
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	if a.cfg.HTTP.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
