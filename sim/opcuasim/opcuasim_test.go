package opcuasim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

func connect(t *testing.T, ctx context.Context, s *Server, opts ...opcua.Option) *opcua.Client {
	t.Helper()
	c, err := opcua.NewClient(s.Endpoint(), append([]opcua.Option{opcua.AutoReconnect(false), opcua.RequestTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s: %v", s.Endpoint(), err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func read(t *testing.T, ctx context.Context, c *opcua.Client, ids ...*ua.NodeID) []*ua.DataValue {
	t.Helper()
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, id := range ids {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDValue})
	}
	res, err := c.Read(ctx, req)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return res.Results
}

// TestBuiltinsReadAndSet reads every built-in scalar type and the arrays
// that Builtins adds, then a value and a status set from Go.
func TestBuiltinsReadAndSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := Builtins()
	for _, b := range want {
		if err := s.Add(b.Name, b.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := connect(t, ctx, s)
	for _, b := range want {
		t.Run(b.Name, func(t *testing.T) {
			dv := read(t, ctx, c, s.NodeID(b.Name))[0]
			if dv.Status != ua.StatusOK {
				t.Fatalf("status %v", dv.Status)
			}
			if got := dv.Value.Type(); got != b.Type {
				t.Errorf("type %v, want %v", got, b.Type)
			}
			if dv.SourceTimestamp.IsZero() || dv.ServerTimestamp.IsZero() {
				t.Errorf("timestamps %v %v", dv.SourceTimestamp, dv.ServerTimestamp)
			}
		})
	}
	if err := s.Set("Double", 42.5); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus("Int32", int32(-7), ua.StatusUncertainLastUsableValue); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus("UInt16", nil, ua.StatusBadSensorFailure); err != nil {
		t.Fatal(err)
	}
	got := read(t, ctx, c, s.NodeID("Double"), s.NodeID("Int32"), s.NodeID("UInt16"), s.NodeID("NoSuchThing"))
	if v, _ := got[0].Value.Value().(float64); v != 42.5 || got[0].Status != ua.StatusOK {
		t.Errorf("Double: %v %v", got[0].Value.Value(), got[0].Status)
	}
	if v, _ := got[1].Value.Value().(int32); v != -7 || got[1].Status != ua.StatusUncertainLastUsableValue {
		t.Errorf("Int32: %v %v", got[1].Value, got[1].Status)
	}
	if got[2].Status != ua.StatusBadSensorFailure || got[2].EncodingMask&ua.DataValueValue != 0 {
		t.Errorf("UInt16: %v %v", got[2].Value, got[2].Status)
	}
	if got[3].Status != ua.StatusBadNodeIDUnknown {
		t.Errorf("unknown node: %v", got[3].Status)
	}
	if err := s.Set("NoSuchThing", 1); err == nil {
		t.Error("Set of an unknown variable: no error")
	}
}

// TestOperationLimit: a Read over MaxNodesPerRead is a ServiceFault
// BadTooManyOperations, and the limit is what the server advertises.
func TestOperationLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := New(Config{MaxNodesPerRead: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		s.Add(n, 1.0)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := connect(t, ctx, s)
	dv := read(t, ctx, c, ua.NewNumericNodeID(0, 11705)) // Server_ServerCapabilities_OperationLimits_MaxNodesPerRead
	if v, _ := dv[0].Value.Value().(uint32); v != 3 {
		t.Fatalf("MaxNodesPerRead %v", dv[0].Value)
	}
	read(t, ctx, c, s.NodeID("a"), s.NodeID("b"), s.NodeID("c"))
	_, err = c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: s.NodeID("a"), AttributeID: ua.AttributeIDValue}, {NodeID: s.NodeID("b"), AttributeID: ua.AttributeIDValue},
		{NodeID: s.NodeID("c"), AttributeID: ua.AttributeIDValue}, {NodeID: s.NodeID("d"), AttributeID: ua.AttributeIDValue}}})
	if !errors.Is(err, ua.StatusBadTooManyOperations) {
		t.Fatalf("4 nodes over a limit of 3: %v", err)
	}
}

