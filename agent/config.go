package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/agent/publish"
	"github.com/plcwatch/plcwatch/agent/spool"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/collectors/modbus"
	"github.com/plcwatch/plcwatch/collectors/opcua"
	"github.com/plcwatch/plcwatch/hostport"
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
	// OPCUA is monitoring of OPC UA servers; opcua.Config documents it.
	OPCUA opcua.Config `yaml:"opcua"`
	// Assets name devices that are watched on the wire but not polled.
	Assets []Asset `yaml:"assets"`
	// Telemetry publishes polled values.
	Telemetry TelemetryConfig `yaml:"telemetry"`
	// Inventory is the passive asset inventory (docs/inventory.md).
	Inventory InventoryConfig `yaml:"inventory"`

	file  string
	nodes map[string]*yaml.Node // field path -> value node, for positions
	// written are the keys whose zero value means something (qos 0,
	// keepalive 0, http.listen ""), kept when nodes is dropped: Defaults,
	// called again on a loaded configuration (sim check's live agent),
	// must not put back a default over what the file wrote (issue 12).
	written  map[string]bool
	bad      []string // paths with a problem of their own
	warnings []Warning
	names    *deviceNames    // built by validate
	ruleSet  *rules.Set      // loaded by Check, handed to New
	baseline *rules.Baseline // loaded by Check, handed to New
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
	// ReceiveMaximum: the broker's limit on QoS 1 and 2 publishes in
	// flight from one client (Mosquitto's max_inflight_messages); at QoS 2
	// the agent keeps within it (publish.Config.ReceiveMaximum).
	ReceiveMaximum int           `yaml:"receive_maximum"`
	Heartbeat      time.Duration `yaml:"heartbeat"`
	Embedded       EmbeddedMQTT  `yaml:"embedded"`
	DrainTimeout   time.Duration `yaml:"drain_timeout"`
	// MaxAttempts: a message the broker refuses this many times, alone on
	// a working connection, goes to the dead-letter file; 0 never.
	MaxAttempts int `yaml:"max_attempts"`
	// VerifyTimeout: on every connection the agent reads back its own
	// "online" status within this time, to find a broker that takes and
	// drops its publishes (publish.Config.VerifyTimeout); 0 turns it off.
	VerifyTimeout time.Duration `yaml:"verify_timeout"`

	urlPassword string // a password written in a broker URL, taken out of it (secrets.go)
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

// InventoryConfig is the passive asset inventory the daemon keeps
// (docs/inventory.md): saved to File like the baseline, served at
// /inventory, published retained at <prefix>/inventory.
type InventoryConfig struct {
	File         string        `yaml:"file"`          // "": kept in memory only
	PublishEvery time.Duration `yaml:"publish_every"` // changes are published and saved at most this often; 0 never publishes
}

// EmbeddedMQTT is the in-process broker started when no broker is
// configured (broker.go). The agent alone publishes, under its topic
// prefix; everyone else only reads (issue 8).
type EmbeddedMQTT struct {
	Listen string `yaml:"listen"`
	// Anonymous is what a client without credentials may do: read (the
	// default when the broker listens on loopback only) or none (the
	// default beyond loopback).
	Anonymous string `yaml:"anonymous"`
	// Users may subscribe with a password; they read, never publish.
	Users []BrokerUser `yaml:"users"`
	// TLS on the listener: required when it faces the network, unless
	// AllowInsecure.
	TLS ListenerTLS `yaml:"tls"`
	// AllowInsecure lets the broker listen beyond loopback without TLS
	// (credentials then cross the network in the clear).
	AllowInsecure bool `yaml:"allow_insecure"`
}

// BrokerUser is a subscriber of the embedded broker.
type BrokerUser struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// ListenerTLS is TLS on an address the agent listens on.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file"` // the server's certificate (PEM) ...
	KeyFile  string `yaml:"key_file"`  // ... and its key
	// ClientCAFile, when set, makes a client certificate signed by one of
	// these CAs a condition of connecting (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
}

