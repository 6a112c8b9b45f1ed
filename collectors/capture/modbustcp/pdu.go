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
	// RespExceptionNoCode is an exception response (function code with the
	// 0x80 bit) that ends before its exception code, RespExceptionZero one
	// whose code is 0, which is no exception code. Either way the event's
	// Function keeps the 0x80 bit: Exception cannot say "an exception, code
	// unknown", and the event must not read as a normal answer (issue 9).
	RespExceptionNoCode = "response: exception code missing"
	RespExceptionZero   = "response: exception code 0"
)

// A PDU cut short: the reason names the first field that is not all there.
// Every field before it is in the event as it was on the wire, and lists
// (values, record data, sub-requests) keep their complete items (issue 9).
// Each starts with Truncated (RespTruncated for responses).
const (
	MissingAddress       = Truncated + ": address missing"
	MissingQuantity      = Truncated + ": quantity missing"
	MissingOutputValue   = Truncated + ": output value missing"
	MissingRegisterValue = Truncated + ": register value missing"
	MissingByteCount     = Truncated + ": byte count missing"
	ValuesCutShort       = Truncated + ": values cut short"
	MissingSubFunction   = Truncated + ": sub-function missing"
	MissingData          = Truncated + ": data missing"
	DataCutShort         = Truncated + ": data cut short"
	MissingAndMask       = Truncated + ": AND mask missing"
	MissingOrMask        = Truncated + ": OR mask missing"
	MissingReadAddress   = Truncated + ": read address missing"
	MissingReadQuantity  = Truncated + ": read quantity missing"
	MissingWriteAddress  = Truncated + ": write address missing"
	MissingWriteQuantity = Truncated + ": write quantity missing"
	MissingReferenceType = Truncated + ": reference type missing"
	MissingFileNumber    = Truncated + ": file number missing"
	MissingRecordNumber  = Truncated + ": record number missing"
	MissingRecordLength  = Truncated + ": record length missing"
	RecordDataCutShort   = Truncated + ": record data cut short"
	SubRequestCutShort   = Truncated + ": sub-request cut short"
	MissingMEIType       = Truncated + ": MEI type missing"
	MissingDeviceIDCode  = Truncated + ": read device id code missing"
	MissingObjectID      = Truncated + ": object id missing"

	RespMissingByteCount     = RespTruncated + ": byte count missing"
	RespValuesCutShort       = RespTruncated + ": values cut short"
	RespMissingAddress       = RespTruncated + ": address missing"
	RespMissingQuantity      = RespTruncated + ": quantity missing"
	RespMissingOutputValue   = RespTruncated + ": output value missing"
	RespMissingRegisterValue = RespTruncated + ": register value missing"
	RespMissingAndMask       = RespTruncated + ": AND mask missing"
	RespMissingOrMask        = RespTruncated + ": OR mask missing"
	RespMissingSubFunction   = RespTruncated + ": sub-function missing"
	RespMissingData          = RespTruncated + ": data missing"
	RespDataCutShort         = RespTruncated + ": data cut short"
	RespMissingFIFOCount     = RespTruncated + ": FIFO count missing"
	RespMissingMEIType       = RespTruncated + ": MEI type missing"
	RespMissingDeviceIDHead  = RespTruncated + ": device identification header missing"
	RespSubResponseCutShort  = RespTruncated + ": sub-response cut short"
)

