package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/collectors/modbus"
	"github.com/plcwatch/plcwatch/inventory"
	"github.com/plcwatch/plcwatch/rules"
	"github.com/plcwatch/plcwatch/secret"
)

// CheckOptions say how far Check looks beyond the file.
type CheckOptions struct {
	// Offline checks the file and the files it names only: not this
	// machine's interfaces, privileges and ports (a configuration checked
	// on a workstation before it goes to the gateway).
	Offline bool
}

// Check is the one validation of a configuration, shared by "config
// check" and "run" (issue 9: config check said ok to configurations run
// then refused, and deploy/plcwatch.service runs it as ExecStartPre).
// Beyond the file itself (LoadConfig) it loads and lints the rules,
// reads the baseline, the certificates and the passwords, and — unless
// opts.Offline — checks that the capture interfaces exist and may be
// captured on (CAP_NET_RAW), that the addresses to listen on are free and
// that the spool and log folders can be written. It reports every problem
// at once: a ConfigError, problems of the configuration file first (by
// line), then those of the rule files. It returns the configuration, with
// the rules and baseline loaded for New, when there is none.
func Check(path string, opts CheckOptions) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, ConfigError{{File: path, Msg: "cannot read the configuration: " + err.Error()}}
	}
	cfg, probs := parse(path, src)
	if cfg == nil {
		return nil, probs // a syntax error: nothing else can be known
	}
	ps := &problems{c: cfg, list: probs}
	cfg.checkFiles(ps)
	if !opts.Offline {
		cfg.checkSystem(ps)
	}
	cfg.dropNodes()
	if len(ps.list) > 0 {
		ps.list.sort()
		return nil, ps.list
	}
	return cfg, nil
}

// checkFiles reads what the configuration names: rules, baseline,
// certificates, passwords.
func (c *Config) checkFiles(ps *problems) {
	// Rules: each path must name rule files (issue 9: rules.paths matching
	// nothing said ok), and the rules must load.
	var found []string
	for i, p := range c.Rules.Paths {
		at := fmt.Sprintf("rules.paths[%d]", i)
		n, err := countRuleFiles(p)
		switch {
		case err != nil:
			ps.add(at, "%s: %v", p, err)
		case n == 0 && strings.ContainsAny(p, "*?["):
			ps.add(at, "%s matches no rule file", p)
		case n == 0:
			ps.add(at, "%s has no rule files (.yaml, .yml) in it", p)
		default:
			found = append(found, p)
		}
	}
	if len(found) > 0 && !slices.Contains(c.bad, "rules.paths") {
		set, err := rules.Load(found...)
		var rp rules.Problems
		switch {
		case errors.As(err, &rp):
			for _, p := range rp {
				ps.list = append(ps.list, Problem{File: p.File, Line: p.Line, Col: p.Col, Msg: p.Msg})
			}
		case err != nil:
			ps.add("rules.paths", "%v", err)
		case len(found) == len(c.Rules.Paths):
			c.ruleSet = set
			c.warnCorrelation(set)
			if len(set.Enabled()) == 0 {
				c.warn("rules.paths", "no rule is enabled: nothing will ever raise an alert")
			}
		}
	}
	if f := c.Rules.BaselineFile; f != "" {
		b, err := rules.LoadBaseline(f)
		switch {
		case err == nil:
			c.baseline = b
		case baselineDamaged(f):
			// Learnt, not configured: a damaged one must not stop
			// monitoring. run moves it aside and learns again.
			c.warn("rules.baseline_file", "%v: run moves it aside to %s.bad and baseline rules learn again", err, f)
		default:
			ps.add("rules.baseline_file", "%v", err)
		}
	}
	if f := c.Inventory.File; f != "" {
		if _, err := inventory.Load(f); err != nil {
			c.warn("inventory.file", "%v: run moves it aside to %s.bad and starts an empty inventory", err, f)
		}
	}
	// Passwords and certificates.
	if len(c.MQTT.Brokers) > 0 {
		if _, err := c.password(); err != nil {
			var se *secret.Error
			if errors.As(err, &se) {
				ps.add(se.Key, "%s", se.Msg)
			} else {
				ps.add("mqtt", "%v", err)
			}
		}
		if _, err := c.tlsConfig(); err != nil {
			ps.add("mqtt.tls", "%v", err)
		}
	} else {
		e := c.MQTT.Embedded
		for i, u := range e.Users {
			at := fmt.Sprintf("mqtt.embedded.users[%d]", i)
			_, err := secret.FileOrEnv(at, u.PasswordFile, u.PasswordEnv)
			var se *secret.Error
			if errors.As(err, &se) {
				ps.add(se.Key, "%s", se.Msg)
			}
		}
		if _, err := e.TLS.serverConfig(); err != nil {
			ps.add("mqtt.embedded.tls", "%v", err)
		}
	}
	if c.HTTP.Listen != "" && c.HTTP.Listen != "off" {
		if _, err := c.HTTP.TLS.serverConfig(); err != nil {
			ps.add("http.tls", "%v", err)
		}
	}
	ps.fields("opcua.pki", c.OPCUA.PKI.CheckFiles())
	for i := range c.OPCUA.Devices {
		ps.fields(fmt.Sprintf("opcua.devices[%d]", i), c.OPCUA.Devices[i].CheckFiles())
	}
	for i := range c.Modbus.Devices {
		d := &c.Modbus.Devices[i]
		if d.Transport == "tcp+tls" && d.TLS.CAFile != "" && d.TLS.CertFile != "" && d.TLS.KeyFile != "" {
			if _, err := modbus.New(*d, modbus.Options{}); err != nil {
				ps.add(fmt.Sprintf("modbus.devices[%d].tls", i), "%v", err)
			}
		}
	}
}

