package agent

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
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

// problemsOf parses text as /etc/plcwatch/test.yaml and returns its
// problems as they print.
func problemsOf(t *testing.T, text string) []string {
	t.Helper()
	_, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(text))
	if err == nil {
		return nil
	}
	var ce ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("not a ConfigError: %v", err)
	}
	out := make([]string, len(ce))
	for i, p := range ce {
		out[i] = strings.TrimPrefix(p.Error(), "/etc/plcwatch/test.yaml:")
	}
	return out
}

// TestConfigProblems: every problem of a file at once, each at the
// value's own position, in the user's terms.
func TestConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // prefixes, in order
	}{
		{"unknown key", "rules: {paths: [r]}\nmqtt:\n  brokerz: [tcp://x:1883]\n",
			[]string{`3:3: unknown key "brokerz" in mqtt (did you mean "brokers"?)`}},
		{"unknown top-level key", "rules: {paths: [r]}\nspoool: {}\n",
			[]string{`2:1: unknown key "spoool" (did you mean "spool"?)`}},
		{"key given twice", "rules: {paths: [r]}\nqueue: 100\nqueue: 200\n",
			[]string{`3:1: queue: given twice (first on line 2)`}},
		{"bad values", "rules: {paths: [r]}\nmqtt:\n  qos: 3\n  brokers: [tcp://ok:1883, \"http://x\"]\nspool:\n  fsync: often\n",
			[]string{`3:8: mqtt.qos: 3: want 0, 1 or 2`, `4:28: mqtt.brokers[1]: scheme "http"`, `6:10: spool.fsync: fsync "often"`}},
		{"capture values", "rules: {paths: [r]}\ncapture:\n  modbus_ports: [502, 0, 502]\n  response_timeout: 1ms\n",
			[]string{`3:23: capture.modbus_ports[1]: 0: want 1-65535`, `3:26: capture.modbus_ports[2]: port 502 listed twice`,
				`4:21: capture.response_timeout: 1ms: want 10ms-10m`}},
		{"no rules", "site: x\n",
			[]string{` rules.paths: name at least one rule file`}},
		{"not a mapping", "- a\n- b\n", []string{`1:1: a configuration is keys and values (site: plant-a, rules: ...), not a list`}},
		// Issue 9: types in the user's terms, at the value, every one.
		{"wrong types", `rules:
  paths: rules
site: [a, b]
queue: lots
capture:
  modbus_ports: 5020
  promiscuous: yes
  response_timeout: 5
  max_flows: 1.5
mqtt: [tcp://x]
spool: {max_bytes: 12 parsecs, fsync_interval: [1s]}
modbus:
  devices:
    - name: plc-1
      address: 10.0.0.1
      interval: 5
      tags: {name: t}
    - name: plc-2
      address: 10.0.0.2
      tags:
        - {name: t, register: 40001, scale: abc, unit: x}
        - {name: u, address: 65536, table: holding}
`, []string{
			`2:10: rules.paths: rules: want a list of rule files or folders, like [rules, /etc/plcwatch/rules]`,
			`3:7: site: a list: want one value, not a list or a mapping`,
			`4:8: queue: lots: want a whole number`,
			`6:17: capture.modbus_ports: 5020: want a list of ports, like [502, 5020]`,
			`7:16: capture.promiscuous: yes: want true or false`,
			`8:21: capture.response_timeout: 5: want a duration with a unit, like 2s`,
			`9:14: capture.max_flows: 1.5: want a whole number`,
			`10:7: mqtt: a list: want keys and values below it (a mapping)`,
			`11:20: spool.max_bytes: "12 parsecs": want a size in bytes, like 1048576, 64KiB or 256MiB`,
			`11:48: spool.fsync_interval: a list: want a duration with a unit, like 2s`,
			`16:17: modbus.devices[0].interval: 5: want a duration with a unit, like 2s`,
			`17:13: modbus.devices[0].tags: a mapping: want a list of tags, one "- {name: temperature, register: 40001}" item each`,
			`21:45: modbus.devices[1].tags[0].scale: abc: want a number, like 0.1`,
			`21:56: modbus.devices[1].tags[0].unit: x: want a whole number`,
			`22:30: modbus.devices[1].tags[1].address: 65536: want 0-65535`,
		}},
		{"ports", "rules: {paths: [r]}\ncapture: {modbus_ports: [502, x, -1, 70000]}\n", []string{
			`2:31: capture.modbus_ports[1]: x: want a TCP port, 1-65535`,
			`2:34: capture.modbus_ports[2]: -1: want 1-65535`,
			`2:38: capture.modbus_ports[3]: 70000: want 1-65535`}},
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
			`9:11: modbus.devices[0].tags[1].address: give the 0-based address`,
			`9:18: modbus.devices[0].tags[1].name: "temp": a device's tag names must differ`,
			`9:40: unknown key "adress" in modbus.devices[0].tags[1] (did you mean "address"?)`,
			`10:13: modbus.devices[1].name: "boiler": modbus.devices[0] has this name too`,
			`12:18: modbus.devices[1].transport: "udp": want tcp`}},
		// Issue 8: credentials in URLs are taken out; messages never
		// show them.
		{"two passwords", "rules: {paths: [r]}\nmqtt:\n  brokers: [\"tcp://u:s3cret@a:1883\", \"tcp://u:other@b:1883\"]\n",
			[]string{`3:38: mqtt.brokers[1]: another password than mqtt.brokers[0]'s`}},
		{"password in URL and file", "rules: {paths: [r]}\nmqtt:\n  password_file: pw\n  brokers: [\"tcp://u:s3cret@a:1883\"]\n",
			[]string{`4:13: mqtt.brokers[0]: a password in the URL, and password_file or password_env too`}},
		{"not a URL", "rules: {paths: [r]}\nmqtt:\n  brokers: [\"tcp://u:s3cret@a b:1883\"]\n",
			[]string{`3:13: mqtt.brokers[0]: "tcp://xxxxx@a b:1883" is not a broker URL`}},
		// Breaker 1: URLs whose redacted form parses were taken, and run
		// connected as tcp://xxxxx@host.
		{"bad escape in the password", "rules: {paths: [r]}\nmqtt:\n  brokers: [\"tcp://u:Sup%zzer@127.0.0.1:1883\"]\n",
			[]string{`3:13: mqtt.brokers[0]: "tcp://xxxxx@127.0.0.1:1883" is not a broker URL (like tcp://broker:1883): it does not parse`}},
		{"space and slash in the password", "rules: {paths: [r]}\nmqtt:\n  brokers: [\"tcp://u:Super Secret/Pw@127.0.0.1:1883\"]\n",
			[]string{`3:13: mqtt.brokers[0]: "tcp://xxxxx@127.0.0.1:1883" is not a broker URL`}},
		{"slash in the password", "rules: {paths: [r]}\nmqtt:\n  brokers: [\"tcp://u:12/ss@b:1883\"]\n",
			[]string{`3:13: mqtt.brokers[0]: "tcp://xxxxx@b:1883" is not a broker URL`}},
		// Issue 8: nothing faces the network unprotected by accident.
		{"embedded broker on the network", "rules: {paths: [r]}\nmqtt:\n  embedded: {listen: \"0.0.0.0:1883\", anonymous: some}\nhttp: {listen: \"0.0.0.0:9108\", pprof: true}\n",
			[]string{`3:22: mqtt.embedded.listen: 0.0.0.0:1883: the embedded MQTT broker would face the network without TLS`,
				`3:49: mqtt.embedded.anonymous: "some": want read or none`,
				`4:16: http.listen: 0.0.0.0:9108: /metrics, /readyz and Go's profiler (pprof) would face the network without TLS`}},
		{"embedded broker users", "rules: {paths: [r]}\nmqtt:\n  embedded:\n    users:\n      - {username: plcwatch-agent, password_file: a}\n      - {username: x}\n    tls: {cert_file: c.pem}\n",
			[]string{`5:20: mqtt.embedded.users[0].username: "plcwatch-agent" is the agent's own name`,
				`6:9: mqtt.embedded.users[1]: give password_file or password_env`,
				`7:10: mqtt.embedded.tls: cert_file and key_file go together`}},
		// Issue 9: assets name devices on the wire.
		{"assets", `rules: {paths: [r]}
modbus:
  devices:
    - {name: plc-1, address: "10.0.0.5:502", tags: [{name: t, register: 40001}]}
assets:
  - {name: plc-1, address: "10.0.0.9:502"}
  - {name: hmi, address: "hmi.plant:502"}
  - {name: "a/b", address: "10.0.0.7:0"}
  - {address: 10.0.0.8, unit: 256}
`, []string{`6:12: assets[0].name: "plc-1": modbus.devices[0] has this name too`,
			`7:26: assets[1].address: "hmi.plant:502": want an IP address`,
			`8:12: assets[2].name: "a/b": no / + #`,
			`8:28: assets[2].address: "10.0.0.7:0": port 0 is not a port`,
			`9:5: assets[3].name: every asset needs a name`,
			`9:31: assets[3].unit: 256: want 0-255`}},
		{"asset names clash", `rules: {paths: [r]}
modbus:
  devices:
    - {name: plc-1, address: "10.0.0.5:502", tags: [{name: t, register: 40001}]}
assets:
  - {name: plc-x, address: "10.0.0.5:502", unit: 1}
  - {name: hmi-1, address: 10.0.0.6}
  - {name: hmi-2, address: 10.0.0.6}
`, []string{`6:28: assets[0].address: 10.0.0.5:502 unit 1 is already named "plc-1" (modbus.devices[0])`,
			`8:28: assets[2].address: 10.0.0.6 (every port) is already named "hmi-1" (assets[1])`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := problemsOf(t, tc.text)
			if len(got) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if i < len(got) && !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d:\n got  %s\n want %s...", i, got[i], w)
				}
			}
			for _, p := range got {
				if strings.Contains(p, "s3cret") || strings.Contains(p, "cannot unmarshal") {
					t.Errorf("problem in Go's terms or with the secret: %s", p)
				}
			}
		})
	}
}

