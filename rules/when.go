package rules

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/vm"
)

// compiled is a when expression, compiled once per distinct text: rules
// that say the same thing share one program (programs are read-only; each
// engine runs them on its own VM).
type compiled struct {
	prog  *vm.Program
	names names
	err   error
}

// names is what an expression looks at, for deciding when a rule is
// evaluated (issue 9 §4) and how it treats a missing value (§8).
type names struct {
	response    bool // a field that comes from the response, or the whole env
	malformed   bool // malformed
	value       bool // value or raw
	hasValue    bool // has_value: the expression handles a missing value itself
	status      bool // status or status_name
	hasStatus   bool // has_status: the expression handles a missing status itself
	correlation bool // a field of the process image (docs/correlation.md)
	polled      bool // a field of a read response compared with a polled tag (polled, viewed, ...)
	hasPolled   bool // has_polled: the expression handles a response not compared itself
}

// polledNames are the fields a wire read response has only when it was
// compared with a polled tag: a rule that names one (and not has_polled)
// is false, without running, for every other event, as a rule that names
// value is for an event without a value. Most wire events are reads; this
// keeps the correlation rules from costing each of them an evaluation.
var polledNames = map[string]bool{
	"polled_tag": true, "polled": true, "viewed": true, "polled_age": true, "view_differs": true,
}

// correlationNames are the env fields the process image fills: a rule
// that names one needs a device both polled and on a captured link.
var correlationNames = map[string]bool{
	"written": true, "writer": true, "has_written": true, "written_value": true, "write_cycles": true,
	"unwritten": true, "has_polled": true, "polled_tag": true, "polled": true, "viewed": true,
	"polled_age": true, "view_differs": true, "cycle": true,
}

// responseNames are the env fields a request's response fills in: a rule
// whose expression names one waits for the response. orphan is not one:
// an orphan response is a StageWhole event that every rule sees, and a
// request is never an orphan, so "not orphan" is known at the request.
var responseNames = map[string]bool{
	"response": true, "exception": true, "rtt_ms": true, "unanswered": true,
	"status": true, "status_name": true, "has_status": true, "objects": true,
	"token_id": true, "revised_lifetime_ms": true, "ack_receive_buffer_size": true, "ack_send_buffer_size": true,
	"ack_max_message_size": true, "ack_max_chunk_count": true, "output_type": true, "output_text": true, "input_status": true,
	// The process image compares a read's response with the polled value.
	"has_polled": true, "polled_tag": true, "polled": true, "viewed": true, "polled_age": true,
	"view_differs": true, "cycle": true,
}

// envNames lists the names a when expression can use, for "did you mean".
var envNames = func() []string {
	var out []string
	t := reflect.TypeOf(Env{})
	for i := 0; i < t.NumField(); i++ {
		if n := t.Field(i).Tag.Get("expr"); n != "" && n != "-" {
			out = append(out, n)
		}
	}
	return out
}()

// exprCompiler compiles when expressions with one configuration: making
// expr's configuration (builtins, the Env's types) for every rule was most
// of the work and the garbage of loading a large rule file.
type exprCompiler struct {
	config *conf.Config
	cache  map[string]*compiled
}

func newExprCompiler() *exprCompiler {
	c := conf.CreateNew()
	expr.Env(Env{})(c)
	expr.AsBool()(c)
	for name := range c.Disabled {
		delete(c.Builtins, name)
	}
	c.Check()
	return &exprCompiler{config: c, cache: map[string]*compiled{}}
}

// compile compiles src, or returns the program compiled for the same text.
func (x *exprCompiler) compile(src string) *compiled {
	if c, ok := x.cache[src]; ok {
		return c
	}
	c := &compiled{}
	x.cache[src] = c
	tree, err := checker.ParseCheck(src, x.config)
	if err != nil {
		c.err = err
		return c
	}
	walker := nameWalker{}
	ast.Walk(&tree.Node, &walker)
	c.names = walker.names
	if x.config.Optimize {
		if err := optimizer.Optimize(&tree.Node, x.config); err != nil {
			var fe *file.Error
			if errors.As(err, &fe) {
				err = fe.Bind(tree.Source)
			}
			c.err = err
			return c
		}
	}
	c.prog, c.err = compiler.Compile(tree, x.config)
	return c
}

// nameWalker collects the env fields an expression names.
type nameWalker struct{ names names }

func (w *nameWalker) Visit(n *ast.Node) {
	id, ok := (*n).(*ast.IdentifierNode)
	if !ok {
		return
	}
	if correlationNames[id.Value] {
		w.names.correlation = true
	}
	w.names.polled = w.names.polled || polledNames[id.Value]
	w.names.hasPolled = w.names.hasPolled || id.Value == "has_polled"
	switch name := id.Value; {
	case name == "$env":
		// $env.field or $env["field"]: it may look at anything.
		w.names.response, w.names.malformed = true, true
	case responseNames[name]:
		w.names.response = true
	case name == "malformed":
		w.names.malformed = true
	case name == "value" || name == "raw":
		w.names.value = true
	case name == "has_value":
		w.names.hasValue = true
	case name == "has_status":
		w.names.hasStatus = true
	}
	if name := id.Value; name == "status" || name == "status_name" {
		w.names.status = true
	}
}

var unknownName = regexp.MustCompile(`^unknown name ([A-Za-z_][A-Za-z0-9_]*)`)

// explain turns an expression error into the rule author's terms: an
// unknown name gets a suggestion.
func explain(msg string) string {
	if m := unknownName.FindStringSubmatch(msg); m != nil {
		if s := Suggest(m[1], envNames); s != "" {
			return fmt.Sprintf("%s (did you mean %s?)", strings.TrimSpace(msg), s)
		}
		return fmt.Sprintf("%s (the fields are those of docs/events.md: %s)", strings.TrimSpace(msg), strings.Join(envNames, ", "))
	}
	if strings.Contains(msg, "% (mismatched types float64") {
		return msg + " (values, response and value are numbers with a fraction: write int(values[0]) % 2)"
	}
	return msg
}
