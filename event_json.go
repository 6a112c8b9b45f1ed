package plcwatch

import (
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeFormat is RFC 3339 with nanoseconds, fixed width, as every plcwatch
// JSON document writes times.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// MarshalJSON encodes the event as docs/events.md documents it.
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 512)), nil
}

// AppendJSON appends the event's JSON object to b without allocating (beyond
// growing b). Field names are a contract (docs/events.md): add, never rename.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, TimeFormat)
	b = append(b, `","source":"`...)
	b = append(b, e.Source.String()...)
	b = append(b, `","protocol":"`...)
	b = append(b, e.Protocol.String()...)
	b = append(b, `","op":"`...)
	b = append(b, e.Op.String()...)
	b = append(b, '"')
	if e.Device != "" {
		b = appendKey(b, "device")
		b = AppendJSONString(b, e.Device)
	}
	if e.Client.IsValid() {
		b = appendKey(b, "client")
		b = appendAddrPort(b, e.Client)
	}
	if e.Server.IsValid() {
		b = appendKey(b, "server")
		b = appendAddrPort(b, e.Server)
	}
	if e.Frame != 0 {
		b = appendKey(b, "frame")
		b = strconv.AppendUint(b, e.Frame, 10)
	}
	if e.Conn != 0 {
		b = appendKey(b, "conn")
		b = strconv.AppendUint(b, e.Conn, 10)
	}
	if e.Protocol == ProtoModbus && e.Op != OpStatus {
		b = e.appendModbus(b)
	}
	if e.Protocol == ProtoModbus && e.Op == OpStatus && e.Source == Poll {
		// The status of one unit: several behind one gateway address
		// come up and go down on their own (issue 9 §7).
		b = appendUint(b, "unit", uint32(e.Unit), e.Shows(FieldUnit))
	}
	if e.Tag != "" {
		b = appendKey(b, "tag")
		b = AppendJSONString(b, e.Tag)
		b = appendKey(b, "value")
		b = appendFloat(b, e.Value)
		if e.Source == Poll {
			b = appendKey(b, "raw")
			b = appendFloat(b, e.Raw)
		}
		if e.Text != "" {
			b = appendKey(b, "text")
			b = AppendJSONString(b, e.Text)
		}
		if e.Protocol == ProtoOPCUA {
			// A polled OPC UA value's built-in type, and an array's
			// numbers (count is its length).
			b = appendStr(b, "value_type", e.ValueType)
			if e.Values.Kind() != NoValues {
				b = appendKey(b, "values")
				b = e.Values.appendJSON(b)
			}
		}
	}
	if e.Quality != "" {
		b = appendKey(b, "quality")
		b = AppendJSONString(b, e.Quality)
	}
	if e.Error != "" {
		b = appendKey(b, "error")
		b = AppendJSONString(b, e.Error)
	}
	if e.Protocol == ProtoOPCUA && e.Op != OpStatus {
		b = e.appendOPCUA(b)
	}
	b = e.appendCorrelation(b)
	return append(b, '}')
}

