package agent

import (
	"strings"
	"testing"
	"time"
)

// The delivery keys: keepalive 0 is off (issue 8: it was sent as 30), the
// default client id names the site (issue 8: two gw-1 at two sites took
// each other's connection), and the spool's, delivery's and event log's
// ranges are checked.
func TestDeliveryConfig(t *testing.T) {
	good := []struct {
		name  string
		text  string
		check func(c *Config) bool
	}{
		{"defaults", "site: a\ngateway: gw-1\nrules: {paths: [r]}\n", func(c *Config) bool {
			return c.MQTT.KeepAlive == 30*time.Second && c.MQTT.ClientID == "plcwatch-a-gw-1" && c.MQTT.MaxAttempts == 5 &&
				c.MQTT.ReceiveMaximum == 20 &&
				c.Spool.MemoryBytes == 8<<20 && c.Events.Path == ""
		}},
		{"keepalive 0 is off", "rules: {paths: [r]}\nmqtt: {keepalive: 0s}\n", func(c *Config) bool { return c.MQTT.KeepAlive == 0 }},
		{"keepalive at MQTT's limit", "rules: {paths: [r]}\nmqtt: {keepalive: 65535s}\n", func(c *Config) bool { return c.MQTT.KeepAlive == 65535*time.Second }},
		{"a broker that takes 1,000 in flight", "rules: {paths: [r]}\nmqtt: {qos: 2, receive_maximum: 1000}\n", func(c *Config) bool { return c.MQTT.ReceiveMaximum == 1000 }},
		{"receive maximum 1, telemetry at qos 0", "rules: {paths: [r]}\nmqtt: {qos: 2, receive_maximum: 1}\ntelemetry: {enabled: true}\n", func(c *Config) bool { return c.MQTT.ReceiveMaximum == 1 }},
		{"receive maximum 1, qos 1 both", "rules: {paths: [r]}\nmqtt: {qos: 1, receive_maximum: 1}\ntelemetry: {enabled: true, qos: 1}\n", func(c *Config) bool { return c.MQTT.ReceiveMaximum == 1 }},
		{"never set aside", "rules: {paths: [r]}\nmqtt: {max_attempts: 0}\n", func(c *Config) bool { return c.MQTT.MaxAttempts == 0 }},
		{"another site, another id", "site: b\ngateway: gw-1\nrules: {paths: [r]}\n", func(c *Config) bool { return c.MQTT.ClientID == "plcwatch-b-gw-1" }},
		{"event log", "rules: {paths: [r]}\nevent_log: {path: ev.jsonl, ops: [write, diagnostic], protocols: [modbus], sources: [wire]}\n", func(c *Config) bool {
			return strings.HasSuffix(c.Events.Path, "/ev.jsonl") && c.Events.MaxBytes == 100<<20 && c.Events.Keep == 5 && c.Events.Queue == 4096
		}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig("/etc/plcwatch/p.yaml", []byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("decoded mqtt %+v spool %+v events %+v", c.MQTT, c.Spool, c.Events)
			}
		})
	}
	bad := []struct {
		name, text, want string
	}{
		{"negative keepalive", "rules: {paths: [r]}\nmqtt: {keepalive: -1s}\n", "2:19: mqtt.keepalive: -1s: want 0 (off) or 1s-18h12m15s"},
		{"sub-second keepalive", "rules: {paths: [r]}\nmqtt: {keepalive: 500ms}\n", "2:19: mqtt.keepalive: 500ms: want 0 (off) or 1s-18h12m15s"},
		{"keepalive in part seconds", "rules: {paths: [r]}\nmqtt: {keepalive: 1500ms}\n", "2:19: mqtt.keepalive: 1.5s: want whole seconds"},
		{"keepalive beyond MQTT", "rules: {paths: [r]}\nmqtt: {keepalive: 24h}\n", "2:19: mqtt.keepalive: 24h: want 0 (off) or 1s-18h12m15s"},
		{"max_attempts", "rules: {paths: [r]}\nmqtt: {max_attempts: -1}\n", "mqtt.max_attempts: -1: want 0 (never) or 1-1000"},
		{"memory_bytes", "rules: {paths: [r]}\nspool: {memory_bytes: 1KiB}\n", "spool.memory_bytes: 1KiB: want 1MiB-1GiB"},
		{"receive_maximum", "rules: {paths: [r]}\nmqtt: {receive_maximum: 70000}\n", "mqtt.receive_maximum: 70000: want 1-65535"},
		{"receive_maximum 1 and telemetry at qos 1 beside qos 2", "rules: {paths: [r]}\nmqtt: {qos: 2, receive_maximum: 1}\ntelemetry: {enabled: true, qos: 1}\n",
			"mqtt.receive_maximum: 1 leaves no room for telemetry"},
		{"receive_maximum 1 and telemetry at qos 2", "rules: {paths: [r]}\nmqtt: {qos: 1, receive_maximum: 1}\ntelemetry: {enabled: true, qos: 2}\n",
			"mqtt.receive_maximum: 1 leaves no room for telemetry"},
		{"event log op", "rules: {paths: [r]}\nevent_log: {path: e, ops: [write, wrte]}\n", `event_log.ops[1]: "wrte" is not an op`},
		{"event log protocol", "rules: {paths: [r]}\nevent_log: {path: e, protocols: [dnp3]}\n", `event_log.protocols[0]: "dnp3": want modbus or opcua`},
		{"event log source", "rules: {paths: [r]}\nevent_log: {path: e, sources: [tap]}\n", `event_log.sources[0]: "tap": want wire or poll`},
		{"event log queue", "rules: {paths: [r]}\nevent_log: {path: e, queue: 1}\n", `event_log.queue: 1: want 64-1048576`},
		{"event log filter without path", "rules: {paths: [r]}\nevent_log: {ops: [write]}\n", `event_log.path: the event log's filters are set but not its path`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("p.yaml", []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
