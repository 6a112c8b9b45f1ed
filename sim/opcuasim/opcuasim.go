// Package opcuasim is an in-process OPC UA server for simulations and
// tests, on gopcua's server package (github.com/gopcua/opcua/server
// v0.8.0): one namespace of variables whose values and status codes Go code
// sets while clients read and subscribe, methods that Go code answers,
// anonymous and user name identities (which it checks: gopcua's server
// accepts any token), and an application instance certificate made with
// sim/pki when none is given. Security is None only: see ErrSecureChannel.
//
// What gopcua's server does not do, this package adds in front of it:
// user checks in ActivateSession, a UserName token policy on the None
// endpoint (gopcua offers user names on secure endpoints only; here the
// password crosses in clear text, as on many plant networks), the Call service (gopcua answers
// BadServiceUnsupported), and the operation limit on Read (gopcua
// advertises MaxNodesPerRead but serves any size; here a larger Read is a
// ServiceFault BadTooManyOperations, as a real server answers).
//
// What it does not do: sampling intervals, queue sizes and deadbands of
// monitored items are accepted but not honoured (gopcua reports every
// change once per publishing interval); there is no history, no events and
// no Write (Write answers Bad, clients under test must not write anyway).
package opcuasim

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/server/attrs"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"

	"github.com/plcwatch/plcwatch/sim/pki"
)

// Security is one endpoint's security: policy by its short name (None,
// Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss, ...) and
// mode (None, Sign, SignAndEncrypt).
type Security struct {
	Policy string
	Mode   ua.MessageSecurityMode
}

// Config is what Start needs. The zero value is a server on a free port of
// 127.0.0.1 with security None and anonymous access.
type Config struct {
	Host         string     // listen and endpoint host; 127.0.0.1 when empty
	Port         int        // TCP port; a free one when 0 (Server.Port tells which)
	NamespaceURI string     // the namespace of the variables; urn:plcwatch:sim when empty
	Security     []Security // endpoints offered; None/None when empty
	// Anonymous allows anonymous sessions; with no Users it is implied.
	Anonymous bool
	// Users are user name → password for UserName identity tokens.
	Users map[string]string // offered on the None endpoint, password in clear text
	// Certificate and Key are the server's application instance
	// certificate (DER) and key; made with sim/pki when nil.
	Certificate []byte
	Key         *rsa.PrivateKey
	// ApplicationURI is the server's URI; from the certificate, else
	// urn:plcwatch:sim:server.
	ApplicationURI string
	// MaxNodesPerRead is the operation limit advertised and enforced; 32
	// (gopcua's) when 0.
	MaxNodesPerRead uint32
	Logger          *slog.Logger // nil: silent
}

// ErrSecureChannel: gopcua v0.8.0's server cannot open a signed or
// encrypted secure channel (the OpenSecureChannel request is never answered:
// gopcua#815, fixed after v0.8.0 by gopcua#817), so this package offers
// security None only. Secure endpoints are tested against node-opcua.
var ErrSecureChannel = errors.New("gopcua v0.8.0's server cannot open signed or encrypted secure channels (gopcua#815)")

// Method answers a Call: the input arguments in, the output arguments and
// the call's status out.
type Method func(inputs []*ua.Variant) ([]*ua.Variant, ua.StatusCode)

type variable struct {
	id     *ua.NodeID
	value  *ua.Variant
	status ua.StatusCode
	source time.Time
}

// Server is a running simulated server. Its variables survive Stop and
// Start (a restart), as a PLC's process image does.
type Server struct {
	cfg  Config
	cert []byte
	key  *rsa.PrivateKey

	mu      sync.Mutex
	vars    map[string]*variable
	order   []string
	methods map[string]Method
	calls   []string
	srv     *server.Server
	ns      *server.NodeNameSpace
	cancel  context.CancelFunc
}

