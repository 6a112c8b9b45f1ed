package opcua

import (
	"encoding/base64"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
)

// decodeService decodes a whole message (type id and body) with gopcua,
// once the schema walk has shown it safe to: see schema.go. It returns the
// decoded request or response, the bytes it took, and why it could not
// decode ("" when it could). A panic in gopcua is recovered here, the
// boundary, and reported as malformed: it never reaches the capture.
func (d *Dissector) decodeService(body []byte, typeNum uint32) (obj any, consumed int, why string) {
	s := loadSchemas().services[typeNum]
	if s == nil {
		return nil, 0, errServiceID
	}
	r := reader{b: body}
	r.skipNodeID(true)
	cost := budget{max: maxCost(len(body))}
	r.walk(s, 0, &cost)
	if !r.ok() {
		d.Stats.Rejected++
		return nil, 0, r.why
	}
	consumed = r.off
	defer func() {
		if recover() != nil {
			d.Stats.Panics++
			obj, why = nil, errPanic
		}
	}()
	_, v, err := ua.DecodeService(body)
	if err != nil || v == nil {
		return nil, consumed, errDecoder
	}
	return v, consumed, ""
}

// nodeText is a gopcua NodeId's text (nodeid.go's form); "" for none.
func nodeText(n *ua.NodeID) string {
	if n == nil {
		return ""
	}
	defer func() { recover() }() // String panics on an encoding it did not decode
	return n.String()
}