func (t ListenerTLS) enabled() bool {
	return t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != ""
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
	// TLS on the listener; with client_ca_file, only clients with a
	// certificate get an answer.
	TLS ListenerTLS `yaml:"tls"`
	// AllowInsecure lets the server listen beyond loopback without TLS.
	AllowInsecure bool `yaml:"allow_insecure"`
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

// Asset names a device that plcwatch watches on the wire but does not poll
// (issue 9): wire events to its address carry its name.
type Asset struct {
	Name string `yaml:"name"`
	// Address is ip:port, or an IP address alone for every port of it.
	Address string `yaml:"address"`
	// Unit limits the name to one Modbus unit behind the address; every
	// unit when left out.
	Unit *int `yaml:"unit"`
	// Tags are free labels (zone: cell-3) carried in the alerts of the
	// device's events, as device_tags.
	Tags map[string]string `yaml:"tags"`
}

// ByteSize reads 1048576, "64KiB", "256MiB", "1GiB" (and KB, MB, GB as
// powers of 1000).
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, ok := parseSize(n.Value)
	if !ok {
		// Not reached from a configuration file: the decoder checked the
		// value first.
		return fmt.Errorf("line %d column %d: %q is not a size (like 1048576, 64KiB, 256MiB)", n.Line, n.Column, n.Value)
	}
	*b = ByteSize(v)
	return nil
}

