package plcwatch

import (
	"net/netip"
	"testing"
	"time"
)

// TestOPCUAEventRoundTrip: an OPC UA event written by AppendJSON reads back
// the same (rules test --events feeds such lines), floats and the fields
// issue 11 added included.
func TestOPCUAEventRoundTrip(t *testing.T) {
	in := Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Source: Wire, Protocol: ProtoOPCUA, Op: OpCall,
		Client: netip.MustParseAddrPort("10.0.0.1:50000"), Server: netip.MustParseAddrPort("10.0.0.2:4840"),
		Service: "CallRequest", Node: "ns=2;s=Pump.Start", Object: "ns=2;s=Pump", Count: 2, ValueType: "Double,Int32",
		Status: 0x801F0000, StatusName: "BadUserAccessDenied", RequestID: 9, Index: 1, Channel: 4,
		SecurityPolicy: "None", SecurityMode: "None", Identity: "username", User: "op", Application: "urn:hmi",
		Messages: 3, Bytes: 456, Value: NoValue}
	in.Values.SetFloats([]float64{-1.5, 3})
	in.Response.SetFloats([]float64{7})
	var out Event
	if err := out.UnmarshalJSON(in.AppendJSON(nil)); err != nil {
		t.Fatal(err)
	}
	if string(out.AppendJSON(nil)) != string(in.AppendJSON(nil)) {
		t.Fatalf("\n in  %s\n out %s", in.AppendJSON(nil), out.AppendJSON(nil))
	}
	if out.Values.Float(0) != -1.5 || out.Response.Float(0) != 7 || out.Object != "ns=2;s=Pump" || out.Messages != 3 {
		t.Errorf("%+v", out)
	}
}
