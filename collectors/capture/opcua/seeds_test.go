package opcua

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

var writeSeeds = flag.Bool("seeds", false, "write the fuzz targets' seed corpora to testdata/fuzz")

// hotMessages are messages of the four hand-read services: every one in
// the testdata captures, and synthetic ones with the variety the captures
// lack (index ranges, array and nested values, several notifications).
func hotMessages(t testing.TB) [][]byte {
	toServer, toClient := capturedMessages(t)
	var out [][]byte
	for _, m := range append(toServer, toClient...) {
		if len(m) >= 4 && m[0] == 1 && m[1] == 0 {
			switch binary.LittleEndian.Uint16(m[2:]) {
			case idReadReq, idReadResp, idPublishReq, idPublishResp:
				out = append(out, m)
			}
		}
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tok := ua.NewGUIDNodeID(1, "09087E75-8E5E-499B-954F-F2A9603DB28A")
	out = append(out,
		pcapgen.Encode(&ua.ReadRequest{RequestHeader: pcapgen.RequestHeader(tok, 1, now), NodesToRead: []*ua.ReadValueID{
			{NodeID: ua.NewStringNodeID(3, "Boiler/Temp"), AttributeID: 13, IndexRange: "2:4", DataEncoding: &ua.QualifiedName{NamespaceIndex: 0, Name: "Default Binary"}},
			{NodeID: ua.NewByteStringNodeID(4, []byte{1, 2, 3, 250}), AttributeID: 4, DataEncoding: &ua.QualifiedName{}},
			{NodeID: ua.NewNumericNodeID(0, 2258), AttributeID: 13, DataEncoding: &ua.QualifiedName{}},
		}}),
		pcapgen.Encode(&ua.ReadResponse{ResponseHeader: pcapgen.ResponseHeader(1, 0, now), Results: []*ua.DataValue{
			{EncodingMask: ua.DataValueValue | ua.DataValueStatusCode, Value: ua.MustVariant([]float32{1, 2, 3}), Status: ua.StatusUncertain},
			{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(ua.NewLocalizedText("Boiler"))},
			{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadUserAccessDenied},
		}, DiagnosticInfos: []*ua.DiagnosticInfo{{EncodingMask: 0x20, InnerStatusCode: ua.StatusBad}}}),
		pcapgen.Encode(&ua.ReadResponse{ResponseHeader: pcapgen.ResponseHeader(1, 0, now), Results: []*ua.DataValue{
			{EncodingMask: ua.DataValueValue | ua.DataValueServerTimestamp | ua.DataValueServerPicoseconds, Value: ua.MustVariant(int64(-5)), ServerTimestamp: now, ServerPicoseconds: 10},
		}}),
		pcapgen.Encode(&ua.PublishResponse{ResponseHeader: pcapgen.ResponseHeader(1, 0, now), SubscriptionID: 9,
			AvailableSequenceNumbers: []uint32{3, 4}, NotificationMessage: &ua.NotificationMessage{SequenceNumber: 4, PublishTime: now,
				NotificationData: []*ua.ExtensionObject{
					ua.NewExtensionObject(&ua.DataChangeNotification{MonitoredItems: []*ua.MonitoredItemNotification{
						{ClientHandle: 1, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(true)}}}}),
					ua.NewExtensionObject(&ua.StatusChangeNotification{Status: ua.StatusBadTimeout, DiagnosticInfo: &ua.DiagnosticInfo{}}),
				}}, Results: []ua.StatusCode{0, ua.StatusBadSequenceNumberUnknown}}),
	)
	return out
}

// TestFastAgreesWithGopcua runs FuzzFastAgreesWithGopcua's check on every
// Read and Publish message of the captures and on synthetic ones.
func TestFastAgreesWithGopcua(t *testing.T) {
	n := 0
	for _, m := range hotMessages(t) {
		compareFast(t, binary.LittleEndian.Uint16(m[2:]), m)
		n++
	}
	if n < 100 {
		t.Fatalf("only %d hot messages checked", n)
	}
	t.Logf("%d Read and Publish messages read alike by gopcua and plcwatch", n)
}