// New prepares a server without starting it: add variables and methods,
// then Start.
func New(cfg Config) (*Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.NamespaceURI == "" {
		cfg.NamespaceURI = "urn:plcwatch:sim"
	}
	if len(cfg.Security) == 0 {
		cfg.Security = []Security{{"None", ua.MessageSecurityModeNone}}
	}
	if len(cfg.Users) == 0 {
		cfg.Anonymous = true
	}
	if cfg.MaxNodesPerRead == 0 {
		cfg.MaxNodesPerRead = 32
	}
	for _, s := range cfg.Security {
		if !supported(policyURI(s.Policy)) {
			return nil, fmt.Errorf("opcuasim: security policy %q is not supported (have %v)", s.Policy, uapolicy.SupportedPolicies())
		}
		if policyURI(s.Policy) != ua.SecurityPolicyURINone {
			return nil, fmt.Errorf("opcuasim: security policy %s: %w", s.Policy, ErrSecureChannel)
		}
	}
	s := &Server{cfg: cfg, cert: cfg.Certificate, key: cfg.Key, vars: map[string]*variable{}, methods: map[string]Method{}}
	if s.cert == nil || s.key == nil {
		uri := cfg.ApplicationURI
		if uri == "" {
			uri = "urn:plcwatch:sim:server"
		}
		c, err := pki.NewOPCUACert("plcwatch opcuasim", uri, []string{cfg.Host, "localhost"}, 2048, 0)
		if err != nil {
			return nil, fmt.Errorf("opcuasim: %w", err)
		}
		s.cert, s.key = c.DER, c.Key
	}
	if cfg.Port == 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, "0"))
		if err != nil {
			return nil, fmt.Errorf("opcuasim: free port: %w", err)
		}
		s.cfg.Port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return s, nil
}

// Start makes a server with New and starts it.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return s, s.Start(ctx)
}

// Endpoint is the server's URL, opc.tcp://host:port.
func (s *Server) Endpoint() string {
	return fmt.Sprintf("opc.tcp://%s:%d", s.cfg.Host, s.cfg.Port)
}

// Port is the TCP port the server listens on.
func (s *Server) Port() int { return s.cfg.Port }

// Certificate is the server's certificate, DER.
func (s *Server) Certificate() []byte { return s.cert }

// NamespaceIndex is the index of the simulation's namespace in the
// server's namespace array (1: namespace 0 is OPC UA's own).
func (s *Server) NamespaceIndex() uint16 { return 1 }

// NodeID is the node id of the variable or method name: ns=1;s=name.
func (s *Server) NodeID(name string) *ua.NodeID {
	return ua.NewStringNodeID(s.NamespaceIndex(), name)
}

// Add adds a variable with a string node id ns=<index>;s=name and its
// first value: any Go value gopcua's ua.NewVariant takes (bool, int8 …
// uint64, float32, float64, string, time.Time, *ua.GUID, []byte,
// ua.XMLElement, *ua.NodeID, *ua.ExpandedNodeID, ua.StatusCode,
// *ua.QualifiedName, *ua.LocalizedText) or a slice of one of them (an
// array, value rank 1). Adding a name twice replaces its value.
func (s *Server) Add(name string, value any) error {
	v, err := ua.NewVariant(value)
	if err != nil {
		return fmt.Errorf("opcuasim: %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if x, ok := s.vars[name]; ok {
		x.value, x.status, x.source = v, ua.StatusOK, time.Now()
		return nil
	}
	x := &variable{id: s.NodeID(name), value: v, source: time.Now()}
	s.vars[name] = x
	s.order = append(s.order, name)
	if s.ns != nil {
		s.addNode(s.ns, x, name)
	}
	return nil
}

// Set changes a variable's value (status Good) and notifies subscribers.
func (s *Server) Set(name string, value any) error {
	return s.SetStatus(name, value, ua.StatusOK)
}

// SetStatus changes a variable's value and status code (Uncertain… or
// Bad… codes make the quality a client sees) and notifies subscribers.
// value nil keeps the value.
func (s *Server) SetStatus(name string, value any, status ua.StatusCode) error {
	s.mu.Lock()
	x, ok := s.vars[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("opcuasim: no variable %q", name)
	}
	if value != nil {
		v, err := ua.NewVariant(value)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("opcuasim: %s: %w", name, err)
		}
		x.value = v
	}
	x.status, x.source = status, time.Now()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil && srv.MonitoredItemService != nil {
		srv.ChangeNotification(x.id)
	}
	return nil
}

// Value is a variable's current value and status.
func (s *Server) Value(name string) (any, ua.StatusCode, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.vars[name]
	if !ok {
		return nil, 0, false
	}
	return x.value.Value(), x.status, true
}

// Names are the variables' names in the order they were added.
func (s *Server) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// AddMethod adds a method ns=<index>;s=name on the namespace's Objects
// folder, answered by m. Call it before Start.
func (s *Server) AddMethod(name string, m Method) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.methods[name] = m
}

