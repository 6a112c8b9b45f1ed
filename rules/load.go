package rules

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/file"
	"gopkg.in/yaml.v3"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/modbustcp"
)

// DefaultFold is how long identical alerts of a rule fold into one when the
// rule does not say.
const DefaultFold = time.Minute

// Problem is one thing wrong in a rule file.
type Problem struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg) }

// Problems are what Load found wrong; as an error they read one per line.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Load reads, checks and compiles the rules in paths: files, folders (every
// .yaml and .yml file below them) and glob patterns. It reports every
// problem it finds, not only the first, as Problems; a Set comes back only
// when there is none.
//
// Load holds one file's text and one rule's YAML nodes at a time beside
// the rules it compiled (see split.go): a reload of a large file costs the
// new set, not a node tree many times its size.
func Load(paths ...string) (*Set, error) {
	files, probs := expand(paths)
	l := &loader{lists: map[string]listDef{}, ids: map[string]Problem{}, exprs: newExprCompiler()}
	l.probs = probs
	var docs []*doc
	for _, f := range files {
		d, p := openFile(f)
		if p != nil {
			l.probs = append(l.probs, *p)
			continue
		}
		docs = append(docs, d)
	}
	for _, d := range docs {
		l.collectLists(d)
	}
	var rules []*Rule
	for i, d := range docs {
		rules = append(rules, l.rules(d)...)
		docs[i] = nil // its text and nodes can go
	}
	l.d = nil
	if len(l.probs) > 0 {
		sort.SliceStable(l.probs, func(i, j int) bool {
			a, b := l.probs[i], l.probs[j]
			if a.File != b.File {
				return a.File < b.File
			}
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, Problems(l.probs)
	}
	set := &Set{Rules: rules}
	for _, r := range rules {
		if r.Enabled {
			r.index = len(set.enabled)
			set.enabled = append(set.enabled, r)
		}
	}
	set.index = buildIndex(set.enabled)
	return set, nil
}

// expand turns paths into the rule files they name, sorted and unique.
func expand(paths []string) ([]string, []Problem) {
	var files []string
	var probs []Problem
	for _, p := range paths {
		matches := []string{p}
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil || len(m) == 0 {
				probs = append(probs, Problem{File: p, Line: 1, Col: 1, Msg: "no rule files match this pattern"})
				continue
			}
			matches = m
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				msg := err.Error()
				var pe *fs.PathError
				if errors.As(err, &pe) {
					msg = pe.Err.Error()
				}
				probs = append(probs, Problem{File: m, Line: 1, Col: 1, Msg: "cannot read: " + msg})
				continue
			}
			if !st.IsDir() {
				files = append(files, m)
				continue
			}
			_ = filepath.WalkDir(m, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
					files = append(files, path)
				}
				return nil
			})
		}
	}
	slices.Sort(files)
	return slices.Compact(files), probs
}

type listDef struct {
	items []*yaml.Node
	where Problem
	text  string
}

type loader struct {
	probs []Problem
	lists map[string]listDef
	ids   map[string]Problem
	idLog []string // ids in the order they were defined, to undo a file's
	d     *doc
	exprs *exprCompiler
}

func (l *loader) errf(n *yaml.Node, format string, a ...any) {
	l.probs = append(l.probs, Problem{File: l.d.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, a...)})
}

// keys walks a mapping, reporting keys not in allowed (with a suggestion)
// and keys given twice; it returns the value node of each known key.
func (l *loader) keys(n *yaml.Node, what string, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		l.errf(n, "%s must be a mapping (key: value lines)", what)
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			msg := fmt.Sprintf("unknown key %q in %s", k.Value, what)
			if s := Suggest(k.Value, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			l.errf(k, "%s", msg)
			continue
		}
		if _, dup := out[k.Value]; dup {
			l.errf(k, "%q given twice in %s", k.Value, what)
			continue
		}
		out[k.Value] = v
	}
	return out
}

