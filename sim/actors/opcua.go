package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"

	"github.com/plcwatch/plcwatch/sim/scenario"
)

// OPC UA actions, on gopcua's client (github.com/gopcua/opcua v0.8.0),
// security None. An actor may write and call; only plcwatch's own poller
// is read-only.

// ObjectsFolder is the Objects folder (i=85), where simulated methods live.
var ObjectsFolder = ua.NewNumericNodeID(0, id.ObjectsFolder)

// NodeID is the node id of a simulated plant's variable or method:
// ns=1;s=name.
func NodeID(name string) *ua.NodeID { return ua.NewStringNodeID(1, name) }

// options are a client's: from the source address from, no reconnects,
// Timeout per request.
func options(from netip.Addr) []opcua.Option {
	return []opcua.Option{
		opcua.Dialer(&uacp.Dialer{Dialer: &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: Timeout}}),
		opcua.AutoReconnect(false), opcua.RequestTimeout(Timeout),
	}
}

// OPCUAConnect opens a session to endpoint (opc.tcp://host:port) from the
// address from: anonymous when user is "", else with user name and
// password. It asks the server for its endpoints first (from the same
// address), as a client does, to learn the identity token policies.
func OPCUAConnect(ctx context.Context, from netip.Addr, endpoint, user, password string) (*opcua.Client, error) {
	eps, err := opcua.GetEndpoints(ctx, endpoint, options(from)...)
	if err != nil {
		return nil, fmt.Errorf("get endpoints of %s: %w", endpoint, err)
	}
	ep, err := opcua.SelectEndpoint(eps, "None", ua.MessageSecurityModeNone)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	ep.EndpointURL = endpoint // the address the client was given, not the one the server says
	auth, tok := opcua.AuthAnonymous(), ua.UserTokenTypeAnonymous
	if user != "" {
		auth, tok = opcua.AuthUsername(user, password), ua.UserTokenTypeUserName
	}
	c, err := opcua.NewClient(endpoint, append(options(from), auth, opcua.SecurityFromEndpoint(ep, tok))...)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		c.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("session to %s: %w", endpoint, err)
	}
	return c, nil
}

// OPCUARead reads the values of nodes, as an HMI polls them.
func OPCUARead(ctx context.Context, c *opcua.Client, nodes ...*ua.NodeID) ([]any, error) {
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, n := range nodes {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue})
	}
	res, err := c.Read(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	out := make([]any, len(res.Results))
	for i, r := range res.Results {
		if r.Status != ua.StatusOK {
			return out, fmt.Errorf("read %s: %w", nodes[i], r.Status)
		}
		out[i] = r.Value.Value()
	}
	return out, nil
}

// OPCUAWrite writes v to the value of node; the result is the operation's
// status (a server may refuse: BadUserAccessDenied, BadNotWritable).
func OPCUAWrite(ctx context.Context, c *opcua.Client, node *ua.NodeID, v any) (ua.StatusCode, error) {
	val, err := ua.NewVariant(v)
	if err != nil {
		return 0, err
	}
	res, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: node, AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: val},
	}}})
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", node, err)
	}
	if len(res.Results) != 1 {
		return 0, fmt.Errorf("write %s: %d results", node, len(res.Results))
	}
	return res.Results[0], nil
}

// OPCUACall calls method on object with no arguments.
func OPCUACall(ctx context.Context, c *opcua.Client, object, method *ua.NodeID) (ua.StatusCode, error) {
	res, err := c.Call(ctx, &ua.CallMethodRequest{ObjectID: object, MethodID: method})
	if err != nil {
		return 0, fmt.Errorf("call %s: %w", method, err)
	}
	return res.StatusCode, nil
}

// OPCUABrowse sends n Browse requests, one for each of the nodes i=84,
// i=85, ... (known and unknown): a browse sweep learning the address
// space.
func OPCUABrowse(ctx context.Context, c *opcua.Client, n int) error {
	for i := range n {
		_, err := c.Browse(ctx, &ua.BrowseRequest{
			RequestedMaxReferencesPerNode: 100,
			NodesToBrowse: []*ua.BrowseDescription{{
				NodeID: ua.NewNumericNodeID(0, uint32(id.RootFolder+i)), BrowseDirection: ua.BrowseDirectionForward,
				IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll),
			}},
		})
		if err != nil && !errors.As(err, new(ua.StatusCode)) {
			return fmt.Errorf("browse %d: %w", i, err)
		}
	}
	return nil
}