// Calls are the methods called so far, as "name(args)".
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// Start starts (or, after Stop, restarts) the server on its port. (gopcua's
// server prints its node set import and its listener through the standard
// library's logger, which this package leaves alone.)
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("opcuasim: already started")
	}
	opts := []server.Option{
		server.EndPoint(s.cfg.Host, s.cfg.Port),
		server.Certificate(s.cert), server.PrivateKey(s.key),
		server.ServerName("plcwatch opcuasim"), server.ProductName("plcwatch opcuasim"),
		server.ManufacturerName("plcwatch"),
	}
	if s.cfg.Logger != nil {
		opts = append(opts, server.SetLogger(gopcuaLogger{s.cfg.Logger}))
	}
	for _, sec := range s.cfg.Security {
		opts = append(opts, server.EnableSecurity(sec.Policy, sec.Mode))
	}
	// gopcua offers anonymous tokens on every endpoint whenever the mode
	// is enabled; with it disabled ActivateSession below refuses them.
	opts = append(opts, server.EnableAuthMode(ua.UserTokenTypeAnonymous))
	if len(s.cfg.Users) > 0 {
		opts = append(opts, server.EnableAuthMode(ua.UserTokenTypeUserName))
	}
	srv := server.New(opts...)
	if err := s.hook(srv); err != nil {
		return err
	}
	root, err := srv.Namespace(0)
	if err != nil {
		return fmt.Errorf("opcuasim: %w", err)
	}
	// The advertised operation limit, replacing gopcua's fixed 32.
	limit := s.cfg.MaxNodesPerRead
	root.AddNode(server.NewNode(ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead),
		map[ua.AttributeID]*ua.DataValue{
			ua.AttributeIDBrowseName: server.DataValueFromValue(attrs.BrowseName("MaxNodesPerRead")),
			ua.AttributeIDNodeClass:  server.DataValueFromValue(uint32(ua.NodeClassVariable)),
		}, nil, func() *ua.DataValue { return server.DataValueFromValue(limit) }))
	ns := server.NewNodeNameSpace(srv, s.cfg.NamespaceURI)
	root.Objects().AddRef(ns.Objects(), id.HasComponent, true)
	for _, name := range s.order {
		s.addNode(ns, s.vars[name], name)
	}
	names := make([]string, 0, len(s.methods))
	for name := range s.methods {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := server.NewNode(s.NodeID(name), map[ua.AttributeID]*ua.DataValue{
			ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(ua.NodeClassMethod)),
			ua.AttributeIDBrowseName:  server.DataValueFromValue(attrs.BrowseName(name)),
			ua.AttributeIDDisplayName: server.DataValueFromValue(attrs.DisplayName(name, name)),
			ua.AttributeIDExecutable:  server.DataValueFromValue(true),
		}, nil, nil)
		ns.AddNode(m)
		ns.Objects().AddRef(m, id.HasComponent, true)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := srv.Start(sctx); err != nil {
		cancel()
		return fmt.Errorf("opcuasim: start %s: %w", s.Endpoint(), err)
	}
	s.srv, s.ns, s.cancel = srv, ns, cancel
	return nil
}

// Stop stops the server: its listener and every connection. Start starts
// it again on the same port with the same variables.
func (s *Server) Stop() error {
	s.mu.Lock()
	srv, cancel := s.srv, s.cancel
	s.srv, s.ns, s.cancel = nil, nil, nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	cancel()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("opcuasim: stop: %w", err)
	}
	return nil
}

// Close stops the server for good.
func (s *Server) Close() error { return s.Stop() }