// expandedText is an ExpandedNodeId's text, with the server index and
// namespace URI gopcua's String leaves out.
func expandedText(n *ua.ExpandedNodeID) string {
	if n == nil || n.NodeID == nil {
		return ""
	}
	s := nodeText(n.NodeID)
	if n.NamespaceURI != "" {
		if i := strings.IndexByte(s, ';'); i >= 0 && strings.HasPrefix(s, "ns=") {
			s = s[i+1:]
		}
		s = "nsu=" + n.NamespaceURI + ";" + s
	}
	if n.ServerIndex != 0 || n.NodeID.IndexFlag() {
		s = "svr=" + strconv.FormatUint(uint64(n.ServerIndex), 10) + ";" + s
	}
	return s
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// requestFields fills a request's event from what gopcua decoded: the
// node it names first, how many operations it carries, and the session
// and security facts of the session and channel services.
func (c *Conn) requestFields(p *pending, obj any) {
	ev := &p.ev
	switch x := obj.(type) {
	case *ua.WriteRequest:
		p.obj = x
		setCount(ev, len(x.NodesToWrite))
	case *ua.CallRequest:
		p.obj = x
		setCount(ev, len(x.MethodsToCall))
	case *ua.OpenSecureChannelRequest:
		if int(x.SecurityMode) < len(modeNames) {
			ev.SecurityMode = modeNames[x.SecurityMode]
		}
		ev.Lifetime, ev.Has = x.RequestedLifetime, ev.Has|plcwatch.FieldLifetime
		switch x.RequestType {
		case ua.SecurityTokenRequestTypeIssue:
			ev.TokenRequest = "Issue"
		case ua.SecurityTokenRequestTypeRenew:
			ev.TokenRequest = "Renew"
		}
	case *ua.CreateSessionRequest:
		ev.SessionName = clipString(x.SessionName, 512)
		ev.Endpoint = clipString(x.EndpointURL, 4096)
		if x.ClientDescription != nil {
			ev.Application = clipString(x.ClientDescription.ApplicationURI, 4096)
		}
	case *ua.ActivateSessionRequest:
		identify(ev, x.UserIdentityToken)
	case *ua.BrowseRequest:
		setCount(ev, len(x.NodesToBrowse))
		if len(x.NodesToBrowse) > 0 && x.NodesToBrowse[0] != nil {
			ev.Node = nodeText(x.NodesToBrowse[0].NodeID)
		}
	case *ua.BrowseNextRequest:
		setCount(ev, len(x.ContinuationPoints))
	case *ua.TranslateBrowsePathsToNodeIDsRequest:
		setCount(ev, len(x.BrowsePaths))
		if len(x.BrowsePaths) > 0 && x.BrowsePaths[0] != nil {
			ev.Node = nodeText(x.BrowsePaths[0].StartingNode)
		}
	case *ua.RegisterNodesRequest:
		setCount(ev, len(x.NodesToRegister))
		if len(x.NodesToRegister) > 0 {
			ev.Node = nodeText(x.NodesToRegister[0])
		}
	case *ua.UnregisterNodesRequest:
		setCount(ev, len(x.NodesToUnregister))
		if len(x.NodesToUnregister) > 0 {
			ev.Node = nodeText(x.NodesToUnregister[0])
		}
	case *ua.HistoryReadRequest:
		setCount(ev, len(x.NodesToRead))
		if len(x.NodesToRead) > 0 && x.NodesToRead[0] != nil {
			ev.Node = nodeText(x.NodesToRead[0].NodeID)
			ev.IndexRange = x.NodesToRead[0].IndexRange
		}
	case *ua.HistoryUpdateRequest:
		setCount(ev, len(x.HistoryUpdateDetails))
		if len(x.HistoryUpdateDetails) > 0 {
			ev.Node = detailsNode(x.HistoryUpdateDetails[0])
		}
	case *ua.AddNodesRequest:
		setCount(ev, len(x.NodesToAdd))
		if len(x.NodesToAdd) > 0 && x.NodesToAdd[0] != nil {
			ev.Node = expandedText(x.NodesToAdd[0].ParentNodeID)
		}
	case *ua.AddReferencesRequest:
		setCount(ev, len(x.ReferencesToAdd))
		if len(x.ReferencesToAdd) > 0 && x.ReferencesToAdd[0] != nil {
			ev.Node = nodeText(x.ReferencesToAdd[0].SourceNodeID)
		}
	case *ua.DeleteNodesRequest:
		setCount(ev, len(x.NodesToDelete))
		if len(x.NodesToDelete) > 0 && x.NodesToDelete[0] != nil {
			ev.Node = nodeText(x.NodesToDelete[0].NodeID)
		}
	case *ua.DeleteReferencesRequest:
		setCount(ev, len(x.ReferencesToDelete))
		if len(x.ReferencesToDelete) > 0 && x.ReferencesToDelete[0] != nil {
			ev.Node = nodeText(x.ReferencesToDelete[0].SourceNodeID)
		}
	case *ua.CreateMonitoredItemsRequest:
		setCount(ev, len(x.ItemsToCreate))
		if len(x.ItemsToCreate) > 0 && x.ItemsToCreate[0] != nil && x.ItemsToCreate[0].ItemToMonitor != nil {
			ev.Node = nodeText(x.ItemsToCreate[0].ItemToMonitor.NodeID)
			ev.Attribute = uint32(x.ItemsToCreate[0].ItemToMonitor.AttributeID)
		}
	case *ua.ModifyMonitoredItemsRequest:
		setCount(ev, len(x.ItemsToModify))
	case *ua.DeleteMonitoredItemsRequest:
		setCount(ev, len(x.MonitoredItemIDs))
	case *ua.SetMonitoringModeRequest:
		setCount(ev, len(x.MonitoredItemIDs))
	case *ua.DeleteSubscriptionsRequest:
		setCount(ev, len(x.SubscriptionIDs))
	case *ua.SetPublishingModeRequest:
		setCount(ev, len(x.SubscriptionIDs))
	case *ua.TransferSubscriptionsRequest:
		setCount(ev, len(x.SubscriptionIDs))
	case *ua.GetEndpointsRequest:
		ev.Endpoint = clipString(x.EndpointURL, 4096)
	case *ua.FindServersRequest:
		ev.Endpoint = clipString(x.EndpointURL, 4096)
	}
}

// identify reads an ActivateSession's user identity token (OPC 10000-4
// §7.40): its kind, the user name of a UserNameIdentityToken — never its
// password, clear or encrypted — and the thumbprint of an X.509 token's
// certificate. A null token is anonymous (§5.6.3.2).
func identify(ev *plcwatch.Event, tok *ua.ExtensionObject) {
	if tok == nil || tok.EncodingMask == ua.ExtensionObjectEmpty || tok.TypeID == nil || tok.TypeID.NodeID == nil {
		ev.Identity = "anonymous"
		return
	}
	switch x := tok.Value.(type) {
	case *ua.AnonymousIdentityToken:
		ev.Identity = "anonymous"
	case *ua.UserNameIdentityToken:
		ev.Identity = "username"
		ev.User = clipString(x.UserName, 256)
		// A password is encrypted with the algorithm the token names
		// (OPC 10000-4 §7.40.4); none, or policy None's, leaves it in
		// clear text for anyone on the path. Said, never shown.
		alg := x.EncryptionAlgorithm
		ev.PasswordClear = len(x.Password) > 0 && (alg == "" || strings.HasSuffix(alg, "#None"))
	case *ua.X509IdentityToken:
		ev.Identity = "certificate"
		ev.Thumbprint = thumbprint(x.CertificateData)
	case *ua.IssuedIdentityToken:
		ev.Identity = "issued"
	default:
		// A token gopcua has no type for (an XML body, another
		// namespace): named by its type id when that is a standard one.
		if tok.TypeID.NodeID.Namespace() == 0 {
			switch tok.TypeID.NodeID.IntID() {
			case idAnonymousToken:
				ev.Identity = "anonymous"
			case idUserNameToken:
				ev.Identity = "username"
			case idX509Token:
				ev.Identity = "certificate"
			case idIssuedToken:
				ev.Identity = "issued"
			}
		}
	}
}

// detailsNode is the NodeId a HistoryUpdateDetails structure (Update*,
// Delete* details, OPC 10000-11 §6.9) starts with.
func detailsNode(eo *ua.ExtensionObject) string {
	if eo == nil || eo.Value == nil {
		return ""
	}
	v := reflect.ValueOf(eo.Value)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().NumField() == 0 {
		return ""
	}
	if n, ok := v.Elem().Field(0).Interface().(*ua.NodeID); ok {
		return nodeText(n)
	}
	return ""
}

// responseFields takes from a decoded response what its request's events
// need, and what the connection learns from it: sessions created,
// identities accepted, channels opened.
func (c *Conn) responseFields(p *pending, ev *plcwatch.Event, ch *channel, obj any) {
	var result ua.StatusCode
	if h := responseHeader(obj); h != nil {
		result = h.ServiceResult
	}
	switch x := obj.(type) {
	case *ua.WriteResponse:
		if p != nil {
			p.resp = x
		}
		setFirstBad(ev, x.Results)
	case *ua.CallResponse:
		if p != nil {
			p.resp = x
		}
		for _, r := range x.Results {
			if r != nil && r.StatusCode != 0 && ev.Status == 0 {
				ev.Status, ev.StatusName = uint32(r.StatusCode), statusName(uint32(r.StatusCode))
			}
		}
	case *ua.OpenSecureChannelResponse:
		if t := x.SecurityToken; t != nil {
			ev.TokenID, ev.RevisedLifetime = t.TokenID, t.RevisedLifetime
			ev.Has |= plcwatch.FieldTokenID | plcwatch.FieldRevisedLifetime
		}
		if x.SecurityToken != nil && x.SecurityToken.ChannelID != 0 && p != nil && result == 0 {
			c.renameChannel(ch, x.SecurityToken.ChannelID, p.ev.SecurityMode)
		}
	case *ua.CreateSessionResponse:
		if p != nil && result == 0 && x.AuthenticationToken != nil {
			s := &c.sessions[c.addSession(nodeText(x.AuthenticationToken))]
			s.name = p.ev.SessionName
		}
	case *ua.ActivateSessionResponse:
		if p != nil && result == 0 && p.token != "" {
			s := &c.sessions[c.addSession(p.token)]
			s.identity, s.user = p.ev.Identity, p.ev.User
			setFirstBad(ev, x.Results)
		}
	case *ua.CloseSessionResponse:
		if p != nil && result == 0 && p.token != "" {
			if i := c.findSession(p.token); i >= 0 {
				c.sessions[i] = session{token: "closed"}
			}
		}
	default:
		firstBadResult(ev, obj)
	}
}

func responseHeader(obj any) *ua.ResponseHeader {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().NumField() == 0 {
		return nil
	}
	h, _ := v.Elem().Field(0).Interface().(*ua.ResponseHeader)
	return h
}

func setFirstBad(ev *plcwatch.Event, codes []ua.StatusCode) {
	for _, s := range codes {
		if s != 0 && ev.Status == 0 {
			ev.Status, ev.StatusName = uint32(s), statusName(uint32(s))
		}
	}
}

// firstBadResult looks in a response's Results (status codes, or results
// with a StatusCode) for the first that is not Good: a node-management or
// browse request whose service succeeded may still have been refused
// operation by operation (BadUserAccessDenied).
func firstBadResult(ev *plcwatch.Event, obj any) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	f := v.Elem().FieldByName("Results")
	if !f.IsValid() || f.Kind() != reflect.Slice {
		return
	}
	for i := 0; i < f.Len() && ev.Status == 0; i++ {
		e := f.Index(i)
		if e.Kind() == reflect.Pointer {
			if e.IsNil() {
				continue
			}
			e = e.Elem()
		}
		if e.Kind() == reflect.Struct {
			e = e.FieldByName("StatusCode")
		}
		if e.IsValid() && e.Kind() == reflect.Uint32 && e.Uint() != 0 {
			ev.Status = uint32(e.Uint())
			ev.StatusName = statusName(ev.Status)
		}
	}
}

