package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := LoadConfig("../configs/plcwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../configs/rules")
	if got, _ := filepath.Abs(cfg.Rules.Paths[0]); got != abs {
		t.Errorf("rules path %q is not resolved against the config's folder", cfg.Rules.Paths[0])
	}
	if cfg.MQTT.QoS != 1 || cfg.MQTT.TopicPrefix != "plcwatch/plant-a/gw-1" || cfg.Spool.MaxBytes != 256<<20 || cfg.Capture.ResponseTimeout != 5*time.Second {
		t.Errorf("decoded %+v", cfg.MQTT)
	}
}

func TestConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"unknown key", "rules: {paths: [r]}\nmqtt:\n  brokerz: [tcp://x:1883]\n",
			[]string{`3:3: unknown key "brokerz" in mqtt (did you mean "brokers"?)`}},
		{"unknown top-level key", "rules: {paths: [r]}\nspoool: {}\n",
			[]string{`2:1: unknown key "spoool" (did you mean "spool"?)`}},
		{"bad values", "rules: {paths: [r]}\nmqtt:\n  qos: 3\n  brokers: [tcp://ok:1883, \"http://x\"]\nspool:\n  fsync: often\n",
			[]string{`3:8: mqtt.qos: 3: want 0, 1 or 2`, `4:28: mqtt.brokers[1]: scheme "http"`, `6:10: spool.fsync: fsync "often"`}},
		{"capture values", "rules: {paths: [r]}\ncapture:\n  modbus_ports: [502, 0]\n  response_timeout: 1ms\n",
			[]string{`3:23: capture.modbus_ports[1]: port 0 is not a port`, `4:21: capture.response_timeout: 1ms: must be at least 10ms`}},
		{"wrong type", "rules: {paths: [r]}\nqueue: lots\n",
			[]string{`2:1: cannot unmarshal !!str ` + "`lots`" + ` into int`}},
		{"no rules", "site: x\n",
			[]string{` rules.paths: name at least one rule file`}},
		{"size", "rules: {paths: [r]}\nspool: {max_bytes: 12 parsecs}\n",
			[]string{`2:20: "12 parsecs" is not a size`}},
		{"modbus device and tag", `rules: {paths: [r]}
modbus:
  devices:
    - name: boiler
      address: 10.0.1.10
      intervall: 1s
      tags:
        - {name: temp, register: 40001, type: float16}
        - {name: temp, table: holding, adress: 4}
    - name: boiler
      address: 10.0.1.11
      transport: udp
      tags: [{name: x, register: "40001"}]
`, []string{`6:7: unknown key "intervall" in modbus.devices[0] (did you mean "interval"?)`,
			`8:47: modbus.devices[0].tags[0].type: "float16": want bool`,
			`9:40: unknown key "adress" in modbus.devices[0].tags[1] (did you mean "address"?)`,
			`9:18: modbus.devices[0].tags[1].name: "temp": a device's tag names must differ`,
			`9:11: modbus.devices[0].tags[1].address: give the 0-based address`,
			`10:13: modbus.devices[1].name: "boiler": devices[0] has this name too`,
			`12:18: modbus.devices[1].transport: "udp": want tcp`}},
		{"missing password file", "rules: {paths: [r]}\nmqtt: {password_file: /nonexistent/pw}\n",
			[]string{`2:23: mqtt.password_file: stat /nonexistent/pw: no such file`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(tc.text))
			var ce ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want problems, got %v", err)
			}
			if len(ce) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%v", len(ce), len(tc.want), err)
			}
			for i, w := range tc.want {
				want := "/etc/plcwatch/test.yaml:" + w
				if i < len(ce) && !strings.HasPrefix(ce[i].Error(), want) {
					t.Errorf("problem %d:\n got  %s\n want %s...", i, ce[i].Error(), want)
				}
			}
		})
	}
}