// appendOPCUA appends the OPC UA fields that are set (docs/events.md).
func (e *Event) appendOPCUA(b []byte) []byte {
	b = appendStr(b, "service", e.Service)
	b = appendStr(b, "node", e.Node)
	b = appendStr(b, "object", e.Object)
	if e.Attribute != 0 || e.Has&FieldAttribute != 0 {
		b = appendKey(b, "attribute")
		b = strconv.AppendUint(b, uint64(e.Attribute), 10)
	}
	b = appendStr(b, "index_range", e.IndexRange)
	if e.Count != 0 || e.Has&FieldOperations != 0 {
		b = appendKey(b, "count")
		b = strconv.AppendUint(b, uint64(e.Count), 10)
	}
	if e.Tag == "" && e.ValueType != "" { // a polled tag's value is written with the tag
		b = appendStr(b, "value_type", e.ValueType)
		switch {
		case e.Values.Kind() != NoValues:
			b = appendKey(b, "values")
			b = e.Values.appendJSON(b)
		case e.Text != "":
			b = appendStr(b, "text", e.Text)
		default:
			b = appendKey(b, "value")
			b = appendFloat(b, e.Value)
		}
	}
	if e.Response.Kind() != NoValues {
		b = appendKey(b, "response")
		b = e.Response.appendJSON(b)
	}
	b = e.appendCallOutputs(b)
	if e.Shows(FieldStatus) {
		b = appendKey(b, "status")
		b = strconv.AppendUint(b, uint64(e.Status), 10)
	}
	b = appendStr(b, "status_name", e.StatusName)
	if e.Source == Wire {
		b = appendUint(b, "request_id", e.RequestID, e.Shows(FieldRequestID))
		b = appendUint(b, "index", uint32(e.Index), e.Shows(FieldIndex))
		b = appendUint(b, "channel", e.Channel, e.Shows(FieldChannel))
	}
	b = e.appendChannelFacts(b)
	b = appendStr(b, "security_policy", e.SecurityPolicy)
	b = appendStr(b, "security_mode", e.SecurityMode)
	b = appendStr(b, "identity", e.Identity)
	b = appendStr(b, "user", e.User)
	b = appendStr(b, "session_name", e.SessionName)
	b = appendStr(b, "endpoint", e.Endpoint)
	b = appendStr(b, "application", e.Application)
	b = appendStr(b, "thumbprint", e.Thumbprint)
	if e.Messages != 0 || e.Bytes != 0 {
		b = appendKey(b, "messages")
		b = strconv.AppendUint(b, e.Messages, 10)
		b = appendKey(b, "bytes")
		b = strconv.AppendUint(b, e.Bytes, 10)
	}
	if !e.SourceTime.IsZero() {
		b = append(b, `,"source_time":"`...)
		b = e.SourceTime.UTC().AppendFormat(b, TimeFormat)
		b = append(b, '"')
	}
	if !e.ServerTime.IsZero() {
		b = append(b, `,"server_time":"`...)
		b = e.ServerTime.UTC().AppendFormat(b, TimeFormat)
		b = append(b, '"')
	}
	if e.Malformed != "" {
		b = appendStr(b, "malformed", e.Malformed)
	}
	if e.Unanswered != "" {
		b = appendStr(b, "unanswered", e.Unanswered)
	}
	if e.Orphan {
		b = append(b, `,"orphan":true`...)
	}
	if e.RTT > 0 {
		b = appendKey(b, "rtt_us")
		b = strconv.AppendInt(b, int64(e.RTT/time.Microsecond), 10)
	}
	return b
}

// appendCallOutputs appends what a Call's response said of one method
// beyond its status and numeric outputs (issue 11 review).
func (e *Event) appendCallOutputs(b []byte) []byte {
	b = appendStr(b, "output_type", e.OutputType)
	b = appendStr(b, "output_text", e.OutputText)
	if len(e.InputStatus) > 0 {
		b = appendKey(b, "input_status")
		b = append(b, '[')
		for i, s := range e.InputStatus {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(s), 10)
		}
		b = append(b, ']')
	}
	return b
}

// appendChannelFacts appends the OPC UA connection and secure channel
// facts of a Hello, an OpenSecureChannel and an ActivateSession (issue 11
// review), each only when it was on the wire.
func (e *Event) appendChannelFacts(b []byte) []byte {
	b = appendUint(b, "token_id", e.TokenID, e.Has&FieldTokenID != 0)
	b = appendStr(b, "token_request", e.TokenRequest)
	b = appendUint(b, "requested_lifetime_ms", e.Lifetime, e.Has&FieldLifetime != 0)
	b = appendUint(b, "revised_lifetime_ms", e.RevisedLifetime, e.Has&FieldRevisedLifetime != 0)
	if e.Has&FieldHello != 0 {
		b = e.Hello.appendJSON(b, "")
	}
	if e.Has&FieldAcknowledge != 0 {
		b = e.Acknowledge.appendJSON(b, "ack_")
	}
	if e.PasswordClear {
		b = append(b, `,"password_clear":true`...)
	}
	return b
}

func (u *UACPBuffers) appendJSON(b []byte, prefix string) []byte {
	for _, f := range [...]struct {
		k string
		v uint32
	}{{"receive_buffer_size", u.ReceiveBufferSize}, {"send_buffer_size", u.SendBufferSize},
		{"max_message_size", u.MaxMessageSize}, {"max_chunk_count", u.MaxChunkCount}} {
		b = append(b, ',', '"')
		b = append(b, prefix...)
		b = append(b, f.k...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, uint64(f.v), 10)
	}
	return b
}

