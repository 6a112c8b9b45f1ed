package rules

import (
	"time"

	"github.com/plcwatch/plcwatch"
)

// Env is what a rule's when expression sees of an event: the fields of
// docs/events.md under the same names, with client and server split into
// address and port. The engine fills one Env per event, and only when a
// rule with an expression is a candidate.
//
// value and raw are rounded to 15 significant digits (what float64
// arithmetic adds beyond them is noise: value == 98.6 holds for 986 × 0.1).
// An event without a value (a bad tag, a NaN reading, a status event) has
// has_value false, and an expression that names value or raw without
// has_value is false for it without being run (issue 9 §8).
type Env struct {
	Time           time.Time `expr:"time"`
	Source         string    `expr:"source"`
	Protocol       string    `expr:"protocol"`
	Op             string    `expr:"op"`
	Device         string    `expr:"device"`
	Client         string    `expr:"client"` // address only
	ClientPort     int       `expr:"client_port"`
	Server         string    `expr:"server"` // address only
	ServerPort     int       `expr:"server_port"`
	Frame          int       `expr:"frame"`
	Conn           int       `expr:"conn"`
	TID            int       `expr:"tid"`
	Unit           int       `expr:"unit"`
	Function       int       `expr:"function"`
	SubFunction    int       `expr:"subfunction"`
	Table          string    `expr:"table"`
	Address        int       `expr:"address"`
	Count          int       `expr:"count"`
	ReadAddress    int       `expr:"read_address"`
	ReadCount      int       `expr:"read_count"`
	AndMask        int       `expr:"and_mask"`
	OrMask         int       `expr:"or_mask"`
	File           int       `expr:"file"`
	Values         []float64 `expr:"values"`
	Response       []float64 `expr:"response"`
	Exception      int       `expr:"exception"`
	Malformed      string    `expr:"malformed"`
	Unanswered     string    `expr:"unanswered"`
	Orphan         bool      `expr:"orphan"`
	RTTMillis      float64   `expr:"rtt_ms"`
	Tag            string    `expr:"tag"`
	HasValue       bool      `expr:"has_value"`
	Value          float64   `expr:"value"`
	Raw            float64   `expr:"raw"`
	Text           string    `expr:"text"`
	Quality        string    `expr:"quality"`
	Error          string    `expr:"error"`
	Service        string    `expr:"service"`
	Node           string    `expr:"node"`
	Namespace      string    `expr:"namespace"` // "2" of ns=2;..., the URI of nsu=URI;..., "0"
	Attribute      int       `expr:"attribute"`
	IndexRange     string    `expr:"index_range"`
	ValueType      string    `expr:"value_type"`
	Status         int       `expr:"status"`
	HasStatus      bool      `expr:"has_status"` // status was on the wire: false for an OPC UA request never answered
	StatusName     string    `expr:"status_name"`
	RequestID      int       `expr:"request_id"`
	Index          int       `expr:"index"`
	Channel        int       `expr:"channel"`
	SecurityPolicy string    `expr:"security_policy"`
	SecurityMode   string    `expr:"security_mode"`
	Identity       string    `expr:"identity"`
	User           string    `expr:"user"`
	SessionName    string    `expr:"session_name"`
	Endpoint       string    `expr:"endpoint"`
	Thumbprint     string    `expr:"thumbprint"`
	SourceTime     time.Time `expr:"source_time"`
	ServerTime     time.Time `expr:"server_time"`

	// OPC UA fields of the issue 11 review (docs/events.md).
	Object               string    `expr:"object"`
	Application          string    `expr:"application"`
	Messages             int       `expr:"messages"`
	Bytes                int       `expr:"bytes"`
	TokenID              int       `expr:"token_id"`
	TokenRequest         string    `expr:"token_request"`
	RequestedLifetime    int       `expr:"requested_lifetime_ms"`
	RevisedLifetime      int       `expr:"revised_lifetime_ms"`
	ReceiveBufferSize    int       `expr:"receive_buffer_size"`
	SendBufferSize       int       `expr:"send_buffer_size"`
	MaxMessageSize       int       `expr:"max_message_size"`
	MaxChunkCount        int       `expr:"max_chunk_count"`
	AckReceiveBufferSize int       `expr:"ack_receive_buffer_size"`
	AckSendBufferSize    int       `expr:"ack_send_buffer_size"`
	AckMaxMessageSize    int       `expr:"ack_max_message_size"`
	AckMaxChunkCount     int       `expr:"ack_max_chunk_count"`
	PasswordClear        bool      `expr:"password_clear"`
	OutputType           string    `expr:"output_type"`
	OutputText           string    `expr:"output_text"`
	InputStatus          []float64 `expr:"input_status"`

	// Correlation (docs/correlation.md): the process image's fields.
	Written      bool    `expr:"written"`
	Writer       string  `expr:"writer"`
	HasWritten   bool    `expr:"has_written"` // a write covering the tag was seen since the start
	WrittenValue float64 `expr:"written_value"`
	WriteCycles  int     `expr:"write_cycles"`
	Unwritten    bool    `expr:"unwritten"`
	HasPolled    bool    `expr:"has_polled"` // a wire read response compared with a polled tag
	PolledTag    string  `expr:"polled_tag"`
	Polled       float64 `expr:"polled"`
	Viewed       float64 `expr:"viewed"`
	PolledAge    float64 `expr:"polled_age"`   // seconds
	ViewDiffers  float64 `expr:"view_differs"` // seconds
	Cycle        float64 `expr:"cycle"`        // seconds

	Asset string `expr:"asset"` // op asset: server, client or writer (docs/inventory.md)
}

