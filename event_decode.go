package plcwatch

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// eventJSON is the wire form of an Event, for decoding.
type eventJSON struct {
	Time        time.Time    `json:"time"`
	Source      string       `json:"source"`
	Protocol    string       `json:"protocol"`
	Op          string       `json:"op"`
	Device      string       `json:"device"`
	Client      string       `json:"client"`
	Server      string       `json:"server"`
	Frame       uint64       `json:"frame"`
	Conn        uint64       `json:"conn"`
	TID         *uint16      `json:"tid"`
	Unit        *uint8       `json:"unit"`
	Function    *uint8       `json:"function"`
	SubFunction *uint16      `json:"subfunction"`
	Table       string       `json:"table"`
	Address     *uint16      `json:"address"`
	Count       *uint16      `json:"count"`
	File        *uint16      `json:"file"`
	ReadAddress *uint16      `json:"read_address"`
	ReadCount   *uint16      `json:"read_count"`
	AndMask     *uint16      `json:"and_mask"`
	OrMask      *uint16      `json:"or_mask"`
	Values      []float64    `json:"values"`
	Response    []float64    `json:"response"`
	Objects     []objectJSON `json:"objects"`
	Exception   uint8        `json:"exception"`
	Malformed   string       `json:"malformed"`
	Unanswered  string       `json:"unanswered"`
	Orphan      bool         `json:"orphan"`
	RTTMicros   int64        `json:"rtt_us"`
	Tag         string       `json:"tag"`
	Value       *float64     `json:"value"`
	Raw         *float64     `json:"raw"`
	Text        string       `json:"text"`
	Quality     string       `json:"quality"`
	Error       string       `json:"error"`
	Service     string       `json:"service"`
	Node        string       `json:"node"`
	Object      string       `json:"object"`
	Status      *uint32      `json:"status"`

	Attribute      *uint32   `json:"attribute"`
	IndexRange     string    `json:"index_range"`
	ValueType      string    `json:"value_type"`
	StatusName     string    `json:"status_name"`
	RequestID      *uint32   `json:"request_id"`
	Index          *uint32   `json:"index"`
	Channel        *uint32   `json:"channel"`
	SecurityPolicy string    `json:"security_policy"`
	SecurityMode   string    `json:"security_mode"`
	Identity       string    `json:"identity"`
	User           string    `json:"user"`
	SessionName    string    `json:"session_name"`
	Endpoint       string    `json:"endpoint"`
	Thumbprint     string    `json:"thumbprint"`
	Application    string    `json:"application"`
	Messages       uint64    `json:"messages"`
	Bytes          uint64    `json:"bytes"`
	SourceTime     time.Time `json:"source_time"`
	ServerTime     time.Time `json:"server_time"`

	// The issue 11 review's OPC UA fields.
	TokenID         *uint32  `json:"token_id"`
	TokenRequest    string   `json:"token_request"`
	Lifetime        *uint32  `json:"requested_lifetime_ms"`
	RevisedLifetime *uint32  `json:"revised_lifetime_ms"`
	PasswordClear   bool     `json:"password_clear"`
	OutputType      string   `json:"output_type"`
	OutputText      string   `json:"output_text"`
	InputStatus     []uint32 `json:"input_status"`
	buffersJSON              // inline: the Hello's sizes
	ackJSON                  // inline: the Acknowledge's
}

// buffersJSON and ackJSON are a Hello's and an Acknowledge's sizes.
type buffersJSON struct {
	ReceiveBufferSize *uint32 `json:"receive_buffer_size"`
	SendBufferSize    *uint32 `json:"send_buffer_size"`
	MaxMessageSize    *uint32 `json:"max_message_size"`
	MaxChunkCount     *uint32 `json:"max_chunk_count"`
}

type ackJSON struct {
	ReceiveBufferSize *uint32 `json:"ack_receive_buffer_size"`
	SendBufferSize    *uint32 `json:"ack_send_buffer_size"`
	MaxMessageSize    *uint32 `json:"ack_max_message_size"`
	MaxChunkCount     *uint32 `json:"ack_max_chunk_count"`
}

// buffers reads the four sizes; ok when any was there.
func buffers(r, s, m, c *uint32) (UACPBuffers, bool) {
	var u UACPBuffers
	ok := false
	for _, f := range []struct {
		in  *uint32
		dst *uint32
	}{{r, &u.ReceiveBufferSize}, {s, &u.SendBufferSize}, {m, &u.MaxMessageSize}, {c, &u.MaxChunkCount}} {
		if f.in != nil {
			*f.dst, ok = *f.in, true
		}
	}
	return u, ok
}