// renameChannel gives the channel a client opened as channel 0 the id the
// server assigned.
func (c *Conn) renameChannel(ch *channel, id uint32, mode string) {
	if ch.id == id {
		return
	}
	if ch.id == 0 {
		ch.id = id
		if mode != "" {
			ch.mode = mode
		}
		return
	}
	n := c.channel(id)
	n.policy, n.sigLen, n.mode, n.opaque = ch.policy, ch.sigLen, ch.mode, ch.opaque
	if mode != "" {
		n.mode = mode
	}
}

// emitOperations emits one event per WriteValue or CallMethodRequest of a
// request, with its index and, once answered, its own result.
func (c *Conn) emitOperations(p *pending, stage plcwatch.Stage) {
	ev := &c.d.scratch
	switch req := p.obj.(type) {
	case *ua.WriteRequest:
		resp, _ := p.resp.(*ua.WriteResponse)
		for i, wv := range req.NodesToWrite {
			*ev = p.ev
			ev.Stage, ev.Index = stage, i
			ev.Has |= plcwatch.FieldIndex
			if wv != nil {
				ev.Node = nodeText(wv.NodeID)
				ev.Attribute = uint32(wv.AttributeID)
				ev.Has |= plcwatch.FieldAttribute
				ev.IndexRange = clipString(wv.IndexRange, 256)
				if wv.Value != nil {
					setVariant(ev, wv.Value.Value)
				}
			}
			ev.Status, ev.StatusName = 0, ""
			if resp != nil && i < len(resp.Results) {
				ev.Status, ev.StatusName = uint32(resp.Results[i]), statusName(uint32(resp.Results[i]))
			}
			c.operationStatus(ev, p)
			c.send(ev)
		}
		if len(req.NodesToWrite) == 0 {
			c.emitEmpty(p, stage)
		}
	case *ua.CallRequest:
		resp, _ := p.resp.(*ua.CallResponse)
		for i, cm := range req.MethodsToCall {
			*ev = p.ev
			ev.Stage, ev.Index = stage, i
			ev.Has |= plcwatch.FieldIndex
			if cm != nil {
				ev.Node = nodeText(cm.MethodID)
				ev.Object = nodeText(cm.ObjectID)
				setArguments(ev, cm.InputArguments)
			}
			ev.Status, ev.StatusName = 0, ""
			if resp != nil && i < len(resp.Results) && resp.Results[i] != nil {
				res := resp.Results[i]
				ev.Status, ev.StatusName = uint32(res.StatusCode), statusName(uint32(res.StatusCode))
				setOutputs(ev, res.OutputArguments)
				if len(res.InputArgumentResults) > 0 {
					ev.InputStatus = make([]uint32, len(res.InputArgumentResults))
					for j, s := range res.InputArgumentResults {
						ev.InputStatus[j] = uint32(s)
					}
				}
			}
			c.operationStatus(ev, p)
			c.send(ev)
		}
		if len(req.MethodsToCall) == 0 {
			c.emitEmpty(p, stage)
		}
	}
}

