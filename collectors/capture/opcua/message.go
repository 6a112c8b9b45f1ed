package opcua

import (
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// lookup finds what a message's type id names.
func (c *Conn) lookup(tid *nodeID) (msgType, bool) {
	if tid.kind > nodeNumeric || tid.ns != 0 || tid.nsURI != nil || tid.hasSrv {
		return msgType{}, false
	}
	mt, ok := c.d.services[tid.num]
	return mt, ok
}

// Lengths of the symmetric signatures a Sign channel ends its chunks with,
// tried when the capture did not see the channel open.
func isSigLen(n int) bool { return n == 20 || n == 32 || n == 48 || n == 64 }

// settle decides, from the first message of a channel whose security the
// capture did not see or could not read, whether its bodies are clear
// text: a message that decodes — exactly, or but for a signature's worth of
// bytes — says None or Sign; one that does not says SignAndEncrypt, and the
// channel's bodies are only counted from then on. It returns false when
// the message is ciphertext.
func (c *Conn) settle(ch *channel, ok bool, trailing int, info msgInfo) bool {
	if ch.mode != "" {
		return true
	}
	switch {
	case ok && trailing == 0 && ch.sigLen <= 0:
		ch.mode, ch.sigLen = "None", 0
		if ch.policy == "" {
			ch.policy = "None" // §6.7.1: mode None goes with policy None only
		}
	case ok && trailing == 0:
		ch.mode = "Sign"
	case ok && ch.sigLen < 0 && isSigLen(trailing) && !info.assembly:
		ch.mode, ch.sigLen = "Sign", trailing
	case info.assembly:
		// Chunks whose signatures could not be cut: no conclusion.
		c.d.Stats.Encrypted++
		return false
	default:
		ch.mode, ch.opaque = "SignAndEncrypt", true
		c.d.Stats.Encrypted++
		ch.msgs++
		ch.bytes += uint64(info.size)
		return false
	}
	return true
}

// message handles one complete message of a secure channel: a service
// request or response (or, from an OPN or CLO, the channel's own).
func (c *Conn) message(dir reassembly.Dir, ch *channel, kind uint32, reqID uint32, body []byte, m reassembly.Meta, info msgInfo) {
	if c.d.tap != nil {
		c.d.tap(dir, body)
	}
	r := reader{b: body}
	var tid nodeID
	r.nodeID(&tid, true)
	mt, known := c.lookup(&tid)
	if dir == reassembly.ClientToServer {
		c.requestMessage(ch, kind, reqID, body, r.off, &tid, mt, known, m, info)
	} else {
		c.responseMessage(ch, kind, reqID, body, r.off, &tid, mt, known, m, info)
	}
}

// reqHeader is what plcwatch reads of a RequestHeader (OPC 10000-4 §7.32).
type reqHeader struct {
	token   nodeID // AuthenticationToken: which session
	handle  uint32
	timeout uint32 // TimeoutHint, ms; 0 none
}

func (r *reader) requestHeader(h *reqHeader, cost *budget) {
	r.nodeID(&h.token, false)
	r.skip(8) // Timestamp
	h.handle = r.u32()
	r.u32()   // ReturnDiagnostics
	r.bytes() // AuditEntryId
	h.timeout = r.u32()
	r.extensionObject(1, cost) // AdditionalHeader
}

// respHeader is what plcwatch reads of a ResponseHeader (§7.33).
type respHeader struct {
	handle uint32
	result uint32 // ServiceResult
}

func (r *reader) responseHeader(h *respHeader, cost *budget) {
	r.skip(8) // Timestamp
	h.handle = r.u32()
	h.result = r.u32()
	r.diagnosticInfo(1)
	n := r.arrayLen(4) // StringTable
	for i := 0; i < n && r.ok(); i++ {
		r.bytes()
	}
	r.extensionObject(1, cost)
}

// requestMessage decodes a request, emits its StageRequest event(s) and
// keeps it until its response.
func (c *Conn) requestMessage(ch *channel, kind uint32, reqID uint32, body []byte, at int, tid *nodeID, mt msgType, known bool, m reassembly.Meta, info msgInfo) {
	p := c.newPending(m)
	p.reqID, p.channel, p.typ = reqID, ch.id, mt
	ev := &p.ev
	ev.RequestID = reqID
	ev.Absent &^= plcwatch.FieldRequestID
	var (
		consumed int
		ok       bool
		whole    bool // an event of its own: no response will come
	)
	switch {
	case tid.raw == nil:
		ev.Op, ev.Malformed = plcwatch.OpOther, errTypeID
	case !known || mt.svc == nil:
		ev.Op, ev.Service, ev.Malformed = plcwatch.OpOther, unknownName(tid), errServiceID
	case mt.response:
		// A response sent to the server: decoded, to tell clear text
		// from ciphertext, and reported once — nothing will answer it.
		whole = true
		_, consumed, ev.Malformed = c.d.decodeService(body, tid.num)
		ok = ev.Malformed == ""
		ev.Malformed = errNotRequest
		if mt.fault {
			ev.Op, ev.Service = plcwatch.OpOther, "ServiceFault"
		} else {
			ev.Op, ev.Service = mt.svc.op, mt.svc.respName
		}
	default:
		ev.Op, ev.Service = mt.svc.op, mt.svc.reqName
		r := reader{b: body, off: at}
		var h reqHeader
		cost := budget{max: maxCost(len(body))}
		r.requestHeader(&h, &cost)
		if r.ok() && h.token.raw != nil {
			p.token = c.d.nodes.text(&h.token)
			p.session = c.findSession(p.token)
		}
		if h.timeout > 0 {
			wait := min(time.Duration(h.timeout)*time.Millisecond, time.Hour)
			p.deadline = p.start.Add(max(c.d.cfg.ResponseTimeout, wait))
		}
		if info.cut {
			ev.Malformed = info.problem
			break
		}
		switch mt.svc.fast {
		case fastRead:
			consumed, ok = c.d.readRequest(&r, ev, &cost, nil)
		case fastPublish:
			consumed, ok = c.d.publishRequest(&r, ev, &cost)
			p.deadline = p.start.Add(max(c.d.cfg.PublishTimeout, p.deadline.Sub(p.start)))
		default:
			var obj any
			var why string
			obj, consumed, why = c.d.decodeService(body, tid.num)
			if ok = why == ""; ok {
				c.requestFields(p, obj)
			} else {
				ev.Malformed = why
			}
		}
		if !ok && ev.Malformed == "" {
			ev.Malformed = r.why
		}
	}
	if !c.settle(ch, ok, len(body)-consumed, info) {
		c.dropPending()
		return
	}
	if ok && consumed != len(body) && ev.Malformed == "" {
		ev.Malformed = errTrailing
	}
	if info.problem != "" && ev.Malformed == "" {
		ev.Malformed = info.problem
	}
	setChannel(ev, ch)
	if kind == typOPN {
		ev.Thumbprint = ch.thumbprint
	}
	if p.session >= 0 {
		s := &c.sessions[p.session]
		if ev.Identity == "" {
			ev.Identity, ev.User = s.identity, s.user
		}
		ev.SessionName = s.name
	}
	if whole || kind == typCLO || (mt.svc != nil && mt.svc.req == idCloseChannelReq) {
		// CloseSecureChannel has no response (§6.7.6): the request is
		// the whole story.
		c.d.Stats.Requests++
		p.ev.Stage = plcwatch.StageWhole
		c.send(&p.ev)
		c.dropPending()
		return
	}
	c.request(p)
}

// findPending finds the request a response with reqID on channel answers.
// An OPN request may have been sent on channel 0 (§6.7.4: a new channel's
// id is the server's to assign).
func (c *Conn) findPending(reqID, channel uint32) int {
	for i := range c.pending {
		p := &c.pending[i]
		if p.kind == pendService && p.reqID == reqID && (p.channel == channel || p.channel == 0) {
			return i
		}
	}
	return -1
}

// responseMessage decodes a response and emits the request it answers
// (StageResponse), or an orphan event.
func (c *Conn) responseMessage(ch *channel, kind uint32, reqID uint32, body []byte, at int, tid *nodeID, mt msgType, known bool, m reassembly.Meta, info msgInfo) {
	i := c.findPending(reqID, ch.id)
	var ev *plcwatch.Event
	var p *pending
	if i >= 0 {
		p = &c.pending[i]
		ev = &p.ev
	} else {
		ev = c.scratch(m)
		ev.RequestID = reqID
		ev.Absent &^= plcwatch.FieldRequestID
	}
	saved := *ev // the request's event, should the body turn out ciphertext
	var (
		consumed int
		ok       bool
		why      string
		h        respHeader
	)
	r := reader{b: body, off: at}
	cost := budget{max: maxCost(len(body))}
	switch {
	case tid.raw == nil:
		why = errTypeID
	case !known:
		why = errServiceID
		if p == nil {
			ev.Op, ev.Service = plcwatch.OpOther, unknownName(tid)
		}
	case !mt.response:
		// A request sent to the client: decoded, to tell clear text from
		// ciphertext, and reported as an orphan with what it is.
		if p != nil {
			saved = *ev
			p, i = nil, -1
			ev = c.scratch(m)
			ev.RequestID = reqID
			ev.Absent &^= plcwatch.FieldRequestID
		}
		_, consumed, why = c.d.decodeService(body, tid.num)
		ok = why == ""
		why = errNotResp
		ev.Op, ev.Service = mt.svc.op, mt.svc.reqName
	default:
		r.responseHeader(&h, &cost)
		if !r.ok() {
			why = r.why
			break
		}
		// The ServiceResult is known: status is on the wire from here,
		// Good included.
		ev.Absent &^= plcwatch.FieldStatus
		switch {
		case mt.fault:
			c.d.Stats.Faults++
			consumed, ok = r.off, true
			if p == nil {
				ev.Op, ev.Service = plcwatch.OpOther, "ServiceFault"
			}
		case info.cut:
			why = info.problem
		case p != nil && p.typ.svc != mt.svc:
			// Answered with another service's response: decode what
			// we can of it, and say so.
			_, consumed, why = c.d.decodeService(body, tid.num)
			ok = why == ""
			why = errMismatch
		case mt.svc.fast == fastRead:
			consumed, ok = c.d.readResponse(&r, ev, &cost, nil)
			why = r.why
		case mt.svc.fast == fastPublish:
			consumed, ok = c.d.publishResponse(&r, ev, &cost, nil)
			why = r.why
		default:
			var obj any
			obj, consumed, why = c.d.decodeService(body, tid.num)
			if ok = why == ""; ok {
				c.responseFields(p, ev, ch, obj)
			}
		}
		if p == nil && mt.svc != nil && !mt.fault {
			ev.Op, ev.Service = mt.svc.op, mt.svc.respName
		}
	}
	if !c.settle(ch, ok, len(body)-consumed, info) {
		*ev = saved
		return
	}
	c.d.Stats.Responses++
	if ok && consumed != len(body) && why == "" {
		why = errTrailing
	}
	if info.problem != "" && why == "" {
		why = info.problem
	}
	if why != "" && ev.Malformed == "" {
		ev.Malformed = "response: " + why
	}
	if h.result != 0 && (ev.Status == 0 || mt.fault || isBad(h.result)) {
		c.setStatus(ev, h.result)
	}
	if p != nil {
		p.result = h.result
	}
	if p == nil {
		setChannel(ev, ch)
		ev.Orphan = true
		c.d.Stats.Orphans++
		c.send(ev)
		return
	}
	if mt.svc != nil && mt.svc.req == idOpenChannelReq && mt.response && ok {
		setChannel(ev, ch)
	}
	c.answer(i, m)
}

func isBad(code uint32) bool { return code&0x80000000 != 0 }

// setStatus sets a status code and its name (OPC 10000-6 Annex A, as
// gopcua's ua.StatusCodes spells them). Good is "".
func (c *Conn) setStatus(ev *plcwatch.Event, code uint32) {
	ev.Status = code
	ev.Absent &^= plcwatch.FieldStatus
	ev.StatusName = statusName(code)
}

func statusName(code uint32) string {
	if code == 0 {
		return ""
	}
	names := loadStatusNames()
	if n, ok := names[code]; ok {
		return n
	}
	// The low 16 bits are flags (§7.39 of OPC 10000-4): name the code.
	return names[code&0xffff0000]
}

// loadStatusNames maps every status code gopcua knows to its name as the
// specification spells it (OPC 10000-6 Annex A): gopcua's Go names are
// prefixed with Status and capitalise initialisms (StatusBadNodeIDUnknown
// for BadNodeIdUnknown); rules and SOCs use the standard's names. Built
// once, read-only after.
var loadStatusNames = sync.OnceValue(func() map[uint32]string {
	fix := strings.NewReplacer("ID", "Id", "URI", "Uri", "URL", "Url", "TCP", "Tcp")
	m := make(map[uint32]string, len(ua.StatusCodes))
	for code, d := range ua.StatusCodes {
		m[uint32(code)] = fix.Replace(strings.TrimPrefix(d.Name, "Status"))
	}
	return m
})

// findSession returns the index of the session whose token has text tok,
// or -1.
func (c *Conn) findSession(tok string) int {
	for i := range c.sessions {
		if c.sessions[i].token == tok {
			return i
		}
	}
	return -1
}

// addSession records a session the server created (or one a request names
// that the capture did not see created), at most 16 per connection.
func (c *Conn) addSession(tok string) int {
	if i := c.findSession(tok); i >= 0 {
		return i
	}
	if len(c.sessions) >= 16 {
		copy(c.sessions, c.sessions[1:])
		c.sessions = c.sessions[:15]
		for i := range c.pending {
			if c.pending[i].session == 0 {
				c.pending[i].session = -1
			} else if c.pending[i].session > 0 {
				c.pending[i].session--
			}
		}
	}
	c.sessions = append(c.sessions, session{token: tok})
	return len(c.sessions) - 1
}

// emitStage emits the event(s) of pending request p at stage: one per
// operation for Write and Call, else one.
func (c *Conn) emitStage(p *pending, stage plcwatch.Stage) {
	if p.obj != nil {
		c.emitOperations(p, stage)
		return
	}
	p.ev.Stage = stage
	c.send(&p.ev)
}