type objectJSON struct {
	ID    uint8  `json:"id"`
	Value string `json:"value"`
}

// UnmarshalJSON reads an event as AppendJSON writes it (rule tests feed
// events from .jsonl files).
func (e *Event) UnmarshalJSON(b []byte) error {
	var j eventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = Event{
		Time: j.Time, Device: j.Device, Frame: j.Frame, Conn: j.Conn,
		Exception: j.Exception, Malformed: j.Malformed, Unanswered: j.Unanswered, Orphan: j.Orphan,
		RTT: time.Duration(j.RTTMicros) * time.Microsecond,
		Tag: j.Tag, Text: j.Text, Quality: j.Quality, Error: j.Error, Service: j.Service, Node: j.Node,
		IndexRange: j.IndexRange, ValueType: j.ValueType, StatusName: j.StatusName,
		SecurityPolicy: j.SecurityPolicy,
		SecurityMode:   j.SecurityMode, Identity: j.Identity, User: j.User, SessionName: j.SessionName,
		Endpoint: j.Endpoint, Thumbprint: j.Thumbprint, SourceTime: j.SourceTime, ServerTime: j.ServerTime,
		Object: j.Object, Application: j.Application, Messages: j.Messages, Bytes: j.Bytes,
		Value:        NoValue,
		TokenRequest: j.TokenRequest, PasswordClear: j.PasswordClear,
		OutputType: j.OutputType, OutputText: j.OutputText, InputStatus: j.InputStatus,
	}
	// A number whose zero is a value is absent when its key is (Event.Has,
	// Event.Absent).
	for _, f := range []struct {
		in   *uint16
		dst  *uint16
		kind Fields
	}{{j.TID, &e.TID, FieldTID}, {j.Address, &e.Address, FieldAddress}, {j.Count, &e.Count, FieldCount},
		{j.File, &e.File, FieldFile}, {j.ReadAddress, &e.ReadAddress, FieldReadAddress}, {j.ReadCount, &e.ReadCount, FieldReadCount},
		{j.AndMask, &e.AndMask, FieldAndMask}, {j.OrMask, &e.OrMask, FieldOrMask}} {
		if f.in == nil {
			e.Absent |= f.kind
			continue
		}
		*f.dst = *f.in
	}
	for _, f := range []struct {
		in   *uint8
		dst  *uint8
		kind Fields
	}{{j.Unit, &e.Unit, FieldUnit}, {j.Function, &e.Function, FieldFunction}} {
		if f.in == nil {
			e.Absent |= f.kind
			continue
		}
		*f.dst = *f.in
	}
	for _, f := range []struct {
		in   *uint32
		dst  *uint32
		kind Fields
	}{{j.Status, &e.Status, FieldStatus}, {j.RequestID, &e.RequestID, FieldRequestID}, {j.Channel, &e.Channel, FieldChannel},
		{j.Attribute, &e.Attribute, FieldAttribute}, {j.TokenID, &e.TokenID, FieldTokenID},
		{j.Lifetime, &e.Lifetime, FieldLifetime}, {j.RevisedLifetime, &e.RevisedLifetime, FieldRevisedLifetime}} {
		switch {
		case f.in != nil:
			*f.dst = *f.in
			if f.kind&hasKinds != 0 {
				e.Has |= f.kind
			}
		case f.kind&hasKinds == 0:
			e.Absent |= f.kind
		}
	}
	if j.Index != nil {
		e.Index, e.Has = int(*j.Index), e.Has|FieldIndex
	}
	if u, ok := buffers(j.buffersJSON.ReceiveBufferSize, j.buffersJSON.SendBufferSize, j.buffersJSON.MaxMessageSize, j.buffersJSON.MaxChunkCount); ok {
		e.Hello, e.Has = u, e.Has|FieldHello
	}
	a := j.ackJSON
	if u, ok := buffers(a.ReceiveBufferSize, a.SendBufferSize, a.MaxMessageSize, a.MaxChunkCount); ok {
		e.Acknowledge, e.Has = u, e.Has|FieldAcknowledge
	}
	var ok bool
	switch j.Source {
	case "wire":
		e.Source = Wire
	case "poll":
		e.Source = Poll
	case "":
	default:
		return fmt.Errorf("event: unknown source %q", j.Source)
	}
	switch j.Protocol {
	case "modbus":
		e.Protocol = ProtoModbus
	case "opcua":
		e.Protocol = ProtoOPCUA
	case "":
	default:
		return fmt.Errorf("event: unknown protocol %q", j.Protocol)
	}
	if j.Op != "" {
		if e.Op, ok = ParseOp(j.Op); !ok {
			return fmt.Errorf("event: unknown op %q", j.Op)
		}
	}
	if j.Table != "" {
		if e.Table, ok = ParseTable(j.Table); !ok {
			return fmt.Errorf("event: unknown table %q", j.Table)
		}
	}
	for _, a := range []struct {
		s   string
		dst *netip.AddrPort
	}{{j.Client, &e.Client}, {j.Server, &e.Server}} {
		if a.s == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(a.s)
		if err != nil {
			return fmt.Errorf("event: %w", err)
		}
		*a.dst = ap
	}
	if j.Count != nil && e.Protocol == ProtoOPCUA {
		e.Has |= FieldOperations
	}
	if j.SubFunction != nil {
		e.SubFunction, e.HasSub = *j.SubFunction, true
	}
	if j.Value != nil {
		e.Value = *j.Value
	} else if e.Tag == "" && e.ValueType == "" {
		e.Value = 0 // wire Modbus events carry no value; keep the zero Event's
	}
	if j.Raw != nil {
		e.Raw = *j.Raw
	}
	for _, v := range []struct {
		name string
		in   []float64
		dst  *Values
		resp bool
	}{{"values", j.Values, &e.Values, false}, {"response", j.Response, &e.Response, true}} {
		if v.in == nil {
			continue
		}
		if e.Protocol == ProtoOPCUA {
			// OPC UA values are numbers of any kind (Floats).
			if len(v.in) > MaxFloats {
				return fmt.Errorf("event: %s: %d numbers, at most %d", v.name, len(v.in), MaxFloats)
			}
			v.dst.SetFloats(v.in)
			continue
		}
		if err := setValues(v.dst, v.in, valueKind(e.Function, v.resp)); err != nil {
			return fmt.Errorf("event: %s: %w", v.name, err)
		}
	}
	for _, o := range j.Objects {
		e.Objects = append(e.Objects, DeviceObject(o))
	}
	return nil
}