// Maximum quantities per request (specification section 6).
const (
	maxReadBits       = 2000
	maxReadRegisters  = 125
	maxWriteBits      = 1968
	maxWriteRegisters = 123
	maxRWWrite        = 121
	maxFIFOCount      = 31
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// fields reads a PDU's fields in the order the specification lays them
// out. When the PDU ends inside a field, Malformed names that field (unless
// an earlier problem was found first) and every later read fails: what came
// before the cut stays in the event.
type fields struct {
	ev  *plcwatch.Event
	b   []byte
	cut bool
}

func (f *fields) stop(why string) bool {
	if !f.cut {
		f.cut = true
		setMalformed(f.ev, why)
	}
	return false
}

func (f *fields) u8(dst *uint8, why string) bool {
	if f.cut || len(f.b) < 1 {
		return f.stop(why)
	}
	*dst, f.b = f.b[0], f.b[1:]
	return true
}

func (f *fields) u16(dst *uint16, why string) bool {
	if f.cut || len(f.b) < 2 {
		return f.stop(why)
	}
	*dst, f.b = be16(f.b), f.b[2:]
	f.ev.Absent &^= fieldOf(f.ev, dst)
	return true
}

// requestFields are the numbers of a request that DecodeRequest marks
// absent until it reads them: a truncated request shows no address,
// count or mask it did not carry (issue 11 review).
const requestFields = plcwatch.FieldAddress | plcwatch.FieldCount | plcwatch.FieldReadAddress |
	plcwatch.FieldReadCount | plcwatch.FieldAndMask | plcwatch.FieldOrMask | plcwatch.FieldFile

// fieldOf names the Event field dst points to, for Event.Absent.
func fieldOf(ev *plcwatch.Event, dst *uint16) plcwatch.Fields {
	switch dst {
	case &ev.Address:
		return plcwatch.FieldAddress
	case &ev.Count:
		return plcwatch.FieldCount
	case &ev.ReadAddress:
		return plcwatch.FieldReadAddress
	case &ev.ReadCount:
		return plcwatch.FieldReadCount
	case &ev.AndMask:
		return plcwatch.FieldAndMask
	case &ev.OrMask:
		return plcwatch.FieldOrMask
	case &ev.File:
		return plcwatch.FieldFile
	}
	return 0
}

// take returns the next n bytes, or what is left when fewer, and whether
// all n were there.
func (f *fields) take(n int) ([]byte, bool) {
	if n > len(f.b) {
		b := f.b
		f.b = nil
		return b, false
	}
	b := f.b[:n]
	f.b = f.b[n:]
	return b, true
}

// end flags bytes left over after the last field.
func (f *fields) end(why string) {
	if !f.cut && len(f.b) > 0 {
		setMalformed(f.ev, why)
	}
}

// DecodeRequest fills ev's Modbus fields from a request PDU (function code
// first). ev's Malformed says what is wrong when the PDU is not well formed;
// every field that was on the wire is kept, up to where the PDU ends. It
// never allocates.
func DecodeRequest(ev *plcwatch.Event, pdu []byte) {
	if len(pdu) == 0 {
		ev.Op = plcwatch.OpOther
		ev.Malformed = Truncated
		ev.Absent |= plcwatch.FieldFunction | requestFields
		return
	}
	fc := pdu[0]
	ev.Function = fc
	ev.Op = OpOf(fc)
	ev.Table = TableOf(fc)
	ev.Absent |= requestFields
	f := fields{ev: ev, b: pdu[1:]}
	switch fc {
	case ReadCoils, ReadDiscreteInputs, ReadHoldingRegisters, ReadInputRegisters:
		if !f.u16(&ev.Address, MissingAddress) || !f.u16(&ev.Count, MissingQuantity) {
			return
		}
		limit := uint16(maxReadRegisters)
		if fc <= ReadDiscreteInputs {
			limit = maxReadBits
		}
		checkQuantity(ev, ev.Count, limit)
		f.end(TrailingBytes)
	case WriteSingleCoil:
		ev.Count = 1 // implied by the function
		ev.Absent &^= plcwatch.FieldCount
		var v uint16
		if !f.u16(&ev.Address, MissingAddress) || !f.u16(&v, MissingOutputValue) {
			return
		}
		ev.Values.SetBit(v == 0xFF00)
		if v != 0xFF00 && v != 0 {
			ev.Malformed = IllegalCoilValue
		}
		f.end(TrailingBytes)
	case WriteSingleRegister:
		ev.Count = 1
		ev.Absent &^= plcwatch.FieldCount
		var v uint16
		if !f.u16(&ev.Address, MissingAddress) || !f.u16(&v, MissingRegisterValue) {
			return
		}
		ev.Values.SetWord(v)
		f.end(TrailingBytes)
	case ReadExceptionStatus, GetCommEventCounter, GetCommEventLog, ReportServerID:
		f.end(TrailingBytes)
	case Diagnostics:
		if !f.u16(&ev.SubFunction, MissingSubFunction) {
			return
		}
		ev.HasSub = true
		// Every sub-function carries data: N words for Return Query Data,
		// one for each other the specification defines (6.8.1); reserved
		// ones, who knows.
		data := f.b
		ev.Values.SetWords(data)
		switch {
		case len(data) == 0:
			ev.Malformed = MissingData
		case len(data)%2 != 0:
			ev.Malformed = DataCutShort
		case len(data) > 2 && OneWordDiagnostic(ev.SubFunction):
			ev.Malformed = TrailingBytes
		}
	case WriteMultipleCoils, WriteMultipleRegisters:
		var bc uint8
		if !f.u16(&ev.Address, MissingAddress) || !f.u16(&ev.Count, MissingQuantity) || !f.u8(&bc, MissingByteCount) {
			return
		}
		data := f.b
		want := int(ev.Count) * 2
		limit := uint16(maxWriteRegisters)
		if fc == WriteMultipleCoils {
			want = (int(ev.Count) + 7) / 8
			limit = maxWriteBits
			ev.Values.SetBits(data, int(ev.Count))
		} else {
			ev.Values.SetWords(data[:min(len(data), want)])
		}
		checkQuantity(ev, ev.Count, limit)
		byteCounted(ev, int(bc), want, len(data), ValuesCutShort, ByteCountQuantity, TrailingBytes)
	case ReadFileRecord:
		var bc, ref uint8
		if !f.u8(&bc, MissingByteCount) {
			return
		}
		cut := len(f.b) < int(bc)
		// The event names the first sub-request: reference type, file,
		// record number, record length.
		if !f.u8(&ref, MissingReferenceType) || !f.u16(&ev.File, MissingFileNumber) ||
			!f.u16(&ev.Address, MissingRecordNumber) || !f.u16(&ev.Count, MissingRecordLength) {
			return
		}
		subs := f.b
		switch {
		case cut:
			ev.Malformed = SubRequestCutShort
		case int(bc) != 7+len(subs):
			ev.Malformed = ByteCountLength
		case bc > 0xF5 || bc%7 != 0:
			ev.Malformed = ByteCountLength
		}
		if ref != 6 {
			setMalformed(ev, BadReferenceType)
		}
		for i := 0; i+7 <= len(subs); i += 7 {
			if subs[i] != 6 {
				setMalformed(ev, BadReferenceType)
			}
		}
	case WriteFileRecord:
		var bc, ref uint8
		if !f.u8(&bc, MissingByteCount) {
			return
		}
		cut := len(f.b) < int(bc)
		after := len(f.b)
		if !f.u8(&ref, MissingReferenceType) || !f.u16(&ev.File, MissingFileNumber) ||
			!f.u16(&ev.Address, MissingRecordNumber) || !f.u16(&ev.Count, MissingRecordLength) {
			return
		}
		data, whole := f.take(2 * int(ev.Count))
		ev.Values.SetWords(data)
		switch {
		case !whole:
			ev.Malformed = RecordDataCutShort
		case cut:
			ev.Malformed = SubRequestCutShort
		case int(bc) != after:
			ev.Malformed = ByteCountLength
		}
		if ref != 6 {
			setMalformed(ev, BadReferenceType)
		}
	case MaskWriteRegister:
		ev.Count = 1
		ev.Absent &^= plcwatch.FieldCount
		if !f.u16(&ev.Address, MissingAddress) || !f.u16(&ev.AndMask, MissingAndMask) || !f.u16(&ev.OrMask, MissingOrMask) {
			return
		}
		f.end(TrailingBytes)
	case ReadWriteMultipleRegisters:
		var bc uint8
		if !f.u16(&ev.ReadAddress, MissingReadAddress) || !f.u16(&ev.ReadCount, MissingReadQuantity) ||
			!f.u16(&ev.Address, MissingWriteAddress) || !f.u16(&ev.Count, MissingWriteQuantity) ||
			!f.u8(&bc, MissingByteCount) {
			return
		}
		data := f.b
		want := 2 * int(ev.Count)
		ev.Values.SetWords(data[:min(len(data), want)])
		checkQuantity(ev, ev.ReadCount, maxReadRegisters)
		checkQuantity(ev, ev.Count, maxRWWrite)
		byteCounted(ev, int(bc), want, len(data), ValuesCutShort, ByteCountQuantity, TrailingBytes)
	case ReadFIFOQueue:
		if !f.u16(&ev.Address, MissingAddress) {
			return
		}
		f.end(TrailingBytes)
	case EncapsulatedInterface:
		var mei uint8
		if !f.u8(&mei, MissingMEIType) {
			return
		}
		ev.SubFunction, ev.HasSub = uint16(mei), true
		if mei != MEIDeviceIdent {
			ev.Values.SetBytes(f.b)
			return
		}
		ev.Op = plcwatch.OpIdentify
		// Read device id code and object id: what the client asks for.
		ev.Values.SetBytes(f.b[:min(len(f.b), 2)])
		var code, obj uint8
		if !f.u8(&code, MissingDeviceIDCode) || !f.u8(&obj, MissingObjectID) {
			return
		}
		if code < 1 || code > 4 {
			ev.Malformed = BadDeviceIDCode
		}
		f.end(TrailingBytes)
	default:
		// Unknown, reserved and user-defined codes: kept whole so an
		// analyst (or a rule) can see what was sent.
		ev.Values.SetBytes(f.b)
	}
}

// OneWordDiagnostic reports whether a Diagnostics (FC 8) sub-function
// takes exactly one data word: every one the specification defines but
// Return Query Data (0), which echoes any number (V1.1b3 6.8.1).
func OneWordDiagnostic(sub uint16) bool {
	return (sub >= 1 && sub <= 4) || (sub >= 10 && sub <= 18) || sub == 20 || sub == 21
}

// byteCounted checks a list that a byte count announces: the data present
// (have) against the count (bc), and the count against what the quantity
// needs (want). A list shorter than its count was cut; the first problem
// found is the one reported.
func byteCounted(ev *plcwatch.Event, bc, want, have int, cut, disagree, trailing string) {
	switch {
	case bc != want:
		setMalformed(ev, disagree)
	case have < bc:
		setMalformed(ev, cut)
	case have > bc:
		setMalformed(ev, trailing)
	}
}

// DecodeResponse fills ev — the request's event — with what its response
// PDU says: exception, read values, identification objects. An orphan
// (ev.Orphan: no request seen) also takes the fields a response echoes:
// address, quantity, value, masks, sub-function. A response that is not well
// formed sets Malformed (prefixed "response:") unless the request already
// was; a response cut short keeps every field before the cut, as requests do.
func DecodeResponse(ev *plcwatch.Event, pdu []byte) {
	if len(pdu) == 0 {
		setMalformed(ev, RespTruncated)
		return
	}
	fc := pdu[0]
	f := fields{ev: ev, b: pdu[1:]}
	if fc&0x80 != 0 {
		var code uint8
		if !f.u8(&code, RespExceptionNoCode) {
			ev.Function = fc
			return
		}
		if code == 0 {
			ev.Function = fc
			setMalformed(ev, RespExceptionZero)
		}
		ev.Exception = code
		f.end(RespTrailingBytes)
		return
	}
	orphan := ev.Orphan
	switch fc {
	case ReadCoils, ReadDiscreteInputs:
		var bc uint8
		if !f.u8(&bc, RespMissingByteCount) {
			return
		}
		data, _ := f.take(int(bc))
		n := int(ev.Count)
		if orphan {
			n = 8 * int(bc)
		}
		ev.Response.SetBits(data, n)
		if int(bc) > len(data) {
			setMalformed(ev, RespValuesCutShort)
		}
		f.end(RespByteCountLength)
		if !orphan && int(bc) != (n+7)/8 {
			setMalformed(ev, RespByteCountQty)
		}
	case ReadHoldingRegisters, ReadInputRegisters, ReadWriteMultipleRegisters:
		var bc uint8
		if !f.u8(&bc, RespMissingByteCount) {
			return
		}
		data, _ := f.take(int(bc))
		ev.Response.SetWords(data)
		if int(bc) > len(data) {
			setMalformed(ev, RespValuesCutShort)
		}
		f.end(RespByteCountLength)
		want := ev.Count
		if fc == ReadWriteMultipleRegisters {
			want = ev.ReadCount
		}
		switch {
		case !orphan && int(bc) != 2*int(want):
			setMalformed(ev, RespByteCountQty)
		case bc%2 != 0:
			setMalformed(ev, RespByteCountLength)
		}
	case WriteSingleCoil, WriteSingleRegister, WriteMultipleCoils, WriteMultipleRegisters, MaskWriteRegister:
		// An echo of the request's address and value, quantity or masks:
		// an orphan shows those its response carried, no others.
		var addr, a, b uint16
		if orphan {
			ev.Absent |= plcwatch.FieldAddress | plcwatch.FieldCount | plcwatch.FieldAndMask | plcwatch.FieldOrMask
		}
		ok := f.u16(&addr, RespMissingAddress)
		if orphan && ok {
			ev.Address = addr
			ev.Absent &^= plcwatch.FieldAddress
			if fc != WriteMultipleCoils && fc != WriteMultipleRegisters {
				ev.Count = 1 // implied by the function
				ev.Absent &^= plcwatch.FieldCount
			}
		}
		switch fc {
		case WriteSingleCoil:
			if ok = ok && f.u16(&a, RespMissingOutputValue); orphan && ok {
				ev.Values.SetBit(a == 0xFF00)
			}
		case WriteSingleRegister:
			if ok = ok && f.u16(&a, RespMissingRegisterValue); orphan && ok {
				ev.Values.SetWord(a)
			}
		case MaskWriteRegister:
			if ok = ok && f.u16(&a, RespMissingAndMask); orphan && ok {
				ev.AndMask = a
				ev.Absent &^= plcwatch.FieldAndMask
			}
			if ok = ok && f.u16(&b, RespMissingOrMask); orphan && ok {
				ev.OrMask = b
				ev.Absent &^= plcwatch.FieldOrMask
			}
		default:
			if ok = ok && f.u16(&a, RespMissingQuantity); orphan && ok {
				ev.Count = a
				ev.Absent &^= plcwatch.FieldCount
			}
		}
		f.end(RespTrailingBytes)
	case ReadExceptionStatus:
		var status uint8
		if f.u8(&status, RespMissingData) {
			ev.Response.SetBytes(pdu[1:2])
			f.end(RespTrailingBytes)
		}
	case Diagnostics:
		var sub uint16
		if !f.u16(&sub, RespMissingSubFunction) {
			return
		}
		if orphan {
			ev.SubFunction, ev.HasSub = sub, true
		}
		ev.Response.SetWords(f.b)
		switch {
		case len(f.b) == 0:
			setMalformed(ev, RespMissingData)
		case len(f.b)%2 != 0:
			setMalformed(ev, RespDataCutShort)
		}
	case GetCommEventCounter:
		// Status and event count.
		data, whole := f.take(4)
		ev.Response.SetWords(data)
		if !whole {
			setMalformed(ev, RespDataCutShort)
			return
		}
		f.end(RespTrailingBytes)
	case GetCommEventLog, ReportServerID, WriteFileRecord:
		var bc uint8
		if !f.u8(&bc, RespMissingByteCount) {
			return
		}
		data, whole := f.take(int(bc))
		if fc != WriteFileRecord { // an echo of the request
			ev.Response.SetBytes(data)
		}
		if !whole {
			setMalformed(ev, RespDataCutShort)
		}
		f.end(RespByteCountLength)
	case ReadFileRecord:
		var bc uint8
		if !f.u8(&bc, RespMissingByteCount) {
			return
		}
		data, whole := f.take(int(bc))
		f.end(RespByteCountLength)
		// Sub-responses: length, reference type, record data. The event
		// keeps the first one's registers, as it names the first request.
		if len(data) < 2 || int(data[0]) < 1 {
			setMalformed(ev, RespSubResponseCutShort)
			return
		}
		l := int(data[0])
		ev.Response.SetWords(data[2:min(len(data), 1+l)])
		if !whole || 1+l > len(data) {
			setMalformed(ev, RespSubResponseCutShort)
		}
	case ReadFIFOQueue:
		var bc, n uint16
		if !f.u16(&bc, RespMissingByteCount) || !f.u16(&n, RespMissingFIFOCount) {
			return
		}
		ev.Count = n
		ev.Absent &^= plcwatch.FieldCount
		ev.Response.SetWords(f.b)
		switch {
		case int(bc) > 2+len(f.b):
			setMalformed(ev, RespValuesCutShort)
		case int(bc) != 2+len(f.b):
			setMalformed(ev, RespByteCountLength)
		case int(bc) != 2+2*int(n) || n > maxFIFOCount:
			setMalformed(ev, RespByteCountQty)
		}
	case EncapsulatedInterface:
		var mei uint8
		if !f.u8(&mei, RespMissingMEIType) {
			return
		}
		if orphan {
			ev.SubFunction, ev.HasSub = uint16(mei), true
			if mei == MEIDeviceIdent {
				ev.Op = plcwatch.OpIdentify
			}
		}
		if mei != MEIDeviceIdent {
			ev.Response.SetBytes(f.b)
			return
		}
		decodeDeviceID(ev, f.b)
	default:
		ev.Response.SetBytes(f.b)
	}
}

// decodeDeviceID reads a Read Device Identification response: read device id
// code, conformity level, more follows, next object id, number of objects,
// then each object as id, length, value. The object values are the one
// allocation the dissector makes, and only for this rare function.
func decodeDeviceID(ev *plcwatch.Event, b []byte) {
	if len(b) < 5 {
		setMalformed(ev, RespMissingDeviceIDHead)
		return
	}
	n := int(b[4])
	objs := b[5:]
	ev.Objects = make([]plcwatch.DeviceObject, 0, min(n, 16))
	for i := 0; i < n; i++ {
		if len(objs) < 2 || int(objs[1])+2 > len(objs) {
			setMalformed(ev, RespDeviceIDObjects)
			return
		}
		l := int(objs[1])
		ev.Objects = append(ev.Objects, plcwatch.DeviceObject{ID: objs[0], Value: string(objs[2 : 2+l])})
		objs = objs[2+l:]
	}
	if len(objs) > 0 {
		setMalformed(ev, RespTrailingBytes)
	}
}

func checkQuantity(ev *plcwatch.Event, q, limit uint16) {
	if q == 0 || q > limit {
		setMalformed(ev, IllegalQuantity)
	}
}

// setMalformed records a problem unless one was found already: the first
// problem (the request's before its response's) is the one worth reading.
func setMalformed(ev *plcwatch.Event, why string) {
	if ev.Malformed == "" {
		ev.Malformed = why
	}
}
