package opcua

import (
	"fmt"
	"strings"

	"github.com/gopcua/opcua/ua"
)

// NodeRef is a configured node id: fixed (ns=, i=, s=, g=, b=) or by
// namespace URI (nsu=), whose index Resolve looks up.
type NodeRef struct {
	Text string     // as configured
	ID   *ua.NodeID // the node id; nil when it names its namespace by URI
	URI  string     // nsu=: the namespace URI
	Rest string     // nsu=: the identifier part (s=..., i=..., g=..., b=...)
}

// ParseNodeID reads the text forms of OPC 10000-6 §5.3.1.10: ns=<index>;
// followed by i=<number>, s=<string>, g=<GUID> or b=<base64>, the
// namespace part left out for namespace 0, or nsu=<URI>; in place of ns=.
func ParseNodeID(s string) (NodeRef, error) {
	r := NodeRef{Text: s}
	if s == "" {
		return r, fmt.Errorf("every tag needs a node, like ns=2;s=Tank.Level")
	}
	if rest, ok := strings.CutPrefix(s, "nsu="); ok {
		uri, id, ok := strings.Cut(rest, ";")
		if !ok || uri == "" || id == "" {
			return r, fmt.Errorf("%q: want nsu=<namespace URI>;s=<name> (or i=, g=, b=)", s)
		}
		if _, err := ua.ParseNodeID("ns=1;" + id); err != nil || !identifier(id) {
			return r, fmt.Errorf("%q: %v", s, err)
		}
		r.URI, r.Rest = uri, id
		return r, nil
	}
	id, err := ua.ParseNodeID(s)
	if err == nil && !identifier(s) {
		err = fmt.Errorf("the identifier is i=, s=, g= or b=")
	}
	if err != nil {
		return r, fmt.Errorf("%q: want ns=<index>;s=<name>, i=<number>, ns=<index>;g=<GUID>, ns=<index>;b=<base64> or nsu=<URI>;s=<name>: %v", s, err)
	}
	r.ID = id
	return r, nil
}

// identifier: after an optional ns=<index>; comes i=, s=, g= or b=
// (gopcua takes any other text as a string identifier).
func identifier(s string) bool {
	if rest, ok := strings.CutPrefix(s, "ns="); ok {
		_, s, _ = strings.Cut(rest, ";")
	}
	for _, p := range []string{"i=", "s=", "g=", "b="} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Resolve returns the node id, looking a namespace URI up in the server's
// namespace array (index = position).
func (r NodeRef) Resolve(namespaces []string) (*ua.NodeID, error) {
	if r.ID != nil {
		return r.ID, nil
	}
	for i, ns := range namespaces {
		if ns == r.URI {
			return ua.ParseNodeID(fmt.Sprintf("ns=%d;%s", i, r.Rest))
		}
	}
	return nil, fmt.Errorf("namespace %s is not in the server's NamespaceArray", r.URI)
}
