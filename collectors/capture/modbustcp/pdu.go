package modbustcp

import (
	"encoding/binary"

	"github.com/plcwatch/plcwatch"
)

// Reasons an ADU is malformed. They are constants so that a flood of bad
// traffic costs no allocation; the numbers are in the event's other fields.
const (
	BadProtocolID       = "MBAP protocol id is not 0"
	BadMBAPLength       = "MBAP length outside 2..254"
	Truncated           = "PDU shorter than its function needs"
	TrailingBytes       = "PDU longer than its function needs"
	IllegalQuantity     = "quantity outside the function's range"
	ByteCountQuantity   = "byte count disagrees with quantity"
	ByteCountLength     = "byte count disagrees with PDU length"
	IllegalCoilValue    = "coil value neither 0xFF00 nor 0x0000"
	BadReferenceType    = "file record reference type is not 6"
	BadDeviceIDCode     = "read device id code outside 1..4"
	RespTruncated       = "response: PDU shorter than its function needs"
	RespTrailingBytes   = "response: PDU longer than its function needs"
	RespByteCountQty    = "response: byte count disagrees with quantity"
	RespByteCountLength = "response: byte count disagrees with PDU length"
	RespBadProtocolID   = "response: MBAP protocol id is not 0"
	RespBadMBAPLength   = "response: MBAP length outside 2..254"
	RespDeviceIDObjects = "response: device identification objects overrun the PDU"
)

