package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/plcwatch/plcwatch"
)

// Every collector's check errors land at the field they name under the
// prefix; one that is not a FieldError lands at the prefix itself (three
// of the loops this replaced dropped it).
func TestFieldsKeepsEveryError(t *testing.T) {
	cfg, probs := parse("c.yaml", []byte(configWith("log.level", "info")))
	if cfg == nil {
		t.Fatalf("parse: %v", probs)
	}
	ps := &problems{c: cfg}
	ps.fields("opcua.pki", []error{
		&plcwatch.FieldError{Field: "cert_file", Msg: "missing"},
		fmt.Errorf("wrapped: %w", &plcwatch.FieldError{Field: "key_file", Msg: "unreadable"}),
		errors.New("the trust folder is a file"),
		nil,
	})
	want := []struct{ path, msg string }{
		{"opcua.pki.cert_file", "missing"},
		{"opcua.pki.key_file", "unreadable"},
		{"opcua.pki", "the trust folder is a file"},
	}
	if len(ps.list) != len(want) {
		t.Fatalf("problems = %v, want %d", ps.list, len(want))
	}
	for i, w := range want {
		if p := ps.list[i]; p.Path != w.path || p.Msg != w.path+": "+w.msg {
			t.Errorf("problem %d = path %q msg %q, want %q %q", i, p.Path, p.Msg, w.path, w.msg)
		}
	}
}
