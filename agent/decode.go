package agent

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/plcwatch/plcwatch/rules"
)

// decoder checks a configuration's YAML tree against the Go types it
// decodes into, before yaml.v3 decodes it, so that every problem comes out
// in the user's terms at the value's own position, and all of them at once:
// an unknown key, a value of the wrong type ("want a duration with a unit,
// like 2s", not "cannot unmarshal !!int into time.Duration"), a number out
// of its range (bounds.go). A value of the wrong type is replaced by null,
// so that decoding goes on and the rest of the file is still checked.
type decoder struct {
	file  string
	nodes map[string]*yaml.Node // field path ("mqtt.brokers[1]") -> value node
	probs []Problem
	bad   []string                                 // paths that have a problem of their own: later checks keep quiet about them
	steps int                                      // values walked, aliases expanded: bounded (maxSteps)
	alias bool                                     // an alias was expanded: the message says so
	types map[reflect.Type]map[string]reflect.Type // yamlFields, per struct type
}

// maxSteps bounds the values a configuration may expand to through YAML
// aliases ("billion laughs"): 100 devices of 100 tags are about 80,000; a
// file beyond it is refused whole.
const maxSteps = 1 << 20

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[ByteSize]()
	timeType     = reflect.TypeFor[time.Time]()
)

func (d *decoder) problem(n *yaml.Node, path, format string, a ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: n.Line, Col: n.Column, Path: path, Msg: path + ": " + fmt.Sprintf(format, a...)})
	d.bad = append(d.bad, path)
}

// wrongType reports a value that cannot be what its key wants and replaces
// it by null.
func (d *decoder) wrongType(n *yaml.Node, path, want string) {
	d.problem(n, path, "%s: want %s", shown(n), want)
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// shown is how a value is quoted in a message.
func shown(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	if v == "" || strings.ContainsAny(v, " \t:#,[]{}") {
		return strconv.Quote(v)
	}
	return v
}

// walk checks n against t; path names it in messages, pat is path with
// [] for list indexes (the key of bounds and wants).
func (d *decoder) walk(n *yaml.Node, t reflect.Type, path, pat string) {
	if d.steps++; d.steps > maxSteps {
		if d.steps == maxSteps+1 {
			how := "has" // a file without aliases is not a bomb: it is only large (issue 12)
			if d.alias {
				how = "expands, through its aliases, to"
			}
			d.probs = append(d.probs, Problem{File: d.file, Line: n.Line, Col: n.Column,
				Msg: fmt.Sprintf("the file %s more than %d values: too large to check (from here on)", how, maxSteps)})
		}
		return
	}
	at := n
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n, d.alias = n.Alias, true
	}
	if path != "" {
		d.nodes[path] = at
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // the default (or nothing) for every type
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if b, ok := bounds[pat]; ok && b.size && t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 {
		d.intSize(n, path, pat, b)
		return
	}
	switch {
	case t == durationType:
		d.duration(n, path, pat)
		return
	case t == sizeType:
		d.size(n, path, pat)
		return
	case t == timeType:
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.wrongType(n, path, "true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.integer(n, t, path, pat)
	case reflect.Float32, reflect.Float64:
		d.float(n, path, pat)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.wrongType(n, path, want(pat, "one value, not a list or a mapping"))
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.wrongType(n, path, want(pat, "keys and values below it (a mapping)"))
			return
		}
		d.mapping(n, t, path, pat)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.wrongType(n, path, want(pat, "a list, like [a, b]"))
			return
		}
		for i, item := range n.Content {
			d.walk(item, t.Elem(), path+"["+strconv.Itoa(i)+"]", pat+"[]")
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.wrongType(n, path, want(pat, "keys and values, like {key: value}"))
			return
		}
		for _, kv := range pairs(n) {
			if kv[0].Kind != yaml.ScalarNode {
				d.wrongType(kv[0], path, "a name as the key")
				continue
			}
			d.walk(kv[1], t.Elem(), path+"."+kv[0].Value, pat+".*")
		}
	}
}

