package opcua

import (
	"encoding/binary"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// gopcua's ua package decodes a message by reflection over its Go types. On
// hostile input that decoder can be made to allocate without bound (an
// array length of 2^31 is allocated before its elements are read), to
// recurse until the stack is exhausted (Variants inside Variants), or to
// panic (a negative Variant array length). Out-of-memory and stack
// exhaustion are fatal in Go: recover cannot catch them. So before gopcua
// sees a message, walk checks it against a schema compiled from the very
// Go types gopcua will decode into: every array length the message can
// hold, nesting bounded, and the memory gopcua will allocate estimated and
// capped. walk accepts a superset of nothing gopcua would reject safely,
// and gopcua never sees what walk rejects.

// schemaKind is how one Go type is encoded.
type schemaKind uint8

const (
	skFixed schemaKind = iota // size bytes
	skBytes                   // String or ByteString
	skNodeID
	skExpandedNodeID
	skVariant
	skDataValue
	skDiagnosticInfo
	skLocalizedText
	skExtensionObject
	skGUID
	skStruct // fields in order
	skSlice  // Int32 length, then elements
	skArray  // a Go array: Int32 length up to len, then elements
	skPtr    // a pointer to a type that does not decode itself: its elem
	skUnsupported
)

type schema struct {
	kind   schemaKind
	size   int       // skFixed: bytes; skArray: the Go array's length
	goSize int       // bytes gopcua allocates for one value (pointers: the pointee too)
	fields []*schema // skStruct
	elem   *schema   // skSlice, skArray
	min    int       // fewest bytes one encoded value takes
}

// schemas is compiled once per process from gopcua's registries: the Go
// type of every service and extension object gopcua knows, by the numeric
// id of its binary encoding (ns=0). Read-only after construction.
type schemas struct {
	services map[uint32]*schema
	ext      map[uint32]*schema
}

var loadSchemas = sync.OnceValue(buildSchemas)

var binaryDecoder = reflect.TypeOf((*ua.BinaryDecoder)(nil)).Elem()

func buildSchemas() *schemas {
	s := &schemas{services: map[uint32]*schema{}, ext: map[uint32]*schema{}}
	memo := map[reflect.Type]*schema{}
	for i := uint32(1); i < 1<<16; i++ {
		if !strings.HasSuffix(id.Name(i), "_Encoding_DefaultBinary") {
			continue
		}
		if t := serviceType(i); t != nil {
			s.services[i] = compile(t, memo)
		}
		if t := extensionType(i); t != nil {
			s.ext[i] = compile(t, memo)
		}
	}
	return s
}

// serviceType finds the Go type gopcua's service registry holds for id by
// asking it to decode an empty message of that type: DecodeService returns
// the new value even when the body is missing.
func serviceType(i uint32) (t reflect.Type) {
	defer func() {
		if recover() != nil {
			t = nil
		}
	}()
	b := []byte{1, 0, 0, 0}
	binary.LittleEndian.PutUint16(b[2:], uint16(i))
	_, v, _ := ua.DecodeService(b)
	if v == nil {
		return nil
	}
	return reflect.TypeOf(v)
}

// extensionType does the same for the extension object registry: gopcua
// creates the value before it decodes the (here one-byte) body into it.
func extensionType(i uint32) (t reflect.Type) {
	defer func() {
		if recover() != nil {
			t = nil
		}
	}()
	// A Numeric NodeId (ns 0), binary encoding, a one-byte body.
	b := []byte{2, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[3:], i)
	var e ua.ExtensionObject
	e.Decode(b)
	if e.Value == nil {
		return nil
	}
	return reflect.TypeOf(e.Value)
}

var (
	tNodeID         = reflect.TypeOf((*ua.NodeID)(nil))
	tExpandedNodeID = reflect.TypeOf((*ua.ExpandedNodeID)(nil))
	tVariant        = reflect.TypeOf((*ua.Variant)(nil))
	tDataValue      = reflect.TypeOf((*ua.DataValue)(nil))
	tDiagnosticInfo = reflect.TypeOf((*ua.DiagnosticInfo)(nil))
	tLocalizedText  = reflect.TypeOf((*ua.LocalizedText)(nil))
	tExtensionObj   = reflect.TypeOf((*ua.ExtensionObject)(nil))
	tGUID           = reflect.TypeOf((*ua.GUID)(nil))
	tTime           = reflect.TypeOf(time.Time{})
)

// compile mirrors gopcua's decode (ua/decode.go): a BinaryDecoder decodes
// itself, a time is a DateTime, then by kind. Types are memoised before
// their fields are compiled, so recursive types terminate.
func compile(t reflect.Type, memo map[reflect.Type]*schema) *schema {
	if s := memo[t]; s != nil {
		return s
	}
	s := &schema{goSize: int(t.Size())}
	memo[t] = s
	if t.Implements(binaryDecoder) {
		switch t {
		case tNodeID:
			s.kind, s.min = skNodeID, 1
		case tExpandedNodeID:
			s.kind, s.min = skExpandedNodeID, 1
		case tVariant:
			s.kind, s.min = skVariant, 1
		case tDataValue:
			s.kind, s.min = skDataValue, 1
		case tDiagnosticInfo:
			s.kind, s.min = skDiagnosticInfo, 1
		case tLocalizedText:
			s.kind, s.min = skLocalizedText, 1
		case tExtensionObj:
			s.kind, s.min = skExtensionObject, 2
		case tGUID:
			s.kind, s.min = skGUID, 16
		default:
			s.kind = skUnsupported
		}
		if t.Kind() == reflect.Pointer {
			s.goSize += int(t.Elem().Size())
		}
		return s
	}
	if t.ConvertibleTo(tTime) {
		s.kind, s.size, s.min = skFixed, 8, 8
		return s
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int8, reflect.Uint8:
		s.kind, s.size = skFixed, 1
	case reflect.Int16, reflect.Uint16:
		s.kind, s.size = skFixed, 2
	case reflect.Int32, reflect.Uint32, reflect.Float32:
		s.kind, s.size = skFixed, 4
	case reflect.Int64, reflect.Uint64, reflect.Float64:
		s.kind, s.size = skFixed, 8
	case reflect.String:
		s.kind, s.min = skBytes, 4
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			s.kind, s.min = skBytes, 4
			break
		}
		s.kind, s.min = skSlice, 4
		s.elem = compile(t.Elem(), memo)
	case reflect.Array:
		s.kind, s.min, s.size = skArray, 4, t.Len()
		s.elem = compile(t.Elem(), memo)
	case reflect.Pointer:
		s.kind = skPtr
		s.elem = compile(t.Elem(), memo)
	case reflect.Struct:
		s.kind = skStruct
		for i := 0; i < t.NumField(); i++ {
			f := compile(t.Field(i).Type, memo)
			s.fields = append(s.fields, f)
		}
	default:
		s.kind = skUnsupported
	}
	if s.kind == skFixed {
		s.min = s.size
	}
	return s
}

