package opcua

import (
	"encoding/binary"
	"math"
)

// This file is a small, allocation-free reader of the OPC UA Binary
// encoding (OPC 10000-6 §5.2): little-endian numbers, length-prefixed
// strings and byte strings, NodeIds, and the built-in structures that carry
// their own encoding masks (Variant, DataValue, DiagnosticInfo,
// LocalizedText, ExtensionObject). Views it returns point into the message
// and are only valid while the message is.

// Limits that hold for every message plcwatch reads, whatever the service.
const (
	// maxDepth bounds the nesting of Variants, DataValues, DiagnosticInfos
	// and ExtensionObject bodies. OPC 10000-6 §5.2.2.16 and .12 let
	// encoders nest without limit; decoders choose one (open62541 and the
	// .NET stack use 100). Deep nesting is an attack on the decoder's
	// stack, not something a plant sends.
	maxDepth = 64
	// maxVariantArray is gopcua's MaxVariantArrayLength: longer Variant
	// arrays are rejected by both readers alike.
	maxVariantArray = 0xffff
	// maxDims bounds the dimensions of a Variant matrix.
	maxDims = 32
)

// Why a message could not be read. Constants, so that setting one never
// allocates; docs/events.md lists them.
const (
	errShort      = "message ends early"
	errNodeID     = "NodeId encoding byte unknown"
	errVariant    = "Variant type unknown"
	errArrayLen   = "array length impossible"
	errDims       = "Variant array dimensions disagree with its length"
	errDepth      = "structures nested too deeply"
	errStringLen  = "string length impossible"
	errTrailing   = "bytes left over after the message"
	errCost       = "message would take too much memory to decode"
	errDecoder    = "gopcua could not decode the message"
	errPanic      = "gopcua panicked decoding the message (recovered)"
	errTypeID     = "message type id is not a NodeId plcwatch knows"
	errServiceID  = "unknown service type id"
	errNotRequest = "a response type sent to the server"
	errNotResp    = "a request type sent to the client"
)

// reader reads the Binary encoding from b. Errors are sticky: after the
// first, every read returns zero and why says what went wrong, so a decoder
// reads a whole structure and checks once.
type reader struct {
	b   []byte
	off int
	why string // the first error, "" while none
}

func (r *reader) fail(why string) {
	if r.why == "" {
		r.why = why
	}
	r.off = len(r.b)
}