// TestSyntaxErrorsPointAtTheCause: yaml.v3 reports an unclosed { one line
// early (issue 9: "a missing } on line 16 reported at 15"); the problem
// points at the bracket or quote that is not closed.
func TestSyntaxErrorsPointAtTheCause(t *testing.T) {
	lines := []string{"site: plant-a", "gateway: gw-1", "rules:", "  paths: [rules]"}
	for len(lines) < 13 {
		lines = append(lines, fmt.Sprintf("# comment %d with a { and a \"quote\"", len(lines)+1))
	}
	doc := func(l16 string, more ...string) string {
		return strings.Join(append(append(append([]string{}, lines...), "modbus:", "  devices:"), append([]string{l16}, more...)...), "\n") + "\n"
	}
	tests := []struct {
		name, text, want string
	}{
		{"missing }", doc("    - {name: plc-1, address: 127.0.0.1:5020, tags: [{name: t, register: 40001}]", "    - name: plc-2"),
			"16:7: this { is not closed"},
		{"missing } on line 1", "site: {a: 1\nrules: {paths: [r]}\n", "1:7: this { is not closed"},
		{"missing ]", "rules:\n  paths: [r, 's ]' \nsite: x\n", "2:10: this [ is not closed"},
		{"missing quote", "site: x\nrules: {paths: [r]}\ngateway: \"gw-1\nqueue: 100\n", "3:10: this quote is not closed"},
		{"don't is not a quote", "site: don't\nrules: {paths: [r\n", "2:16: this [ is not closed"},
		{"bad indentation", "rules:\n  paths: [r]\n site: x\n", "3:1: did not find expected key"},
		{"tab", "rules:\n\tpaths: [r]\n", "2:1: found character that cannot start any token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := problemsOf(t, tc.text)
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestConfigValues: what the file says is what the agent gets, anchors and
// merge keys included; "0" turns a duration off.
func TestConfigValues(t *testing.T) {
	_, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(`rules: {paths: [r]}
mqtt:
  heartbeat: 0
  brokers: ["tcp://alice:s3cret@broker-a:1883", "ssl://broker-b:8883"]
device: &dev
  interval: 2s
  timeout: 500ms
modbus:
  devices:
    - <<: *dev
      name: a
      address: 10.0.0.1
      tags: [{name: t, register: 40001}]
    - <<: *dev
      name: b
      address: 10.0.0.2:5020
      interval: 5s
      tags: [{name: t, register: 40001}]
`))
	if err == nil || !strings.Contains(err.Error(), `unknown key "device"`) {
		t.Fatalf("a top-level anchor holder is an unknown key: %v", err)
	}
	cfg, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(`rules: {paths: [r]}
mqtt:
  heartbeat: 0
  brokers: ["tcp://alice:s3cret@broker-a:1883", "ssl://broker-b:8883"]
modbus:
  devices:
    - &dev
      name: a
      address: 10.0.0.1
      interval: 2s
      timeout: 500ms
      tags: [{name: t, register: 40001}]
    - <<: *dev
      name: b
      address: 10.0.0.2:5020
      interval: 5s
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Heartbeat != 0 {
		t.Errorf("heartbeat: 0 is %v, want off", cfg.MQTT.Heartbeat)
	}
	if got := strings.Join(cfg.MQTT.Brokers, " "); got != "tcp://broker-a:1883 ssl://broker-b:8883" || cfg.MQTT.Username != "alice" {
		t.Errorf("brokers %q, user %q: the credentials stay in the URL", got, cfg.MQTT.Username)
	}
	if pw, _ := cfg.password(); pw != "s3cret" {
		t.Errorf("the URL's password is %q", pw)
	}
	if len(cfg.Warnings()) != 1 || strings.Contains(cfg.Warnings()[0].Msg, "s3cret") || !strings.Contains(cfg.Warnings()[0].Msg, "prefer password_file") {
		t.Errorf("warnings: %+v", cfg.Warnings())
	}
	d := cfg.Modbus.Devices
	if len(d) != 2 || d[1].Name != "b" || d[1].Interval != 5*time.Second || d[1].Timeout != 500*time.Millisecond || len(d[1].Tags) != 1 || d[1].Address != "10.0.0.2:5020" {
		t.Errorf("merged device: %+v", d[1])
	}
}

// TestEveryNumberHasARange walks the configuration's types: every number,
// size and duration a user can write has a bound (issue 8), so a key added
// later without one fails here.
func TestEveryNumberHasARange(t *testing.T) {
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch {
		case typ == durationType || typ == sizeType:
		case typ.Kind() == reflect.Struct && typ != timeType:
			for name, ft := range yamlFields(typ) {
				walk(ft, strings.TrimPrefix(path+"."+name, "."))
			}
			return
		case typ.Kind() == reflect.Slice:
			walk(typ.Elem(), path+"[]")
			return
		case typ.Kind() == reflect.Map:
			walk(typ.Elem(), path+".*")
			return
		}
		switch typ.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
			reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
			if _, ok := bounds[path]; !ok {
				t.Errorf("%s (%s) has no range in bounds.go", path, typ)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	for _, b := range boundList {
		if typeAt(b.path) == nil {
			t.Errorf("bound %s names no key", b.path)
		}
		if b.min > b.max {
			t.Errorf("bound %s: %v > %v", b.path, b.min, b.max)
		}
	}
}

// TestDefaultsAreInRange: what Defaults fills in is within the ranges.
func TestDefaultsAreInRange(t *testing.T) {
	cfg := &Config{Alerts: AlertLog{Path: "alerts.jsonl"}, Events: EventLog{Path: "events.jsonl"}, nodes: map[string]*yaml.Node{}}
	cfg.Defaults()
	v := reflect.ValueOf(cfg).Elem()
	for _, b := range boundList {
		if strings.Contains(b.path, "[]") {
			continue // list items have no defaults without items
		}
		f := v
		for _, part := range strings.Split(b.path, ".") {
			f = fieldByYAML(f, part)
		}
		var x float64
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			x = float64(f.Int())
		case reflect.Float64:
			x = f.Float()
		default:
			t.Fatalf("%s: %s", b.path, f.Kind())
		}
		if x == 0 && b.path == "spool.segment_bytes" {
			continue // the spool's own default (max_bytes/16)
		}
		if !b.holds(x) {
			t.Errorf("%s: default %v is outside %s", b.path, x, b.Range())
		}
	}
}

func fieldByYAML(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if opts == "inline" {
			if f := fieldByYAML(v.Field(i), name); f.IsValid() {
				return f
			}
		}
		if tag == name {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

// TestRangesAreChecked writes every bounded key just outside its range
// (a problem that says the range, at the value) and at both ends of it
// (no range problem).
func TestRangesAreChecked(t *testing.T) {
	for _, b := range boundList {
		typ := typeAt(b.path)
		write := func(v float64) string {
			switch {
			case typ == durationType:
				return time.Duration(v).String()
			case typ.Kind() == reflect.Float64:
				return fmt.Sprint(v)
			}
			return fmt.Sprintf("%d", int64(v))
		}
		step := 1.0
		if typ.Kind() == reflect.Float64 {
			step = math.Max(1, math.Abs(b.max)*1e-6)
		}
		cases := map[string]bool{write(b.max + step): false, write(b.min): true, write(b.max): true}
		if b.min > 0 || typ.Kind() != reflect.Uint16 {
			cases[write(b.min-step)] = b.min-step == 0 && b.zero != ""
		}
		if b.zero != "" {
			cases["0"] = true
		}
		for value, ok := range cases {
			t.Run(b.path+"="+value, func(t *testing.T) {
				got := problemsOf(t, configWith(b.path, value))
				path := strings.ReplaceAll(b.path, "[]", "[0]")
				var mine []string
				for _, p := range got {
					if strings.Contains(p, " "+path+": ") {
						mine = append(mine, p)
					}
				}
				if ok && strings.Contains(strings.Join(mine, "\n"), "want "+b.Range()) {
					t.Errorf("in range, yet: %q", mine)
				}
				if !ok && (len(mine) != 1 || !strings.Contains(mine[0], "want "+b.Range())) {
					t.Errorf("out of range: got %q (all: %q), want one problem saying %q", mine, got, b.Range())
				}
			})
		}
	}
}

// TestSizeKeysTakeSuffixes: every key counted in bytes — the ByteSize keys
// and capture's integers alike — reads 64KiB, 1MiB, 1GiB, 1000KB and the
// plain number the same (issue: "capture.ring_block_size: 1MiB" was "want
// a whole number", though docs/config.md promises sizes take 256MiB).
func TestSizeKeysTakeSuffixes(t *testing.T) {
	n := 0
	for _, b := range boundList {
		if typeAt(b.path) != sizeType && !b.size {
			continue
		}
		n++
		for _, tc := range []struct {
			text string
			want int64
		}{
			{fmtSize(b.max), int64(b.max)},
			{fmt.Sprint(int64(b.max)), int64(b.max)},
			{"128KiB", 128 << 10},
			{"1MiB", 1 << 20},
			{"1000KB", 1e6},
		} {
			if float64(tc.want) < b.min || float64(tc.want) > b.max {
				continue
			}
			t.Run(b.path+"="+tc.text, func(t *testing.T) {
				cfg, probs := parse("c.yaml", []byte(configWith(b.path, tc.text)))
				path := strings.ReplaceAll(b.path, "[]", "[0]")
				for _, p := range probs {
					// Not read as a size, or not in range: what goes with
					// other keys (a power of two, at most max_bytes) may be.
					if strings.Contains(p.Error(), " "+path+": ") && strings.Contains(p.Error(), ": want ") {
						t.Fatalf("%s", p.Error())
					}
				}
				f := reflect.ValueOf(cfg).Elem()
				for _, part := range strings.Split(b.path, ".") {
					f = fieldByYAML(f, part)
				}
				if f.Int() != tc.want {
					t.Errorf("read %d, want %d", f.Int(), tc.want)
				}
			})
		}
		got := problemsOf(t, configWith(b.path, "lots"))
		if !strings.Contains(strings.Join(got, "\n"), b.path+`: lots: want a size in bytes, like 1048576, 64KiB or 256MiB`) {
			t.Errorf("%s: lots: %q", b.path, got)
		}
	}
	if n < 10 {
		t.Errorf("%d size keys, want at least the 10 of docs/config.md", n)
	}
}

// configWith is a valid configuration with value written at path (list
// items: the first of one device with one tag, one asset).
func configWith(path, value string) string {
	doc := map[string]any{
		"rules":  map[string]any{"paths": []any{"r"}},
		"modbus": map[string]any{"devices": []any{map[string]any{"name": "d", "address": "10.0.0.1", "tags": []any{map[string]any{"name": "t", "register": "40001"}}}}},
		"assets": []any{map[string]any{"name": "a", "address": "10.0.0.9"}},
		"opcua":  map[string]any{"devices": []any{map[string]any{"name": "u", "endpoint": "opc.tcp://10.0.0.2:4840", "tags": []any{map[string]any{"name": "t", "node": "ns=2;s=x"}}}}},
	}
	var node any = doc
	parts := strings.Split(path, ".")
	for i, part := range parts {
		name, list := strings.CutSuffix(part, "[]")
		m := node.(map[string]any)
		if i == len(parts)-1 {
			var v yaml.Node
			_ = yaml.Unmarshal([]byte(value), &v)
			if list {
				m[name] = []any{v.Content[0]}
			} else {
				m[name] = v.Content[0]
			}
			break
		}
		if m[name] == nil {
			m[name] = map[string]any{}
		}
		node = m[name]
		if list {
			node = node.([]any)[0]
		}
	}
	b, _ := yaml.Marshal(doc)
	return string(b)
}

// TestRangeTableInDocs: docs/config.md lists every range as the code
// checks it.
func TestRangeTableInDocs(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(rangeTable()), "\n") {
		if !strings.Contains(string(doc), line+"\n") {
			t.Errorf("docs/config.md lacks the line\n%s\n(the whole table:)\n%s", line, rangeTable())
			break
		}
	}
}

// TestSecretsFromFilesAreNotEchoed: a password_file or password_env that
// holds the password itself (a common slip) is reported without repeating
// it.
func TestSecretsFromFilesAreNotEchoed(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	good := filepath.Join(dir, "pw")
	os.WriteFile(good, []byte("hunter2\r\nsecond line\n"), 0o600)
	t.Setenv("PLCWATCH_TEST_EMPTY", "")
	for _, tc := range []struct{ key, value, want string }{
		{"password_file", "Hunter2-S3cret", "the file it names cannot be read: no such file or directory"},
		{"password_env", "Hunter2-S3cret", "the environment has no variable of that name"},
		{"password_file", empty, "the file it names is empty"},
		{"password_env", "PLCWATCH_TEST_EMPTY", "the variable it names is empty"},
	} {
		c := &Config{MQTT: MQTTConfig{Brokers: []string{"tcp://b:1883"}}}
		if tc.key == "password_file" {
			c.MQTT.PasswordFile = tc.value
		} else {
			c.MQTT.PasswordEnv = tc.value
		}
		_, err := c.password()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "S3cret") || strings.Contains(err.Error(), dir) {
			t.Errorf("%s %s: %v", tc.key, tc.value, err)
		}
	}
	c := &Config{MQTT: MQTTConfig{PasswordFile: good}}
	if pw, err := c.password(); pw != "hunter2" || err != nil {
		t.Errorf("password file: %q, %v", pw, err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://alice:s3cret@broker:1883": "tcp://alice:xxxxx@broker:1883",
		"tcp://alice@broker:1883":        "tcp://alice@broker:1883",
		"tcp://a:s3cret@b c:1883":        "tcp://xxxxx@b c:1883",
		"a:s3cret@%zz":                   "xxxxx@%zz",
		"tcp://broker:1883":              "tcp://broker:1883",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkParseConfig reads a configuration of 100 devices of 100 tags
// (10,000 tags): keys, types, ranges, defaults, validation and names.
func BenchmarkParseConfig(b *testing.B) {
	var s strings.Builder
	s.WriteString("rules: {paths: [r]}\nmodbus:\n  devices:\n")
	for d := range 100 {
		fmt.Fprintf(&s, "    - name: dev-%d\n      address: 10.0.%d.%d:502\n      interval: 1s\n      tags:\n", d, d/250, d%250+1)
		for t := range 100 {
			fmt.Fprintf(&s, "        - {name: t%d, table: holding, address: %d, type: uint16, scale: 0.1, uom: degC}\n", t, t)
		}
	}
	src := []byte(s.String())
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseConfig("/etc/plcwatch/test.yaml", src); err != nil {
			b.Fatal(err)
		}
	}
}