// TestWriteSeeds writes the seed corpora (go test -run TestWriteSeeds
// -seeds): the messages of the captures and synthetic ones for the
// service targets, and scripted connections for FuzzConn.
func TestWriteSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -seeds to rewrite testdata/fuzz")
	}
	hot := hotMessages(t)
	per := map[uint16]int{}
	for i := len(hot) - 1; i >= 0; i-- { // the synthetic ones first
		m := hot[i]
		id := binary.LittleEndian.Uint16(m[2:])
		if per[id]++; per[id] > 12 {
			continue
		}
		which := map[uint16]byte{idReadReq: 0, idReadResp: 1, idPublishReq: 2, idPublishResp: 3}[id]
		seed(t, "FuzzFastAgreesWithGopcua", fmt.Sprintf("byte(%q)\n[]byte(%q)", which, m[4:]))
	}
	toServer, toClient := capturedMessages(t)
	kinds := map[uint16]bool{}
	for _, m := range append(toServer, toClient...) {
		if len(m) < 4 || m[0] != 1 || m[1] != 0 {
			continue
		}
		id := binary.LittleEndian.Uint16(m[2:])
		if kinds[id] {
			continue // one of each kind: the corpus stays small
		}
		for i := range services {
			if services[i].req == id || services[i].resp == id {
				kinds[id] = true
				which := uint16(i)
				if services[i].resp == id {
					which |= 0x8000
				}
				seed(t, "FuzzService", fmt.Sprintf("uint16(%d)\n[]byte(%q)", which, m[4:]))
			}
		}
	}
	for _, s := range connScripts() {
		seed(t, "FuzzConn", fmt.Sprintf("[]byte(%q)", s))
	}
}

func seed(t *testing.T, target, args string) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "go test fuzz v1\n" + args + "\n"
	sum := sha256.Sum256([]byte(body))
	if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// step is one step of a FuzzConn script.
type step struct {
	toClient bool
	gap      bool
	data     []byte
}

// script encodes steps as feed reads them.
func script(steps ...step) []byte {
	var b []byte
	for _, s := range steps {
		for len(s.data) > 0 {
			n := min(len(s.data), 1<<14-1)
			ctl := byte(n>>8) << 2
			if s.toClient {
				ctl |= 1
			}
			if s.gap {
				ctl |= 2
				s.gap = false
			}
			b = append(b, ctl, byte(n))
			b = append(b, s.data[:n]...)
			s.data = s.data[n:]
		}
	}
	return b
}