// wants say what a key wants in its own terms, where the generic words
// would not help.
var wants = map[string]string{
	"capture.interfaces":             "a list of interfaces, like [eth1]",
	"capture.modbus_ports":           "a list of ports, like [502, 5020]",
	"capture.opcua_ports":            "a list of ports, like [4840, 48010]",
	"rules.paths":                    "a list of rule files or folders, like [rules, /etc/plcwatch/rules]",
	"mqtt.brokers":                   "a list of broker URLs, like [tcp://broker:1883]",
	"modbus.devices":                 `a list of devices, one "- name: boiler" item each`,
	"modbus.devices[].tags":          `a list of tags, one "- {name: temperature, register: 40001}" item each`,
	"assets":                         `a list of assets, one "- {name: plc-1, address: 10.0.0.5:502}" item each`,
	"mqtt.embedded.users":            `a list of users, one "- {username: scada, password_file: scada.pw}" item each`,
	"assets[].tags":                  "keys and values, like {zone: cell-3}",
	"modbus.devices[].serial":        "keys and values, like {baud: 19200, parity: even}",
	"modbus.devices[].tls":           "keys and values, like {ca_file: ca.pem, cert_file: cert.pem, key_file: key.pem}",
	"modbus.devices[].tags[].scale":  "a number, like 0.1",
	"modbus.devices[].tags[].offset": "a number, like -40",
	"opcua.devices":                  `a list of servers, one "- name: line-3" item each`,
	"opcua.devices[].tags":           `a list of tags, one "- {name: level, node: ns=2;s=Tank.Level}" item each`,
	"opcua.devices[].security":       "keys and values, like {policy: Basic256Sha256, mode: SignAndEncrypt}",
	"opcua.devices[].auth":           "keys and values, like {username: plcwatch, password_file: opcua.pw}",
	"opcua.pki":                      "keys and values, like {dir: /var/lib/plcwatch/pki}",
	"opcua.devices[].tags[].scale":   "a number, like 0.1",
	"opcua.devices[].tags[].offset":  "a number, like -40",
}

// want is what the value at pat wants, or generic.
func want(pat, generic string) string {
	if w, ok := wants[pat]; ok {
		return w
	}
	return generic
}

// pairs are a mapping's key/value nodes, merge keys (<<: *base) expanded;
// the mapping's own keys win over merged ones, as YAML says.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	var own, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			srcs := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			}
			for _, s := range srcs {
				for s.Kind == yaml.AliasNode && s.Alias != nil {
					s = s.Alias
				}
				if s.Kind == yaml.MappingNode {
					merged = append(merged, pairs(s)...)
				}
			}
			continue
		}
		own = append(own, [2]*yaml.Node{k, v})
	}
	for _, m := range merged {
		if !slices.ContainsFunc(own, func(o [2]*yaml.Node) bool { return o[0].Value == m[0].Value }) {
			own = append(own, m)
		}
	}
	return own
}

// mapping checks a struct's keys: unknown ones are problems (with a guess
// at what was meant), known ones are walked.
func (d *decoder) mapping(n *yaml.Node, t reflect.Type, path, pat string) {
	fields, ok := d.types[t]
	if !ok {
		if d.types == nil {
			d.types = map[reflect.Type]map[string]reflect.Type{}
		}
		fields = yamlFields(t)
		d.types[t] = fields
	}
	first := map[string]*yaml.Node{}
	for _, kv := range pairs(n) {
		k, v := kv[0], kv[1]
		ft, ok := fields[k.Value]
		where := k.Value
		wherePat := k.Value
		if path != "" {
			where = path + "." + k.Value
			wherePat = pat + "." + k.Value
		}
		if !ok {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if path != "" {
				msg += " in " + path
			}
			if s := rules.Suggest(k.Value, slices.Sorted(maps.Keys(fields))); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.probs = append(d.probs, Problem{File: d.file, Line: k.Line, Col: k.Column, Path: where, Msg: msg})
			continue
		}
		if f, dup := first[k.Value]; dup {
			d.probs = append(d.probs, Problem{File: d.file, Line: k.Line, Col: k.Column, Path: where,
				Msg: fmt.Sprintf("%s: given twice (first on line %d); which one counts is not clear", where, f.Line)})
			d.bad = append(d.bad, where)
			// yaml.v3 would refuse to decode the whole file for it: drop
			// the second one, and check the rest.
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i] == k {
					n.Content = slices.Delete(n.Content, i, i+2)
					break
				}
			}
			continue
		}
		first[k.Value] = k
		d.walk(v, ft, where, wherePat)
	}
}