// OPCUAAddNodes asks to add a variable under the Objects folder (Part 4
// §5.7.2): servers that allow it let a client change the address space.
// The answer (often BadServiceUnsupported) is returned, not an error.
func OPCUAAddNodes(ctx context.Context, c *opcua.Client, name string) (ua.StatusCode, error) {
	req := &ua.AddNodesRequest{NodesToAdd: []*ua.AddNodesItem{{
		ParentNodeID:       ua.NewExpandedNodeID(ObjectsFolder, "", 0),
		ReferenceTypeID:    ua.NewNumericNodeID(0, id.HasComponent),
		RequestedNewNodeID: ua.NewExpandedNodeID(NodeID(name), "", 0),
		BrowseName:         &ua.QualifiedName{NamespaceIndex: 1, Name: name},
		NodeClass:          ua.NodeClassVariable,
		NodeAttributes: ua.NewExtensionObject(&ua.VariableAttributes{DisplayName: ua.NewLocalizedText(name), Description: ua.NewLocalizedText(name),
			Value: ua.MustVariant(0.0), DataType: ua.NewNumericNodeID(0, id.Double), ValueRank: -1}),
		TypeDefinition: ua.NewExpandedNodeID(ua.NewNumericNodeID(0, id.BaseDataVariableType), "", 0),
	}}}
	var status ua.StatusCode
	err := c.Send(ctx, req, func(r ua.Response) error {
		status = r.Header().ServiceResult
		if res, ok := r.(*ua.AddNodesResponse); ok && status == ua.StatusOK && len(res.Results) == 1 {
			status = res.Results[0].StatusCode
		}
		return nil
	})
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		return sc, nil
	}
	return status, err
}

// OPCUALogin tries n sessions as user with wrong passwords, each on a new
// connection from the address from, as a password guesser does, and
// returns how many the server refused.
func OPCUALogin(ctx context.Context, from netip.Addr, endpoint, user string, n int) (int, error) {
	refused := 0
	for i := range n {
		c, err := OPCUAConnect(ctx, from, endpoint, user, fmt.Sprintf("guess-%d-%d", i, time.Now().UnixNano()%1000))
		if err == nil {
			c.Close(ctx)
			continue
		}
		var sc ua.StatusCode
		if !errors.As(err, &sc) {
			return refused, err
		}
		refused++
	}
	return refused, nil
}

// ActOPCUA is one firing of a scenario's OPC UA actor on session c (nil
// for opcua_login, which opens its own). n counts the firings.
func ActOPCUA(ctx context.Context, c *opcua.Client, s *scenario.Scenario, a *scenario.Actor, n int) (string, error) {
	p := s.Plant(a.Target)
	who := "an anonymous session"
	if a.User != "" {
		who = "user " + a.User
	}
	switch a.Do {
	case scenario.DoOPCUARead:
		nodes := make([]*ua.NodeID, len(a.Reads))
		for i, r := range a.Reads {
			nodes[i] = NodeID(r)
		}
		vals, err := OPCUARead(ctx, c, nodes...)
		return fmt.Sprintf("%s read %s: %v", who, strings.Join(a.Reads, ", "), vals), err
	case scenario.DoOPCUAWrite:
		pt := p.Point(a.Point)
		v := a.Values[n%len(a.Values)]
		st, err := OPCUAWrite(ctx, c, NodeID(pt.Name), typedValue(pt.Type, v))
		return fmt.Sprintf("%s wrote %s = %g: %s", who, NodeID(pt.Name), v, st), err
	case scenario.DoOPCUACall:
		st, err := OPCUACall(ctx, c, ObjectsFolder, NodeID(a.Method))
		return fmt.Sprintf("%s called %s: %s", who, NodeID(a.Method), st), err
	case scenario.DoOPCUABrowse:
		return fmt.Sprintf("%s browsed %d nodes", who, a.Count), OPCUABrowse(ctx, c, a.Count)
	case scenario.DoOPCUAAddNodes:
		st, err := OPCUAAddNodes(ctx, c, fmt.Sprintf("Injected%d", n))
		return fmt.Sprintf("%s asked to add node ns=1;s=Injected%d: %s", who, n, st), err
	case scenario.DoOPCUALogin:
		refused, err := OPCUALogin(ctx, netip.MustParseAddr(a.From), "opc.tcp://"+p.Listen, a.User, a.Count)
		return fmt.Sprintf("tried %d passwords of user %s: %d refused", a.Count, a.User, refused), err
	}
	return "", fmt.Errorf("actor %q: unknown action %q", a.Name, a.Do)
}

// typedValue is v as a variable of an OPC UA type holds it.
func typedValue(typ string, v float64) any {
	switch typ {
	case "Boolean":
		return v >= 0.5
	case "Int32":
		return int32(v)
	}
	return v
}
