package rules

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// A rule file is parsed one rule at a time when it is written in plain
// block style (as every example and the default set are): a YAML node tree
// costs about 25 times the text it came from, so a 10 MB file parsed whole
// held ~250 MB of nodes while its rules compiled, beside the running set
// (issue 8 §4). split cuts the file into its top-level sections and the
// rules of its rules: list; each rule's text is parsed, compiled and
// dropped in turn. A file that is not plain block style — flow style at
// the top, anchors or aliases, tabs in indentation, several documents — is
// parsed whole, as is any file a piece of which does not parse alone.

// doc is one rule file.
type doc struct {
	file  string
	src   []byte
	lines []int // byte offset of the start of each line, for positions in expressions

	// root is the file's top node: the whole tree, or in pieces mode a
	// mapping of the top-level sections where rules: stands for pieces.
	root *yaml.Node
	// pieces are the rules of a block-style list, parsed one by one; seq
	// is the node that stands for them in root (or root itself for a file
	// that is a list of rules).
	pieces []span
	seq    *yaml.Node
}

// span is a piece of a file that parses alone.
type span struct {
	start, end int // byte offsets
	line       int // 1-based line of start
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// parserErrors are yaml.v3's parser errors (as opposed to its scanner and
// decoder errors, whose lines count from 1), with what they usually mean:
// the line they give is where the construct began, not the problem.
var parserErrors = map[string]string{
	"did not find expected ',' or '}'":       " (a { opened on this line is not closed, or an entry in it is broken)",
	"did not find expected ',' or ']'":       " (a [ opened on this line is not closed, or an item in it is broken)",
	"did not find expected key":              " (in the mapping that starts on this line: a line below is indented differently, or a value stands where a key should)",
	"did not find expected '-' indicator":    " (in the list that starts on this line: an item is indented differently)",
	"did not find expected node content":     " (a value is missing, or starts with a character that cannot start one: quote it)",
	"did not find expected <document start>": "",
	"found undefined tag handle":             "",
	"found incompatible YAML document":       "",
}

// openFile reads a rule file and parses its top level (its lists and
// other sections), leaving the rules of a block-style list for later.
func openFile(path string) (*doc, *Problem) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, &Problem{File: path, Line: 1, Col: 1, Msg: "cannot read: " + err.Error()}
	}
	d := &doc{file: path, src: src}
	d.lines = append(d.lines, 0)
	for i, c := range src {
		if c == '\n' {
			d.lines = append(d.lines, i+1)
		}
	}
	if !wholeOnly && d.openPieces() {
		return d, nil
	}
	return d, d.parseWhole()
}

// wholeOnly makes every file parse whole: tests compare the two ways.
var wholeOnly = false

// parseWhole parses the whole file into d.root.
func (d *doc) parseWhole() *Problem {
	d.pieces, d.seq = nil, nil
	root, p := parseSpan(d.file, d.src, span{0, len(d.src), 1})
	if p != nil {
		return p
	}
	d.root = root
	return nil
}

// parseSpan parses one piece of a file; node lines are the file's.
func parseSpan(file string, src []byte, s span) (*yaml.Node, *Problem) {
	var root yaml.Node
	if err := yaml.Unmarshal(src[s.start:s.end], &root); err != nil {
		p := &Problem{File: file, Line: s.line, Col: 1, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		n := 1
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			n, _ = strconv.Atoi(m[1])
			p.Msg = strings.TrimPrefix(p.Msg, "line "+m[1]+": ")
		}
		if hint, ok := parserErrors[p.Msg]; ok {
			// yaml.v3 gives a parser error's line counted from 0 — the
			// line of the construct it was reading, one line early —
			// and none at all for line 0 (issue 9 §2).
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				n++
			}
			p.Msg += hint
		}
		p.Line = s.line + n - 1
		return nil, p
	}
	n := &root
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		n = root.Content[0]
	}
	if s.line > 1 {
		shiftLines(n, s.line-1)
	}
	return n, nil
}

func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}

// notBlock finds what makes a file unfit for parsing in pieces: an anchor
// or alias (a piece could refer to another), a document marker.
var notBlock = regexp.MustCompile(`(?m)(^|[\s\[{,])[&*][^\s\[\]{},&*]|^---|^\.\.\.`)