// operationStatus makes a failed service's result every operation's status:
// a ServiceFault or a Bad ServiceResult means no operation was done, and
// so does an Error or abort that ended the request.
func (c *Conn) operationStatus(ev *plcwatch.Event, p *pending) {
	switch {
	case isBad(p.result):
		ev.Status, ev.StatusName = p.result, statusName(p.result)
	case p.resp == nil && isBad(p.ev.Status):
		ev.Status, ev.StatusName = p.ev.Status, p.ev.StatusName
	}
}

// emitEmpty emits a Write or Call with no operations as one event.
func (c *Conn) emitEmpty(p *pending, stage plcwatch.Stage) {
	p.ev.Stage = stage
	c.send(&p.ev)
}

// setVariant puts a written value into the event: numbers and Booleans in
// value, arrays of them in values (up to plcwatch.MaxFloats), text-like
// values in text, and value_type the built-in type's name.
func setVariant(ev *plcwatch.Event, v *ua.Variant) {
	ev.Value = plcwatch.NoValue
	ev.Values.Reset()
	ev.Text = ""
	if v == nil {
		ev.ValueType = typeNames[vtNull]
		return
	}
	t := byte(v.Type())
	if int(t) < len(typeNames) {
		ev.ValueType = typeNames[t]
	}
	val := v.Value()
	if f, ok := scalarNumber(val); ok {
		ev.Value = f
		return
	}
	rv := reflect.ValueOf(val)
	if rv.Kind() == reflect.Slice && t != vtByteString {
		fs := make([]float64, 0, min(rv.Len(), plcwatch.MaxFloats))
		texts := make([]string, 0, 4)
		numeric := true
		for i := 0; i < rv.Len(); i++ {
			e := rv.Index(i).Interface()
			if f, ok := scalarNumber(e); ok && numeric {
				if len(fs) < plcwatch.MaxFloats {
					fs = append(fs, f)
				}
				continue
			}
			numeric = false
			if len(texts) < 64 {
				texts = append(texts, valueText(e))
			}
		}
		if numeric {
			ev.Values.SetFloats(fs)
			return
		}
		ev.Text = clipString(strings.Join(texts, ","), 1024)
		return
	}
	ev.Text = clipString(valueText(val), 1024)
}

