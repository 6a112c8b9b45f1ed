package pcapgen

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/gopcua/opcua/ua"
)

// OPCUAOptions describe a synthetic OPC UA Binary capture: SCADA clients
// polling OPC UA servers with Read and subscribing with Publish, with a few
// Writes and method Calls, some responses split into several chunks, over
// connections that each open a secure channel (policy None) and a session
// (anonymous, or a user name and password).
type OPCUAOptions struct {
	Packets  int     // data segments to write (requests and responses)
	Conns    int     // client-server connections
	Publish  float64 // share of requests that are PublishRequests (the rest are reads, writes and calls)
	Writes   float64 // share of requests that are WriteRequests
	Calls    float64 // share of requests that are CallRequests
	Chunked  float64 // share of ReadResponses sent as several chunks
	Nodes    int     // nodes per ReadRequest
	Password string  // password of the UserNameIdentityToken of every other connection
	Port     uint16  // server port
	Seed     uint64
	Start    time.Time
}

// DefaultOPCUA is the benchmark capture: a polling mix of 10-node Reads
// and Publishes, 2% Writes, 1% Calls, 3% chunked responses, 64 connections.
var DefaultOPCUA = OPCUAOptions{Packets: 1_000_000, Conns: 64, Publish: 0.25, Writes: 0.02, Calls: 0.01,
	Chunked: 0.03, Nodes: 10, Password: "sim-Passw0rd!", Port: 4840, Seed: 1,
	Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}

// OPCUAStats count what OPCUA wrote.
type OPCUAStats struct {
	Packets, Messages, Requests, Reads, Publishes, Writes, Calls, Chunked int
}

// UACP builds OPC UA Connection Protocol messages and secure conversation
// chunks (OPC 10000-6 §6.7, §7.1) for policy None: the building blocks of
// synthetic captures and of tests.
type UACP struct {
	Channel uint32
	Token   uint32
	seq     uint32
}

// Hello returns a HEL message asking for endpoint url with 64 KiB buffers.
func Hello(url string) []byte {
	b := header("HEL", 'F')
	for _, v := range []uint32{0, 65535, 65535, 0, 0} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	b = appendString(b, url)
	return size(b)
}

// Acknowledge returns the ACK answering Hello.
func Acknowledge() []byte {
	b := header("ACK", 'F')
	for _, v := range []uint32{0, 65535, 65535, 0, 0} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return size(b)
}

// Open returns an OPN chunk of policy None carrying body (a type id and
// an OpenSecureChannelRequest or Response, as Encode makes them).
func (u *UACP) Open(reqID uint32, body []byte) []byte {
	b := header("OPN", 'F')
	b = binary.LittleEndian.AppendUint32(b, u.Channel)
	b = appendString(b, "http://opcfoundation.org/UA/SecurityPolicy#None")
	b = binary.LittleEndian.AppendUint32(b, 0xffffffff) // no certificate
	b = binary.LittleEndian.AppendUint32(b, 0xffffffff) // no thumbprint
	u.seq++
	b = binary.LittleEndian.AppendUint32(b, u.seq)
	b = binary.LittleEndian.AppendUint32(b, reqID)
	return size(append(b, body...))
}

// Message returns body (a type id and a service) as MSG chunks of at
// most maxBody body bytes each; maxBody 0 sends one chunk.
func (u *UACP) Message(reqID uint32, body []byte, maxBody int) []byte {
	return u.chunks("MSG", reqID, body, maxBody)
}

// Close returns a CLO chunk carrying a CloseSecureChannelRequest.
func (u *UACP) Close(reqID uint32, body []byte) []byte {
	return u.chunks("CLO", reqID, body, 0)
}