// openPieces splits d into sections and rules; it reports false when the
// file must be parsed whole.
func (d *doc) openPieces() bool {
	src := d.src
	if notBlock.Match(src) || !printable(src) {
		return false
	}
	var (
		sections   []section
		pieces     []span
		listRoot   bool
		itemIndent = -1
		inRules    bool
	)
	closePiece := func(end int) {
		if n := len(pieces); n > 0 && pieces[n-1].end < 0 {
			pieces[n-1].end = end
		}
	}
	for i, start := range d.lines {
		if start >= len(src) {
			break
		}
		end := len(src)
		if i+1 < len(d.lines) {
			end = d.lines[i+1]
		}
		line := src[start:end]
		text := bytes.TrimLeft(line, " ")
		indent := len(line) - len(text)
		if len(text) > 0 && text[0] == '\t' {
			return false // tabs never indent YAML: let the parser say so
		}
		body := bytes.TrimRight(text, " \t\r\n")
		if len(body) == 0 || body[0] == '#' {
			continue // blank lines and comments belong to what they are in
		}
		item := body[0] == '-' && (len(body) == 1 || body[1] == ' ')
		switch {
		case indent == 0 && item:
			switch {
			case inRules && itemIndent == 0:
			case len(sections) == 0 && !listRoot:
				listRoot, inRules, itemIndent = true, true, 0
			default:
				return false
			}
			closePiece(start)
			pieces = append(pieces, span{start, -1, i + 1})
		case indent == 0:
			if listRoot {
				return false
			}
			colon := bytes.IndexByte(body, ':')
			if colon <= 0 || (colon+1 < len(body) && body[colon+1] != ' ') || !listName.Match(body[:colon]) {
				return false // not a plain "key:" line
			}
			rest := bytes.TrimSpace(body[colon+1:])
			if len(rest) > 0 && rest[0] == '#' {
				rest = nil
			}
			closePiece(start)
			if len(sections) > 0 && sections[len(sections)-1].rules && len(pieces) == 0 {
				sections[len(sections)-1].rules = false // rules: with nothing under it
			}
			key := string(body[:colon])
			inRules = key == "rules" && len(rest) == 0 && !hasRulesSection(sections)
			itemIndent = -1
			sections = append(sections, section{key: key, line: i + 1, start: start, rules: inRules})
		default:
			if len(sections) == 0 && !listRoot {
				return false
			}
			if !inRules {
				continue
			}
			switch {
			case itemIndent < 0:
				if !item {
					return false
				}
				itemIndent = indent
				pieces = append(pieces, span{start, -1, i + 1})
			case indent == itemIndent && item:
				closePiece(start)
				pieces = append(pieces, span{start, -1, i + 1})
			case indent <= itemIndent:
				return false
			}
		}
	}
	closePiece(len(src))
	if listRoot {
		d.seq = &yaml.Node{Kind: yaml.SequenceNode, Line: 1, Column: 1}
		d.root, d.pieces = d.seq, pieces
		return true
	}
	if len(sections) == 0 {
		d.root = &yaml.Node{} // only comments: an empty file
		return true
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Line: sections[0].line, Column: 1}
	for k, s := range sections {
		end := len(src)
		if k+1 < len(sections) {
			end = sections[k+1].start
		}
		if s.rules && len(pieces) > 0 {
			d.seq = &yaml.Node{Kind: yaml.SequenceNode, Line: s.line, Column: 1}
			key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s.key, Line: s.line, Column: 1}
			root.Content = append(root.Content, key, d.seq)
			continue
		}
		n, p := parseSpan(d.file, src, span{s.start, end, s.line})
		if p != nil || n.Kind != yaml.MappingNode || len(n.Content) != 2 {
			return false
		}
		root.Content = append(root.Content, n.Content...)
	}
	d.root, d.pieces = root, pieces
	return true
}

// section is a top-level key of a file and what is under it.
type section struct {
	key   string
	line  int
	start int
	rules bool // a block list of rules: its pieces are the rules
}

// printable reports whether src is UTF-8 with only the characters YAML
// allows in a stream (YAML 1.2 §5.1): the parser reports any other, even
// in a comment, which the pieces would not all show it.
func printable(src []byte) bool {
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return false
		case r == '\t' || r == '\n' || r == '\r' || r == 0x85:
		case r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0xd800 && r <= 0xdfff) || r == 0xfffe || r == 0xffff:
			return false
		case r == 0xfeff && i > 0:
			return false
		}
		i += n
	}
	return true
}

func hasRulesSection(sections []section) bool {
	for _, s := range sections {
		if s.key == "rules" {
			return true
		}
	}
	return false
}

// piece parses rule i of a file opened in pieces. ok is false when the
// piece is not one rule of a list: the file must then be parsed whole.
func (d *doc) piece(i int) (*yaml.Node, *Problem, bool) {
	n, p := parseSpan(d.file, d.src, d.pieces[i])
	if p != nil {
		return nil, p, false
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) != 1 {
		return nil, nil, false
	}
	return n.Content[0], nil, true
}

// line returns line n (1-based) of the file, without its newline.
func (d *doc) line(n int) string {
	if n < 1 || n > len(d.lines) {
		return ""
	}
	start := d.lines[n-1]
	end := len(d.src)
	if n < len(d.lines) {
		end = d.lines[n] - 1
	}
	if end < start {
		end = start
	}
	return string(d.src[start:end])
}