// yamlFields maps a struct's YAML keys to their types (inline structs
// included).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			maps.Copy(fields, yamlFields(f.Type))
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f.Type
	}
	return fields
}

func (d *decoder) duration(n *yaml.Node, path, pat string) {
	if n.Kind != yaml.ScalarNode {
		d.wrongType(n, path, "a duration with a unit, like 2s")
		return
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.wrongType(n, path, "a duration with a unit, like 2s (ms, s, m, h)")
		return
	}
	if n.Value == "0" {
		// yaml.v3 refuses a bare 0 for a duration; time.ParseDuration,
		// and an operator turning something off, do not.
		n.Tag = "!!str"
	}
	d.inBounds(n, path, pat, float64(v))
}

func (d *decoder) size(n *yaml.Node, path, pat string) {
	v, ok := parseSize(n.Value)
	if n.Kind != yaml.ScalarNode || !ok {
		d.wrongType(n, path, "a size in bytes, like 1048576, 64KiB or 256MiB")
		return
	}
	d.inBounds(n, path, pat, float64(v))
}

// intSize reads a size into an integer field (capture's byte counts take
// 1MiB as spool.max_bytes does, as docs/config.md promises), and leaves
// the plain number in the tree for the decoding that follows.
func (d *decoder) intSize(n *yaml.Node, path, pat string, b bound) {
	v, ok := parseSize(n.Value)
	if n.Kind != yaml.ScalarNode || !ok {
		d.wrongType(n, path, "a size in bytes, like 1048576, 64KiB or 256MiB")
		return
	}
	d.inBounds(n, path, pat, float64(v))
	if !b.holds(float64(v)) {
		// Reported; keep a value that may not fit an int out of the decoding.
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		return
	}
	n.Value, n.Tag, n.Style = strconv.FormatInt(v, 10), "!!int", 0
}

func (d *decoder) integer(n *yaml.Node, t reflect.Type, path, pat string) {
	want := "a whole number"
	if strings.HasSuffix(strings.TrimSuffix(pat, "[]"), "ports") {
		want = "a TCP port, 1-65535"
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.wrongType(n, path, want)
		return
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil && n.Decode(&v) != nil { // YAML's other forms of integers (0o17, 1_000)
		d.wrongType(n, path, want)
		return
	}
	ok := true
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		ok = v >= 0 && (t.Bits() == 64 || v < 1<<t.Bits())
	default:
		ok = t.Bits() == 64 || (v >= -1<<(t.Bits()-1) && v < 1<<(t.Bits()-1))
	}
	if !ok {
		if _, has := bounds[pat]; !has {
			if v < 0 && t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
				d.wrongType(n, path, want+", 0 or more") // seed: -1 (issue 12)
				return
			}
			d.wrongType(n, path, want+" that fits")
			return
		}
		d.inBounds(n, path, pat, float64(v)) // says the range
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		return
	}
	d.inBounds(n, path, pat, float64(v))
}

func (d *decoder) float(n *yaml.Node, path, pat string) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.wrongType(n, path, want(pat, "a number, like 0.5"))
		return
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil && n.Decode(&v) != nil { // .inf, .nan, 0x10
		d.wrongType(n, path, want(pat, "a number, like 0.5"))
		return
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		d.wrongType(n, path, "a finite number")
		return
	}
	d.inBounds(n, path, pat, v)
}

// inBounds reports a value outside its key's range (bounds.go).
func (d *decoder) inBounds(n *yaml.Node, path, pat string, v float64) {
	b, ok := bounds[pat]
	if !ok || b.holds(v) {
		return
	}
	d.problem(n, path, "%s: want %s", shown(n), b.Range())
}

// sizeRE reads 1048576, "64KiB", "256MiB", "1GiB" (and KB, MB, GB as powers
// of 1000).
var sizeRE = regexp.MustCompile(`^\s*(\d+)\s*([KMGT]i?B|B)?\s*$`)