// connScripts are whole conversations: a session with every kind of
// request, chunked responses, an abort, a Sign channel, a capture that
// starts mid-stream.
func connScripts() [][]byte {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var c2s, s2c pcapgen.UACP
	c2s.Channel, s2c.Channel, c2s.Token, s2c.Token = 5, 5, 1, 1
	tok := ua.NewByteStringNodeID(0, []byte("tok"))
	req := func(id uint32, v any) step { return step{data: c2s.Message(id, pcapgen.Encode(v), 0)} }
	resp := func(id uint32, v any, maxBody int) step {
		return step{toClient: true, data: s2c.Message(id, pcapgen.Encode(v), maxBody)}
	}
	rh := func(h uint32) *ua.RequestHeader { return pcapgen.RequestHeader(tok, h, now) }
	sh := func(h uint32) *ua.ResponseHeader { return pcapgen.ResponseHeader(h, 0, now) }
	read, readR := readMessages(now, tok, 8)
	hello := step{data: pcapgen.Hello("opc.tcp://plc:4840")}
	ack := step{toClient: true, data: pcapgen.Acknowledge()}
	open := step{data: c2s.Open(1, pcapgen.Encode(&ua.OpenSecureChannelRequest{RequestHeader: pcapgen.RequestHeader(nil, 1, now),
		SecurityMode: ua.MessageSecurityModeNone, ClientNonce: []byte{}, RequestedLifetime: 600000}))}
	opened := step{toClient: true, data: s2c.Open(1, pcapgen.Encode(&ua.OpenSecureChannelResponse{ResponseHeader: sh(1),
		SecurityToken: &ua.ChannelSecurityToken{ChannelID: 5, TokenID: 1}, ServerNonce: []byte{}}))}
	// The fuzzer handles small inputs best: each script is one part of a
	// conversation, a few hundred bytes to a few kilobytes.
	return [][]byte{
		script(hello, ack, open, opened,
			req(2, &ua.CreateSessionRequest{RequestHeader: pcapgen.RequestHeader(nil, 2, now), ClientDescription: &ua.ApplicationDescription{ApplicationName: &ua.LocalizedText{}},
				EndpointURL: "opc.tcp://plc:4840", SessionName: "s1"}),
			resp(2, &ua.CreateSessionResponse{ResponseHeader: sh(2), SessionID: ua.NewNumericNodeID(1, 1), AuthenticationToken: tok, ServerSignature: &ua.SignatureData{}}, 0),
			req(3, &ua.ActivateSessionRequest{RequestHeader: rh(3), ClientSignature: &ua.SignatureData{},
				UserIdentityToken: ua.NewExtensionObject(&ua.UserNameIdentityToken{UserName: "op", Password: []byte("pw")}), UserTokenSignature: &ua.SignatureData{}}),
			resp(3, &ua.ActivateSessionResponse{ResponseHeader: sh(3)}, 0)),
		script(step{data: c2s.Message(4, read, 0)}, step{toClient: true, data: s2c.Message(4, readR, 40)}),
		script(req(5, &ua.WriteRequest{RequestHeader: rh(5), NodesToWrite: []*ua.WriteValue{
			{NodeID: ua.NewStringNodeID(2, "A"), AttributeID: 13, Value: &ua.DataValue{EncodingMask: 1, Value: ua.MustVariant(int16(-3))}},
			{NodeID: ua.NewStringNodeID(2, "B"), AttributeID: 13, IndexRange: "1", Value: &ua.DataValue{EncodingMask: 1, Value: ua.MustVariant([]string{"x", "y"})}}}}),
			resp(5, &ua.WriteResponse{ResponseHeader: sh(5), Results: []ua.StatusCode{0, ua.StatusBadUserAccessDenied}}, 0)),
		script(req(6, &ua.CallRequest{RequestHeader: rh(6), MethodsToCall: []*ua.CallMethodRequest{{ObjectID: ua.NewNumericNodeID(0, 85),
			MethodID: ua.NewNumericNodeID(1, 62541), InputArguments: []*ua.Variant{ua.MustVariant("go")}}}}),
			resp(6, &ua.ServiceFault{ResponseHeader: pcapgen.ResponseHeader(6, ua.StatusBadUserAccessDenied, now)}, 0),
			req(8, &ua.PublishRequest{RequestHeader: rh(8)})),
		script(req(7, &ua.AddNodesRequest{RequestHeader: rh(7), NodesToAdd: []*ua.AddNodesItem{{ParentNodeID: ua.NewExpandedNodeID(ua.NewNumericNodeID(0, 85), "", 0),
			ReferenceTypeID: ua.NewNumericNodeID(0, 35), RequestedNewNodeID: ua.NewExpandedNodeID(ua.NewStringNodeID(1, "new"), "", 0),
			BrowseName: &ua.QualifiedName{Name: "new"}, NodeAttributes: ua.NewExtensionObject(nil), TypeDefinition: ua.NewExpandedNodeID(ua.NewNumericNodeID(0, 58), "", 0)}}})),
		script(step{data: append(c2s.Message(9, read, 50)[:120], []byte("MSGA\x20\x00\x00\x00\x05\x00\x00\x00\x01\x00\x00\x00\x99\x00\x00\x00\x09\x00\x00\x00\x00\x00\x0b\x80\x00\x00\x00\x00")...)},
			step{data: c2s.Close(10, pcapgen.Encode(&ua.CloseSecureChannelRequest{RequestHeader: rh(10)}))}),
		// A Call answered with outputs and input argument results; a
		// server that allows two chunks sent a message of three.
		script(req(11, &ua.CallRequest{RequestHeader: rh(11), MethodsToCall: []*ua.CallMethodRequest{{ObjectID: ua.NewNumericNodeID(0, 85),
			MethodID: ua.NewNumericNodeID(1, 7), InputArguments: []*ua.Variant{ua.MustVariant("a"), ua.MustVariant(int32(2))}}}}),
			resp(11, &ua.CallResponse{ResponseHeader: sh(11), Results: []*ua.CallMethodResult{{StatusCode: ua.StatusBadInvalidArgument,
				InputArgumentResults: []ua.StatusCode{0, ua.StatusBadOutOfRange}, OutputArguments: []*ua.Variant{ua.MustVariant("x"), ua.MustVariant(1.5)}}}}, 0)),
		script(hello, step{toClient: true, data: limitedAck(2)}, step{data: c2s.Message(12, read, 40)}),
		script(step{gap: true, data: c2s.Message(20, read, 0)[7:]},
			step{data: c2s.Message(21, read, 0)},
			step{toClient: true, gap: true, data: s2c.Message(21, readR, 0)},
			step{data: []byte("GET / HTTP/1.1\r\nHost: plc\r\n\r\n")},
			step{data: c2s.Message(22, read, 0)}),
	}
}

// limitedAck is an Acknowledge that allows at most chunks chunks a message.
func limitedAck(chunks uint32) []byte {
	b := pcapgen.Acknowledge()
	binary.LittleEndian.PutUint32(b[24:], chunks)
	return b
}

func readMessages(now time.Time, tok *ua.NodeID, n int) (req, resp []byte) {
	nodes := make([]*ua.ReadValueID, n)
	res := make([]*ua.DataValue, n)
	for i := range nodes {
		nodes[i] = &ua.ReadValueID{NodeID: ua.NewNumericNodeID(2, uint32(i)), AttributeID: 13, DataEncoding: &ua.QualifiedName{}}
		res[i] = &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(float64(i))}
	}
	req = pcapgen.Encode(&ua.ReadRequest{RequestHeader: pcapgen.RequestHeader(tok, 4, now), NodesToRead: nodes})
	resp = pcapgen.Encode(&ua.ReadResponse{ResponseHeader: pcapgen.ResponseHeader(4, 0, now), Results: res})
	return req, resp
}