// appendUint appends "k":v when show.
func appendUint(b []byte, k string, v uint32, show bool) []byte {
	if !show {
		return b
	}
	b = appendKey(b, k)
	return strconv.AppendUint(b, uint64(v), 10)
}

// appendStr appends "k":"v" when v is not empty.
func appendStr(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	b = appendKey(b, k)
	return AppendJSONString(b, v)
}

func (e *Event) appendModbus(b []byte) []byte {
	if e.Source == Wire {
		b = appendUint(b, "tid", uint32(e.TID), e.Shows(FieldTID))
	}
	b = appendUint(b, "unit", uint32(e.Unit), e.Shows(FieldUnit))
	b = appendUint(b, "function", uint32(e.Function), e.Shows(FieldFunction))
	if e.HasSub {
		b = appendKey(b, "subfunction")
		b = strconv.AppendUint(b, uint64(e.SubFunction), 10)
	}
	if e.Table != TableNone {
		b = appendKey(b, "table")
		b = append(b, '"')
		b = append(b, e.Table.String()...)
		b = append(b, '"')
		if e.Table == TableFile {
			b = appendUint(b, "file", uint32(e.File), e.Shows(FieldFile))
		}
		if !e.Orphan || echoesAddress(e.Function&0x7f) {
			b = appendUint(b, "address", uint32(e.Address), e.Shows(FieldAddress))
			b = appendUint(b, "count", uint32(e.Count), e.Shows(FieldCount))
		}
	}
	// The exception bit stays on a function whose exception response lost
	// its code: the request's fields are still the request's.
	if e.Function&0x7f == 23 {
		b = appendUint(b, "read_address", uint32(e.ReadAddress), e.Shows(FieldReadAddress))
		b = appendUint(b, "read_count", uint32(e.ReadCount), e.Shows(FieldReadCount))
	}
	if e.Function&0x7f == 22 {
		b = appendUint(b, "and_mask", uint32(e.AndMask), e.Shows(FieldAndMask))
		b = appendUint(b, "or_mask", uint32(e.OrMask), e.Shows(FieldOrMask))
	}
	if e.Values.Kind() != NoValues {
		b = appendKey(b, "values")
		b = e.Values.appendJSON(b)
	}
	if e.Response.Kind() != NoValues {
		b = appendKey(b, "response")
		b = e.Response.appendJSON(b)
	}
	if len(e.Objects) > 0 {
		b = appendKey(b, "objects")
		b = append(b, '[')
		for i, o := range e.Objects {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = strconv.AppendUint(b, uint64(o.ID), 10)
			if name := DeviceObjectName(o.ID); name != "" {
				b = append(b, `,"name":"`...)
				b = append(b, name...)
				b = append(b, '"')
			}
			b = append(b, `,"value":`...)
			b = AppendJSONString(b, o.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendKey(b, "exception")
	b = strconv.AppendUint(b, uint64(e.Exception), 10)
	b = appendKey(b, "malformed")
	b = AppendJSONString(b, e.Malformed)
	if e.Unanswered != "" {
		b = appendKey(b, "unanswered")
		b = AppendJSONString(b, e.Unanswered)
	}
	if e.Orphan {
		b = append(b, `,"orphan":true`...)
	}
	if e.RTT > 0 {
		b = appendKey(b, "rtt_us")
		b = strconv.AppendInt(b, int64(e.RTT/time.Microsecond), 10)
	}
	return b
}

// echoesAddress reports whether a Modbus response repeats the request's
// address, so that an orphan response (its request unseen) still knows it.
func echoesAddress(fc uint8) bool {
	switch fc {
	case 5, 6, 15, 16, 22:
		return true
	}
	return false
}

func (v *Values) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i := 0; i < v.Len(); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		if v.kind == Floats {
			b = appendFloat(b, v.Float(i))
			continue
		}
		b = strconv.AppendUint(b, uint64(v.At(i)), 10)
	}
	return append(b, ']')
}

// DeviceObjectName names the standard objects of Read Device Identification
// (Modbus Application Protocol v1.1b3, 6.21); "" for others.
func DeviceObjectName(id uint8) string {
	switch id {
	case 0:
		return "VendorName"
	case 1:
		return "ProductCode"
	case 2:
		return "MajorMinorRevision"
	case 3:
		return "VendorUrl"
	case 4:
		return "ProductName"
	case 5:
		return "ModelName"
	case 6:
		return "UserApplicationName"
	}
	return ""
}

func appendKey(b []byte, k string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	b = append(b, '"')
	b = ap.AppendTo(b)
	return append(b, '"')
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Bytes that are not valid UTF-8
// become U+FFFD, as encoding/json does: the text comes from the wire.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendCorrelation appends the process image's fields that are set
// (docs/correlation.md).
func (e *Event) appendCorrelation(b []byte) []byte {
	b = appendStr(b, "asset", e.Asset)
	if e.Written {
		b = append(b, `,"written":true`...)
	}
	if e.Writer.IsValid() {
		b = appendKey(b, "writer")
		b = append(b, '"')
		b = e.Writer.AppendTo(b)
		b = append(b, '"')
		b = appendKey(b, "written_value")
		b = appendFloat(b, e.WrittenValue)
	}
	if e.WriteCycles != 0 {
		b = appendKey(b, "write_cycles")
		b = strconv.AppendUint(b, uint64(e.WriteCycles), 10)
	}
	if e.Unwritten {
		b = append(b, `,"unwritten":true`...)
	}
	if e.PolledTag != "" {
		b = appendStr(b, "polled_tag", e.PolledTag)
		b = appendKey(b, "polled")
		b = appendFloat(b, e.Polled)
		b = appendKey(b, "viewed")
		b = appendFloat(b, e.Viewed)
		b = appendKey(b, "polled_age_ms")
		b = appendFloat(b, float64(e.PolledAge)/float64(time.Millisecond))
		b = appendKey(b, "view_differs_ms")
		b = appendFloat(b, float64(e.ViewDiffers)/float64(time.Millisecond))
	}
	if e.Cycle != 0 {
		b = appendKey(b, "cycle_ms")
		b = appendFloat(b, float64(e.Cycle)/float64(time.Millisecond))
	}
	return b
}

// AppendTelemetryHead appends the start of a device's telemetry document
// (plcwatch.telemetry/v1, docs/config.md), up to and including the device
// name: {"schema":…,"time":…,"site":…,"gateway":…,"device":… — each
// collector then adds what is its own (Modbus units, the OPC UA protocol)
// and the tags. t is written in UTC.
func AppendTelemetryHead(b []byte, t time.Time, site, gateway, device string) []byte {
	b = append(b, `{"schema":"plcwatch.telemetry/v1","time":"`...)
	b = t.UTC().AppendFormat(b, TimeFormat)
	b = append(b, `","site":`...)
	b = AppendJSONString(b, site)
	b = append(b, `,"gateway":`...)
	b = AppendJSONString(b, gateway)
	b = append(b, `,"device":`...)
	return AppendJSONString(b, device)
}

// AppendTelemetryTag appends a polled tag's entry of a telemetry document
// (plcwatch.telemetry/v1, docs/config.md), Modbus or OPC UA alike:
// {"value":…,"raw":…,"values":[…],"text":…,"quality":…,"exception":…,
// "status":…,"error":…,"uom":…}. value and raw are null when absent; an
// array's numbers are in values and its texts (a JSON array) in text, as
// in the event; exception (Modbus), status (OPC UA StatusCode), error and
// uom only when set. It does not allocate beyond growing b.
func (e *Event) AppendTelemetryTag(b []byte, uom string) []byte {
	b = append(b, `{"value":`...)
	b = appendFloat(b, e.Value)
	b = append(b, `,"raw":`...)
	b = appendFloat(b, e.Raw)
	if e.Values.Kind() != NoValues {
		b = append(b, `,"values":`...)
		b = e.Values.appendJSON(b)
	}
	if e.Text != "" {
		b = append(b, `,"text":`...)
		b = AppendJSONString(b, e.Text)
	}
	b = append(b, `,"quality":`...)
	b = AppendJSONString(b, e.Quality)
	if e.Exception != 0 {
		b = append(b, `,"exception":`...)
		b = strconv.AppendUint(b, uint64(e.Exception), 10)
	}
	if e.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendUint(b, uint64(e.Status), 10)
	}
	if e.Error != "" {
		b = append(b, `,"error":`...)
		b = AppendJSONString(b, e.Error)
	}
	if uom != "" {
		b = append(b, `,"uom":`...)
		b = AppendJSONString(b, uom)
	}
	return append(b, '}')
}