func parseSize(s string) (int64, bool) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, false
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	if v > math.MaxInt64/mult {
		return 0, false
	}
	return v * mult, true
}

// syntaxProblem turns yaml.v3's syntax error into a problem at the right
// place. yaml.v3 reports a parser error (an unclosed { or [, a missing
// key) at its 0-based "context" line — the line before the one the
// problem is on ("a missing } on line 16 reported at 15", issue 9) — and a
// scanner error at its 1-based line. Parser errors get their 1 back, and an
// unclosed flow collection is pointed at its own bracket.
func syntaxProblem(path string, src []byte, err error) Problem {
	p := Problem{File: path, Line: 1, Col: 1, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := lineRE.FindStringSubmatch(p.Msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			p.Col, _ = strconv.Atoi(m[2])
		}
		p.Msg = p.Msg[len(m[0]):]
		if isParserError(p.Msg) {
			p.Line++
		}
	}
	switch p.Msg {
	case "did not find expected ',' or '}'":
		if line, col, ok := unclosed(src, '{', p.Line); ok {
			p.Line, p.Col = line, col
			p.Msg = "this { is not closed: a } (or a , between items) is missing"
		}
	case "did not find expected ',' or ']'":
		if line, col, ok := unclosed(src, '[', p.Line); ok {
			p.Line, p.Col = line, col
			p.Msg = "this [ is not closed: a ] (or a , between items) is missing"
		}
	case "found unexpected end of stream":
		if line, col, ok := unclosed(src, '"', p.Line); ok {
			p.Line, p.Col = line, col
			p.Msg = "this quote is not closed"
		} else if line, col, ok := unclosed(src, '\'', p.Line); ok {
			p.Line, p.Col = line, col
			p.Msg = "this quote is not closed"
		}
	}
	return p
}

var lineRE = regexp.MustCompile(`^line (\d+)(?: column (\d+))?: `)

// isParserError says whether a yaml.v3 message comes from its parser
// (parserc.go), whose line is 0-based, rather than its scanner.
func isParserError(msg string) bool {
	for _, s := range []string{
		"did not find expected <document start>", "did not find expected node content",
		"did not find expected key", "did not find expected '-' indicator",
		"did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"found undefined tag handle", "found duplicate %YAML directive", "found incompatible YAML document",
		"found duplicate %TAG directive", "block sequence entries are not allowed in this context",
	} {
		if strings.HasPrefix(msg, s) {
			return true
		}
	}
	return false
}

// unclosed finds the last flow collection bracket (open: '{' or '[') that
// is never closed and opens on or before line (1-based), or (open: a
// quote) the quoted text that never ends; quoted text and comments are
// skipped.
func unclosed(src []byte, open byte, line int) (int, int, bool) {
	type mark struct {
		c         byte
		line, col int
	}
	var stack []mark
	l, col := 1, 0
	var quote byte
	var quoteAt mark
	comment := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		col++
		switch {
		case c == '\n':
			l, col, comment = l+1, 0, false
		case comment:
		case quote != 0:
			switch {
			case c == quote && quote == '\'' && i+1 < len(src) && src[i+1] == '\'':
				i, col = i+1, col+1 // '' is a quote inside single quotes
			case c == quote:
				quote = 0
			case c == '\\' && quote == '"':
				i, col = i+1, col+1
			}
		case c == '#' && (i == 0 || src[i-1] == ' ' || src[i-1] == '\t'):
			comment = true
		case (c == '"' || c == '\'') && (col == 1 || strings.IndexByte(" \t[{,", src[i-1]) >= 0):
			quote = c // a quote opens a scalar only where a scalar starts (not in "don't")
			quoteAt = mark{c, l, col}
		case c == '{' || c == '[':
			stack = append(stack, mark{c, l, col})
		case c == '}' || c == ']':
			if n := len(stack); n > 0 && (stack[n-1].c == '{') == (c == '}') {
				stack = stack[:n-1]
			}
		}
	}
	if open == '"' || open == '\'' {
		return quoteAt.line, quoteAt.col, quote == open
	}
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].c == open && stack[i].line <= line {
			return stack[i].line, stack[i].col, true
		}
	}
	return 0, 0, false
}
