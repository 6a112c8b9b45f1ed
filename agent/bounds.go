package agent

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// bound is the range of one number, size or duration of the configuration
// file. Every such key has one (issue 8: "queue: 100000000" passed the
// check and then asked for 85 GB; "heartbeat: 1ns" sent 238,000 heartbeats
// in 9 s): a test walks the configuration's types and fails on a numeric
// key without a bound, and another checks that docs/config.md lists every
// bound as rangeTable renders it.
type bound struct {
	path     string  // YAML path, [] for any list item: "modbus.devices[].interval"
	min, max float64 // inclusive; nanoseconds for durations, bytes for sizes
	zero     string  // what an explicit 0 means when it is allowed outside min..max ("off"); "" when it is not
	def      string  // the default, as docs/config.md shows it
	why      string  // why the range is what it is, for docs/config.md
	size     bool    // an integer key that counts bytes: written like a ByteSize (64KiB, 1MiB), shown so
}

const (
	kib    = 1 << 10
	mib    = 1 << 20
	gib    = 1 << 30
	tib    = 1 << 40
	ms     = float64(time.Millisecond)
	sec    = float64(time.Second)
	minute = float64(time.Minute)
	hour   = float64(time.Hour)
)

// boundList are the ranges of every number, size and duration in the
// configuration, in the order docs/config.md lists them.
var boundList = []bound{
	{path: "queue", min: 64, max: 262144, def: "8192", why: "events between capture and the rules; about 0.8 KB each"},

	{path: "capture.snaplen", size: true, min: 256, max: 256 * kib, def: "65557", why: "bytes kept per packet"},
	{path: "capture.socket_buffer", size: true, min: 64 * kib, max: gib, def: "8MiB", why: "bytes; ignored since capture reads a ring (ring_block_size × ring_blocks), accepted so that older configurations load"},
	{path: "capture.ring_block_size", size: true, min: 64 * kib, max: 16 * mib, def: "1MiB", why: "bytes per block of the capture ring: a power of two, at least snaplen + 4096"},
	{path: "capture.ring_blocks", min: 2, max: 1024, def: "32", why: "blocks in the ring; the ring (32 MiB by default) is per interface and fanout worker, in kernel memory: the room a burst has before the kernel drops. All rings together (ring_block_size × ring_blocks × fanout × interfaces) at most 4GiB"},
	{path: "capture.fanout", min: 1, max: 64, def: "1", why: "workers per interface, each with its ring and engine; the kernel spreads connections over them by flow hash"},
	{path: "capture.modbus_ports[]", min: 1, max: 65535, def: "[502]", why: "TCP ports; with opcua_ports, at most 32"},
	{path: "capture.opcua_ports[]", min: 1, max: 65535, def: "[4840]", why: "TCP ports; with modbus_ports, at most 32"},
	{path: "capture.response_timeout", min: 10 * ms, max: 10 * minute, def: "5s"},
	{path: "capture.max_outstanding", min: 1, max: 65536, def: "64", why: "requests per connection"},
	{path: "capture.flow_idle_timeout", min: sec, max: 24 * hour, def: "10m"},
	{path: "capture.max_flows", min: 1, max: 1 << 20, def: "16384", why: "connections"},
	{path: "capture.max_flow_buffer", size: true, min: kib, max: 16 * mib, def: "64KiB", why: "bytes per direction of a connection"},
	{path: "capture.max_buffer", size: true, min: kib, max: gib, def: "32MiB", why: "bytes in all; at least max_flow_buffer"},

	{path: "mqtt.qos", min: 0, max: 2, def: "1"},
	{path: "mqtt.keepalive", min: sec, max: 65535 * sec, zero: "off", def: "30s", why: "whole seconds (MQTT counts it in seconds, at most 65535). 0 is MQTT's \"off\": no pings, the broker never times the agent out (so it publishes the offline status only when the connection visibly ends), and a connection that died silently is noticed at the next publish"},
	{path: "mqtt.connect_timeout", min: 100 * ms, max: 5 * minute, def: "10s"},
	{path: "mqtt.publish_timeout", min: 100 * ms, max: 5 * minute, def: "10s"},
	{path: "mqtt.window", min: 1, max: 65000, def: "256", why: "publishes in flight; MQTT packet ids are 16 bits"},
	{path: "mqtt.heartbeat", min: sec, max: 24 * hour, zero: "off", def: "1m"},
	{path: "mqtt.receive_maximum", min: 1, max: 65535, def: "20", why: "QoS 1 and 2 publishes the broker takes in flight from one client (Mosquitto's max_inflight_messages, MQTT 5's Receive Maximum): at QoS 2 the agent keeps within it, since Mosquitto acknowledges and drops what is beyond"},
	{path: "mqtt.max_attempts", min: 1, max: 1000, zero: "never", def: "5", why: "refusals of one message before it goes to the dead-letter file"},
	{path: "mqtt.verify_timeout", min: 100 * ms, max: 5 * minute, zero: "off", def: "5s", why: "how long the agent waits, on each connection, to read back the status it published: a broker that acknowledges and drops its publishes (an ACL) is reported"},
	{path: "mqtt.drain_timeout", min: 100 * ms, max: 10 * minute, def: "5s", why: "keep it below systemd's TimeoutStopSec (30s in deploy/plcwatch.service)"},

	{path: "spool.max_bytes", min: mib, max: tib, def: "256MiB"},
	{path: "spool.segment_bytes", min: 64 * kib, max: gib, def: "max_bytes/16", why: "at most max_bytes"},
	{path: "spool.fsync_interval", min: 10 * ms, max: hour, def: "1s"},
	{path: "spool.memory_bytes", min: mib, max: gib, def: "8MiB", why: "alerts held in memory while the disk refuses writes"},

	{path: "alert_log.max_bytes", min: 64 * kib, max: tib, def: "100MiB"},
	{path: "alert_log.keep", min: 1, max: 1000, def: "5", why: "old files kept"},

	{path: "event_log.max_bytes", min: 64 * kib, max: tib, def: "100MiB"},
	{path: "event_log.keep", min: 1, max: 1000, def: "5", why: "old files kept"},
	{path: "event_log.queue", min: 64, max: 1 << 20, def: "4096", why: "events waiting for the writer; beyond, dropped and counted"},

	{path: "telemetry.qos", min: 0, max: 2, def: "0"},

	{path: "inventory.publish_every", min: sec, max: 24 * hour, zero: "never", def: "10s", why: "a changed inventory is published (retained) and saved at most this often"},

	{path: "modbus.devices[].unit", min: 0, max: 255, def: "1"},
	{path: "modbus.devices[].interval", min: 10 * ms, max: 24 * hour, def: "10s"},
	{path: "modbus.devices[].timeout", min: 10 * ms, max: minute, def: "1s", why: "per request"},
	{path: "modbus.devices[].retries", min: 0, max: 10, def: "1"},
	{path: "modbus.devices[].backoff", min: 0, max: minute, def: "100ms"},
	{path: "modbus.devices[].max_registers", min: 1, max: 125, def: "125", why: "the protocol's limit"},
	{path: "modbus.devices[].max_bits", min: 1, max: 2000, def: "2000", why: "the protocol's limit"},
	{path: "modbus.devices[].max_gap", min: 0, max: 2000, def: "0", why: "registers or bits"},
	{path: "modbus.devices[].serial.baud", min: 50, max: 4000000, def: "19200"},
	{path: "modbus.devices[].serial.data_bits", min: 5, max: 8, def: "8"},
	{path: "modbus.devices[].serial.stop_bits", min: 1, max: 2, zero: "2 without parity, 1 with", def: "0"},
	{path: "modbus.devices[].workarounds.pause_after_connect", min: 0, max: minute, def: "0s"},
	{path: "modbus.devices[].workarounds.pause_between_requests", min: 0, max: 10 * sec, def: "0s"},
	{path: "modbus.devices[].tags[].unit", min: 0, max: 255, def: "the device's"},
	{path: "modbus.devices[].tags[].address", min: 0, max: 65535, def: "required"},
	{path: "modbus.devices[].tags[].bit", min: 0, max: 15, def: "0"},
	{path: "modbus.devices[].tags[].length", min: 1, max: 125, def: "none", why: "registers of a string tag"},
	{path: "modbus.devices[].tags[].scale", min: -1e9, max: 1e9, def: "1", why: "not 0"},
	{path: "modbus.devices[].tags[].offset", min: -1e12, max: 1e12, def: "0"},
	{path: "opcua.devices[].interval", min: 10 * ms, max: 24 * hour, def: "10s", why: "read tags are read, monitored tags published, once per interval"},
	{path: "opcua.devices[].timeout", min: 100 * ms, max: 5 * minute, def: "5s", why: "per request"},
	{path: "opcua.devices[].connect_timeout", min: 100 * ms, max: 5 * minute, def: "10s", why: "endpoints, secure channel and session"},
	{path: "opcua.devices[].session_timeout", min: sec, max: 24 * hour, def: "1m", why: "asked of the server, which may revise it"},
	{path: "opcua.devices[].backoff", min: 10 * ms, max: minute, def: "500ms", why: "first wait before reconnecting, jittered ±50%, doubling"},
	{path: "opcua.devices[].max_backoff", min: 10 * ms, max: 10 * minute, def: "5s", why: "raised to backoff when less"},
	{path: "opcua.devices[].tags[].sampling_interval", min: 0, max: 24 * hour, def: "the device's interval", why: "0: the server's fastest"},
	{path: "opcua.devices[].tags[].queue_size", min: 1, max: 65535, def: "1"},
	{path: "opcua.devices[].tags[].deadband_value", min: 0, max: 1e12, def: "0", why: "percent: 0-100"},
	{path: "opcua.devices[].tags[].scale", min: -1e9, max: 1e9, def: "1", why: "not 0"},
	{path: "opcua.devices[].tags[].offset", min: -1e12, max: 1e12, def: "0"},

	{path: "assets[].unit", min: 0, max: 255, def: "any unit"},
}