func (l *loader) collectLists(d *doc) {
	l.d = d
	if d.root.Kind != yaml.MappingNode {
		return
	}
	top := topLevel(d.root)
	ln := top["lists"]
	if ln == nil {
		return
	}
	if ln.Kind != yaml.MappingNode {
		l.errf(ln, "lists must be a mapping of names to lists")
		return
	}
	for i := 0; i+1 < len(ln.Content); i += 2 {
		k, v := ln.Content[i], ln.Content[i+1]
		if !listName.MatchString(k.Value) {
			l.errf(k, "list name %q: use letters, digits, _ and -", k.Value)
			continue
		}
		if prev, dup := l.lists[k.Value]; dup {
			l.errf(k, "list %q is defined twice (first at %s:%d)", k.Value, prev.where.File, prev.where.Line)
			continue
		}
		var items []*yaml.Node
		switch v.Kind {
		case yaml.SequenceNode:
			items = v.Content
		case yaml.ScalarNode:
			if v.Tag != "!!null" {
				items = []*yaml.Node{v}
			}
		default:
			l.errf(v, "list %q must be a list of values", k.Value)
			continue
		}
		text, _ := yaml.Marshal(v)
		l.lists[k.Value] = listDef{items: items, where: Problem{File: d.file, Line: k.Line}, text: string(text)}
	}
}

var (
	listName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	ruleID   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
)

func topLevel(n *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		out[n.Content[i].Value] = n.Content[i+1]
	}
	return out
}