// Problem is a configuration error with its position.
type Problem struct {
	File      string
	Line, Col int
	Path      string // the key path it is about ("mqtt.qos"), when it is about one
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

// sort orders problems by file (the configuration first, as found), line
// and column.
func (e ConfigError) sort() {
	if len(e) == 0 {
		return
	}
	first := e[0].File
	sort.SliceStable(e, func(i, j int) bool {
		a, b := e[i], e[j]
		if a.File != b.File {
			return a.File == first || (b.File != first && a.File < b.File)
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// LoadConfig reads, decodes strictly (unknown keys and values of the wrong
// type are errors), defaults and validates a configuration file, without
// I/O beyond reading it: Check also reads the files it names and looks at
// the machine. Every problem is reported with file:line:col.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, src)
}

// ParseConfig is LoadConfig for a configuration already read.
func ParseConfig(path string, src []byte) (*Config, error) {
	cfg, probs := parse(path, src)
	if len(probs) > 0 {
		return nil, probs
	}
	// Positions are for reporting problems: the daemon must not keep a
	// large file's syntax tree (10,000 tags are 17 MB of nodes) for its life.
	cfg.dropNodes()
	return cfg, nil
}

// writtenKeys are the keys Defaults asks the file about: their zero value,
// written, is a choice (0 turns it off), not an absence.
var writtenKeys = []string{"mqtt.qos", "inventory.publish_every", "mqtt.keepalive", "mqtt.max_attempts", "mqtt.verify_timeout", "mqtt.heartbeat", "http.listen"}

// dropNodes forgets the syntax tree, keeping which of writtenKeys the file
// wrote, so that Defaults gives the same configuration again.
func (c *Config) dropNodes() {
	if c.written == nil {
		c.written = map[string]bool{}
	}
	for _, k := range writtenKeys {
		if c.nodes[k] != nil {
			c.written[k] = true
		}
	}
	c.nodes = nil
}

// parse decodes, defaults and validates a configuration. It returns the
// configuration even when it has problems (nil only for a syntax error),
// so that Check can go on and report the problems of the files it names
// too.
func parse(path string, src []byte) (*Config, ConfigError) {
	cfg := &Config{file: path, nodes: map[string]*yaml.Node{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, ConfigError{syntaxProblem(path, src, err)}
	}
	d := &decoder{file: path, nodes: cfg.nodes}
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		for root.Kind == yaml.AliasNode && root.Alias != nil {
			root = root.Alias
		}
		switch {
		case root.Kind == yaml.MappingNode:
			d.walk(root, reflect.TypeFor[Config](), "", "")
			if d.steps > maxSteps {
				return nil, ConfigError{d.probs[len(d.probs)-1]}
			}
			if err := root.Decode(cfg); err != nil {
				// What the walk did not foresee, in yaml.v3's words.
				d.probs = append(d.probs, decodeProblems(path, src, err, d.probs)...)
			}
		case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
		default:
			d.probs = append(d.probs, Problem{File: path, Line: root.Line, Col: root.Column,
				Msg: fmt.Sprintf("a configuration is keys and values (site: plant-a, rules: ...), not %s", shown(root))})
			return cfg, d.probs
		}
	}
	cfg.bad = d.bad
	cfg.resolve(filepath.Dir(path))
	cfg.Defaults()
	probs := ConfigError(d.probs)
	probs = append(probs, cfg.validate()...)
	probs.sort()
	return cfg, probs
}

// decodeProblems turns yaml.v3's decoding errors ("line 7: cannot unmarshal
// ...") into problems, leaving out the lines the walk already has one for.
func decodeProblems(path string, src []byte, err error, have []Problem) []Problem {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []Problem
	for _, m := range msgs {
		p := syntaxProblem(path, src, errors.New(m))
		if !slices.ContainsFunc(have, func(h Problem) bool { return h.Line == p.Line }) {
			out = append(out, p)
		}
	}
	return out
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
	for _, p := range []*string{&c.Rules.BaselineFile, &c.Inventory.File, &c.Spool.Dir, &c.MQTT.PasswordFile, &c.MQTT.TLS.CAFile,
		&c.MQTT.TLS.CertFile, &c.MQTT.TLS.KeyFile, &c.Alerts.Path, &c.Events.Path,
		&c.MQTT.Embedded.TLS.CertFile, &c.MQTT.Embedded.TLS.KeyFile, &c.MQTT.Embedded.TLS.ClientCAFile,
		&c.HTTP.TLS.CertFile, &c.HTTP.TLS.KeyFile, &c.HTTP.TLS.ClientCAFile} {
		abs(p)
	}
	for i := range c.MQTT.Embedded.Users {
		abs(&c.MQTT.Embedded.Users[i].PasswordFile)
	}
	for i := range c.Modbus.Devices {
		t := &c.Modbus.Devices[i].TLS
		for _, p := range []*string{&t.CAFile, &t.CertFile, &t.KeyFile} {
			abs(p)
		}
	}
	for _, p := range []*string{&c.OPCUA.PKI.Dir, &c.OPCUA.PKI.CertFile, &c.OPCUA.PKI.KeyFile} {
		abs(p)
	}
	for i := range c.OPCUA.Devices {
		a := &c.OPCUA.Devices[i].Auth
		for _, p := range []*string{&a.PasswordFile, &a.CertFile, &a.KeyFile} {
			abs(p)
		}
	}
}

// Defaults fills what the file left out.
func (c *Config) Defaults() {
	has := func(key string) bool { return c.nodes[key] != nil || c.written[key] }
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
	if !has("mqtt.qos") {
		c.MQTT.QoS = 1
	}
	if !has("inventory.publish_every") {
		c.Inventory.PublishEvery = 10 * time.Second
	}
	if !has("mqtt.keepalive") {
		c.MQTT.KeepAlive = 30 * time.Second // 0, written, turns it off (MQTT 3.1.1 §3.1.2.10)
	}
	if !has("mqtt.max_attempts") {
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
	if c.MQTT.ReceiveMaximum == 0 {
		c.MQTT.ReceiveMaximum = publish.DefaultReceiveMaximum
	}
	if !has("mqtt.verify_timeout") {
		c.MQTT.VerifyTimeout = 5 * time.Second
	}
	if !has("mqtt.heartbeat") {
		c.MQTT.Heartbeat = time.Minute
	}
	if c.MQTT.Embedded.Listen == "" {
		c.MQTT.Embedded.Listen = "127.0.0.1:1883"
	}
	if c.MQTT.Embedded.Anonymous == "" {
		c.MQTT.Embedded.Anonymous = "none"
		if isLoopback(c.MQTT.Embedded.Listen) {
			c.MQTT.Embedded.Anonymous = "read"
		}
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
	if !has("http.listen") {
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
	c.OPCUA.PKI.Defaults()
	for i := range c.OPCUA.Devices {
		c.OPCUA.Devices[i].Defaults()
	}
}

// Validate checks the values after Defaults, without I/O: Check reads
// the files named and looks at the machine. Its error is a ConfigError.
func (c *Config) Validate() error {
	if probs := c.validate(); len(probs) > 0 {
		return probs
	}
	return nil
}

// problems collects a configuration's problems at their positions.
type problems struct {
	c    *Config
	list ConfigError
}

// add reports a problem with the value at path ("mqtt.qos"), unless that
// value (or what holds it) already has one of its own: a value of the
// wrong type is not also "missing", a value out of its range is not
// reported twice.
func (ps *problems) add(path, format string, a ...any) {
	if p, ok := ps.c.at(path, format, a...); ok {
		ps.list = append(ps.list, p)
	}
}

// fields adds each of errs at prefix: a *plcwatch.FieldError (every
// collector's) at prefix.<its field>, any other error at prefix itself,
// so that none is dropped.
func (ps *problems) fields(prefix string, errs []error) {
	for _, err := range errs {
		var fe *plcwatch.FieldError
		if errors.As(err, &fe) {
			ps.add(prefix+"."+fe.Field, "%s", fe.Msg)
		} else if err != nil {
			ps.add(prefix, "%v", err)
		}
	}
}

// at is a problem at path: the value's own position, or its closest
// enclosing one (a missing key is reported where its mapping starts);
// false when path already has a problem.
func (c *Config) at(path, format string, a ...any) (Problem, bool) {
	for _, b := range c.bad {
		if path == b || strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[") {
			return Problem{}, false
		}
	}
	p := Problem{File: c.file, Path: path, Msg: path + ": " + fmt.Sprintf(format, a...)}
	for at := path; at != ""; at = parentPath(at) {
		if n := c.nodes[at]; n != nil {
			p.Line, p.Col = n.Line, n.Column
			break
		}
	}
	return p, true
}

// warn notes a setting that works but deserves a look.
func (c *Config) warn(path, format string, a ...any) {
	p, _ := c.at(path, format, a...)
	c.warnings = append(c.warnings, Warning{File: p.File, Line: p.Line, Col: p.Col, Msg: p.Msg})
}

func (c *Config) validate() ConfigError {
	ps := &problems{c: c}
	bad := ps.add
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
	c.validateTopicNames(ps)
	if err := c.Capture.Validate(); err != nil {
		ps.fields("capture", unjoin(err))
	}
	if len(c.Rules.Paths) == 0 {
		bad("rules.paths", "name at least one rule file or folder (the default set is configs/rules)")
	}
	c.validateMQTT(ps)
	if _, err := spool.ParseSync(c.Spool.Fsync); err != nil {
		bad("spool.fsync", "%v", err)
	}
	if c.Spool.SegmentBytes > c.Spool.MaxBytes {
		bad("spool.segment_bytes", "%s: at most max_bytes (%s)", fmtSize(float64(c.Spool.SegmentBytes)), fmtSize(float64(c.Spool.MaxBytes)))
	}
	if c.HTTP.Listen != "" && c.HTTP.Listen != "off" {
		if err := hostport.Listen(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q: %v (or off)", c.HTTP.Listen, err)
		} else {
			c.validateListener(ps, "http", c.HTTP.Listen, c.HTTP.TLS, c.HTTP.AllowInsecure, c.HTTP.PProf)
		}
	} else if c.HTTP.TLS.enabled() || c.HTTP.PProf {
		c.warn("http", "http.listen is off: tls and pprof do nothing")
	}
	if c.Events.Path != "" {
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
	// Every collector's devices: their own checks, at the field each
	// names, and one name space across protocols.
	names := map[string]string{}
	device := func(at, name string, errs []error) {
		ps.fields(at, errs)
		if other, dup := names[name]; dup && name != "" {
			bad(at+".name", "%q: %s has this name too", name, other)
		}
		names[name] = at
	}
	for i := range c.Modbus.Devices {
		d := &c.Modbus.Devices[i]
		device(fmt.Sprintf("modbus.devices[%d]", i), d.Name, d.Validate())
	}
	ps.fields("opcua.pki", c.OPCUA.PKI.Validate())
	for i := range c.OPCUA.Devices {
		d := &c.OPCUA.Devices[i]
		device(fmt.Sprintf("opcua.devices[%d]", i), d.Name, d.Validate())
	}
	for i := range c.Assets {
		a := &c.Assets[i]
		at := fmt.Sprintf("assets[%d]", i)
		switch {
		case a.Name == "":
			bad(at+".name", "every asset needs a name")
		case strings.ContainsAny(a.Name, "/+#\x00"):
			bad(at+".name", "%q: no / + # (device names are part of MQTT topics)", a.Name)
		}
		if other, dup := names[a.Name]; dup && a.Name != "" {
			bad(at+".name", "%q: %s has this name too", a.Name, other)
		}
		names[a.Name] = at
		if _, err := parseAssetAddr(a.Address); err != nil {
			bad(at+".address", "%v", err)
		}
		for k := range a.Tags {
			if k == "" {
				bad(at+".tags", "a tag needs a name")
			}
		}
	}
	if len(ps.list) == 0 {
		// The names wire events take: every device's and asset's address,
		// without two names for one.
		names, conflicts := c.deviceNames()
		for _, cf := range conflicts {
			bad(cf.path, "%s", cf.msg)
		}
		c.names = names
	}
	return ps.list
}

// validateMQTT checks the mqtt section; credentials written in a broker
// URL are moved out of it first (secrets.go), so that no URL shown
// anywhere carries them.
func (c *Config) validateMQTT(ps *problems) {
	bad := ps.add
	refused := c.takeURLCredentials(ps)
	for i, b := range c.MQTT.Brokers {
		if refused[i] {
			continue
		}
		u, err := url.Parse(b)
		path := fmt.Sprintf("mqtt.brokers[%d]", i)
		if err != nil || u.Host == "" {
			bad(path, "%q is not a broker URL (like tcp://broker:1883)", RedactURL(b))
			continue
		}
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			bad(path, "scheme %q: want tcp, ssl, ws or wss", u.Scheme)
		}
		if u.Hostname() == "" {
			bad(path, "%q: no host (like tcp://broker:1883)", b)
		} else if err := hostport.Port(u.Port()); err != nil {
			bad(path, "%q: %v", b, err)
		}
	}
	if c.MQTT.KeepAlive%time.Second != 0 {
		bad("mqtt.keepalive", "%s: want whole seconds (MQTT counts it in seconds)", c.MQTT.KeepAlive)
	}
	if c.MQTT.ReceiveMaximum == 1 && c.Telemetry.Enabled && c.Telemetry.QoS > 0 && c.MQTT.QoS > 0 && max(c.MQTT.QoS, c.Telemetry.QoS) == 2 {
		// A QoS 2 publish holds the broker's one place until its PUBREL;
		// a telemetry document and an alert in flight together would have
		// the broker drop one of them, acknowledged.
		bad("mqtt.receive_maximum", "1 leaves no room for telemetry beside the alerts at QoS 2: set telemetry.qos 0, or raise the broker's max_inflight_messages and this")
	}
	if c.MQTT.PasswordFile != "" && c.MQTT.PasswordEnv != "" {
		bad("mqtt.password_env", "give password_file or password_env, not both")
	}
	if t := c.MQTT.TLS; (t.CertFile == "") != (t.KeyFile == "") {
		bad("mqtt.tls", "cert_file and key_file go together")
	}
	if len(c.MQTT.Brokers) > 0 {
		if c.nodes["mqtt.embedded"] != nil {
			c.warn("mqtt.embedded", "mqtt.brokers is set, so no embedded broker runs: these settings do nothing")
		}
		return
	}
	e := &c.MQTT.Embedded
	if err := hostport.Listen(e.Listen); err != nil {
		bad("mqtt.embedded.listen", "%q: %v", e.Listen, err)
		return
	}
	switch e.Anonymous {
	case "read", "none":
	default:
		bad("mqtt.embedded.anonymous", "%q: want read or none", e.Anonymous)
	}
	users := map[string]int{}
	for i, u := range e.Users {
		at := fmt.Sprintf("mqtt.embedded.users[%d]", i)
		switch {
		case u.Username == "":
			bad(at+".username", "every user needs a name")
		case u.Username == agentUser:
			bad(at+".username", "%q is the agent's own name on its broker", u.Username)
		}
		if j, dup := users[u.Username]; dup {
			bad(at+".username", "%q: users[%d] has this name too", u.Username, j)
		}
		users[u.Username] = i
		if (u.PasswordFile == "") == (u.PasswordEnv == "") {
			bad(at, "give password_file or password_env (one of them)")
		}
	}
	c.validateListener(ps, "mqtt.embedded", e.Listen, e.TLS, e.AllowInsecure, false)
	if e.Anonymous == "read" && !isLoopback(e.Listen) {
		c.warn("mqtt.embedded.anonymous", "read: anyone who reaches %s can read every alert", e.Listen)
	}
}

// validateListener refuses an address that faces the network without TLS,
// unless allow_insecure says the network is trusted (issue 8: the
// embedded broker on 0.0.0.0, pprof included, without even a warning).
func (c *Config) validateListener(ps *problems, at, addr string, t ListenerTLS, insecure, pprof bool) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		ps.add(at+".tls", "cert_file and key_file go together")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		ps.add(at+".tls", "client_ca_file needs cert_file and key_file")
	}
	if isLoopback(addr) {
		return
	}
	what := "the embedded MQTT broker"
	if at == "http" {
		what = "/metrics and /readyz"
		if pprof {
			what = "/metrics, /readyz and Go's profiler (pprof)"
		}
	}
	switch {
	case t.CertFile != "":
		if at == "http" && t.ClientCAFile == "" {
			c.warn(at+".tls", "%s on %s: TLS without client certificates (client_ca_file): anyone who reaches it can read them", what, addr)
		}
	case insecure:
		c.warn(at+".allow_insecure", "%s on %s, beyond loopback, without TLS", what, addr)
	default:
		ps.add(at+".listen", "%s: %s would face the network without TLS: give %s.tls (cert_file, key_file), listen on 127.0.0.1, or set %s.allow_insecure: true on a network you trust",
			addr, what, at, at)
	}
}

// isLoopback says whether a host:port listens on loopback only.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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

// File is the path the configuration was read from.
func (c *Config) File() string { return c.file }

// ReplayOptions fills a replay's options from the configuration: site,
// gateway and capture settings, except where the command line gave them
// (given reports whether a flag was given: "site", "gateway",
// "modbus-ports", "opcua-ports", "response-timeout").
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
	if given("opcua-ports") {
		o.Capture.OPCUAPorts = flags.OPCUAPorts
	}
	if given("response-timeout") {
		o.Capture.ResponseTimeout = flags.ResponseTimeout
	}
	o.names = c.names
	return o
}