// bounds are boundList by path.
var bounds = func() map[string]bound {
	m := make(map[string]bound, len(boundList))
	for _, b := range boundList {
		m[b.path] = b
	}
	return m
}()

func (b bound) holds(v float64) bool {
	return (v == 0 && b.zero != "") || (v >= b.min && v <= b.max)
}

// Range says the range as a user writes the values: "1s-24h", "64-262144",
// "1MiB-1TiB", "0 (off) or 1s-24h".
func (b bound) Range() string {
	f := fmtNumber
	switch typeAt(b.path) {
	case durationType:
		f = func(v float64) string { return fmtDuration(time.Duration(v)) }
	case sizeType:
		f = fmtSize
	}
	if b.size {
		f = fmtSize
	}
	sep := "-"
	if b.min < 0 {
		sep = " to "
	}
	r := f(b.min) + sep + f(b.max)
	if t := typeAt(b.path); t != nil && t.Kind() == reflect.Int && b.max-b.min == 2 {
		r = fmt.Sprintf("%s, %s or %s", f(b.min), f(b.min+1), f(b.max)) // 0, 1 or 2
	}
	if b.zero != "" {
		r = fmt.Sprintf("0 (%s) or %s", b.zero, r)
	}
	return r
}

func fmtNumber(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e7 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strings.NewReplacer("e+0", "e", "e+", "e", "e-0", "e-").Replace(strconv.FormatFloat(v, 'g', -1, 64))
}

