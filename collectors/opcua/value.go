package opcua

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
)

// StatusName is a status code's name as OPC 10000-6 Annex A spells it
// (BadNodeIdUnknown); "" for Good. The low 16 bits (info flags) are
// ignored when the full code has no name.
func StatusName(code ua.StatusCode) string {
	if code == 0 {
		return ""
	}
	names := statusNames()
	if n, ok := names[code]; ok {
		return n
	}
	return names[code&0xffff0000]
}

// statusNames maps gopcua's names (StatusBadNodeIDUnknown) to the
// standard's (BadNodeIdUnknown); built once, read-only after.
var statusNames = sync.OnceValue(func() map[ua.StatusCode]string {
	fix := strings.NewReplacer("ID", "Id", "URI", "Uri", "URL", "Url", "TCP", "Tcp")
	m := make(map[ua.StatusCode]string, len(ua.StatusCodes))
	for code, d := range ua.StatusCodes {
		m[code] = fix.Replace(strings.TrimPrefix(d.Name, "Status"))
	}
	m[0] = ""
	return m
})

// Quality is good, uncertain or bad by a status code's severity (the top
// two bits, OPC 10000-4 §7.39).
func Quality(code ua.StatusCode) string {
	switch uint32(code) >> 30 {
	case 0:
		return "good"
	case 1:
		return "uncertain"
	default:
		return "bad"
	}
}

// typeNames are the built-in types' names as OPC 10000-6 §5.1.2 spells them.
var typeNames = [...]string{"Null", "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
	"Float", "Double", "String", "DateTime", "Guid", "ByteString", "XmlElement", "NodeId", "ExpandedNodeId", "StatusCode",
	"QualifiedName", "LocalizedText", "ExtensionObject", "DataValue", "Variant", "DiagnosticInfo"}

// TypeName names a built-in type.
func TypeName(t ua.TypeID) string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type%d", t)
}

// setValue fills ev from a DataValue: status, quality, timestamps, the
// value's type, and Raw and Value (numbers and Booleans), Text (every other
// scalar) or Values (arrays of numbers; other arrays as JSON in Text). A
// bad status or no value leaves Value and Raw NoValue and says why in
// Error.
func setValue(ev *plcwatch.Event, dv *ua.DataValue, scale, offset float64) {
	ev.Value, ev.Raw = plcwatch.NoValue, plcwatch.NoValue
	if dv == nil {
		ev.Quality, ev.Error = "bad", "no value in the response"
		ev.Absent |= plcwatch.FieldStatus
		return
	}
	ev.Status = uint32(dv.Status)
	ev.StatusName = StatusName(dv.Status)
	ev.Quality = Quality(dv.Status)
	ev.SourceTime, _ = fixDateTime(dv.SourceTimestamp) // zero (absent) when none or 1601-01-01
	ev.ServerTime, _ = fixDateTime(dv.ServerTimestamp)
	if ev.Quality == "bad" {
		ev.Error = ev.StatusName
		if ev.Error == "" {
			ev.Error = fmt.Sprintf("status 0x%08X", uint32(dv.Status))
		}
		return
	}
	if dv.Value == nil || dv.EncodingMask&ua.DataValueValue == 0 || dv.Value.Type() == ua.TypeIDNull {
		ev.Quality, ev.Error = "bad", "no value"
		return
	}
	v := dv.Value
	ev.ValueType = TypeName(v.Type())
	if v.ArrayLength() > 0 || v.EncodingMask()&ua.VariantArrayValues != 0 {
		setArray(ev, v.Value(), scale, offset)
		return
	}
	if f, ok := number(v.Value()); ok {
		ev.Raw = f
		if math.IsNaN(f) || math.IsInf(f, 0) {
			ev.Quality, ev.Error, ev.Raw = "bad", fmt.Sprint(f), plcwatch.NoValue
			return
		}
		ev.Value = f*scale + offset
		return
	}
	if tm, ok := v.Value().(time.Time); ok {
		if _, ok := fixDateTime(tm); !ok {
			// 1601-01-01 is OPC UA's "no date" (OPC 10000-6 §5.2.2.5): no
			// value, as NaN is.
			ev.Quality, ev.Error = "bad", "no value (DateTime 1601-01-01: no date)"
			return
		}
	}
	ev.Text = text(v.Value())
}