func (r *reader) ok() bool  { return r.why == "" }
func (r *reader) rest() int { return len(r.b) - r.off }
func (r *reader) take(n int) []byte {
	if r.why != "" {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail(errShort)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *reader) skip(n int) { r.take(n) }

func (r *reader) u8() byte {
	if r.why != "" || r.off >= len(r.b) {
		r.fail(errShort)
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) u16() uint16 {
	if r.why != "" || len(r.b)-r.off < 2 {
		r.fail(errShort)
		return 0
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32() uint32 {
	if r.why != "" || len(r.b)-r.off < 4 {
		r.fail(errShort)
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if r.why != "" || len(r.b)-r.off < 8 {
		r.fail(errShort)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// bytes reads a String or ByteString (§5.2.2.4, .7): an Int32 length, -1
// for null, then the bytes. Null and empty both give nil. Like gopcua, a
// length that does not fit is an error, whatever its sign.
func (r *reader) bytes() []byte {
	n := r.u32()
	if n == 0 || n == 0xffffffff {
		return nil
	}
	if int64(n) > int64(r.rest()) {
		r.fail(errStringLen)
		return nil
	}
	return r.take(int(n))
}

// arrayLen reads an array length (§5.2.5) as gopcua's reflection decoder
// does: -1 is a null array (0 elements), anything above MaxInt32 an error;
// and, which gopcua does not check, every element takes at least minSize
// bytes, so a length the rest of the message cannot hold is an error before
// anybody allocates for it.
func (r *reader) arrayLen(minSize int) int {
	n := r.u32()
	if n == 0xffffffff || r.why != "" {
		return 0
	}
	if n > math.MaxInt32 || int64(n)*int64(minSize) > int64(r.rest()) {
		r.fail(errArrayLen)
		return 0
	}
	return int(n)
}

// NodeId encodings (§5.2.2.9, Table 6).
const (
	nodeTwoByte    = 0
	nodeFourByte   = 1
	nodeNumeric    = 2
	nodeString     = 3
	nodeGUID       = 4
	nodeByteString = 5

	flagNamespaceURI = 0x80 // ExpandedNodeId only
	flagServerIndex  = 0x40
)

// nodeID is a NodeId or ExpandedNodeId as read: a view, formatted to text
// only when an event needs it.
type nodeID struct {
	raw    []byte // the whole encoding, as on the wire: the key to the intern table
	kind   byte   // nodeTwoByte ... nodeByteString
	ns     uint16
	num    uint32
	id     []byte // String and ByteString identifiers, the 16 bytes of a Guid
	nsURI  []byte // ExpandedNodeId with flagNamespaceURI
	server uint32 // ExpandedNodeId with flagServerIndex
	hasSrv bool
}

// nodeID reads a NodeId; expanded reads an ExpandedNodeId (§5.2.2.10),
// whose encoding byte's high bits announce a namespace URI and a server
// index. A plain NodeId's high bits are ignored, as gopcua ignores them.
func (r *reader) nodeID(n *nodeID, expanded bool) {
	start := r.off
	enc := r.u8()
	*n = nodeID{kind: enc & 0x0f}
	switch n.kind {
	case nodeTwoByte:
		n.num = uint32(r.u8())
	case nodeFourByte:
		n.ns = uint16(r.u8())
		n.num = uint32(r.u16())
	case nodeNumeric:
		n.ns = r.u16()
		n.num = r.u32()
	case nodeString, nodeByteString:
		n.ns = r.u16()
		n.id = r.bytes()
	case nodeGUID:
		n.ns = r.u16()
		n.id = r.take(16)
	default:
		r.fail(errNodeID)
		return
	}
	if expanded {
		if enc&flagNamespaceURI != 0 {
			n.nsURI = r.bytes()
		}
		if enc&flagServerIndex != 0 {
			n.server, n.hasSrv = r.u32(), true
		}
	}
	if r.ok() {
		n.raw = r.b[start:r.off]
	}
}

func (r *reader) skipNodeID(expanded bool) {
	var n nodeID
	r.nodeID(&n, expanded)
}

// Variant built-in type ids (§5.1.2, Table 1).
const (
	vtNull            = 0
	vtBoolean         = 1
	vtSByte           = 2
	vtByte            = 3
	vtInt16           = 4
	vtUInt16          = 5
	vtInt32           = 6
	vtUInt32          = 7
	vtInt64           = 8
	vtUInt64          = 9
	vtFloat           = 10
	vtDouble          = 11
	vtString          = 12
	vtDateTime        = 13
	vtGUID            = 14
	vtByteString      = 15
	vtXMLElement      = 16
	vtNodeID          = 17
	vtExpandedNodeID  = 18
	vtStatusCode      = 19
	vtQualifiedName   = 20
	vtLocalizedText   = 21
	vtExtensionObject = 22
	vtDataValue       = 23
	vtVariant         = 24
	vtDiagnosticInfo  = 25

	variantArray      = 0x80
	variantDimensions = 0x40
)

// typeNames are the built-in types' names as OPC 10000-6 Table 1 spells
// them: Event.ValueType.
var typeNames = [...]string{"Null", "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32",
	"Int64", "UInt64", "Float", "Double", "String", "DateTime", "Guid", "ByteString", "XmlElement",
	"NodeId", "ExpandedNodeId", "StatusCode", "QualifiedName", "LocalizedText", "ExtensionObject",
	"DataValue", "Variant", "DiagnosticInfo"}

// fixedSize is the encoded size of the fixed-size built-in types, 0 for
// the others.
var fixedSize = [...]int8{vtBoolean: 1, vtSByte: 1, vtByte: 1, vtInt16: 2, vtUInt16: 2, vtInt32: 4,
	vtUInt32: 4, vtInt64: 8, vtUInt64: 8, vtFloat: 4, vtDouble: 8, vtDateTime: 8, vtGUID: 16,
	vtStatusCode: 4, vtDiagnosticInfo: 0}

// minSize is the fewest bytes one value of a built-in type takes.
func minSize(t byte) int {
	if t < byte(len(fixedSize)) && fixedSize[t] > 0 {
		return int(fixedSize[t])
	}
	switch t {
	case vtString, vtByteString, vtXMLElement:
		return 4
	case vtNodeID, vtExpandedNodeID, vtDataValue, vtVariant, vtDiagnosticInfo, vtLocalizedText:
		return 1
	case vtQualifiedName:
		return 6
	case vtExtensionObject:
		return 2
	}
	return 1
}

// variantHead is what a Variant says about itself before its values.
type variantHead struct {
	typ   byte
	array bool
	n     int // values: 1 for a scalar, the array length (0 for null) for arrays
}

// variant reads a Variant (§5.2.2.16). For a scalar of a fixed-size or
// string type it leaves the value's bytes in val (a view); arrays and
// structured values are walked, validated and skipped. It follows gopcua's
// Variant.Decode in what it accepts, and adds the bounds gopcua lacks:
// array lengths the message can hold, dimensions whose product is the
// length, limited nesting. cost grows by what gopcua would allocate.
func (r *reader) variant(depth int, h *variantHead, cost *budget) (val []byte) {
	mask := r.u8()
	*h = variantHead{typ: mask & 0x3f, n: 1}
	if !r.ok() {
		return nil
	}
	if h.typ == vtNull {
		h.n = 0
		return nil
	}
	if h.typ > vtDiagnosticInfo {
		r.fail(errVariant)
		return nil
	}
	if depth > maxDepth {
		r.fail(errDepth)
		return nil
	}
	if mask&variantArray == 0 {
		return r.builtin(h.typ, depth, cost)
	}
	h.array = true
	n := int32(r.u32())
	switch {
	case n == -1:
		h.n = 0
	case n < 0 || n > maxVariantArray || int64(n)*int64(minSize(h.typ)) > int64(r.rest()):
		r.fail(errArrayLen)
		return nil
	default:
		h.n = int(n)
	}
	cost.spend(16 * h.n)
	start := r.off
	for i := 0; i < h.n && r.ok(); i++ {
		r.builtin(h.typ, depth, cost)
	}
	if mask&variantDimensions != 0 {
		dims := int32(r.u32())
		// gopcua splits a matrix recursively, one level per dimension:
		// a million dimensions of length 1 would be a million frames deep.
		// No data type has more than a handful.
		if dims < 0 || dims > maxDims || int64(dims)*4 > int64(r.rest()) {
			r.fail(errDims)
			return nil
		}
		cost.spend(8 * int(dims))
		prod := int64(1)
		for i := int32(0); i < dims; i++ {
			d := int32(r.u32())
			if d < 1 || int64(d) > int64(h.n) {
				r.fail(errDims)
				return nil
			}
			prod *= int64(d)
			if prod > int64(h.n) {
				r.fail(errDims)
				return nil
			}
		}
		// gopcua compares the product with the length only when there
		// are dimensions, and splits multi-dimensional arrays by them.
		if dims > 0 && prod != int64(h.n) {
			r.fail(errDims)
			return nil
		}
		cost.spend(32 * int(dims) * h.n)
	}
	if !r.ok() {
		return nil
	}
	return r.b[start:r.off]
}

// builtin reads one value of a built-in type and returns its bytes for the
// fixed-size and string types (nil for the others).
func (r *reader) builtin(t byte, depth int, cost *budget) []byte {
	if cost.used > cost.max {
		r.fail(errCost)
		return nil
	}
	if t < byte(len(fixedSize)) && fixedSize[t] > 0 {
		return r.take(int(fixedSize[t]))
	}
	switch t {
	case vtString, vtByteString, vtXMLElement:
		start := r.off
		b := r.bytes()
		cost.spend(len(b))
		if !r.ok() {
			return nil
		}
		return r.b[start+4 : start+4+len(b)]
	case vtNodeID:
		cost.spend(64)
		r.skipNodeID(false)
	case vtExpandedNodeID:
		cost.spend(96)
		r.skipNodeID(true)
	case vtQualifiedName:
		cost.spend(32)
		r.u16()
		cost.spend(len(r.bytes()))
	case vtLocalizedText:
		cost.spend(32)
		r.localizedText()
	case vtExtensionObject:
		r.extensionObject(depth+1, cost)
	case vtDataValue:
		var dv dataValue
		r.dataValue(depth+1, &dv, cost)
	case vtVariant:
		cost.spend(48)
		var h variantHead
		r.variant(depth+1, &h, cost)
	case vtDiagnosticInfo:
		r.diagnosticInfo(depth + 1)
		cost.spend(64)
	}
	return nil
}

// localizedText reads a LocalizedText (§5.2.2.14) and returns its text.
func (r *reader) localizedText() (locale, text []byte) {
	mask := r.u8()
	if mask&0x01 != 0 {
		locale = r.bytes()
	}
	if mask&0x02 != 0 {
		text = r.bytes()
	}
	return locale, text
}

// dataValue is a DataValue (§5.2.2.17) as read.
type dataValue struct {
	mask   byte
	vh     variantHead
	val    []byte // scalar value bytes, as variant returns them
	status uint32
	srcTS  uint64 // 100 ns since 1601, 0 when absent
	srvTS  uint64
}

func (r *reader) dataValue(depth int, dv *dataValue, cost *budget) {
	cost.spend(64)
	if depth > maxDepth {
		r.fail(errDepth)
		return
	}
	dv.mask = r.u8()
	dv.vh = variantHead{}
	dv.val, dv.status, dv.srcTS, dv.srvTS = nil, 0, 0, 0
	if dv.mask&0x01 != 0 {
		dv.val = r.variant(depth+1, &dv.vh, cost)
	}
	if dv.mask&0x02 != 0 {
		dv.status = r.u32()
	}
	if dv.mask&0x04 != 0 {
		dv.srcTS = r.u64()
	}
	if dv.mask&0x10 != 0 {
		r.u16()
	}
	if dv.mask&0x08 != 0 {
		dv.srvTS = r.u64()
	}
	if dv.mask&0x20 != 0 {
		r.u16()
	}
}

// diagnosticInfo skips a DiagnosticInfo (§5.2.2.12), nested ones included.
func (r *reader) diagnosticInfo(depth int) {
	for ; r.ok(); depth++ {
		if depth > maxDepth {
			r.fail(errDepth)
			return
		}
		mask := r.u8()
		for bit := byte(0x01); bit <= 0x08; bit <<= 1 {
			if mask&bit != 0 {
				r.u32()
			}
		}
		if mask&0x10 != 0 {
			r.bytes()
		}
		if mask&0x20 != 0 {
			r.u32()
		}
		if mask&0x40 == 0 {
			return
		}
	}
}

// extensionObject reads an ExtensionObject (§5.2.2.15) as gopcua does: an
// ExpandedNodeId type id, an encoding byte (0 no body, 2 XML, anything else
// binary), and a body whose length a 0 or -1 leaves out. A body gopcua has
// a type for is walked with that type's schema, within the body's bounds.
func (r *reader) extensionObject(depth int, cost *budget) (typeID nodeID, enc byte, body []byte) {
	cost.spend(48)
	if depth > maxDepth {
		r.fail(errDepth)
		return
	}
	r.nodeID(&typeID, true)
	enc = r.u8()
	if enc == 0 || !r.ok() {
		return typeID, enc, nil
	}
	n := r.u32()
	if n == 0 || n == 0xffffffff || !r.ok() {
		return typeID, enc, nil
	}
	if int64(n) > int64(r.rest()) {
		r.fail(errShort)
		return typeID, enc, nil
	}
	body = r.take(int(n))
	cost.spend(len(body))
	sub := reader{b: body}
	if enc == 2 {
		sub.bytes()
	} else if t := extSchema(&typeID); t != nil {
		sub.walk(t, depth+1, cost)
	}
	if !sub.ok() {
		r.fail(sub.why)
	}
	return typeID, enc, body
}
