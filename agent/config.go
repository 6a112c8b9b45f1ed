package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/agent/spool"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/collectors/modbus"
	"github.com/plcwatch/plcwatch/rules"
)

// Config is the agent's configuration file (docs/config.md).
type Config struct {
	Site    string        `yaml:"site"`
	Gateway string        `yaml:"gateway"`
	Log     LogConfig     `yaml:"log"`
	Capture CaptureConfig `yaml:"capture"`
	Rules   RulesConfig   `yaml:"rules"`
	MQTT    MQTTConfig    `yaml:"mqtt"`
	Spool   SpoolConfig   `yaml:"spool"`
	HTTP    HTTPConfig    `yaml:"http"`
	Alerts  AlertLog      `yaml:"alert_log"`
	Events  EventLog      `yaml:"event_log"`
	Queue   int           `yaml:"queue"`
	Modbus  ModbusConfig  `yaml:"modbus"`
	// Telemetry publishes polled values.
	Telemetry TelemetryConfig `yaml:"telemetry"`

	file     string
	nodes    map[string]*yaml.Node // field path -> value node, for positions
	warnings []Warning
}

// LogConfig says how the agent logs.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// CaptureConfig is passive inspection; capture.Config documents the fields.
type CaptureConfig struct {
	capture.Config `yaml:",inline"`
}

// RulesConfig says where rules and the baseline live.
type RulesConfig struct {
	Paths        []string `yaml:"paths"`
	BaselineFile string   `yaml:"baseline_file"`
}