// rules compiles the rules of one file.
func (l *loader) rules(d *doc) []*Rule {
	l.d = d
	var seq *yaml.Node
	switch d.root.Kind {
	case 0:
		return nil // empty file
	case yaml.SequenceNode:
		seq = d.root
	case yaml.MappingNode:
		top := l.keys(d.root, "a rule file", "rules", "lists")
		seq = top["rules"]
		if seq == nil {
			return nil
		}
		if seq.Kind != yaml.SequenceNode {
			l.errf(seq, "rules must be a list of rules (lines starting with -)")
			return nil
		}
	default:
		l.errf(d.root, "a rule file is a mapping with rules: (and lists:), or a list of rules")
		return nil
	}
	if seq == d.seq && d.pieces != nil {
		return l.rulesInPieces(d)
	}
	var out []*Rule
	for _, n := range seq.Content {
		if r := l.rule(n); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// rulesInPieces compiles the rules of a file opened in pieces, parsing
// each rule's text in turn. A piece that is not one rule of the list means
// the file is not what it looked like: it is then parsed whole (which
// reports a syntax error where it is) and its rules compiled again.
func (l *loader) rulesInPieces(d *doc) []*Rule {
	probs, ids := len(l.probs), len(l.idLog)
	var out []*Rule
	for i := range d.pieces {
		n, _, ok := d.piece(i)
		if !ok {
			l.probs = l.probs[:probs]
			for _, id := range l.idLog[ids:] {
				delete(l.ids, id)
			}
			l.idLog = l.idLog[:ids]
			if p := d.parseWhole(); p != nil {
				l.probs = append(l.probs, *p)
				return nil
			}
			return l.rules(d)
		}
		if r := l.rule(n); r != nil {
			out = append(out, r)
		}
	}
	return out
}

func (l *loader) rule(n *yaml.Node) *Rule {
	before := len(l.probs)
	k := l.keys(n, "a rule", "id", "title", "description", "severity", "attack", "tags", "enabled",
		"match", "when", "threshold", "for", "change", "schedule", "baseline", "fold")
	r := &Rule{File: l.d.file, Line: n.Line, Enabled: true}
	if v := k["id"]; v == nil {
		l.errf(n, "rule has no id")
	} else if r.ID = l.str(v); r.ID != "" {
		if !ruleID.MatchString(r.ID) {
			l.errf(v, "id %q: use letters, digits and . _ : -", r.ID)
		} else if first, dup := l.ids[r.ID]; dup {
			l.errf(v, "duplicate id %q (first defined at %s:%d:%d)", r.ID, first.File, first.Line, first.Col)
		} else {
			l.ids[r.ID] = Problem{File: l.d.file, Line: v.Line, Col: v.Column}
			l.idLog = append(l.idLog, r.ID)
		}
	}
	if v := k["title"]; v == nil {
		l.errf(n, "rule %q has no title", r.ID)
	} else {
		r.Title = l.str(v)
	}
	if v := k["description"]; v != nil {
		r.Description = l.str(v)
	}
	if v := k["severity"]; v == nil {
		l.errf(n, "rule %q has no severity (info, low, medium, high, critical)", r.ID)
	} else if s, ok := ParseSeverity(l.str(v)); !ok {
		l.errf(v, "severity %q: want info, low, medium, high or critical", v.Value)
	} else {
		r.Severity = s
	}
	for _, v := range l.items(k["attack"], "attack") {
		t, ok := LookupTechnique(v.Value)
		if !ok {
			l.errf(v, "unknown ATT&CK for ICS technique %q", v.Value)
			continue
		}
		r.Attack = append(r.Attack, t.ID)
	}
	for _, v := range l.items(k["tags"], "tags") {
		r.Tags = append(r.Tags, v.Value)
	}
	if v := k["enabled"]; v != nil {
		r.Enabled = l.boolean(v)
	}
	if v := k["match"]; v != nil {
		l.match(v, &r.match)
	}
	var seen names // what the rule looks at: when it is evaluated
	if v := k["when"]; v != nil {
		r.whenSrc = l.str(v)
		c := l.exprs.compile(r.whenSrc)
		if c.err != nil {
			l.exprError(v, c.err)
		}
		r.when, seen = c.prog, c.names
		r.needsValue = seen.value && !seen.hasValue
		r.needsStatus = seen.status && !seen.hasStatus
		r.correlates = seen.correlation
		r.needsPolled = seen.polled && !seen.hasPolled
	}
	stateful := 0
	if v := k["threshold"]; v != nil {
		stateful++
		r.threshold = l.threshold(v)
	}
	if v := k["for"]; v != nil {
		stateful++
		r.hold = l.duration(v, "for", false)
		if k["when"] == nil {
			l.errf(v, "for needs a when condition: the condition that must hold")
		}
	}
	if v := k["change"]; v != nil {
		stateful++
		r.change = l.change(v)
	}
	if v := k["baseline"]; v != nil {
		stateful++
		r.baseline = l.baseline(v)
	}
	if stateful > 1 {
		l.errf(n, "rule %q: use one of threshold, for, change and baseline", r.ID)
	}
	if v := k["schedule"]; v != nil {
		r.schedule = l.schedule(v)
	}
	r.fold = l.fold(k["fold"], r)
	if len(l.probs) > before {
		return nil
	}
	r.stages, r.seesMalformedResponse = stagesOf(r, seen)
	r.foldOnGroup = r.threshold != nil && slices.Equal(r.fold.by, r.threshold.by) && r.fold.window > 0
	r.digest = l.digest(n)
	r.alertRule = plcwatch.AlertRule{ID: r.ID, Title: r.Title, Severity: r.Severity.String(), Attack: r.Attack, Tags: r.Tags}
	if r.alertRule.Attack == nil {
		r.alertRule.Attack = []string{}
	}
	if r.alertRule.Tags == nil {
		r.alertRule.Tags = []string{}
	}
	return r
}

// digest identifies the rule as written, lists it uses included: a reload
// keeps the state of rules whose digest did not change. It hashes the
// rule's nodes (not their positions or comments), so moving a rule or
// editing its comment keeps its state.
func (l *loader) digest(n *yaml.Node) [12]byte {
	h := sha256.New()
	var buf []byte
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		buf = append(buf[:0], byte(n.Kind), byte(len(n.Content)))
		buf = append(buf, n.Tag...)
		buf = append(buf, 0)
		buf = append(buf, n.Value...)
		buf = append(buf, 0)
		h.Write(buf)
		if n.Kind == yaml.ScalarNode {
			for _, m := range listRefs.FindAllStringSubmatch(n.Value, -1) {
				h.Write([]byte(l.lists[m[1]].text))
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	var d [12]byte
	copy(d[:], h.Sum(nil))
	return d
}

var listRefs = regexp.MustCompile(`\$([A-Za-z0-9_-]+)`)

// stagesOf decides, once, at which stages of a wire request a rule is
// evaluated (issue 9 §4): a rule that names something only the response
// tells — exception, unanswered, response values, rtt, an OPC UA status —
// in match, when, threshold, change, baseline or fold waits for the
// response; every other rule fires on the request as soon as it is
// complete on the wire. Both see StageWhole events (polls, orphans,
// framing errors). malformed can come from either side: a rule that names
// it is a request rule that also looks at a response that was malformed
// when its request was not (see Rule.seesMalformedResponse).
func stagesOf(r *Rule, seen names) (uint8, bool) {
	resp := seen.response || r.match.exceptions != nil || r.match.unanswered != nil || r.match.statuses != nil
	if r.change != nil && r.match.source != plcwatch.Poll && (r.match.ops == 0 || r.match.ops&^(1<<plcwatch.OpWrite) != 0) {
		// A change rule follows what a write writes, known at the request;
		// one that may follow what a read reads waits for the answer.
		resp = true
	}
	fields := [][]field{r.fold.by}
	if r.threshold != nil {
		fields = append(fields, r.threshold.by, []field{r.threshold.distinct})
	}
	if r.change != nil {
		fields = append(fields, r.change.group)
	}
	if r.baseline != nil {
		fields = append(fields, r.baseline.key)
	}
	for _, fs := range fields {
		for _, f := range fs {
			resp = resp || responseField(f)
		}
	}
	if resp {
		return onWhole | onResponse, false
	}
	return onWhole | onRequest, seen.malformed || r.match.malformed != 0
}

func (l *loader) str(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		l.errf(n, "want a single value here")
		return ""
	}
	return n.Value
}

func (l *loader) boolean(n *yaml.Node) bool {
	switch l.str(n) {
	case "true", "yes", "on":
		return true
	case "false", "no", "off":
		return false
	}
	l.errf(n, "%q is not true or false", n.Value)
	return false
}

// duration reads a duration that must be positive (or, with zeroOK, zero
// too), reporting what is wrong with it once.
func (l *loader) duration(n *yaml.Node, what string, zeroOK bool) time.Duration {
	d, err := time.ParseDuration(l.str(n))
	switch {
	case err != nil:
		l.errf(n, "%s: %q is not a duration (like 500ms, 10s, 5m, 24h)", what, n.Value)
	case d < 0 || (d == 0 && !zeroOK):
		l.errf(n, "%s must be a positive duration", what)
	}
	return d
}

func (l *loader) integer(n *yaml.Node, lo, hi int) int {
	v, err := strconv.ParseInt(l.str(n), 0, 64)
	if err != nil || int(v) < lo || int(v) > hi {
		l.errf(n, "%q is not a number from %d to %d", n.Value, lo, hi)
		return 0
	}
	return int(v)
}

// items returns the elements of a list (a single value counts as a list of
// one), with $name references to lists: expanded in place.
func (l *loader) items(n *yaml.Node, what string) []*yaml.Node {
	if n == nil {
		return nil
	}
	var raw []*yaml.Node
	switch n.Kind {
	case yaml.SequenceNode:
		raw = n.Content
	case yaml.ScalarNode:
		raw = []*yaml.Node{n}
	default:
		l.errf(n, "%s must be a value or a list of values", what)
		return nil
	}
	var out []*yaml.Node
	for _, v := range raw {
		if v.Kind != yaml.ScalarNode {
			l.errf(v, "%s: want a value, not a nested list or mapping", what)
			continue
		}
		name, neg := strings.CutPrefix(v.Value, "!")
		if ref, ok := strings.CutPrefix(name, "$"); ok {
			def, found := l.lists[ref]
			if !found {
				l.errf(v, "no list named %q (define it under lists:)", ref)
				continue
			}
			for _, it := range def.items {
				c := *it
				if neg {
					c.Value = "!" + c.Value
				}
				out = append(out, &c)
			}
			continue
		}
		out = append(out, v)
	}
	return out
}

func (l *loader) match(n *yaml.Node, m *match) {
	k := l.keys(n, "match", matchKeys...)
	if v := k["protocol"]; v != nil {
		switch l.str(v) {
		case "modbus":
			m.protocol = plcwatch.ProtoModbus
		case "opcua":
			m.protocol = plcwatch.ProtoOPCUA
		default:
			l.errf(v, "protocol %q: want modbus or opcua", v.Value)
		}
	}
	if v := k["source"]; v != nil {
		switch l.str(v) {
		case "wire":
			m.source = plcwatch.Wire
		case "poll":
			m.source = plcwatch.Poll
		default:
			l.errf(v, "source %q: want wire or poll", v.Value)
		}
	}
	for _, v := range l.items(k["op"], "op") {
		op, ok := plcwatch.ParseOp(v.Value)
		if !ok {
			msg := fmt.Sprintf("op %q: want one of %s", v.Value, strings.Join(opNames(), ", "))
			if s := Suggest(v.Value, opNames()); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			l.errf(v, "%s", msg)
			continue
		}
		m.ops |= 1 << op
	}
	if vs := l.items(k["function"], "function"); vs != nil {
		m.funcs = new(bits256)
		for _, v := range vs {
			lo, hi, ok := rangeOf(v.Value, func(s string) (int, bool) {
				fc, ok := modbustcp.ParseFunction(s)
				return int(fc), ok
			})
			if !ok {
				l.errf(v, "function %q: want a function code 0-127, a range like 65-72, or a name like write_single_register", v.Value)
				continue
			}
			m.funcs.setRange(uint8(lo), uint8(hi))
		}
	}
	for _, v := range l.items(k["subfunction"], "subfunction") {
		m.subs = append(m.subs, uint16(l.integer(v, 0, 65535)))
	}
	if vs := l.items(k["unit"], "unit"); vs != nil {
		m.units = new(bits256)
		for _, v := range vs {
			lo, hi, ok := rangeOf(v.Value, number(0, 255))
			if !ok {
				l.errf(v, "unit %q: want a unit id 0-255 or a range like 1-10", v.Value)
				continue
			}
			m.units.setRange(uint8(lo), uint8(hi))
		}
	}
	for _, v := range l.items(k["table"], "table") {
		t, ok := plcwatch.ParseTable(v.Value)
		if !ok {
			l.errf(v, "table %q: want coil, discrete, input, holding or file", v.Value)
			continue
		}
		m.tables |= 1 << t
	}
	for _, v := range l.items(k["address"], "address") {
		lo, hi, ok := rangeOf(v.Value, number(0, 65535))
		if !ok {
			l.errf(v, "address %q: want a 0-based protocol address 0-65535 or a range like 100-199 (for 1-based register numbers like 40101 use register:)", v.Value)
			continue
		}
		m.ranges = append(m.ranges, addrRange{lo: uint16(lo), hi: uint16(hi)})
	}
	for _, v := range l.items(k["register"], "register") {
		r, err := register(v.Value)
		if err != nil {
			l.errf(v, "register %q: %v", v.Value, err)
			continue
		}
		m.ranges = append(m.ranges, r)
	}
	if m.ranges == nil && (k["address"] != nil || k["register"] != nil) {
		m.ranges = []addrRange{} // an empty list matches no address
	}
	m.clients, m.clientsNot = l.prefixes(k["client"], "client")
	m.servers, m.serversNot = l.prefixes(k["server"], "server")
	for _, v := range l.items(k["port"], "port") {
		m.ports = append(m.ports, uint16(l.integer(v, 1, 65535)))
	}
	m.devices = l.patterns(k["device"], "device")
	m.tags = l.patterns(k["tag"], "tag")
	m.nodes = l.patterns(k["node"], "node")
	m.services = l.patterns(k["service"], "service")
	for _, v := range l.items(k["namespace"], "namespace") {
		// An index (2) matches node ids written ns=2;...; a URI matches
		// expanded node ids written nsu=URI;... (docs/rules.md).
		if i, err := strconv.ParseUint(v.Value, 10, 16); err == nil {
			m.namespaces = append(m.namespaces, strconv.FormatUint(i, 10))
		} else if strings.ContainsAny(v.Value, ";") || v.Value == "" {
			l.errf(v, "namespace %q: want an index (0-65535) or a namespace URI", v.Value)
		} else {
			m.namespaces = append(m.namespaces, v.Value)
		}
	}
	m.securityModes = l.enum(k["security_mode"], "security_mode", "None", "Sign", "SignAndEncrypt")
	m.securityPolicies = l.patterns(k["security_policy"], "security_policy")
	m.identities = l.enum(k["identity"], "identity", "anonymous", "username", "certificate", "issued")
	m.users = l.patterns(k["user"], "user")
	for _, v := range l.items(k["status"], "status") {
		// A status is a name or glob (BadUserAccessDenied, Bad*), or a
		// numeric StatusCode (0x801F0000).
		if c, err := strconv.ParseUint(v.Value, 0, 32); err == nil {
			m.statusCodes = append(m.statusCodes, uint32(c))
			m.statuses = append(m.statuses, "")
			continue
		}
		if _, err := path.Match(v.Value, ""); err != nil {
			l.errf(v, "status %q: bad pattern: %v", v.Value, err)
			continue
		}
		m.statuses = append(m.statuses, v.Value)
	}
	if v := k["malformed"]; v != nil {
		m.malformed = tri(l.boolean(v))
	}
	if v := k["orphan"]; v != nil {
		m.orphan = tri(l.boolean(v))
	}
	if v := k["exception"]; v != nil {
		m.exceptions = new(bits256)
		if v.Kind == yaml.ScalarNode && (v.Value == "true" || v.Value == "false") {
			if v.Value == "true" {
				m.exceptions.setRange(1, 255)
			} else {
				m.exceptions.set(0)
			}
		} else {
			for _, it := range l.items(v, "exception") {
				lo, hi, ok := rangeOf(it.Value, number(0, 255))
				if !ok {
					l.errf(it, "exception %q: want true, false, or exception codes like 1, 2, 10-11", it.Value)
					continue
				}
				m.exceptions.setRange(uint8(lo), uint8(hi))
			}
		}
	}
	for _, v := range l.items(k["unanswered"], "unanswered") {
		switch v.Value {
		case plcwatch.UnansweredTimeout, plcwatch.UnansweredClosed, plcwatch.UnansweredReused,
			plcwatch.UnansweredEvicted, plcwatch.UnansweredEOF, plcwatch.UnansweredIdle, plcwatch.UnansweredStopped:
			m.unanswered = append(m.unanswered, v.Value)
		default:
			l.errf(v, "unanswered %q: want timeout, closed, reused, evicted, idle, eof or stopped", v.Value)
		}
	}
	m.extra = m.subs != nil || m.ports != nil || m.devices != nil || m.tags != nil || m.nodes != nil ||
		m.namespaces != nil || m.services != nil || m.unanswered != nil || m.securityModes != nil ||
		m.securityPolicies != nil || m.identities != nil || m.users != nil || m.statuses != nil
}

// matchKeys are the keys of match:, in the order docs/rules.md lists them.
var matchKeys = []string{"protocol", "source", "op", "function", "subfunction", "unit", "table",
	"address", "register", "client", "server", "port", "device", "tag", "node", "namespace", "service",
	"security_mode", "security_policy", "identity", "user", "status",
	"malformed", "exception", "orphan", "unanswered"}

func opNames() []string {
	var out []string
	for op := plcwatch.OpRead; op.String() != "unknown"; op++ {
		out = append(out, op.String())
	}
	return out
}

// enum reads values that must be one of allowed (with a suggestion).
func (l *loader) enum(n *yaml.Node, what string, allowed ...string) []string {
	var out []string
	for _, v := range l.items(n, what) {
		if !slices.Contains(allowed, v.Value) {
			msg := fmt.Sprintf("%s %q: want %s", what, v.Value, strings.Join(allowed, ", "))
			if s := Suggest(v.Value, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			l.errf(v, "%s", msg)
			continue
		}
		out = append(out, v.Value)
	}
	return out
}

func tri(b bool) int8 {
	if b {
		return 1
	}
	return -1
}

// prefixes reads client/server lists: addresses or CIDR prefixes, each
// optionally negated with a leading "!".
func (l *loader) prefixes(n *yaml.Node, what string) (in, out []netip.Prefix) {
	for _, v := range l.items(n, what) {
		s, neg := strings.CutPrefix(v.Value, "!")
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				l.errf(v, "%s %q: not an IP address or CIDR prefix (like 10.0.0.5 or 10.0.0.0/24)", what, s)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p != p.Masked() {
			l.errf(v, "%s %q: host bits set (did you mean %s?)", what, s, p.Masked())
			continue
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if neg {
			out = append(out, p)
		} else {
			in = append(in, p)
		}
	}
	return in, out
}

func (l *loader) patterns(n *yaml.Node, what string) []string {
	var out []string
	for _, v := range l.items(n, what) {
		if _, err := filepath.Match(v.Value, ""); err != nil {
			l.errf(v, "%s %q: bad pattern: %v", what, v.Value, err)
			continue
		}
		out = append(out, v.Value)
	}
	return out
}

func (l *loader) fields(n *yaml.Node, what string) []field {
	var out []field
	for _, v := range l.items(n, what) {
		f, ok := fieldNames[v.Value]
		if !ok {
			if s := Suggest(v.Value, fieldNameList()); s != "" {
				l.errf(v, "%s: %q is not an event field (did you mean %q?)", what, v.Value, s)
			} else {
				l.errf(v, "%s: %q is not an event field (%s)", what, v.Value, fieldList())
			}
			continue
		}
		out = append(out, f)
	}
	return out
}

func (l *loader) threshold(n *yaml.Node) *threshold {
	k := l.keys(n, "threshold", "count", "window", "by", "distinct")
	t := &threshold{by: []field{fieldClient, fieldServer}}
	if v := k["count"]; v == nil {
		l.errf(n, "threshold needs a count")
	} else {
		t.count = l.integer(v, 1, 1_000_000)
	}
	if v := k["window"]; v == nil {
		l.errf(n, "threshold needs a window (like 10s)")
	} else {
		t.window = l.duration(v, "window", false)
	}
	if v := k["by"]; v != nil {
		t.by = l.fields(v, "by")
	}
	if v := k["distinct"]; v != nil {
		if fs := l.fields(v, "distinct"); len(fs) == 1 {
			t.distinct = fs[0]
		} else if len(fs) > 1 {
			l.errf(v, "distinct counts the values of one field")
		}
	}
	return t
}

// changeGroup is what a change rule follows by default: one polled value
// (device, tag, node) or one written register, coil or node (server,
// unit, table, address, node).
var changeGroup = []field{fieldDevice, fieldTag, fieldNode, fieldServer, fieldUnit, fieldTable, fieldAddress}

func (l *loader) change(n *yaml.Node) *change {
	c := &change{group: changeGroup}
	if n.Kind == yaml.ScalarNode {
		if n.Value != "any" {
			l.errf(n, "change: want any, or a mapping with delta:, count:, window:, by:")
		}
		return c
	}
	k := l.keys(n, "change", "delta", "count", "window", "by")
	if v := k["delta"]; v != nil {
		d, err := strconv.ParseFloat(l.str(v), 64)
		if err != nil || d < 0 || math.IsInf(d, 0) {
			l.errf(v, "delta %q: want a number of engineering units, 0 or more", v.Value)
		}
		c.delta = d
	}
	if v := k["count"]; v != nil {
		c.count = l.integer(v, 1, 1000)
		if k["window"] == nil {
			l.errf(v, "count needs a window: how many changes within how long (like count: 10, window: 10s)")
		}
	}
	if v := k["window"]; v != nil {
		c.window = l.duration(v, "window", false)
		if k["count"] == nil {
			l.errf(v, "window needs a count: how many changes within it")
		}
	}
	if v := k["by"]; v != nil {
		if c.group = l.fields(v, "by"); len(c.group) == 0 {
			l.errf(v, "by names the fields that identify one value")
		}
	}
	return c
}

// fold reads fold: — a window (fold: 1m; 0 turns folding off) or a
// mapping {window, by} — and applies the defaults: a one-minute window,
// by the threshold's by for a threshold rule, else by defaultFoldBy.
func (l *loader) fold(n *yaml.Node, r *Rule) foldSpec {
	f := foldSpec{window: DefaultFold, by: defaultFoldBy}
	if r.threshold != nil {
		f.by = r.threshold.by
	}
	if n == nil {
		return f
	}
	if n.Kind == yaml.ScalarNode {
		f.window = l.duration(n, "fold (0 turns folding off)", true)
		return f
	}
	k := l.keys(n, "fold", "window", "by")
	if v := k["window"]; v != nil {
		f.window = l.duration(v, "fold window (0 turns folding off)", true)
	}
	if v := k["by"]; v != nil {
		f.by = l.fields(v, "fold by")
	}
	return f
}

// defaultFoldBy is what identifies an alert of a rule that does not say:
// the actor and what it acts on — client and server on the wire, the
// device and tag of a polled value. The function codes, units, addresses
// and nodes a sweep varies are not part of it: they are what the folded
// alert's activity reports (issue 9 §10).
var defaultFoldBy = []field{fieldClient, fieldServer, fieldDevice, fieldTag}

func (l *loader) baseline(n *yaml.Node) *baselineSpec {
	k := l.keys(n, "baseline", "learn", "key")
	b := &baselineSpec{key: []field{fieldClient, fieldServer, fieldUnit, fieldFunction}}
	if v := k["learn"]; v == nil {
		l.errf(n, "baseline needs a learn period (like 7d is written 168h)")
	} else {
		b.learn = l.duration(v, "learn", false)
	}
	if v := k["key"]; v != nil {
		if b.key = l.fields(v, "key"); len(b.key) == 0 {
			l.errf(v, "key names the fields of a learned tuple")
		}
	}
	for _, f := range b.key {
		b.names = append(b.names, f.String())
	}
	return b
}

func (l *loader) schedule(n *yaml.Node) *schedule {
	k := l.keys(n, "schedule", "timezone", "active", "mute")
	s := &schedule{loc: time.UTC}
	if v := k["timezone"]; v != nil {
		loc, err := time.LoadLocation(l.str(v))
		if err != nil {
			l.errf(v, "timezone %q: not a known zone (like UTC, Europe/Berlin, America/Chicago)", v.Value)
		} else {
			s.loc = loc
		}
	}
	for _, key := range []string{"active", "mute"} {
		for _, v := range l.items(k[key], key) {
			w, err := parseWindow(v.Value)
			if err != nil {
				l.errf(v, "%v", err)
				continue
			}
			if key == "active" {
				s.active = append(s.active, w)
			} else {
				s.mute = append(s.mute, w)
			}
		}
	}
	if k["active"] == nil && k["mute"] == nil {
		l.errf(n, "schedule needs active or mute windows")
	}
	return s
}

// exprError reports an expression compile error at its position in the file.
func (l *loader) exprError(n *yaml.Node, err error) {
	var fe *file.Error
	line, col := n.Line, n.Column
	msg := err.Error()
	if errors.As(err, &fe) {
		msg = fe.Message
		switch n.Style {
		case yaml.LiteralStyle, yaml.FoldedStyle:
			// The text starts on the line after the | or >; YAML strips
			// the block's indentation, which is the first line's.
			line = n.Line + fe.Line
			if first := l.d.line(n.Line + 1); first != "" {
				col = len(first) - len(strings.TrimLeft(first, " \t")) + fe.Column + 1
			}
		case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
			line = n.Line + fe.Line - 1
			if fe.Line == 1 {
				col = n.Column + 1 + fe.Column
			}
		default:
			line = n.Line + fe.Line - 1
			if fe.Line == 1 {
				col = n.Column + fe.Column
			}
		}
	}
	l.probs = append(l.probs, Problem{File: l.d.file, Line: line, Col: col, Msg: "when: " + explain(msg)})
}

// rangeOf reads "v" or "lo-hi" with parse for each end.
func rangeOf(s string, parse func(string) (int, bool)) (lo, hi int, ok bool) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, ok = parse(strings.TrimSpace(a)); !ok {
		return 0, 0, false
	}
	hi = lo
	if isRange {
		if hi, ok = parse(strings.TrimSpace(b)); !ok || hi < lo {
			return 0, 0, false
		}
	}
	return lo, hi, true
}

func number(lo, hi int) func(string) (int, bool) {
	return func(s string) (int, bool) {
		v, err := strconv.ParseInt(s, 0, 64)
		return int(v), err == nil && int(v) >= lo && int(v) <= hi
	}
}

// register reads the 1-based references of device manuals: a table digit
// (0 coil, 1 discrete input, 3 input register, 4 holding register) and a
// 1-based number, in the 5-digit form (40001 = holding, address 0, up to
// 9999) or the 6-digit form (400001, up to 65536); a range "40101-40120".
func register(s string) (addrRange, error) {
	a, b, isRange := strings.Cut(s, "-")
	t1, lo, err := plcwatch.ParseRegisterRef(strings.TrimSpace(a))
	if err != nil {
		return addrRange{}, err
	}
	t2, hi := t1, lo
	if isRange {
		if t2, hi, err = plcwatch.ParseRegisterRef(strings.TrimSpace(b)); err != nil {
			return addrRange{}, err
		}
		if t2 != t1 {
			return addrRange{}, errors.New("a range must stay in one table")
		}
		if hi < lo {
			return addrRange{}, errors.New("range ends before it starts")
		}
	}
	return addrRange{table: t1, lo: lo, hi: hi}, nil
}

// Suggest returns the word of allowed closest to s, if one is close (an
// edit distance under 3): the "did you mean" of rule and config files.
func Suggest(s string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(s, a); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of two neighbours cost one each, so
// "valeu" is one edit from "value".
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