// fill sets env from ev, reusing env's slices.
func (env *Env) fill(ev *plcwatch.Event) {
	values, response, inputStatus := env.Values[:0], env.Response[:0], env.InputStatus[:0]
	*env = Env{
		Time: ev.Time, Source: ev.Source.String(), Protocol: ev.Protocol.String(), Op: ev.Op.String(),
		Device: ev.Device, ClientPort: int(ev.Client.Port()), ServerPort: int(ev.Server.Port()),
		Frame: int(ev.Frame), Conn: int(ev.Conn),
		TID: int(ev.TID), Unit: int(ev.Unit), Function: int(ev.Function), SubFunction: int(ev.SubFunction),
		Table: ev.Table.String(), Address: int(ev.Address), Count: int(ev.Count),
		ReadAddress: int(ev.ReadAddress), ReadCount: int(ev.ReadCount), AndMask: int(ev.AndMask), OrMask: int(ev.OrMask),
		File:   int(ev.File),
		Values: floats(values, &ev.Values), Response: floats(response, &ev.Response),
		Exception: int(ev.Exception), Malformed: ev.Malformed, Unanswered: ev.Unanswered, Orphan: ev.Orphan,
		RTTMillis: float64(ev.RTT) / float64(time.Millisecond),
		Tag:       ev.Tag, Text: ev.Text, Quality: ev.Quality, Error: ev.Error,
		Service: ev.Service, Node: ev.Node, Namespace: namespaceText(ev.Node),
		Attribute: int(ev.Attribute), IndexRange: ev.IndexRange, ValueType: ev.ValueType,
		Status: int(ev.Status), StatusName: ev.StatusName, RequestID: int(ev.RequestID), Index: ev.Index,
		Channel: int(ev.Channel), SecurityPolicy: ev.SecurityPolicy, SecurityMode: ev.SecurityMode,
		Identity: ev.Identity, User: ev.User, SessionName: ev.SessionName, Endpoint: ev.Endpoint,
		Thumbprint: ev.Thumbprint, SourceTime: ev.SourceTime, ServerTime: ev.ServerTime,
		HasStatus: ev.Shows(plcwatch.FieldStatus),
		Object:    ev.Object, Application: ev.Application, Messages: int(ev.Messages), Bytes: int(ev.Bytes),
		TokenID: int(ev.TokenID), TokenRequest: ev.TokenRequest,
		RequestedLifetime: int(ev.Lifetime), RevisedLifetime: int(ev.RevisedLifetime),
		ReceiveBufferSize: int(ev.Hello.ReceiveBufferSize), SendBufferSize: int(ev.Hello.SendBufferSize),
		MaxMessageSize: int(ev.Hello.MaxMessageSize), MaxChunkCount: int(ev.Hello.MaxChunkCount),
		AckReceiveBufferSize: int(ev.Acknowledge.ReceiveBufferSize), AckSendBufferSize: int(ev.Acknowledge.SendBufferSize),
		AckMaxMessageSize: int(ev.Acknowledge.MaxMessageSize), AckMaxChunkCount: int(ev.Acknowledge.MaxChunkCount),
		PasswordClear: ev.PasswordClear, OutputType: ev.OutputType, OutputText: ev.OutputText,
		InputStatus: statuses(inputStatus, ev.InputStatus),
	}
	env.WrittenValue, env.Polled, env.Viewed = plcwatch.NoValue, plcwatch.NoValue, plcwatch.NoValue
	if ev.Writer.IsValid() {
		env.Writer, env.HasWritten, env.WrittenValue = ev.Writer.String(), true, round15(ev.WrittenValue)
	}
	env.Written, env.WriteCycles, env.Unwritten = ev.Written, int(ev.WriteCycles), ev.Unwritten
	if ev.PolledTag != "" {
		env.HasPolled, env.PolledTag, env.Polled, env.Viewed = true, ev.PolledTag, round15(ev.Polled), round15(ev.Viewed)
		env.PolledAge, env.ViewDiffers = ev.PolledAge.Seconds(), ev.ViewDiffers.Seconds()
	}
	env.Cycle, env.Asset = ev.Cycle.Seconds(), ev.Asset
	if hasValue(ev) {
		env.HasValue, env.Value, env.Raw = true, round15(ev.Value), round15(ev.Raw)
	}
	if ev.Client.IsValid() {
		env.Client = ev.Client.Addr().String()
	}
	if ev.Server.IsValid() {
		env.Server = ev.Server.Addr().String()
	}
}

// statuses appends status codes as numbers.
func statuses(dst []float64, in []uint32) []float64 {
	for _, s := range in {
		dst = append(dst, float64(s))
	}
	return dst
}

// floats appends v's values as numbers: registers and bits as they are,
// OPC UA numbers (Floats) as written.
func floats(dst []float64, v *plcwatch.Values) []float64 {
	for i := 0; i < v.Len(); i++ {
		dst = append(dst, v.Float(i))
	}
	return dst
}