// countRuleFiles counts the rule files a rules.paths entry names, as
// rules.Load expands it: a file, a folder (every .yaml and .yml below it)
// or a glob.
func countRuleFiles(p string) (int, error) {
	matches := []string{p}
	if strings.ContainsAny(p, "*?[") {
		m, err := filepath.Glob(p)
		if err != nil {
			return 0, fmt.Errorf("not a valid pattern: %w", err)
		}
		matches = m
	}
	n := 0
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return 0, err
		}
		if !st.IsDir() {
			n++
			continue
		}
		_ = filepath.WalkDir(m, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				n++
			}
			return nil
		})
	}
	return n, nil
}

// checkSystem looks at the machine as run will find it: interfaces and the
// privilege to capture on them, the addresses to listen on, the folders to
// write.
func (c *Config) checkSystem(ps *problems) {
	if len(c.Capture.Interfaces) > 0 && !slices.ContainsFunc(c.bad, func(b string) bool { return strings.HasPrefix(b, "capture.interfaces") }) {
		for i, name := range c.Capture.Interfaces {
			at := fmt.Sprintf("capture.interfaces[%d]", i)
			if _, err := net.InterfaceByName(name); err != nil {
				ps.add(at, "%q: no such network interface (this machine has: %s)", name, interfaceNames())
				continue
			}
			// A packet socket on it, without the ring run maps: a check
			// must not take the gigabytes a ring configuration may ask for.
			if err := capture.ProbeInterface(name); err != nil {
				ps.add(at, "%v", err)
			}
		}
		c.checkRingMemory(memTotal())
	}
	if len(c.MQTT.Brokers) == 0 {
		if err := canListen(c.MQTT.Embedded.Listen); err != nil {
			ps.add("mqtt.embedded.listen", "%s: %v: the embedded broker cannot listen there (another broker, or a running plcwatch's own, there? point mqtt.brokers at it, or set mqtt.embedded.listen; on a gateway running plcwatch, check with --offline)", c.MQTT.Embedded.Listen, err)
		}
	}
	if c.HTTP.Listen != "" && c.HTTP.Listen != "off" {
		if err := canListen(c.HTTP.Listen); err != nil {
			ps.add("http.listen", "%s: %v (another program, or a running plcwatch, listens there? set http.listen to another address, or off; on a gateway running plcwatch, check with --offline)", c.HTTP.Listen, err)
		}
	}
	// Every path the daemon creates or writes (issue 9: "spool: {dir:
	// /proc/nope}" was ok here and refused by run). The spool folder holds
	// the dead-letter file too.
	if err := canWriteDir(c.Spool.Dir); err != nil {
		ps.add("spool.dir", "%s: %v", c.Spool.Dir, err)
	}
	if len(c.OPCUA.Devices) > 0 {
		// The client certificate is made there, and refused server
		// certificates are copied there.
		if err := canWriteDir(c.OPCUA.PKI.Dir); err != nil {
			ps.add("opcua.pki.dir", "%s: %v", c.OPCUA.PKI.Dir, err)
		}
	}
	for _, f := range []struct{ key, path string }{{"alert_log.path", c.Alerts.Path}, {"event_log.path", c.Events.Path}} {
		if f.path != "" {
			if err := canWriteFile(f.path); err != nil {
				ps.add(f.key, "%s: %v", f.path, err)
			}
		}
	}
	if c.Rules.BaselineFile != "" {
		if err := canWriteFile(c.Rules.BaselineFile); err != nil {
			c.warn("rules.baseline_file", "%s: %v: what baseline rules learn will not be saved", c.Rules.BaselineFile, err)
		}
	}
	if c.Inventory.File != "" {
		if err := canWriteFile(c.Inventory.File); err != nil {
			c.warn("inventory.file", "%s: %v: the passive inventory will not be saved", c.Inventory.File, err)
		}
	}
}

