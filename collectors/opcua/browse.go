package opcua

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
)

// BrowsedNode is one node of the address space as Browse found it.
type BrowsedNode struct {
	Depth       int    // 0 for the start node's children
	Path        string // browse names from the start node, joined by "."
	NodeID      string // as the server gave it: ns=<index>;...
	Stable      string // the node id with its namespace by URI (nsu=...), for configuration files
	BrowseName  string
	NodeClass   string // Object, Variable, Method, ...
	DataType    string // variables: the built-in type's name, or the data type's node id
	Value       string // variables: the current value as text
	Status      string // variables: the value's status when not Good
	ValueRank   int32  // variables: -1 scalar, 1 array, ...
	Unreadable  bool   // variables: the value could not be read
	Truncated   bool   // children not browsed: the depth limit
	Description string // why browsing stopped here, when it did
}

// BrowseOptions say where to start and how deep to go.
type BrowseOptions struct {
	Start string // node id to start from; i=85 (Objects) when empty
	Depth int    // levels below Start; 3 when 0
	// Server includes the Server object (i=2253) under Objects: hundreds
	// of nodes of diagnostics that are rarely what one is looking for.
	Server bool
	// Used, when not nil, is set to the security policy and mode of the
	// endpoint the session was made on (auto resolved: None, Sign,
	// Basic256Sha256, ...), so that what is printed from the browse
	// connects the same way.
	Used *Security
}

// Browse walks the address space of d's server from a node, as a client
// would with Browse and BrowseNext (hierarchical references, forward),
// and reads the data type and value of every variable found, in Reads of
// at most the server's MaxNodesPerRead. It connects as the collector does
// (security, user, certificates: the same trust rules), and sends only
// discovery, session, Browse, BrowseNext and Read requests.
func Browse(ctx context.Context, d Device, opts Options, bo BrowseOptions) ([]BrowsedNode, error) {
	d.Defaults()
	if d.Name == "" {
		d.Name = "browse"
	}
	if len(d.Tags) == 0 {
		d.Tags = []Tag{{Name: "browse", Node: "i=2258", Mode: "read"}}
		d.Defaults()
	}
	c, err := New(d, opts)
	if err != nil {
		return nil, err
	}
	client, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer client.Close(context.WithoutCancel(ctx))
	if bo.Used != nil {
		*bo.Used = Security{Policy: c.policy, Mode: c.mode}
	}
	lim, err := c.prepare(ctx, client, func(*plcwatch.Event) {}) // no tags to report
	if err != nil {
		return nil, err
	}
	if bo.Start == "" {
		bo.Start = "i=85"
	}
	if bo.Depth <= 0 {
		bo.Depth = 3
	}
	ref, err := ParseNodeID(bo.Start)
	if err != nil {
		return nil, err
	}
	namespaces := client.Namespaces()
	start, err := ref.Resolve(namespaces)
	if err != nil {
		return nil, err
	}
	b := &browser{c: c, client: client, lim: lim, ns: namespaces, opts: bo}
	if err := b.walk(ctx, start, "", 0); err != nil {
		return b.out, err
	}
	return b.out, b.values(ctx)
}

type browser struct {
	c      *Collector
	client *opcua.Client
	lim    limits
	ns     []string
	opts   BrowseOptions
	out    []BrowsedNode
	seen   map[string]bool
}

