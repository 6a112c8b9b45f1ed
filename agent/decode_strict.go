package agent

import (
	"fmt"
	"reflect"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes the YAML document src, read from path, into v (a
// pointer to a struct) with the checks a configuration gets: unknown keys
// (with a guess at what was meant), values of the wrong type said in the
// user's terms, keys given twice, alias bombs and syntax errors, every one
// as a Problem at file:line:col, all at once (err is a ConfigError). Other
// file formats of plcwatch (sim scenarios) decode with it, so that their
// errors read as the configuration's do. pos gives the line and column of
// a value by its path ("plants[0].points[2].address"), for problems found
// after decoding; 0, 0 for a path not in the file. A value of the wrong
// type is left at its zero value and the rest decoded, so that the caller
// can validate on and report its own problems with these; pos is nil when
// nothing could be decoded (a syntax error).
func DecodeStrict(path string, src []byte, v any) (pos func(field string) (line, col int), err error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("DecodeStrict: want a pointer to a struct, not %T", v)
	}
	nodes := map[string]*yaml.Node{}
	pos = func(field string) (int, int) {
		if n := nodes[field]; n != nil {
			return n.Line, n.Column
		}
		return 0, 0
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, ConfigError{syntaxProblem(path, src, err)}
	}
	if len(doc.Content) == 0 {
		return pos, nil
	}
	d := &decoder{file: path, nodes: nodes}
	root := doc.Content[0]
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	switch {
	case root.Kind == yaml.MappingNode:
		d.walk(root, rv.Elem().Type(), "", "")
		if d.steps > maxSteps {
			return nil, ConfigError{d.probs[len(d.probs)-1]}
		}
		if err := root.Decode(v); err != nil {
			d.probs = append(d.probs, decodeProblems(path, src, err, d.probs)...)
		}
	case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
	default:
		d.probs = append(d.probs, Problem{File: path, Line: root.Line, Col: root.Column,
			Msg: fmt.Sprintf("want keys and values (name: demo, plants: ...), not %s", shown(root))})
	}
	if len(d.probs) > 0 {
		probs := ConfigError(d.probs)
		probs.sort()
		return pos, probs
	}
	return pos, nil
}
