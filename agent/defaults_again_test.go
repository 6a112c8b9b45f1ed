package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestDefaultsAgainKeepWhatTheFileWrote: sim check's live agent calls
// Defaults on a configuration LoadConfig (or Check) returned, whose syntax
// tree is gone. Values whose zero means "off", written in the file, and
// every written value, must survive it (issue 12: http.listen went back to
// 9108, mqtt.qos 0 to 1).
func TestDefaultsAgainKeepWhatTheFileWrote(t *testing.T) {
	dir := t.TempDir()
	rules, err := filepath.Abs("../configs/rules/modbus-writes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		check      func(*Config) string
	}{
		{"http.listen off", "http: {listen: \"\"}\n", func(c *Config) string { return c.HTTP.Listen }},
		{"http.listen port", "http: {listen: \"127.0.0.1:29108\"}\n", func(c *Config) string { return c.HTTP.Listen }},
		{"mqtt.qos 0", "mqtt: {qos: 0}\n", func(c *Config) string { return time.Duration(c.MQTT.QoS).String() }},
		{"mqtt.keepalive 0", "mqtt: {keepalive: 0s}\n", func(c *Config) string { return c.MQTT.KeepAlive.String() }},
		{"mqtt.max_attempts 0", "mqtt: {max_attempts: 0}\n", func(c *Config) string { return time.Duration(c.MQTT.MaxAttempts).String() }},
		{"mqtt.verify_timeout 0", "mqtt: {verify_timeout: 0s}\n", func(c *Config) string { return c.MQTT.VerifyTimeout.String() }},
		{"mqtt.heartbeat 0", "mqtt: {heartbeat: 0s}\n", func(c *Config) string { return c.MQTT.Heartbeat.String() }},
		{"inventory.publish_every 0", "inventory: {publish_every: 0s}\n", func(c *Config) string { return c.Inventory.PublishEvery.String() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "plcwatch.yaml")
			src := "rules: {paths: [" + rules + "]}\n" + tc.yaml
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			checked, err := Check(path, CheckOptions{Offline: true})
			if err != nil {
				t.Fatal(err)
			}
			for how, cfg := range map[string]*Config{"LoadConfig": loaded, "Check": checked} {
				want := tc.check(cfg)
				again := *cfg
				again.Defaults()
				if got := tc.check(&again); got != want {
					t.Errorf("%s, then Defaults: %q became %q", how, want, got)
				}
				again.ruleSet, cfg.ruleSet, again.baseline, cfg.baseline = nil, nil, nil, nil
				if !reflect.DeepEqual(again.HTTP, cfg.HTTP) || !reflect.DeepEqual(again.MQTT, cfg.MQTT) || !reflect.DeepEqual(again.Inventory, cfg.Inventory) {
					t.Errorf("%s, then Defaults: the configuration changed", how)
				}
			}
		})
	}
}