// number is a numeric or Boolean value as float64.
func number(v any) (float64, bool) { return plcwatch.Number(v) }

// text is a non-numeric scalar as text: strings as they are, DateTime in
// RFC 3339, ByteString in base64, ids and names in their text forms.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		t, ok := fixDateTime(x)
		if !ok {
			return "" // 1601-01-01: no date
		}
		return t.UTC().Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case *ua.GUID:
		return x.String()
	case ua.XMLElement:
		return string(x)
	case *ua.NodeID:
		return x.String()
	case *ua.ExpandedNodeID:
		return x.String()
	case ua.StatusCode:
		if n := StatusName(x); n != "" {
			return n
		}
		return "Good"
	case *ua.QualifiedName:
		if x.NamespaceIndex != 0 {
			return fmt.Sprintf("%d:%s", x.NamespaceIndex, x.Name)
		}
		return x.Name
	case *ua.LocalizedText:
		return x.Text
	case *ua.ExtensionObject:
		return extensionText(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// setArray keeps a numeric array in Values (the first plcwatch.MaxFloats,
// scaled) with Count its length, and any other array as a JSON array of
// texts in Text.
func setArray(ev *plcwatch.Event, v any, scale, offset float64) {
	var fs []float64
	var ts []string
	switch x := v.(type) {
	case []bool:
		for _, b := range x {
			f, _ := number(b)
			fs = append(fs, f)
		}
	case []int8:
		fs = nums(x)
	case []uint8:
		fs = nums(x)
	case []int16:
		fs = nums(x)
	case []uint16:
		fs = nums(x)
	case []int32:
		fs = nums(x)
	case []uint32:
		fs = nums(x)
	case []int64:
		fs = nums(x)
	case []uint64:
		fs = nums(x)
	case []float32:
		fs = nums(x)
	case []float64:
		fs = nums(x)
	case []string:
		ts = x
	default:
		// Other arrays ([]time.Time, []*ua.ExtensionObject, ...): each
		// element's text.
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
			ts = make([]string, 0, rv.Len())
			for i := range rv.Len() {
				ts = append(ts, text(rv.Index(i).Interface()))
			}
		} else {
			ts = []string{text(v)}
		}
	}
	if ts != nil || fs == nil {
		b, _ := json.Marshal(ts)
		ev.Text = string(b)
		ev.Count = uint16(min(len(ts), math.MaxUint16))
		return
	}
	for i := range fs {
		fs[i] = fs[i]*scale + offset
	}
	ev.Count = uint16(min(len(fs), math.MaxUint16))
	ev.Values.SetFloats(fs)
	if len(fs) > 0 {
		ev.Raw = plcwatch.NoValue
	}
}

// extensionText is an ExtensionObject as stable text: a JSON object with
// the type's node id (its DataTypeEncoding) and, when gopcua decoded the
// body (the types of OPC 10000-5 it knows), the decoded structure as JSON;
// an XML body as its text. A body of a type gopcua does not know is
// dropped by gopcua v0.8.0 (ua/extension_object.go Decode), so only the
// type is given. Never a Go value dump: those hold memory addresses and
// change on every read.
func extensionText(x *ua.ExtensionObject) string {
	var out struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value,omitempty"`
	}
	if x == nil {
		return "null"
	}
	if x.TypeID != nil && x.TypeID.NodeID != nil {
		out.Type = x.TypeID.NodeID.String()
	}
	switch v := x.Value.(type) {
	case nil:
	case *ua.XMLElement:
		out.Value, _ = json.Marshal(string(*v))
	default:
		if b, err := json.Marshal(v); err == nil {
			out.Value = b
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func nums[T int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64 | float32 | float64](x []T) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