// addNode adds x to ns under the Objects folder. s.mu is held.
func (s *Server) addNode(ns *server.NodeNameSpace, x *variable, name string) {
	rank := int32(-1)
	var dims []uint32
	if x.value.ArrayLength() > 0 || x.value.EncodingMask()&ua.VariantArrayValues != 0 {
		rank, dims = 1, []uint32{uint32(x.value.ArrayLength())}
	}
	n := server.NewNode(x.id, map[ua.AttributeID]*ua.DataValue{
		ua.AttributeIDNodeClass:               server.DataValueFromValue(uint32(ua.NodeClassVariable)),
		ua.AttributeIDBrowseName:              server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: x.id.Namespace(), Name: name}),
		ua.AttributeIDDisplayName:             server.DataValueFromValue(attrs.DisplayName(name, "")),
		ua.AttributeIDDataType:                server.DataValueFromValue(ua.NewNumericExpandedNodeID(0, uint32(x.value.Type()))), // gopcua's Browse wants it expanded
		ua.AttributeIDValueRank:               server.DataValueFromValue(rank),
		ua.AttributeIDArrayDimensions:         server.DataValueFromValue(dims),
		ua.AttributeIDAccessLevel:             server.DataValueFromValue(uint8(ua.AccessLevelTypeCurrentRead)),
		ua.AttributeIDUserAccessLevel:         server.DataValueFromValue(uint8(ua.AccessLevelTypeCurrentRead)),
		ua.AttributeIDMinimumSamplingInterval: server.DataValueFromValue(float64(0)),
	}, nil, func() *ua.DataValue {
		s.mu.Lock()
		defer s.mu.Unlock()
		dv := &ua.DataValue{EncodingMask: ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
			SourceTimestamp: x.source, ServerTimestamp: time.Now()}
		if x.status != ua.StatusOK {
			dv.EncodingMask |= ua.DataValueStatusCode
			dv.Status = x.status
		}
		if x.status&0xC0000000 != 0x80000000 { // a Bad value carries no value
			dv.EncodingMask |= ua.DataValueValue
			dv.Value = x.value
		}
		return dv
	})
	ns.AddNode(n)
	ns.Objects().AddRef(n, id.HasComponent, true)
}

// hook registers, before gopcua registers its own, the handlers this
// package adds: ActivateSession with user checks, Call, and Read with the
// operation limit.
func (s *Server) hook(srv *server.Server) error {
	sess, err := sessionService(srv)
	if err != nil {
		return err
	}
	srv.RegisterHandler(id.ActivateSessionRequest_Encoding_DefaultBinary, func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.ActivateSessionRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		if code := s.checkUser(req); code != ua.StatusOK {
			return nil, code
		}
		return sess.ActivateSession(sc, r, reqID)
	})
	srv.RegisterHandler(id.GetEndpointsRequest_Encoding_DefaultBinary, func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.GetEndpointsRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		return &ua.GetEndpointsResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Endpoints: s.endpoints(srv)}, nil
	})
	srv.RegisterHandler(id.CallRequest_Encoding_DefaultBinary, func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.CallRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		if srv.Session(req.RequestHeader) == nil {
			return nil, ua.StatusBadSessionIDInvalid
		}
		res := &ua.CallResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK)}
		for _, m := range req.MethodsToCall {
			res.Results = append(res.Results, s.call(m))
		}
		return res, nil
	})
	srv.RegisterHandler(id.ReadRequest_Encoding_DefaultBinary, func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.ReadRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		if srv.Session(req.RequestHeader) == nil {
			return nil, ua.StatusBadSessionIDInvalid
		}
		if len(req.NodesToRead) == 0 {
			return nil, ua.StatusBadNothingToDo
		}
		if uint32(len(req.NodesToRead)) > s.cfg.MaxNodesPerRead {
			return nil, ua.StatusBadTooManyOperations
		}
		res := &ua.ReadResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK)}
		for _, n := range req.NodesToRead {
			ns, err := srv.Namespace(int(n.NodeID.Namespace()))
			if err != nil {
				res.Results = append(res.Results, &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadNodeIDUnknown})
				continue
			}
			res.Results = append(res.Results, ns.Attribute(n.NodeID, n.AttributeID))
		}
		return res, nil
	})
	return nil
}

// endpoints are gopcua's, copied, with a UserName token policy added to
// the None endpoints when there are users.
func (s *Server) endpoints(srv *server.Server) []*ua.EndpointDescription {
	var out []*ua.EndpointDescription
	for _, ep := range srv.Endpoints() {
		e := *ep
		e.UserIdentityTokens = nil
		for _, t := range ep.UserIdentityTokens {
			if t.TokenType == ua.UserTokenTypeAnonymous && !s.cfg.Anonymous {
				continue
			}
			e.UserIdentityTokens = append(e.UserIdentityTokens, t)
		}
		if len(s.cfg.Users) > 0 && e.SecurityPolicyURI == ua.SecurityPolicyURINone {
			e.UserIdentityTokens = append(e.UserIdentityTokens, &ua.UserTokenPolicy{PolicyID: "username_none",
				TokenType: ua.UserTokenTypeUserName, SecurityPolicyURI: ua.SecurityPolicyURINone})
		}
		out = append(out, &e)
	}
	return out
}