func (u *UACP) chunks(typ string, reqID uint32, body []byte, maxBody int) []byte {
	if maxBody <= 0 {
		maxBody = len(body)
	}
	var out []byte
	for off := 0; ; off += maxBody {
		end := min(off+maxBody, len(body))
		ct := byte('C')
		if end == len(body) {
			ct = 'F'
		}
		b := header(typ, ct)
		b = binary.LittleEndian.AppendUint32(b, u.Channel)
		b = binary.LittleEndian.AppendUint32(b, u.Token)
		u.seq++
		b = binary.LittleEndian.AppendUint32(b, u.seq)
		b = binary.LittleEndian.AppendUint32(b, reqID)
		b = append(b, body[off:end]...)
		out = append(out, size(b)...)
		if end == len(body) {
			return out
		}
	}
}

func header(typ string, chunk byte) []byte {
	b := make([]byte, 0, 256)
	b = append(b, typ...)
	b = append(b, chunk)
	return append(b, 0, 0, 0, 0)
}

func size(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Encode returns a service message body: the type id of v's binary
// encoding (a four-byte NodeId, ns 0) and v encoded by gopcua.
func Encode(v any) []byte {
	tid := ua.ServiceTypeID(v)
	if tid == 0 {
		panic(fmt.Sprintf("pcapgen: %T is not an OPC UA service", v))
	}
	body, err := ua.Encode(v)
	if err != nil {
		panic(fmt.Sprintf("pcapgen: encode %T: %v", v, err))
	}
	b := []byte{1, 0, 0, 0}
	binary.LittleEndian.PutUint16(b[2:], tid)
	return append(b, body...)
}

// RequestHeader is a request header naming session token tok (nil: none).
func RequestHeader(tok *ua.NodeID, handle uint32, t time.Time) *ua.RequestHeader {
	if tok == nil {
		tok = ua.NewTwoByteNodeID(0)
	}
	return &ua.RequestHeader{AuthenticationToken: tok, Timestamp: t, RequestHandle: handle,
		TimeoutHint: 10000, AdditionalHeader: ua.NewExtensionObject(nil)}
}

// ResponseHeader is a response header with status.
func ResponseHeader(handle uint32, status ua.StatusCode, t time.Time) *ua.ResponseHeader {
	return &ua.ResponseHeader{Timestamp: t, RequestHandle: handle, ServiceResult: status,
		ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)}
}

// opcuaConn is one simulated client-server connection.
type opcuaConn struct {
	tcp    *Conn
	c2s    UACP
	s2c    UACP
	reqID  uint32
	read   []byte // the connection's ReadRequest body (static: the same nodes every poll)
	readR  []byte // its ReadResponse body
	readRC []byte // a longer ReadResponse, for chunking
	pub    []byte
	pubR   []byte
	tok    *ua.NodeID
}