// valueKind is how a Modbus function's values are held (see Values).
func valueKind(fc uint8, response bool) ValueKind {
	switch fc {
	case 1, 2, 5, 15:
		return Bits
	case 3, 4, 6, 8, 11, 16, 20, 21, 23, 24:
		return Words
	}
	if !response && fc == 22 {
		return Words
	}
	return Bytes
}

func setValues(v *Values, vals []float64, kind ValueKind) error {
	in := make([]uint16, len(vals))
	for i, x := range vals {
		if x != float64(uint16(x)) {
			return fmt.Errorf("value %d is %v, not a whole number 0..65535", i, x)
		}
		in[i] = uint16(x)
	}
	switch kind {
	case Bits:
		if len(in) > 8*MaxValueBytes {
			return fmt.Errorf("%d bits, at most %d", len(in), 8*MaxValueBytes)
		}
		var packed [MaxValueBytes]byte
		for i, x := range in {
			if x > 1 {
				return fmt.Errorf("bit %d is %d, not 0 or 1", i, x)
			}
			packed[i/8] |= byte(x) << (i % 8)
		}
		v.SetBits(packed[:], len(in))
	case Words:
		if 2*len(in) > MaxValueBytes {
			return fmt.Errorf("%d registers, at most %d", len(in), MaxValueBytes/2)
		}
		var raw [MaxValueBytes]byte
		for i, x := range in {
			binary.BigEndian.PutUint16(raw[2*i:], x)
		}
		v.SetWords(raw[:2*len(in)])
	default:
		if len(in) > MaxValueBytes {
			return fmt.Errorf("%d bytes, at most %d", len(in), MaxValueBytes)
		}
		var raw [MaxValueBytes]byte
		for i, x := range in {
			if x > 255 {
				return fmt.Errorf("byte %d is %d", i, x)
			}
			raw[i] = byte(x)
		}
		v.SetBytes(raw[:len(in)])
	}
	return nil
}
