package opcuasim

import (
	"time"

	"github.com/gopcua/opcua/ua"
)

// Builtin is a variable of one OPC UA built-in type (Part 6 §5.1.2) with a
// value of it, for tests and demos that want every type a client meets.
type Builtin struct {
	Name  string    // node id string part and browse name: the type's name, "Array" appended for arrays
	Value any       // the Go value ua.NewVariant takes
	Type  ua.TypeID // the built-in type
}

// Builtins are one variable of each built-in scalar type a Variant
// carries (Boolean to LocalizedText; not ExtensionObject, DataValue,
// Variant or DiagnosticInfo, which are not process values) and arrays of
// the numeric types, Boolean and String.
func Builtins() []Builtin {
	when := time.Date(2026, 11, 29, 8, 30, 0, 0, time.UTC)
	return []Builtin{
		{"Boolean", true, ua.TypeIDBoolean},
		{"SByte", int8(-8), ua.TypeIDSByte},
		{"Byte", uint8(200), ua.TypeIDByte},
		{"Int16", int16(-1600), ua.TypeIDInt16},
		{"UInt16", uint16(60000), ua.TypeIDUint16},
		{"Int32", int32(-320000), ua.TypeIDInt32},
		{"UInt32", uint32(4000000000), ua.TypeIDUint32},
		{"Int64", int64(-6400000000), ua.TypeIDInt64},
		{"UInt64", uint64(12800000000), ua.TypeIDUint64},
		{"Float", float32(3.25), ua.TypeIDFloat},
		{"Double", 6.125, ua.TypeIDDouble},
		{"String", "running", ua.TypeIDString},
		{"DateTime", when, ua.TypeIDDateTime},
		{"Guid", ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63"), ua.TypeIDGUID},
		{"ByteString", []byte{0xde, 0xad, 0xbe, 0xef}, ua.TypeIDByteString},
		{"XmlElement", ua.XMLElement("<a>1</a>"), ua.TypeIDXMLElement},
		{"NodeId", ua.NewStringNodeID(1, "Pump1"), ua.TypeIDNodeID},
		{"ExpandedNodeId", ua.NewNumericExpandedNodeID(0, 2253), ua.TypeIDExpandedNodeID},
		{"StatusCode", ua.StatusBadSensorFailure, ua.TypeIDStatusCode},
		{"QualifiedName", &ua.QualifiedName{NamespaceIndex: 1, Name: "Pump1"}, ua.TypeIDQualifiedName},
		{"LocalizedText", &ua.LocalizedText{EncodingMask: ua.LocalizedTextText | ua.LocalizedTextLocale, Locale: "en", Text: "Pump 1"}, ua.TypeIDLocalizedText},
		{"BooleanArray", []bool{true, false, true}, ua.TypeIDBoolean},
		{"Int16Array", []int16{-1, 0, 1}, ua.TypeIDInt16},
		{"UInt16Array", []uint16{1, 2, 3}, ua.TypeIDUint16},
		{"Int32Array", []int32{-100, 200, -300}, ua.TypeIDInt32},
		{"UInt32Array", []uint32{10, 20}, ua.TypeIDUint32},
		{"FloatArray", []float32{1.5, -2.5}, ua.TypeIDFloat},
		{"DoubleArray", []float64{0.5, 1.5, 2.5, 3.5}, ua.TypeIDDouble},
		{"StringArray", []string{"a", "b"}, ua.TypeIDString},
	}
}