func header(h *ua.RequestHeader, code ua.StatusCode) *ua.ResponseHeader {
	return &ua.ResponseHeader{Timestamp: time.Now(), RequestHandle: h.RequestHandle, ServiceResult: code,
		ServiceDiagnostics: &ua.DiagnosticInfo{}, StringTable: []string{}, AdditionalHeader: ua.NewExtensionObject(nil)}
}

func (s *Server) call(m *ua.CallMethodRequest) *ua.CallMethodResult {
	name := ""
	if m.MethodID != nil && m.MethodID.Namespace() == s.NamespaceIndex() && m.MethodID.Type() == ua.NodeIDTypeString {
		name = m.MethodID.StringID()
	}
	s.mu.Lock()
	f, ok := s.methods[name]
	if ok {
		args := make([]string, len(m.InputArguments))
		for i, a := range m.InputArguments {
			args[i] = fmt.Sprint(a.Value())
		}
		s.calls = append(s.calls, name+"("+strings.Join(args, ",")+")")
	}
	s.mu.Unlock()
	if !ok {
		return &ua.CallMethodResult{StatusCode: ua.StatusBadMethodInvalid}
	}
	out, code := f(m.InputArguments)
	return &ua.CallMethodResult{StatusCode: code, OutputArguments: out,
		InputArgumentResults: make([]ua.StatusCode, len(m.InputArguments))}
}

// checkUser is what gopcua's ActivateSession leaves out: is this identity
// allowed? (Part 4 §5.6.3: BadIdentityTokenInvalid for a token of a kind
// not offered, BadUserAccessDenied for a wrong user or password.)
func (s *Server) checkUser(req *ua.ActivateSessionRequest) ua.StatusCode {
	var tok any
	if req.UserIdentityToken != nil {
		tok = req.UserIdentityToken.Value
	}
	switch t := tok.(type) {
	case nil, *ua.AnonymousIdentityToken:
		if !s.cfg.Anonymous {
			return ua.StatusBadIdentityTokenInvalid
		}
		return ua.StatusOK
	case *ua.UserNameIdentityToken:
		want, ok := s.cfg.Users[t.UserName]
		if !ok {
			return ua.StatusBadUserAccessDenied
		}
		pass, err := s.password(t)
		if err != nil || pass != want {
			return ua.StatusBadUserAccessDenied
		}
		return ua.StatusOK
	default:
		return ua.StatusBadIdentityTokenInvalid
	}
}

// password is a user name token's password: in clear text, as the None
// token policy this server offers sends it.
func (s *Server) password(t *ua.UserNameIdentityToken) (string, error) {
	if t.EncryptionAlgorithm != "" {
		return "", fmt.Errorf("encrypted password (%s) on a token policy that has none", t.EncryptionAlgorithm)
	}
	return string(t.Password), nil
}

// sessionService is gopcua's SessionService bound to srv. gopcua keeps its
// srv field unexported and offers no other way to wrap ActivateSession
// (RegisterHandler keeps the first handler registered), so the field is set
// through its address after checking the struct is the one pointer it was
// in v0.8.0.
func sessionService(srv *server.Server) (*server.SessionService, error) {
	t := reflect.TypeOf(server.SessionService{})
	if t.NumField() != 1 || t.Field(0).Type != reflect.TypeOf(srv) {
		return nil, errors.New("opcuasim: gopcua's SessionService changed shape; update sessionService")
	}
	ss := new(server.SessionService)
	*(**server.Server)(unsafe.Pointer(ss)) = srv
	return ss, nil
}

func policyURI(p string) string {
	if strings.HasPrefix(p, "http://") {
		return p
	}
	return "http://opcfoundation.org/UA/SecurityPolicy#" + p
}

func supported(uri string) bool {
	for _, p := range uapolicy.SupportedPolicies() {
		if p == uri {
			return true
		}
	}
	return false
}

// gopcuaLogger adapts slog to gopcua's printf-style server logger.
type gopcuaLogger struct{ l *slog.Logger }

func (g gopcuaLogger) Debug(msg string, args ...any) { g.l.Debug(fmt.Sprintf(msg, args...)) }
func (g gopcuaLogger) Info(msg string, args ...any)  { g.l.Debug(fmt.Sprintf(msg, args...)) }
func (g gopcuaLogger) Warn(msg string, args ...any)  { g.l.Debug(fmt.Sprintf(msg, args...)) }
func (g gopcuaLogger) Error(msg string, args ...any) { g.l.Debug(fmt.Sprintf(msg, args...)) }