// minOf is the fewest bytes a value of s encodes to; computed lazily
// because recursive types are compiled before their fields are known.
func minOf(s *schema, depth int) int {
	switch {
	case depth > 8:
		return 1
	case s.kind == skPtr:
		return minOf(s.elem, depth+1)
	case s.kind != skStruct:
		return max(s.min, 1)
	}
	m := 0
	for _, f := range s.fields {
		m += minOf(f, depth+1)
	}
	return max(m, 1)
}

// extSchema returns the schema gopcua decodes an ExtensionObject body of
// type id with, or nil when gopcua leaves the body alone. gopcua keys its
// registry by the NodeId's text, so only ns=0 numeric ids match.
func extSchema(typeID *nodeID) *schema {
	if typeID.kind > nodeNumeric || typeID.ns != 0 {
		return nil
	}
	return loadSchemas().ext[typeID.num]
}

// budget is what gopcua may allocate decoding one message, in bytes: an
// estimate, as walk counts slices, pointees and strings the way gopcua's
// decoder creates them. A legitimate message costs a small multiple of its
// size; maxCost caps it.
type budget struct{ used, max int64 }

func maxCost(msgLen int) int64 { return min(max(8*int64(msgLen), 1<<20), 64<<20) }

// spend adds n and reports whether the budget still holds.
func (b *budget) spend(n int) bool {
	b.used += int64(n)
	return b.used <= b.max
}

// walk checks the value of schema s at the reader's position and moves
// past it. It reads what gopcua would read, in the same order, and fails
// where gopcua would fail or where gopcua would allocate or recurse
// without bound.
func (r *reader) walk(s *schema, depth int, cost *budget) {
	if !r.ok() {
		return
	}
	if depth > maxDepth {
		r.fail(errDepth)
		return
	}
	if !cost.spend(s.goSize) {
		r.fail(errCost)
		return
	}
	switch s.kind {
	case skFixed:
		r.skip(s.size)
	case skBytes:
		cost.spend(len(r.bytes()))
	case skNodeID:
		r.skipNodeID(false)
	case skExpandedNodeID:
		r.skipNodeID(true)
	case skVariant:
		var h variantHead
		r.variant(depth+1, &h, cost)
	case skDataValue:
		var dv dataValue
		r.dataValue(depth+1, &dv, cost)
	case skDiagnosticInfo:
		r.diagnosticInfo(depth + 1)
	case skLocalizedText:
		r.localizedText()
	case skExtensionObject:
		r.extensionObject(depth+1, cost)
	case skGUID:
		r.skip(16)
	case skPtr:
		r.walk(s.elem, depth, cost)
	case skStruct:
		for _, f := range s.fields {
			r.walk(f, depth+1, cost)
		}
	case skSlice, skArray:
		n := r.arrayLen(minOf(s.elem, 0))
		if s.kind == skArray && n > s.size {
			r.fail(errArrayLen)
			return
		}
		for i := 0; i < n && r.ok(); i++ {
			r.walk(s.elem, depth+1, cost)
		}
	default:
		r.fail(errDecoder)
	}
	if cost.used > cost.max {
		r.fail(errCost)
	}
}
