package opcua

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/sim/opcuasim"
)

// allowed are the only services the collector and browse may request
// (issue 10): discovery, secure channel and session, Read,
// Browse/BrowseNext, TranslateBrowsePaths, RegisterNodes, and the
// subscription and monitored item services.
var allowed = map[string]bool{
	"Hello": true, "OpenSecureChannelRequest": true, "CloseSecureChannelRequest": true,
	"GetEndpointsRequest": true, "FindServersRequest": true,
	"CreateSessionRequest": true, "ActivateSessionRequest": true, "CloseSessionRequest": true,
	"ReadRequest": true, "BrowseRequest": true, "BrowseNextRequest": true, "TranslateBrowsePathsToNodeIDsRequest": true,
	"RegisterNodesRequest": true, "UnregisterNodesRequest": true,
	"CreateSubscriptionRequest": true, "ModifySubscriptionRequest": true, "DeleteSubscriptionsRequest": true,
	"SetPublishingModeRequest": true, "PublishRequest": true, "RepublishRequest": true, "TransferSubscriptionsRequest": true,
	"CreateMonitoredItemsRequest": true, "ModifyMonitoredItemsRequest": true, "DeleteMonitoredItemsRequest": true,
	"SetMonitoringModeRequest": true,
}

// TestReadOnlyOnTheWire records every request the collector (monitored
// and read tags, across a reconnect) and browse send through a proxy and
// fails on any service outside the allowed set — Write, Call,
// HistoryUpdate, node management. The recorder is shown to see a Write
// and a Call when a client does send them, so the check can fail.
func TestReadOnlyOnTheWire(t *testing.T) {
	s := simServer(t, opcuasim.Config{}, map[string]any{"Level": 1.0})
	s.AddMethod("Start", func([]*ua.Variant) ([]*ua.Variant, ua.StatusCode) { return nil, ua.StatusOK })
	s.Stop()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, fmt.Sprintf("127.0.0.1:%d", s.Port()))
	endpoint := "opc.tcp://" + p.addr()
	d := Device{Name: "sim", Endpoint: endpoint, Interval: 200 * time.Millisecond, Timeout: time.Second, Backoff: 100 * time.Millisecond,
		Security: Security{Policy: "None", Mode: "None"},
		Tags:     []Tag{{Name: "level", Node: "ns=1;s=Level"}, {Name: "double", Node: "ns=1;s=Double", Mode: "read"}}}
	w := start(t, d, Options{})
	w.until(20*time.Second, "values", func(ev *plcwatch.Event) bool { return ev.Tag == "level" })
	s.Stop() // a reconnect: the whole setup again
	s.Start(context.Background())
	w.until(20*time.Second, "values again", func(ev *plcwatch.Event) bool {
		return ev.Tag == "level" && ev.Service == "Publish" && w.c.Stats().Reconnects > 1
	})
	if _, err := Browse(context.Background(), Device{Endpoint: endpoint, Security: Security{Policy: "None", Mode: "None"}}, Options{}, BrowseOptions{Depth: 3}); err != nil {
		t.Fatal(err)
	}
	seen := p.seen()
	for svc, n := range seen {
		if !allowed[svc] {
			t.Errorf("plcwatch sent %d %s: not a read-only service", n, svc)
		}
	}
	for _, must := range []string{"ReadRequest", "CreateSubscriptionRequest", "CreateMonitoredItemsRequest", "PublishRequest", "BrowseRequest", "ActivateSessionRequest"} {
		if seen[must] == 0 {
			t.Errorf("no %s recorded (seen %v): the recorder misses requests", must, p.seenNames())
		}
	}
	// The negative control: a client that writes and calls is seen doing it.
	c, err := opcua.NewClient(endpoint, opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{NodeID: s.NodeID("Level"), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(9.0)}}}})
	c.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.NewNumericNodeID(0, 85), MethodID: s.NodeID("Start")})
	c.Close(ctx)
	if got := p.seen(); got["WriteRequest"] != 1 || got["CallRequest"] != 1 {
		t.Errorf("the recorder missed a Write or a Call: %v", p.seenNames())
	}
}
