package opcua

import (
	"encoding/binary"
	"math"

	"github.com/plcwatch/plcwatch"
)

// The hot services, read by hand: ReadRequest/Response (OPC 10000-4
// §5.10.2) and PublishRequest/Response (§5.13.5). A polling client sends
// nothing else all day, so these neither allocate nor reflect; the
// differential fuzz test (FuzzFastAgreesWithGopcua) holds them to gopcua's
// reading of the same bytes. Each returns how many bytes the message took
// and whether it was well formed; r is positioned after the header.

// readValue is one ReadValueId of a ReadRequest, as read.
type readValue struct {
	node  nodeID
	attr  uint32
	rng   []byte // IndexRange
	encNS uint16 // DataEncoding
	enc   []byte
}

// readRequest reads MaxAge, TimestampsToReturn and NodesToRead. The event
// names the first node (and its attribute and index range) and counts them
// all; each, when not nil, sees every node (tests).
func (d *Dissector) readRequest(r *reader, ev *plcwatch.Event, cost *budget, each func(i int, v *readValue)) (int, bool) {
	r.skip(8) // MaxAge
	r.u32()   // TimestampsToReturn
	n := r.arrayLen(15)
	v := &d.rv
	for i := 0; i < n && r.ok(); i++ {
		r.nodeID(&v.node, false)
		v.attr = r.u32()
		v.rng = r.bytes()
		v.encNS = r.u16()
		v.enc = r.bytes()
		if !r.ok() {
			break
		}
		if i == 0 {
			ev.Node = d.nodes.text(&v.node)
			ev.Attribute = v.attr
			if v.rng != nil {
				ev.IndexRange = d.nodes.str(v.rng)
			}
		}
		if each != nil {
			each(i, v)
		}
	}
	setCount(ev, n)
	return r.off, r.ok()
}

func count16(n int) uint16 { return uint16(min(n, math.MaxUint16)) }

// setCount sets how many operations a message carries: on the wire, so
// shown even when 0 (an empty WriteRequest is worth seeing).
func setCount(ev *plcwatch.Event, n int) {
	ev.Count = count16(n)
	ev.Has |= plcwatch.FieldOperations
}

// readResponse reads Results and DiagnosticInfos. The event's status is the
// first result that is not Good; when the request read one node, the
// event carries the value read if it is a number or a Boolean.
func (d *Dissector) readResponse(r *reader, ev *plcwatch.Event, cost *budget, each func(i int, dv *dataValue)) (int, bool) {
	n := r.arrayLen(1)
	dv := &d.dv
	for i := 0; i < n && r.ok(); i++ {
		r.dataValue(1, dv, cost)
		if !r.ok() {
			break
		}
		if dv.status != 0 && ev.Status == 0 {
			ev.Status = dv.status
			ev.StatusName = statusName(dv.status)
		}
		if n == 1 {
			setScalar(ev, &dv.vh, dv.val)
		}
		if each != nil {
			each(i, dv)
		}
	}
	m := r.arrayLen(1)
	for i := 0; i < m && r.ok(); i++ {
		r.diagnosticInfo(1)
	}
	return r.off, r.ok()
}

// setScalar puts a numeric or Boolean scalar into the event's value.
func setScalar(ev *plcwatch.Event, h *variantHead, val []byte) {
	if h.array || val == nil {
		return
	}
	f, ok := number(h.typ, val)
	if !ok {
		return
	}
	ev.ValueType = typeNames[h.typ]
	ev.Value = f
}

// number reads a scalar of a numeric built-in type (Boolean as 0 or 1,
// StatusCode as its code).
func number(t byte, b []byte) (float64, bool) {
	switch t {
	case vtBoolean:
		if b[0] != 0 {
			return 1, true
		}
		return 0, true
	case vtSByte:
		return float64(int8(b[0])), true
	case vtByte:
		return float64(b[0]), true
	case vtInt16:
		return float64(int16(binary.LittleEndian.Uint16(b))), true
	case vtUInt16:
		return float64(binary.LittleEndian.Uint16(b)), true
	case vtInt32:
		return float64(int32(binary.LittleEndian.Uint32(b))), true
	case vtUInt32, vtStatusCode:
		return float64(binary.LittleEndian.Uint32(b)), true
	case vtInt64:
		return float64(int64(binary.LittleEndian.Uint64(b))), true
	case vtUInt64:
		return float64(binary.LittleEndian.Uint64(b)), true
	case vtFloat:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), true
	case vtDouble:
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), true
	}
	return 0, false
}

// publishRequest reads the SubscriptionAcknowledgements and counts them.
func (d *Dissector) publishRequest(r *reader, ev *plcwatch.Event, cost *budget) (int, bool) {
	n := r.arrayLen(8)
	r.skip(8 * n)
	setCount(ev, n)
	return r.off, r.ok()
}

// Notification encodings in a NotificationMessage (OPC 10000-4 §7.25).
const (
	idDataChangeNotification   = 811
	idEventNotificationList    = 916
	idStatusChangeNotification = 820
)

// publishStats is what publishResponse saw, for tests.
type publishStats struct {
	subscription uint32
	seq          uint32
	notes        int // NotificationData extension objects
	items        int // monitored item notifications and events in them
	results      int
}

// publishResponse reads a PublishResponse after its header: the
// subscription, the notification message and the acknowledgement results.
// The event counts the data changes and events it delivers; its status is
// a StatusChangeNotification's status or the first acknowledgement result
// that is not Good.
func (d *Dissector) publishResponse(r *reader, ev *plcwatch.Event, cost *budget, st *publishStats) (int, bool) {
	var s publishStats
	s.subscription = r.u32()
	n := r.arrayLen(4) // AvailableSequenceNumbers
	r.skip(4 * n)
	r.u8() // MoreNotifications
	s.seq = r.u32()
	r.skip(8) // PublishTime
	s.notes = r.arrayLen(2)
	for i := 0; i < s.notes && r.ok(); i++ {
		tid, enc, body := r.extensionObject(1, cost)
		if !r.ok() || enc == 2 || tid.kind > nodeNumeric || tid.ns != 0 || body == nil {
			continue // XML bodies gopcua does not decode either
		}
		b := reader{b: body}
		switch tid.num {
		case idDataChangeNotification, idEventNotificationList:
			// Both start with the array of what they deliver; the schema
			// walk of extensionObject has validated the body already.
			s.items += b.arrayLen(1)
		case idStatusChangeNotification:
			if code := b.u32(); code != 0 && ev.Status == 0 {
				ev.Status, ev.StatusName = code, statusName(code)
			}
		}
	}
	s.results = r.arrayLen(4)
	for i := 0; i < s.results && r.ok(); i++ {
		if code := r.u32(); code != 0 && ev.Status == 0 {
			ev.Status, ev.StatusName = code, statusName(code)
		}
	}
	m := r.arrayLen(1)
	for i := 0; i < m && r.ok(); i++ {
		r.diagnosticInfo(1)
	}
	setCount(ev, s.items)
	if st != nil {
		*st = s
	}
	return r.off, r.ok()
}