// checkRingMemory warns when the capture rings would take more than a
// quarter of the machine's memory (memTotal bytes, 0 when unknown): they
// are locked in kernel memory, beyond GOMEMLIMIT and the OOM killer's
// reach of plcwatch. capture.MaxRingMemory bounds them on every machine.
func (c *Config) checkRingMemory(memTotal int64) {
	if ring := c.Capture.RingMemory(); memTotal > 0 && ring > memTotal/4 {
		c.warn("capture.ring_blocks", "the capture rings take %d MiB (ring_block_size × ring_blocks × fanout × interfaces), more than a quarter of this machine's %d MiB",
			ring>>20, memTotal>>20)
	}
}

// memTotal is MemTotal of /proc/meminfo in bytes, 0 when unknown.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// canListen says whether addr can be listened on now.
func canListen(addr string) error {
	ln, err := listen(addr, nil)
	if err != nil {
		return err
	}
	return ln.Close()
}

// canWriteDir says whether dir can be written, or made and written. It
// tries, rather than asking access(2), which says yes to root for /proc
// and for folders that cannot hold a file: it makes a file in dir, or a
// folder in dir's closest existing ancestor, and removes it again.
func canWriteDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a folder", d)
			}
			if d == dir {
				f, err := os.CreateTemp(d, ".plcwatch-check-*")
				if err != nil {
					return fmt.Errorf("cannot write in %s: %w", d, unwrapPath(err))
				}
				f.Close()
				return os.Remove(f.Name())
			}
			made, err := os.MkdirTemp(d, ".plcwatch-check-*")
			if err != nil {
				return fmt.Errorf("cannot be made: cannot make a folder in %s: %w", d, unwrapPath(err))
			}
			return os.Remove(made)
		}
		if !(errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)) || d == filepath.Dir(d) {
			return err
		}
	}
}

// canWriteFile says whether the file at path can be appended to, or made:
// an existing one is opened for writing (and nothing written), a missing
// one needs a folder canWriteDir accepts.
func canWriteFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return errors.New("is a folder, not a file")
	case err == nil:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("cannot be written: %w", unwrapPath(err))
		}
		return f.Close()
	}
	return canWriteDir(filepath.Dir(path))
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		return "none"
	}
	names := make([]string, len(ifs))
	for i, f := range ifs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// Warning is a setting that works but deserves a look (it does not stop
// the agent).
type Warning struct {
	File      string
	Line, Col int
	Msg       string
}

// Pos is file:line:col, or the file alone.
func (w Warning) Pos() string {
	if w.Line == 0 {
		return w.File
	}
	return fmt.Sprintf("%s:%d:%d", w.File, w.Line, w.Col)
}

// Warnings are what Check found risky but allowed.
func (c *Config) Warnings() []Warning { return c.warnings }

// Summary is one line saying what the configuration runs.
func (c *Config) Summary() string {
	broker := "embedded broker on " + c.MQTT.Embedded.Listen
	if len(c.MQTT.Brokers) > 0 {
		broker = strings.Join(c.MQTT.Brokers, ", ")
	}
	return fmt.Sprintf("site %s, gateway %s, interfaces %v, modbus devices %d, opcua devices %d, rules %v, mqtt %s",
		c.Site, c.Gateway, c.Capture.Interfaces, len(c.Modbus.Devices), len(c.OPCUA.Devices), c.Rules.Paths, broker)
}

// Problems lists an error's problems one per entry, as they print: the
// problems of a ConfigError or rules.Problems, the lines of a joined error,
// or the error itself.
func Problems(err error) []string {
	var ce ConfigError
	var rp rules.Problems
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		out := make([]string, len(ce))
		for i, p := range ce {
			out[i] = p.Error()
		}
		return out
	case errors.As(err, &rp):
		out := make([]string, len(rp))
		for i, p := range rp {
			out[i] = p.String()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// LogError logs err at error level, one record per problem when it holds
// several: a log line with "\n" escapes in it is unreadable (issue 9).
func LogError(log *slog.Logger, msg string, err error) {
	probs := Problems(err)
	if len(probs) <= 1 {
		log.Error(msg, "err", err)
		return
	}
	log.Error(msg, "problems", len(probs))
	for _, p := range probs {
		log.Error(msg, "problem", p)
	}
}