// TestSubscriptionSeesSet: a monitored item gets the initial value, then
// each value and status set from Go.
func TestSubscriptionSeesSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Add("Level", 1.0); err != nil { // added while running
		t.Fatal(err)
	}
	c := connect(t, ctx, s)
	ch := make(chan *opcua.PublishNotificationData, 16)
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 100 * time.Millisecond}, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctx)
	if _, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, opcua.NewMonitoredItemCreateRequestWithDefaults(s.NodeID("Level"), ua.AttributeIDValue, 7)); err != nil {
		t.Fatal(err)
	}
	next := func() *ua.DataValue {
		for {
			select {
			case n := <-ch:
				if n.Error != nil {
					t.Fatal(n.Error)
				}
				if dc, ok := n.Value.(*ua.DataChangeNotification); ok && len(dc.MonitoredItems) > 0 {
					return dc.MonitoredItems[len(dc.MonitoredItems)-1].Value
				}
			case <-ctx.Done():
				t.Fatal("no notification")
			}
		}
	}
	if v := next(); v.Value.Value() != 1.0 {
		t.Fatalf("initial %v", v.Value.Value())
	}
	s.Set("Level", 2.5)
	if v := next(); v.Value.Value() != 2.5 {
		t.Fatalf("after Set %v", v.Value.Value())
	}
	s.SetStatus("Level", 3.5, ua.StatusUncertainSensorNotAccurate)
	if v := next(); v.Status != ua.StatusUncertainSensorNotAccurate || v.Value.Value() != 3.5 {
		t.Fatalf("after SetStatus %v %v", v.Value.Value(), v.Status)
	}
}

// TestUsersAndRestart: a user name with the right password opens a
// session, a wrong one and an anonymous token are refused; Stop and Start
// keep the port, the certificate and the values. A secure policy is
// refused with ErrSecureChannel.
func TestUsersAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := New(Config{Security: []Security{{"Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt}}}); !errors.Is(err, ErrSecureChannel) {
		t.Fatalf("Basic256Sha256: %v", err)
	}
	s, err := New(Config{Users: map[string]string{"operator": "s3cret-Pa55"}})
	if err != nil {
		t.Fatal(err)
	}
	s.Add("Speed", int32(1200))
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	eps, err := opcua.GetEndpoints(ctx, s.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	ep, err := opcua.SelectEndpoint(eps, "None", ua.MessageSecurityModeNone)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []ua.UserTokenType
	for _, tok := range ep.UserIdentityTokens {
		kinds = append(kinds, tok.TokenType)
	}
	if len(kinds) != 1 || kinds[0] != ua.UserTokenTypeUserName {
		t.Fatalf("token policies %v, want only UserName", kinds)
	}
	dial := func(auth opcua.Option, tok ua.UserTokenType) error {
		c, err := opcua.NewClient(s.Endpoint(), opcua.AutoReconnect(false), auth, opcua.SecurityFromEndpoint(ep, tok),
			opcua.RequestTimeout(10*time.Second))
		if err != nil {
			return err
		}
		if err := c.Connect(ctx); err != nil {
			return err
		}
		defer c.Close(ctx)
		res, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: s.NodeID("Speed"), AttributeID: ua.AttributeIDValue}}})
		if err != nil {
			return err
		}
		if v, _ := res.Results[0].Value.Value().(int32); v != 1200 {
			t.Errorf("Speed %v", res.Results[0].Value)
		}
		return nil
	}
	if err := dial(opcua.AuthUsername("operator", "s3cret-Pa55"), ua.UserTokenTypeUserName); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := dial(opcua.AuthUsername("operator", "wrong"), ua.UserTokenTypeUserName); !errors.Is(err, ua.StatusBadUserAccessDenied) {
		t.Fatalf("wrong password: %v", err)
	}
	if err := dial(opcua.AuthAnonymous(), ua.UserTokenTypeUserName); !errors.Is(err, ua.StatusBadIdentityTokenInvalid) {
		t.Fatalf("anonymous: %v", err)
	}
	cert, port := s.Certificate(), s.Port()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := opcua.GetEndpoints(ctx, s.Endpoint()); err == nil {
		t.Fatal("stopped server answers")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Port() != port || string(s.Certificate()) != string(cert) {
		t.Fatal("restart changed port or certificate")
	}
	if err := dial(opcua.AuthUsername("operator", "s3cret-Pa55"), ua.UserTokenTypeUserName); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// TestCall: a method added from Go answers Call and is recorded.
func TestCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.AddMethod("Start", func(in []*ua.Variant) ([]*ua.Variant, ua.StatusCode) {
		return []*ua.Variant{ua.MustVariant(true)}, ua.StatusOK
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := connect(t, ctx, s)
	res, err := c.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.NewNumericNodeID(s.NamespaceIndex(), 85), MethodID: s.NodeID("Start"),
		InputArguments: []*ua.Variant{ua.MustVariant(int32(900))}})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != ua.StatusOK || len(res.OutputArguments) != 1 || res.OutputArguments[0].Value() != true {
		t.Fatalf("result %+v", res)
	}
	if got := s.Calls(); len(got) != 1 || got[0] != "Start(900)" {
		t.Fatalf("calls %v", got)
	}
	res, err = c.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.NewNumericNodeID(0, 85), MethodID: s.NodeID("Stop")})
	if err != nil || res.StatusCode != ua.StatusBadMethodInvalid {
		t.Fatalf("unknown method: %v %v", res, err)
	}
}