// setArguments puts a method call's input arguments into the event: one
// argument as a variable's value (setVariant); more: all numbers (or
// Booleans), up to plcwatch.MaxFloats, in values, else the arguments as
// text, comma-separated. value_type lists their types.
func setArguments(ev *plcwatch.Event, args []*ua.Variant) {
	ev.Value = plcwatch.NoValue
	ev.Values.Reset()
	ev.Text = ""
	if len(args) == 0 {
		return
	}
	if len(args) == 1 {
		setVariant(ev, args[0])
		return
	}
	var fs []float64
	ev.ValueType, fs, ev.Text = summarise(args)
	if fs != nil {
		ev.Values.SetFloats(fs)
	}
}

// setOutputs puts a method's output arguments into the event as its
// input arguments are (setArguments), but even one output as a list: all
// numbers (or Booleans), up to plcwatch.MaxFloats, in response; else all
// of them as text, comma-separated, in output_text (an array argument in
// brackets); their types in output_type.
func setOutputs(ev *plcwatch.Event, args []*ua.Variant) {
	ev.Response.Reset()
	ev.OutputType, ev.OutputText = "", ""
	if len(args) == 0 {
		return
	}
	var fs []float64
	ev.OutputType, fs, ev.OutputText = summarise(args)
	if fs != nil {
		ev.Response.SetFloats(fs)
	}
}