// OPCUA writes an OPC UA polling capture to w.
func OPCUA(w *Writer, o OPCUAOptions) OPCUAStats {
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	if o.Nodes < 1 {
		o.Nodes = 1
	}
	if o.Port == 0 {
		o.Port = 4840
	}
	var st OPCUAStats
	t := o.Start
	conns := make([]*opcuaConn, o.Conns)
	send := func(c *opcuaConn, d Dir, msg []byte) {
		c.tcp.Send(d, msg)
		st.Packets++
	}
	for i := range conns {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(1 + i%200)}), uint16(40000+i))
		server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 3, byte(1 + i%50)}), o.Port)
		c := &opcuaConn{tcp: w.Conn(client, server, t, rng.Uint32())}
		c.tcp.Step = 0
		conns[i] = c
		c.tcp.Handshake()
		st.Packets += 3
		url := fmt.Sprintf("opc.tcp://%s", server)
		send(c, ToServer, Hello(url))
		send(c, ToClient, Acknowledge())
		c.reqID++
		send(c, ToServer, c.c2s.Open(c.reqID, Encode(&ua.OpenSecureChannelRequest{
			RequestHeader: RequestHeader(nil, 1, t), RequestType: ua.SecurityTokenRequestTypeIssue,
			SecurityMode: ua.MessageSecurityModeNone, ClientNonce: []byte{}, RequestedLifetime: 3600000})))
		c.c2s.Channel, c.s2c.Channel = uint32(100+i), uint32(100+i)
		c.c2s.Token, c.s2c.Token = 1, 1
		send(c, ToClient, c.s2c.Open(c.reqID, Encode(&ua.OpenSecureChannelResponse{
			ResponseHeader: ResponseHeader(1, 0, t),
			SecurityToken:  &ua.ChannelSecurityToken{ChannelID: c.c2s.Channel, TokenID: 1, CreatedAt: t, RevisedLifetime: 3600000},
			ServerNonce:    []byte{}})))
		c.reqID++
		send(c, ToServer, c.c2s.Message(c.reqID, Encode(&ua.CreateSessionRequest{
			RequestHeader:     RequestHeader(nil, 2, t),
			ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:plcwatch:sim:scada", ApplicationName: ua.NewLocalizedText("SCADA")},
			EndpointURL:       url, SessionName: fmt.Sprintf("scada-%d", i), RequestedSessionTimeout: 60000}), 0))
		c.tok = ua.NewByteStringNodeID(0, []byte(fmt.Sprintf("session-token-%04d", i)))
		send(c, ToClient, c.s2c.Message(c.reqID, Encode(&ua.CreateSessionResponse{
			ResponseHeader: ResponseHeader(2, 0, t), SessionID: ua.NewNumericNodeID(1, uint32(1000+i)),
			AuthenticationToken: c.tok, RevisedSessionTimeout: 60000,
			ServerSignature: &ua.SignatureData{}}), 0))
		identity := ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: "anonymous"})
		if i%2 == 1 {
			identity = ua.NewExtensionObject(&ua.UserNameIdentityToken{PolicyID: "username", UserName: fmt.Sprintf("operator%d", i), Password: []byte(o.Password)})
		}
		c.reqID++
		send(c, ToServer, c.c2s.Message(c.reqID, Encode(&ua.ActivateSessionRequest{
			RequestHeader: RequestHeader(c.tok, 3, t), ClientSignature: &ua.SignatureData{},
			UserIdentityToken: identity, UserTokenSignature: &ua.SignatureData{}}), 0))
		send(c, ToClient, c.s2c.Message(c.reqID, Encode(&ua.ActivateSessionResponse{
			ResponseHeader: ResponseHeader(3, 0, t)}), 0))
		c.read, c.readR = readPair(rng, c.tok, o.Nodes, i, t)
		_, c.readRC = readPair(rng, c.tok, 8*o.Nodes+20, i, t)
		c.pub, c.pubR = publishPair(rng, c.tok, t)
	}
	for st.Packets < o.Packets {
		c := conns[rng.IntN(len(conns))]
		t = t.Add(time.Duration(20+rng.IntN(60)) * time.Microsecond)
		c.tcp.Time = t
		c.reqID++
		var req, resp []byte
		maxBody := 0
		switch p := rng.Float64(); {
		case p < o.Writes:
			req, resp = writePair(rng, c.tok, t)
			st.Writes++
		case p < o.Writes+o.Calls:
			req, resp = callPair(rng, c.tok, t)
			st.Calls++
		case p < o.Writes+o.Calls+o.Publish:
			req, resp = c.pub, c.pubR
			st.Publishes++
		default:
			req, resp = c.read, c.readR
			st.Reads++
			if rng.Float64() < o.Chunked {
				resp, maxBody = c.readRC, 256
				st.Chunked++
			}
		}
		send(c, ToServer, c.c2s.Message(c.reqID, req, 0))
		c.tcp.Time = t.Add(time.Duration(200+rng.IntN(600)) * time.Microsecond)
		send(c, ToClient, c.s2c.Message(c.reqID, resp, maxBody))
		st.Requests++
		st.Messages += 2
	}
	return st
}