// MQTTConfig is the alert output.
type MQTTConfig struct {
	Brokers        []string      `yaml:"brokers"` // empty: the embedded broker
	ClientID       string        `yaml:"client_id"`
	Username       string        `yaml:"username"`
	PasswordFile   string        `yaml:"password_file"`
	PasswordEnv    string        `yaml:"password_env"`
	TLS            TLSConfig     `yaml:"tls"`
	TopicPrefix    string        `yaml:"topic_prefix"`
	QoS            int           `yaml:"qos"`
	KeepAlive      time.Duration `yaml:"keepalive"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	Window         int           `yaml:"window"`
	Heartbeat      time.Duration `yaml:"heartbeat"`
	Embedded       EmbeddedMQTT  `yaml:"embedded"`
	DrainTimeout   time.Duration `yaml:"drain_timeout"`
	// MaxAttempts: a message the broker refuses this many times, alone on
	// a working connection, goes to the dead-letter file; 0 never.
	MaxAttempts int `yaml:"max_attempts"`
}

// TLSConfig is TLS toward the broker.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// ModbusConfig is active polling of Modbus devices; modbus.Device
// documents the fields.
type ModbusConfig struct {
	Devices []modbus.Device `yaml:"devices"`
}

// TelemetryConfig says whether polled values go to MQTT, at
// <prefix>/telemetry/<device>, one document per device and poll cycle.
type TelemetryConfig struct {
	Enabled bool `yaml:"enabled"`
	QoS     int  `yaml:"qos"` // 0 (default): a lost value is replaced by the next cycle's
}

// EmbeddedMQTT is the in-process broker used when no broker is configured.
type EmbeddedMQTT struct {
	Listen string `yaml:"listen"`
}

// SpoolConfig is the on-disk outbox.
type SpoolConfig struct {
	Dir          string        `yaml:"dir"`
	MaxBytes     ByteSize      `yaml:"max_bytes"`
	Fsync        string        `yaml:"fsync"` // always, interval, never
	FsyncEvery   time.Duration `yaml:"fsync_interval"`
	SegmentBytes ByteSize      `yaml:"segment_bytes"`
	// MemoryBytes bounds the alerts kept in memory while the disk refuses
	// writes (full or failing).
	MemoryBytes ByteSize `yaml:"memory_bytes"`
}

// HTTPConfig is health and metrics.
type HTTPConfig struct {
	Listen string `yaml:"listen"` // "" or "off": no HTTP server
	// PProf serves Go's profiler at /debug/pprof/ on the same listener. Off
	// by default: profiles reveal internals and cost CPU while taken.
	PProf bool `yaml:"pprof"`
}

// AlertLog is an optional local copy of every alert.
type AlertLog struct {
	Path     string   `yaml:"path"`
	MaxBytes ByteSize `yaml:"max_bytes"`
	Keep     int      `yaml:"keep"`
}

// EventLog is an optional log of every decoded event, as JSON lines
// (docs/config.md): what Zeek's modbus.log and Suricata's eve.json give.
type EventLog struct {
	Path      string   `yaml:"path"`
	MaxBytes  ByteSize `yaml:"max_bytes"`
	Keep      int      `yaml:"keep"`
	Ops       []string `yaml:"ops"`       // only these ops (read, write, ...); empty: all
	Protocols []string `yaml:"protocols"` // only these protocols (modbus, opcua); empty: all
	Sources   []string `yaml:"sources"`   // only these sources (wire, poll); empty: all
	Queue     int      `yaml:"queue"`     // events waiting for the writer; beyond, dropped and counted
}

// ByteSize reads 1048576, "64KiB", "256MiB", "1GiB" (and KB, MB, GB as
// powers of 1000).
type ByteSize int64

var sizeRE = regexp.MustCompile(`^\s*(\d+)\s*([KMGT]i?B|B)?\s*$`)

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	// yaml.v3 passes an unmarshaler's error on without a position: give
	// it one, in the form decodeProblems reads.
	m := sizeRE.FindStringSubmatch(n.Value)
	if m == nil {
		return fmt.Errorf("line %d column %d: %q is not a size (like 1048576, 64KiB, 256MiB)", n.Line, n.Column, n.Value)
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("line %d column %d: %q is not a size", n.Line, n.Column, n.Value)
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	*b = ByteSize(v * mult)
	return nil
}

// Problem is a configuration error with its position.
type Problem struct {
	File      string
	Line, Col int
	Msg       string
}

func (p Problem) Error() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// ConfigError lists every problem of a configuration file.
type ConfigError []Problem

func (e ConfigError) Error() string {
	s := make([]string, len(e))
	for i, p := range e {
		s[i] = p.Error()
	}
	return strings.Join(s, "\n")
}

// LoadConfig reads, decodes strictly (unknown keys are errors), defaults
// and validates a configuration file, without any other I/O than reading
// the files it names (TLS certificates, password file). Every problem is
// reported with file:line:col.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, src)
}

// ParseConfig is LoadConfig for a configuration already read.
func ParseConfig(path string, src []byte) (*Config, error) {
	cfg := &Config{file: path, nodes: map[string]*yaml.Node{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, ConfigError{yamlProblem(path, err)}
	}
	var probs ConfigError
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		probs = append(probs, checkKeys(path, root, reflect.TypeOf(Config{}), "", cfg.nodes)...)
		if err := root.Decode(cfg); err != nil {
			// Values of the wrong type: what was decoded is not worth
			// validating.
			return nil, append(probs, decodeProblems(path, err)...)
		}
	}
	// Unknown keys do not stop the checks of the known ones: an operator
	// fixing a file wants every problem at once.
	cfg.resolve(filepath.Dir(path))
	cfg.Defaults()
	var verr ConfigError
	if err := cfg.Validate(); err != nil && !errors.As(err, &verr) {
		return nil, err
	}
	probs = append(probs, verr...)
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
		return nil, probs
	}
	// Positions are for reporting problems: the daemon must not keep a
	// large file's syntax tree (10,000 tags are 17 MB of nodes) for its life.
	cfg.nodes = nil
	return cfg, nil
}

var lineRE = regexp.MustCompile(`^line (\d+)(?: column (\d+))?: `)

func yamlProblem(path string, err error) Problem {
	p := Problem{File: path, Line: 1, Col: 1, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := lineRE.FindStringSubmatch(p.Msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			p.Col, _ = strconv.Atoi(m[2])
		}
		p.Msg = p.Msg[len(m[0]):]
	}
	return p
}

// decodeProblems turns yaml.v3's type errors ("line 7: cannot unmarshal
// ...") into problems.
func decodeProblems(path string, err error) []Problem {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{yamlProblem(path, err)}
	}
	var out []Problem
	for _, e := range te.Errors {
		out = append(out, yamlProblem(path, errors.New(e)))
	}
	return out
}

// checkKeys walks a mapping against a struct's yaml tags: unknown keys are
// problems at their position, and every known value's node is recorded
// under its dotted path so that Validate can point at it.
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string, nodes map[string]*yaml.Node) []Problem {
	if n.Kind != yaml.MappingNode {
		return nil // Decode reports wrong kinds
	}
	fields := map[string]reflect.Type{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if opts == "inline" {
				walk(f.Type)
				continue
			}
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields[name] = f.Type
		}
	}
	walk(t)
	var probs []Problem
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		where := strings.TrimPrefix(path+"."+k.Value, ".")
		if !ok {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if path != "" {
				msg += " in " + path
			}
			if s := rules.Suggest(k.Value, slices.Sorted(maps.Keys(fields))); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			probs = append(probs, Problem{File: file, Line: k.Line, Col: k.Column, Msg: msg})
			continue
		}
		nodes[where] = v
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
			probs = append(probs, checkKeys(file, v, ft, where, nodes)...)
		}
		if ft.Kind() == reflect.Slice && v.Kind == yaml.SequenceNode {
			for j, item := range v.Content {
				at := fmt.Sprintf("%s[%d]", where, j)
				nodes[at] = item
				if ft.Elem().Kind() == reflect.Struct {
					probs = append(probs, checkKeys(file, item, ft.Elem(), at, nodes)...)
				}
			}
		}
	}
	return probs
}

// resolve makes the paths in the file relative to its folder.
func (c *Config) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Rules.Paths {
		abs(&c.Rules.Paths[i])
	}
	for _, p := range []*string{&c.Rules.BaselineFile, &c.Spool.Dir, &c.MQTT.PasswordFile, &c.MQTT.TLS.CAFile,
		&c.MQTT.TLS.CertFile, &c.MQTT.TLS.KeyFile, &c.Alerts.Path, &c.Events.Path} {
		abs(p)
	}
	for i := range c.Modbus.Devices {
		t := &c.Modbus.Devices[i].TLS
		for _, p := range []*string{&t.CAFile, &t.CertFile, &t.KeyFile} {
			abs(p)
		}
	}
}

// Defaults fills what the file left out.
func (c *Config) Defaults() {
	if c.Gateway == "" {
		c.Gateway, _ = os.Hostname()
	}
	if c.Site == "" {
		c.Site = "default"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.Capture.Defaults()
	if c.MQTT.ClientID == "" {
		// The site too: two gateways named alike at two sites on one
		// broker must not take each other's connection (issue 8).
		c.MQTT.ClientID = "plcwatch-" + c.Site + "-" + c.Gateway
	}
	if c.MQTT.TopicPrefix == "" {
		c.MQTT.TopicPrefix = "plcwatch/" + c.Site + "/" + c.Gateway
	}
	if c.nodes["mqtt.qos"] == nil {
		c.MQTT.QoS = 1
	}
	if c.nodes["mqtt.keepalive"] == nil {
		c.MQTT.KeepAlive = 30 * time.Second // 0, written, turns it off (MQTT 3.1.1 §3.1.2.10)
	}
	if c.nodes["mqtt.max_attempts"] == nil {
		c.MQTT.MaxAttempts = 5
	}
	if c.MQTT.ConnectTimeout == 0 {
		c.MQTT.ConnectTimeout = 10 * time.Second
	}
	if c.MQTT.PublishTimeout == 0 {
		c.MQTT.PublishTimeout = 10 * time.Second
	}
	if c.MQTT.Window == 0 {
		c.MQTT.Window = 256
	}
	if c.nodes["mqtt.heartbeat"] == nil {
		c.MQTT.Heartbeat = time.Minute
	}
	if c.MQTT.Embedded.Listen == "" {
		c.MQTT.Embedded.Listen = "127.0.0.1:1883"
	}
	if c.MQTT.DrainTimeout == 0 {
		c.MQTT.DrainTimeout = 5 * time.Second
	}
	if c.Spool.Dir == "" {
		c.Spool.Dir = "/var/lib/plcwatch/spool"
	}
	if c.Spool.MaxBytes == 0 {
		c.Spool.MaxBytes = 256 << 20
	}
	if c.Spool.FsyncEvery == 0 {
		c.Spool.FsyncEvery = time.Second
	}
	if c.Spool.MemoryBytes == 0 {
		c.Spool.MemoryBytes = spool.DefaultMemoryBytes
	}
	if c.nodes["http.listen"] == nil {
		c.HTTP.Listen = "127.0.0.1:9108"
	}
	if c.Alerts.Path != "" {
		if c.Alerts.MaxBytes == 0 {
			c.Alerts.MaxBytes = 100 << 20
		}
		if c.Alerts.Keep == 0 {
			c.Alerts.Keep = 5
		}
	}
	if c.Events.Path != "" {
		if c.Events.MaxBytes == 0 {
			c.Events.MaxBytes = 100 << 20
		}
		if c.Events.Keep == 0 {
			c.Events.Keep = 5
		}
		if c.Events.Queue == 0 {
			c.Events.Queue = 4096
		}
	}
	if c.Queue == 0 {
		c.Queue = 8192
	}
	for i := range c.Modbus.Devices {
		c.Modbus.Devices[i].Defaults()
	}
}

// Validate checks values without I/O beyond reading the files named (it
// must not start anything).
func (c *Config) Validate() error {
	var probs ConfigError
	bad := func(path, format string, a ...any) {
		p := Problem{File: c.file, Msg: path + ": " + fmt.Sprintf(format, a...)}
		// The value's own line, or its closest enclosing one (a
		// missing key is reported where its mapping starts).
		for at := path; at != ""; at = parentPath(at) {
			if n := c.nodes[at]; n != nil {
				p.Line, p.Col = n.Line, n.Column
				break
			}
		}
		probs = append(probs, p)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	if err := c.Capture.Validate(); err != nil {
		var fe *capture.FieldError
		for _, e := range unjoin(err) {
			if errors.As(e, &fe) {
				bad("capture."+fe.Field, "%s", fe.Msg)
			} else {
				bad("capture", "%v", e)
			}
		}
	}
	if len(c.Rules.Paths) == 0 {
		bad("rules.paths", "name at least one rule file or folder (the default set is configs/rules)")
	}
	for i, b := range c.MQTT.Brokers {
		u, err := url.Parse(b)
		path := fmt.Sprintf("mqtt.brokers[%d]", i)
		if err != nil || u.Host == "" {
			bad(path, "%q is not a broker URL (like tcp://broker:1883)", b)
			continue
		}
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			bad(path, "scheme %q: want tcp, ssl, ws or wss", u.Scheme)
		}
	}
	if c.MQTT.QoS < 0 || c.MQTT.QoS > 2 {
		bad("mqtt.qos", "%d: want 0, 1 or 2", c.MQTT.QoS)
	}
	if c.MQTT.PasswordFile != "" && c.MQTT.PasswordEnv != "" {
		bad("mqtt.password_env", "give password_file or password_env, not both")
	}
	if c.MQTT.PasswordFile != "" {
		if _, err := os.Stat(c.MQTT.PasswordFile); err != nil {
			bad("mqtt.password_file", "%v", err)
		}
	}
	if c.MQTT.PasswordEnv != "" {
		if _, ok := os.LookupEnv(c.MQTT.PasswordEnv); !ok {
			bad("mqtt.password_env", "the environment has no %s", c.MQTT.PasswordEnv)
		}
	}
	if strings.ContainsAny(c.MQTT.TopicPrefix, "#+") || strings.HasSuffix(c.MQTT.TopicPrefix, "/") {
		bad("mqtt.topic_prefix", "%q: no wildcards, no trailing /", c.MQTT.TopicPrefix)
	}
	if _, err := c.tlsConfig(); err != nil {
		bad("mqtt.tls", "%v", err)
	}
	if c.MQTT.Window < 1 || c.MQTT.Window > 65000 {
		bad("mqtt.window", "%d: want 1..65000", c.MQTT.Window)
	}
	if c.MQTT.Heartbeat < 0 {
		bad("mqtt.heartbeat", "must not be negative (0 turns it off)")
	}
	switch ka := c.MQTT.KeepAlive; {
	case ka < 0 || ka > 65535*time.Second:
		bad("mqtt.keepalive", "%s: want 0 (off) or 1s to 18h12m15s (MQTT counts it in seconds, at most 65535)", ka)
	case ka%time.Second != 0:
		bad("mqtt.keepalive", "%s: want whole seconds (MQTT counts it in seconds); 0 turns it off", ka)
	}
	if c.MQTT.MaxAttempts < 0 || c.MQTT.MaxAttempts > 1000 {
		bad("mqtt.max_attempts", "%d: want 1 to 1000, or 0 to never set a message aside", c.MQTT.MaxAttempts)
	}
	if len(c.MQTT.Brokers) == 0 {
		if _, _, err := net.SplitHostPort(c.MQTT.Embedded.Listen); err != nil {
			bad("mqtt.embedded.listen", "%q: want host:port", c.MQTT.Embedded.Listen)
		}
	}
	if _, err := spool.ParseSync(c.Spool.Fsync); err != nil {
		bad("spool.fsync", "%v", err)
	}
	if c.Spool.MaxBytes < 1<<20 {
		bad("spool.max_bytes", "%d: at least 1MiB", c.Spool.MaxBytes)
	}
	if c.Spool.MemoryBytes < 1<<20 || c.Spool.MemoryBytes > 1<<30 {
		bad("spool.memory_bytes", "%d: want 1MiB to 1GiB", c.Spool.MemoryBytes)
	}
	if c.HTTP.Listen != "" && c.HTTP.Listen != "off" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q: want host:port, or off", c.HTTP.Listen)
		}
	}
	if c.Alerts.Path != "" && (c.Alerts.Keep < 1 || c.Alerts.MaxBytes < 1024) {
		bad("alert_log", "keep must be at least 1 and max_bytes at least 1KiB")
	}
	if c.Events.Path != "" {
		if c.Events.Keep < 1 || c.Events.Keep > 1000 || c.Events.MaxBytes < 1024 {
			bad("event_log", "keep must be 1 to 1000 and max_bytes at least 1KiB")
		}
		if c.Events.Queue < 64 || c.Events.Queue > 1<<20 {
			bad("event_log.queue", "%d: want 64 to 1048576", c.Events.Queue)
		}
		for i, op := range c.Events.Ops {
			if _, ok := plcwatch.ParseOp(op); !ok {
				bad(fmt.Sprintf("event_log.ops[%d]", i), "%q is not an op (read, write, diagnostic, identify, other, session, call, status, browse, manage, asset)", op)
			}
		}
		for i, p := range c.Events.Protocols {
			if p != "modbus" && p != "opcua" {
				bad(fmt.Sprintf("event_log.protocols[%d]", i), "%q: want modbus or opcua", p)
			}
		}
		for i, src := range c.Events.Sources {
			if src != "wire" && src != "poll" {
				bad(fmt.Sprintf("event_log.sources[%d]", i), "%q: want wire or poll", src)
			}
		}
	} else if len(c.Events.Ops)+len(c.Events.Protocols)+len(c.Events.Sources) > 0 {
		bad("event_log.path", "the event log's filters are set but not its path")
	}
	if c.Queue < 64 {
		bad("queue", "%d: at least 64", c.Queue)
	}
	names := map[string]int{}
	for i := range c.Modbus.Devices {
		d := &c.Modbus.Devices[i]
		at := fmt.Sprintf("modbus.devices[%d]", i)
		for _, err := range d.Validate() {
			var fe *modbus.FieldError
			if errors.As(err, &fe) {
				bad(at+"."+fe.Field, "%s", fe.Msg)
			} else {
				bad(at, "%v", err)
			}
		}
		if j, dup := names[d.Name]; dup && d.Name != "" {
			bad(at+".name", "%q: devices[%d] has this name too", d.Name, j)
		}
		names[d.Name] = i
		if d.Transport == "tcp+tls" && d.TLS.CAFile != "" && d.TLS.CertFile != "" && d.TLS.KeyFile != "" {
			if _, err := modbus.New(*d, modbus.Options{}); err != nil {
				bad(at+".tls", "%v", err)
			}
		}
	}
	if c.Telemetry.QoS < 0 || c.Telemetry.QoS > 2 {
		bad("telemetry.qos", "%d: want 0, 1 or 2", c.Telemetry.QoS)
	}
	if len(probs) > 0 {
		return probs
	}
	return nil
}

// parentPath is the path of what encloses path: "a.b[2].c" → "a.b[2]" →
// "a.b" → "a".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// unjoin splits an errors.Join.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// tlsConfig builds the TLS configuration toward the broker (nil without TLS
// settings).
func (c *Config) tlsConfig() (*tls.Config, error) {
	t := c.MQTT.TLS
	if t == (TLSConfig{}) {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("cert_file and key_file go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// password reads the broker password from its file or variable.
func (c *Config) password() (string, error) {
	switch {
	case c.MQTT.PasswordFile != "":
		b, err := os.ReadFile(c.MQTT.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("mqtt password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case c.MQTT.PasswordEnv != "":
		return os.Getenv(c.MQTT.PasswordEnv), nil
	}
	return "", nil
}

// File is the path the configuration was read from.
func (c *Config) File() string { return c.file }

// ReplayOptions fills a replay's options from the configuration: site,
// gateway and capture settings, except where the command line gave them
// (given reports whether a flag was given: "site", "gateway",
// "modbus-ports", "response-timeout").
func (c *Config) ReplayOptions(o ReplayOptions, given func(flag string) bool) ReplayOptions {
	if !given("site") {
		o.Site = c.Site
	}
	if !given("gateway") {
		o.Gateway = c.Gateway
	}
	flags := o.Capture
	o.Capture = c.Capture.Config
	o.Capture.Interfaces = nil
	if given("modbus-ports") {
		o.Capture.ModbusPorts = flags.ModbusPorts
	}
	if given("response-timeout") {
		o.Capture.ResponseTimeout = flags.ResponseTimeout
	}
	return o
}