// fmtDuration is a duration the way one writes it: 24h, 10m, 1s, 100ms.
func fmtDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0 && d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d%time.Millisecond == 0 && d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return d.String()
}

// fmtSize is a size the way one writes it: 64KiB, 1GiB, 1000.
func fmtSize(v float64) string {
	n := int64(v)
	for _, u := range []struct {
		s string
		n int64
	}{{"TiB", tib}, {"GiB", gib}, {"MiB", mib}, {"KiB", kib}} {
		if n >= u.n && n%u.n == 0 {
			return fmt.Sprintf("%d%s", n/u.n, u.s)
		}
	}
	return strconv.FormatInt(n, 10)
}

// typeAt is the Go type of the value at a bounds path (nil when the path
// names nothing).
func typeAt(path string) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, part := range strings.Split(path, ".") {
		name, list := strings.CutSuffix(part, "[]")
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		ft, ok := yamlFields(t)[name]
		if !ok {
			return nil
		}
		t = ft
		if list {
			if t.Kind() != reflect.Slice {
				return nil
			}
			t = t.Elem()
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// rangeTable is the table of docs/config.md: every bound, its range and
// its default.
func rangeTable() string {
	var b strings.Builder
	b.WriteString("| key | range | default | |\n|---|---|---|---|\n")
	for _, x := range boundList {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", x.path, x.Range(), x.def, x.why)
	}
	return b.String()
}