// Maximum quantities per request (specification section 6).
const (
	maxReadBits       = 2000
	maxReadRegisters  = 125
	maxWriteBits      = 1968
	maxWriteRegisters = 123
	maxRWWrite        = 121
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// DecodeRequest fills ev's Modbus fields from a request PDU (function code
// first). ev's Malformed says what is wrong when the PDU is not well formed;
// whatever could be decoded is kept. It never allocates.
func DecodeRequest(ev *plcwatch.Event, pdu []byte) {
	if len(pdu) == 0 {
		ev.Op = plcwatch.OpOther
		ev.Malformed = Truncated
		return
	}
	fc := pdu[0]
	body := pdu[1:]
	ev.Function = fc
	ev.Op = OpOf(fc)
	ev.Table = TableOf(fc)
	switch fc {
	case ReadCoils, ReadDiscreteInputs, ReadHoldingRegisters, ReadInputRegisters:
		if !need(ev, body, 4, Truncated) {
			return
		}
		ev.Address, ev.Count = be16(body), be16(body[2:])
		limit := uint16(maxReadRegisters)
		if fc <= ReadDiscreteInputs {
			limit = maxReadBits
		}
		checkQuantity(ev, ev.Count, limit)
		exact(ev, body, 4, TrailingBytes)
	case WriteSingleCoil:
		if !need(ev, body, 4, Truncated) {
			return
		}
		ev.Address, ev.Count = be16(body), 1
		v := be16(body[2:])
		ev.Values.SetBit(v == 0xFF00)
		if v != 0xFF00 && v != 0 {
			ev.Malformed = IllegalCoilValue
		}
		exact(ev, body, 4, TrailingBytes)
	case WriteSingleRegister:
		if !need(ev, body, 4, Truncated) {
			return
		}
		ev.Address, ev.Count = be16(body), 1
		ev.Values.SetWord(be16(body[2:]))
		exact(ev, body, 4, TrailingBytes)
	case ReadExceptionStatus, GetCommEventCounter, GetCommEventLog, ReportServerID:
		exact(ev, body, 0, TrailingBytes)
	case Diagnostics:
		if !need(ev, body, 2, Truncated) {
			return
		}
		ev.SubFunction, ev.HasSub = be16(body), true
		ev.Values.SetWords(body[2:])
		if len(body)%2 != 0 {
			ev.Malformed = TrailingBytes
		}
	case WriteMultipleCoils, WriteMultipleRegisters:
		if !need(ev, body, 5, Truncated) {
			return
		}
		ev.Address, ev.Count = be16(body), be16(body[2:])
		bc := int(body[4])
		data := body[5:]
		want := int(ev.Count) * 2
		limit := uint16(maxWriteRegisters)
		if fc == WriteMultipleCoils {
			want = (int(ev.Count) + 7) / 8
			limit = maxWriteBits
		}
		if fc == WriteMultipleCoils {
			ev.Values.SetBits(data, int(ev.Count))
		} else {
			ev.Values.SetWords(data[:min(len(data), want)])
		}
		checkQuantity(ev, ev.Count, limit)
		switch {
		case ev.Malformed != "":
		case bc != want:
			ev.Malformed = ByteCountQuantity
		case len(data) < bc:
			ev.Malformed = Truncated
		case len(data) > bc:
			ev.Malformed = TrailingBytes
		}
	case ReadFileRecord:
		if !need(ev, body, 1, Truncated) {
			return
		}
		bc := int(body[0])
		subs := body[1:]
		if len(subs) >= 7 {
			ev.File, ev.Address, ev.Count = be16(subs[1:]), be16(subs[3:]), be16(subs[5:])
		}
		switch {
		case bc != len(subs):
			ev.Malformed = ByteCountLength
		case bc < 7 || bc > 0xF5 || bc%7 != 0:
			ev.Malformed = ByteCountLength
		default:
			for i := 0; i < len(subs); i += 7 {
				if subs[i] != 6 {
					ev.Malformed = BadReferenceType
					break
				}
			}
		}
	case WriteFileRecord:
		if !need(ev, body, 1, Truncated) {
			return
		}
		bc := int(body[0])
		subs := body[1:]
		if bc != len(subs) {
			ev.Malformed = ByteCountLength
		}
		if len(subs) < 7 {
			ev.Malformed = Truncated
			return
		}
		if subs[0] != 6 {
			ev.Malformed = BadReferenceType
		}
		ev.File, ev.Address, ev.Count = be16(subs[1:]), be16(subs[3:]), be16(subs[5:])
		data := subs[7:]
		n := 2 * int(ev.Count)
		if n > len(data) {
			n = len(data)
			if ev.Malformed == "" {
				ev.Malformed = Truncated
			}
		}
		ev.Values.SetWords(data[:n])
	case MaskWriteRegister:
		if !need(ev, body, 6, Truncated) {
			return
		}
		ev.Address, ev.Count = be16(body), 1
		ev.AndMask, ev.OrMask = be16(body[2:]), be16(body[4:])
		exact(ev, body, 6, TrailingBytes)
	case ReadWriteMultipleRegisters:
		if len(body) >= 4 {
			ev.ReadAddress, ev.ReadCount = be16(body), be16(body[2:])
		}
		if !need(ev, body, 9, Truncated) {
			return
		}
		ev.Address, ev.Count = be16(body[4:]), be16(body[6:])
		bc := int(body[8])
		data := body[9:]
		ev.Values.SetWords(data[:min(len(data), 2*int(ev.Count))])
		checkQuantity(ev, ev.ReadCount, maxReadRegisters)
		checkQuantity(ev, ev.Count, maxRWWrite)
		switch {
		case ev.Malformed != "":
		case bc != 2*int(ev.Count):
			ev.Malformed = ByteCountQuantity
		case len(data) < bc:
			ev.Malformed = Truncated
		case len(data) > bc:
			ev.Malformed = TrailingBytes
		}
	case ReadFIFOQueue:
		if !need(ev, body, 2, Truncated) {
			return
		}
		ev.Address = be16(body)
		exact(ev, body, 2, TrailingBytes)
	case EncapsulatedInterface:
		if !need(ev, body, 1, Truncated) {
			return
		}
		ev.SubFunction, ev.HasSub = uint16(body[0]), true
		switch body[0] {
		case MEIDeviceIdent:
			ev.Op = plcwatch.OpIdentify
			if !need(ev, body, 3, Truncated) {
				return
			}
			// Read device id code and object id: what the client asks for.
			ev.Values.SetBytes(body[1:3])
			if body[1] < 1 || body[1] > 4 {
				ev.Malformed = BadDeviceIDCode
			}
			exact(ev, body, 3, TrailingBytes)
		default:
			ev.Values.SetBytes(body[1:])
		}
	default:
		// Unknown, reserved and user-defined codes: kept whole so an
		// analyst (or a rule) can see what was sent.
		ev.Values.SetBytes(body)
	}
}

// DecodeResponse fills ev — the request's event — with what its response
// PDU says: exception, read values, identification objects. A response that
// is not well formed sets Malformed (prefixed "response:") unless the
// request already was.
func DecodeResponse(ev *plcwatch.Event, pdu []byte) {
	if len(pdu) == 0 {
		respMalformed(ev, RespTruncated)
		return
	}
	fc := pdu[0]
	body := pdu[1:]
	if fc&0x80 != 0 {
		if len(body) < 1 {
			respMalformed(ev, RespTruncated)
			return
		}
		ev.Exception = body[0]
		if len(body) > 1 {
			respMalformed(ev, RespTrailingBytes)
		}
		return
	}
	switch fc {
	case ReadCoils, ReadDiscreteInputs:
		data, ok := byteCounted(ev, body)
		if !ok {
			return
		}
		n := int(ev.Count)
		if ev.Orphan {
			n = 8 * len(data)
		} else if len(data) != (n+7)/8 {
			respMalformed(ev, RespByteCountQty)
		}
		ev.Response.SetBits(data, n)
	case ReadHoldingRegisters, ReadInputRegisters, ReadWriteMultipleRegisters:
		data, ok := byteCounted(ev, body)
		if !ok {
			return
		}
		want := ev.Count
		if fc == ReadWriteMultipleRegisters {
			want = ev.ReadCount
		}
		if !ev.Orphan && len(data) != 2*int(want) {
			respMalformed(ev, RespByteCountQty)
		} else if len(data)%2 != 0 {
			respMalformed(ev, RespByteCountLength)
		}
		ev.Response.SetWords(data)
	case WriteSingleCoil, WriteSingleRegister, WriteMultipleCoils, WriteMultipleRegisters:
		if ev.Orphan && len(body) >= 4 {
			ev.Address = be16(body)
			switch fc {
			case WriteSingleCoil:
				ev.Count = 1
				ev.Values.SetBit(be16(body[2:]) == 0xFF00)
			case WriteSingleRegister:
				ev.Count = 1
				ev.Values.SetWord(be16(body[2:]))
			default:
				ev.Count = be16(body[2:])
			}
		}
		respExact(ev, body, 4)
	case MaskWriteRegister:
		if ev.Orphan && len(body) >= 6 {
			ev.Address, ev.Count = be16(body), 1
			ev.AndMask, ev.OrMask = be16(body[2:]), be16(body[4:])
		}
		respExact(ev, body, 6)
	case ReadExceptionStatus:
		if respExact(ev, body, 1) {
			ev.Response.SetBytes(body)
		}
	case Diagnostics:
		if len(body) < 2 {
			respMalformed(ev, RespTruncated)
			return
		}
		if ev.Orphan {
			ev.SubFunction, ev.HasSub = be16(body), true
		}
		ev.Response.SetWords(body[2:])
	case GetCommEventCounter:
		if respExact(ev, body, 4) {
			ev.Response.SetWords(body)
		}
	case GetCommEventLog, ReportServerID:
		if data, ok := byteCounted(ev, body); ok {
			ev.Response.SetBytes(data)
		}
	case ReadFileRecord:
		data, ok := byteCounted(ev, body)
		if !ok {
			return
		}
		// Sub-responses: length, reference type, record data. The event
		// keeps the first one's registers, as it names the first request.
		if len(data) < 2 || int(data[0]) < 1 || int(data[0])+1 > len(data) {
			respMalformed(ev, RespTruncated)
			return
		}
		ev.Response.SetWords(data[2 : 1+int(data[0])])
	case WriteFileRecord:
		// An echo of the request.
		if _, ok := byteCounted(ev, body); !ok {
			return
		}
	case ReadFIFOQueue:
		if len(body) < 4 {
			respMalformed(ev, RespTruncated)
			return
		}
		bc, n := int(be16(body)), int(be16(body[2:]))
		data := body[4:]
		ev.Count = uint16(n)
		switch {
		case bc != len(body)-2:
			respMalformed(ev, RespByteCountLength)
		case bc != 2+2*n || n > 31:
			respMalformed(ev, RespByteCountQty)
		}
		ev.Response.SetWords(data)
	case EncapsulatedInterface:
		if len(body) < 1 {
			respMalformed(ev, RespTruncated)
			return
		}
		if ev.Orphan {
			ev.SubFunction, ev.HasSub = uint16(body[0]), true
			if body[0] == MEIDeviceIdent {
				ev.Op = plcwatch.OpIdentify
			}
		}
		if body[0] != MEIDeviceIdent {
			ev.Response.SetBytes(body[1:])
			return
		}
		decodeDeviceID(ev, body[1:])
	default:
		ev.Response.SetBytes(body)
	}
}

// decodeDeviceID reads a Read Device Identification response: read device id
// code, conformity level, more follows, next object id, number of objects,
// then each object as id, length, value. The object values are the one
// allocation the dissector makes, and only for this rare function.
func decodeDeviceID(ev *plcwatch.Event, b []byte) {
	if len(b) < 5 {
		respMalformed(ev, RespTruncated)
		return
	}
	n := int(b[4])
	objs := b[5:]
	ev.Objects = make([]plcwatch.DeviceObject, 0, min(n, 16))
	for i := 0; i < n; i++ {
		if len(objs) < 2 || int(objs[1])+2 > len(objs) {
			respMalformed(ev, RespDeviceIDObjects)
			return
		}
		l := int(objs[1])
		ev.Objects = append(ev.Objects, plcwatch.DeviceObject{ID: objs[0], Value: string(objs[2 : 2+l])})
		objs = objs[2+l:]
	}
	if len(objs) > 0 {
		respMalformed(ev, RespTrailingBytes)
	}
}

// byteCounted returns the data of a response that starts with a one-byte
// byte count, checking the count against the PDU.
func byteCounted(ev *plcwatch.Event, body []byte) ([]byte, bool) {
	if len(body) < 1 {
		respMalformed(ev, RespTruncated)
		return nil, false
	}
	data := body[1:]
	if bc := int(body[0]); bc != len(data) {
		respMalformed(ev, RespByteCountLength)
		if bc < len(data) {
			data = data[:bc]
		}
	}
	return data, true
}

func need(ev *plcwatch.Event, body []byte, n int, why string) bool {
	if len(body) < n {
		ev.Malformed = why
		return false
	}
	return true
}

func exact(ev *plcwatch.Event, body []byte, n int, why string) {
	if len(body) > n && ev.Malformed == "" {
		ev.Malformed = why
	}
}

func respExact(ev *plcwatch.Event, body []byte, n int) bool {
	switch {
	case len(body) < n:
		respMalformed(ev, RespTruncated)
		return false
	case len(body) > n:
		respMalformed(ev, RespTrailingBytes)
	}
	return true
}

func checkQuantity(ev *plcwatch.Event, q, limit uint16) {
	if (q == 0 || q > limit) && ev.Malformed == "" {
		ev.Malformed = IllegalQuantity
	}
}

// respMalformed records a problem with the response unless the request
// already had one: the first problem is the one worth reading.
func respMalformed(ev *plcwatch.Event, why string) {
	if ev.Malformed == "" {
		ev.Malformed = why
	}
}