func (b *browser) walk(ctx context.Context, node *ua.NodeID, path string, depth int) error {
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	refs, err := b.browse(ctx, node)
	if err != nil {
		return fmt.Errorf("Browse %s: %w", node, err)
	}
	for _, r := range refs {
		nid := r.NodeID.NodeID
		if nid == nil || b.seen[nid.String()] {
			continue
		}
		if !b.opts.Server && nid.Namespace() == 0 && nid.IntID() == id.Server {
			continue
		}
		b.seen[nid.String()] = true
		name := ""
		if r.BrowseName != nil {
			name = r.BrowseName.Name
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		n := BrowsedNode{Depth: depth, Path: p, NodeID: nid.String(), Stable: b.stable(nid), BrowseName: name,
			NodeClass: strings.TrimPrefix(r.NodeClass.String(), "NodeClass"), ValueRank: -1}
		b.out = append(b.out, n)
		if r.NodeClass == ua.NodeClassObject || r.NodeClass == ua.NodeClassVariable {
			if depth+1 >= b.opts.Depth {
				b.out[len(b.out)-1].Truncated = true
				continue
			}
			if err := b.walk(ctx, nid, p, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// browse returns a node's forward hierarchical references, following
// continuation points.
func (b *browser) browse(ctx context.Context, node *ua.NodeID) ([]*ua.ReferenceDescription, error) {
	rctx, cancel := context.WithTimeout(ctx, b.c.dev.Timeout)
	defer cancel()
	res, err := b.client.Browse(rctx, &ua.BrowseRequest{
		View:                          &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0), Timestamp: time.Time{}},
		RequestedMaxReferencesPerNode: 1000,
		NodesToBrowse: []*ua.BrowseDescription{{NodeID: node, BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true,
			ResultMask: uint32(ua.BrowseResultMaskAll)}},
	})
	if err != nil {
		return nil, err
	}
	if len(res.Results) != 1 {
		return nil, fmt.Errorf("%d results for one node", len(res.Results))
	}
	r := res.Results[0]
	if r.StatusCode != ua.StatusOK {
		return nil, r.StatusCode
	}
	refs := r.References
	cp := r.ContinuationPoint
	for len(cp) > 0 {
		next, err := b.client.BrowseNext(rctx, &ua.BrowseNextRequest{ContinuationPoints: [][]byte{cp}})
		if err != nil {
			return refs, err
		}
		if len(next.Results) != 1 || next.Results[0].StatusCode != ua.StatusOK {
			break
		}
		refs = append(refs, next.Results[0].References...)
		cp = next.Results[0].ContinuationPoint
	}
	return refs, nil
}

// stable is a node id with its namespace by URI, which survives the
// server renumbering its namespaces.
func (b *browser) stable(n *ua.NodeID) string {
	s := n.String()
	ns := int(n.Namespace())
	if ns == 0 || ns >= len(b.ns) {
		return s
	}
	_, rest, ok := strings.Cut(s, ";")
	if !ok {
		return s
	}
	return "nsu=" + b.ns[ns] + ";" + rest
}

// values reads DataType, ValueRank and Value of every variable found.
func (b *browser) values(ctx context.Context) error {
	var vars []int
	for i := range b.out {
		if b.out[i].NodeClass == "Variable" {
			vars = append(vars, i)
		}
	}
	per := b.lim.maxRead / 3
	if b.lim.maxRead <= 0 {
		per = 300
	}
	per = max(per, 1)
	for len(vars) > 0 {
		chunk := vars[:min(per, len(vars))]
		vars = vars[len(chunk):]
		var nodes []*ua.ReadValueID
		for _, i := range chunk {
			nid, err := ua.ParseNodeID(b.out[i].NodeID)
			if err != nil {
				continue
			}
			for _, a := range []ua.AttributeID{ua.AttributeIDDataType, ua.AttributeIDValueRank, ua.AttributeIDValue} {
				nodes = append(nodes, &ua.ReadValueID{NodeID: nid, AttributeID: a})
			}
		}
		res, err := b.c.read(ctx, b.client, nodes)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		for k, i := range chunk {
			if 3*k+2 >= len(res.Results) {
				break
			}
			n := &b.out[i]
			n.DataType = dataTypeName(res.Results[3*k])
			if v := res.Results[3*k+1].Value; v != nil {
				if r, ok := v.Value().(int32); ok {
					n.ValueRank = r
				}
			}
			dv := res.Results[3*k+2]
			if dv.Status != ua.StatusOK {
				n.Status = StatusName(dv.Status)
			}
			if dv.Value == nil || dv.EncodingMask&ua.DataValueValue == 0 {
				n.Unreadable = Quality(dv.Status) == "bad"
				continue
			}
			if f, ok := number(dv.Value.Value()); ok && dv.Value.ArrayLength() == 0 {
				n.Value = fmt.Sprint(f)
			} else if dv.Value.ArrayLength() > 0 {
				n.Value = fmt.Sprintf("%v", dv.Value.Value())
			} else {
				n.Value = text(dv.Value.Value())
			}
			if n.DataType == "" {
				n.DataType = TypeName(dv.Value.Type())
			}
		}
	}
	return nil
}

// dataTypeName names the DataType attribute's node: a built-in type by
// its name, another by its node id.
func dataTypeName(dv *ua.DataValue) string {
	if dv == nil || dv.Value == nil {
		return ""
	}
	var n *ua.NodeID
	switch v := dv.Value.Value().(type) {
	case *ua.NodeID:
		n = v
	case *ua.ExpandedNodeID:
		n = v.NodeID
	}
	if n == nil {
		return ""
	}
	if n.Namespace() == 0 && n.Type() != ua.NodeIDTypeString && n.IntID() >= 1 && n.IntID() <= 25 {
		return TypeName(ua.TypeID(n.IntID()))
	}
	return n.String()
}