// summarise is a list of method arguments as an event carries them: their
// type names, comma-separated ("Null" for a missing one); and either their
// numbers when every one is a scalar number (or Boolean, or StatusCode)
// and they are at most plcwatch.MaxFloats (text ""), or else their texts
// (valueText, numbers included), comma-separated, clipped at 1024 bytes
// (fs nil).
func summarise(args []*ua.Variant) (types string, fs []float64, text string) {
	names := make([]string, len(args))
	fs = make([]float64, 0, len(args))
	texts := make([]string, len(args))
	numeric := true
	for i, a := range args {
		if a == nil {
			names[i] = typeNames[vtNull]
			numeric = false
			continue
		}
		if int(a.Type()) < len(typeNames) {
			names[i] = typeNames[a.Type()]
		}
		val := a.Value()
		if f, ok := scalarNumber(val); ok {
			fs = append(fs, f)
		} else {
			numeric = false
		}
		texts[i] = valueText(val) // a number: as FormatFloat 'g' -1
	}
	types = strings.Join(names, ",")
	if numeric && len(fs) <= plcwatch.MaxFloats {
		return types, fs, ""
	}
	return types, nil, clipString(strings.Join(texts, ","), 1024)
}

// scalarNumber is a built-in scalar as a number: plcwatch.Number's types
// and a StatusCode (written as a value, it is its uint32).
func scalarNumber(v any) (float64, bool) {
	if sc, ok := v.(ua.StatusCode); ok {
		return float64(sc), true
	}
	return plcwatch.Number(v)
}

// valueText renders a non-numeric value: strings as they are, byte
// strings in base64 (as the OPC UA JSON encoding does), ids and names in
// their text forms, times in RFC 3339.
func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case ua.XMLElement:
		return string(x)
	case []byte:
		return base64.StdEncoding.EncodeToString(x[:min(len(x), 768)])
	case ua.ByteArray:
		return base64.StdEncoding.EncodeToString(x[:min(len(x), 768)])
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.UTC().Format(time.RFC3339Nano)
	case *ua.NodeID:
		return nodeText(x)
	case *ua.ExpandedNodeID:
		return expandedText(x)
	case *ua.QualifiedName:
		if x == nil {
			return ""
		}
		if x.NamespaceIndex != 0 {
			return strconv.Itoa(int(x.NamespaceIndex)) + ":" + x.Name
		}
		return x.Name
	case *ua.LocalizedText:
		if x == nil {
			return ""
		}
		return x.Text
	case *ua.GUID:
		if x == nil {
			return ""
		}
		return x.String()
	case *ua.ExtensionObject:
		if x == nil || x.TypeID == nil {
			return ""
		}
		return "ExtensionObject(" + expandedText(x.TypeID) + ")"
	case *ua.DataValue:
		if x == nil || x.Value == nil {
			return ""
		}
		return valueText(x.Value.Value())
	case *ua.Variant:
		if x == nil {
			return ""
		}
		return valueText(x.Value())
	case *ua.DiagnosticInfo:
		return "DiagnosticInfo"
	}
	if f, ok := scalarNumber(v); ok {
		if math.IsNaN(f) {
			return "NaN"
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice {
		parts := make([]string, 0, min(rv.Len(), 64))
		for i := 0; i < rv.Len() && i < 64; i++ {
			parts = append(parts, valueText(rv.Index(i).Interface()))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return ""
}