// readPair is a ReadRequest of n nodes and its response of Double values.
func readPair(rng *rand.Rand, tok *ua.NodeID, n, conn int, t time.Time) (req, resp []byte) {
	nodes := make([]*ua.ReadValueID, n)
	results := make([]*ua.DataValue, n)
	for i := range nodes {
		nodes[i] = &ua.ReadValueID{NodeID: ua.NewStringNodeID(2, fmt.Sprintf("PLC%d.Tag%03d", conn%50, i)),
			AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}
		results[i] = &ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
			Value: ua.MustVariant(rng.Float64() * 100), SourceTimestamp: t, ServerTimestamp: t}
	}
	req = Encode(&ua.ReadRequest{RequestHeader: RequestHeader(tok, 10, t), TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: nodes})
	resp = Encode(&ua.ReadResponse{ResponseHeader: ResponseHeader(10, 0, t), Results: results})
	return req, resp
}

// publishPair is a PublishRequest acknowledging one notification and a
// response carrying data changes of three monitored items.
func publishPair(rng *rand.Rand, tok *ua.NodeID, t time.Time) (req, resp []byte) {
	req = Encode(&ua.PublishRequest{RequestHeader: RequestHeader(tok, 11, t),
		SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{{SubscriptionID: 1, SequenceNumber: 7}}})
	items := make([]*ua.MonitoredItemNotification, 3)
	for i := range items {
		items[i] = &ua.MonitoredItemNotification{ClientHandle: uint32(i + 1),
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp, Value: ua.MustVariant(int32(rng.IntN(1000))), SourceTimestamp: t}}
	}
	dcn := &ua.DataChangeNotification{MonitoredItems: items}
	resp = Encode(&ua.PublishResponse{ResponseHeader: ResponseHeader(11, 0, t), SubscriptionID: 1,
		AvailableSequenceNumbers: []uint32{8}, NotificationMessage: &ua.NotificationMessage{SequenceNumber: 8, PublishTime: t,
			NotificationData: []*ua.ExtensionObject{ua.NewExtensionObject(dcn)}}, Results: []ua.StatusCode{0}})
	return req, resp
}

// writePair is a WriteRequest of one or two setpoints and its response;
// one write in ten is refused (BadUserAccessDenied).
func writePair(rng *rand.Rand, tok *ua.NodeID, t time.Time) (req, resp []byte) {
	n := 1 + rng.IntN(2)
	wv := make([]*ua.WriteValue, n)
	res := make([]ua.StatusCode, n)
	for i := range wv {
		wv[i] = &ua.WriteValue{NodeID: ua.NewStringNodeID(2, fmt.Sprintf("Line%d.Setpoint", rng.IntN(8))), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(float64(rng.IntN(1000)) / 10)}}
		if rng.IntN(10) == 0 {
			res[i] = ua.StatusBadUserAccessDenied
		}
	}
	req = Encode(&ua.WriteRequest{RequestHeader: RequestHeader(tok, 12, t), NodesToWrite: wv})
	resp = Encode(&ua.WriteResponse{ResponseHeader: ResponseHeader(12, 0, t), Results: res})
	return req, resp
}

// callPair is a CallRequest of a pump method with two arguments.
func callPair(rng *rand.Rand, tok *ua.NodeID, t time.Time) (req, resp []byte) {
	req = Encode(&ua.CallRequest{RequestHeader: RequestHeader(tok, 13, t), MethodsToCall: []*ua.CallMethodRequest{{
		ObjectID: ua.NewStringNodeID(2, "Pump1"), MethodID: ua.NewStringNodeID(2, "Pump1.SetSpeed"),
		InputArguments: []*ua.Variant{ua.MustVariant(int32(rng.IntN(3000))), ua.MustVariant(true)}}}})
	resp = Encode(&ua.CallResponse{ResponseHeader: ResponseHeader(13, 0, t), Results: []*ua.CallMethodResult{{
		StatusCode: 0, OutputArguments: []*ua.Variant{ua.MustVariant(int32(1))}}}})
	return req, resp
}
