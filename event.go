// Package plcwatch holds the types every part of plcwatch shares: the one
// Event that pollers and the wire dissectors produce, and the small
// interfaces between sources of events and their consumers. It imports
// nothing else of this module, so the import graph stays a tree.
package plcwatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"
)

// Event is one observation: a request seen on the wire (paired with its
// response when there was one), or a polled value. It is a plain value type:
// decoders fill it in place without allocating, and whoever keeps an Event
// past the call that handed it over copies it.
type Event struct {
	Time     time.Time // when the request was seen (wire) or the value read (poll)
	Source   SourceKind
	Protocol Protocol
	Op       Op
	Device   string         // configured device name, or the server's ip:port for wire traffic
	Client   netip.AddrPort // wire: the side that sent the request
	Server   netip.AddrPort // wire: the side that answered
	Frame    uint64         // wire: 1-based number of the packet that completed the request, in the capture file or since live capture started
	Conn     uint64         // wire: the TCP connection, unique within one run of plcwatch; 0 for polls

	// Modbus.
	TID         uint16 // MBAP transaction id
	Unit        uint8
	Function    uint8  // function code without the exception bit, unless an exception response's code is missing or 0 (docs/events.md)
	SubFunction uint16 // FC 8 sub-function, FC 43 MEI type; see HasSub
	HasSub      bool
	Table       Table
	Address     uint16 // 0-based protocol address, as on the wire
	Count       uint16 // quantity of coils or registers (or record length for files)
	ReadAddress uint16 // FC 23: the read half
	ReadCount   uint16
	AndMask     uint16 // FC 22
	OrMask      uint16
	File        uint16 // FC 20/21: file number of the first sub-request
	Values      Values // written values (requests)
	Response    Values // read values (the paired response)
	Exception   uint8  // exception code of the response, 0 when none
	Malformed   string // why the request or its response is not well formed; empty when it is
	Unanswered  string // why no response was paired: timeout, closed, reused, evicted, eof; empty when answered
	Orphan      bool   // a response that matched no request seen
	RTT         time.Duration
	Objects     []DeviceObject // FC 43/14 device identification objects (rare; allocated)

	// Polled tags and devices.
	Tag     string
	Value   float64 // engineering value: raw × scale + offset
	Raw     float64 // the decoded value before scale and offset
	Text    string  // string tags: the text read (Value is NoValue)
	Quality string  // tags: good or bad; device status events: up or down
	Error   string  // why a tag is bad or a device down

	// Stage says which half of a wire request this event stands for, so
	// that an alert on a request never waits for its response (issue 9):
	// see Stage. Not part of the JSON: event streams show one event per
	// request, the StageResponse or StageWhole one.
	Stage Stage

	// OPC UA (OPC 10000-4 names services and status codes; OPC 10000-6 the
	// binary encoding). Strings are empty and numbers 0 when not known.
	Service        string    // wire: the service's encoding name (WriteRequest), or its numeric type id when unknown; poll: the service used (Read, Publish)
	Node           string    // node id in its text form (ns=2;s=Tank.Level, i=85, nsu=urn:x;s=a)
	Object         string    // Call: the ObjectId the method is called on (Node is the MethodId)
	Attribute      uint32    // AttributeId (OPC 10000-6 A.1); 13 is Value, 0 when none
	IndexRange     string    // NumericRange of an array write or read ("2:4")
	ValueType      string    // built-in type of the value (Boolean, Int32, Double, String, ...); "" when no value
	Status         uint32    // StatusCode: of the operation (a write, a call, a read value), else of the response's ServiceResult
	StatusName     string    // the status code's symbolic name (BadUserAccessDenied); "" when Good or unknown
	RequestID      uint32    // the RequestId of the message's sequence header (wire)
	Index          int       // position of this operation in its request (one event per WriteValue or method call), 0-based
	Channel        uint32    // SecureChannelId (wire)
	SecurityPolicy string    // short policy name (None, Basic256Sha256, Aes128_Sha256_RsaOaep, ...)
	SecurityMode   string    // None, Sign or SignAndEncrypt
	Identity       string    // ActivateSession identity token: anonymous, username, certificate or issued
	User           string    // the user name of a UserNameIdentityToken (never the password)
	SessionName    string    // CreateSession's SessionName
	Endpoint       string    // endpoint URL of a Hello or CreateSession, or of a polled server
	Application    string    // CreateSession: the client's ApplicationUri; ReverseHello: the server's
	Messages       uint64    // encrypted secure channels: messages seen since the channel's previous OPN (wire)
	Bytes          uint64    // encrypted secure channels: their bytes, headers included (wire)
	Thumbprint     string    // SHA-1 thumbprint (hex) of the client certificate (OPN) or the X.509 identity token
	SourceTime     time.Time // poll: the value's SourceTimestamp; zero when the server gave none
	ServerTime     time.Time // poll: the value's ServerTimestamp; zero when the server gave none

	// OPC UA channel, session and call facts of the issue 11 review. The
	// numbers are in the JSON only when their bit is in Has: 0 is a value
	// (no limit, an infinite lifetime), not "not seen".
	TokenID         uint32      // OPN: the SecurityToken's TokenId the response assigned (FieldTokenID)
	Lifetime        uint32      // OPN: the RequestedLifetime of the token, ms (FieldLifetime)
	RevisedLifetime uint32      // OPN: the response's RevisedLifetime, ms (FieldRevisedLifetime)
	TokenRequest    string      // OPN: Issue (a new channel) or Renew
	Hello           UACPBuffers // Hello: the client's buffer sizes and limits (FieldHello)
	Acknowledge     UACPBuffers // the Acknowledge answering it: the server's (FieldAcknowledge)
	PasswordClear   bool        // ActivateSession: a UserNameIdentityToken whose password crossed the wire unencrypted (the password itself is never read)
	OutputType      string      // Call: the output arguments' built-in types, comma-separated
	OutputText      string      // Call: the output arguments as text when not all are numbers (numbers are in Response)
	InputStatus     []uint32    // Call: the InputArgumentResults, one StatusCode per input argument, when the server gave them (rare; allocated)

	// Has and Absent say which numbers are on the wire where 0 is a value
	// (issue 11 review: a field that was not on the wire is absent from
	// the JSON, never 0). Has lists fields the JSON shows only when set;
	// Absent lists fields it shows unless set — a zero Event keeps every
	// field it always showed, and a decoder marks what a truncated request
	// or a request never answered lacks.
	Has    Fields
	Absent Fields

	// Correlation of what plcwatch polled with what crossed the wire: the
	// rules engine's process image fills these in (docs/correlation.md),
	// for polled tags and the wire reads and writes of the same server,
	// unit, table and address (Modbus) or server and node (OPC UA).
	Written      bool          // poll: a write covering the tag was seen on the wire since its previous cycle
	Writer       netip.Addr    // poll: the client of the last write covering the tag since the start; invalid when none
	WrittenValue float64       // poll: that write's value as the tag's engineering value (registers the write left out keep their polled value); NoValue when none or not decodable
	WriteCycles  uint16        // poll: cycles polled since the last write without the tag taking its value; 0 when it took it or there is none
	Unwritten    bool          // poll: the value changed at the previous cycle and no accepted write covering the tag was seen from the cycle before it until now
	PolledTag    string        // wire read response: the polled tag it is compared with (the first in the read's range that differs, else the first); "" when none
	Polled       float64       // wire read response: plcwatch's latest polled value of PolledTag (engineering); NoValue when none
	Viewed       float64       // wire read response: PolledTag's value as this response gave it (engineering); NoValue when not decodable
	PolledAge    time.Duration // wire read response: the time from that poll to this response (negative when the poll is newer)
	ViewDiffers  time.Duration // wire read response: how long the wire's view of PolledTag has differed from plcwatch's, in register form; 0 when they agree
	Cycle        time.Duration // poll and wire read response: the tag's poll interval as plcwatch saw it; 0 before its second poll

	// Asset says what an OpAsset event found new (docs/inventory.md):
	// AssetServer, AssetClient or AssetWriter.
	Asset string
}

// UACPBuffers are the sizes a Hello or an Acknowledge carries (OPC 10000-6
// §7.1.2.3, .4), in bytes but MaxChunkCount; 0 is "no limit" for the
// last two.
type UACPBuffers struct {
	ReceiveBufferSize uint32
	SendBufferSize    uint32
	MaxMessageSize    uint32
	MaxChunkCount     uint32
}

// Fields is a set of Event fields whose zero is a value, for Event.Has and
// Event.Absent.
type Fields uint32

// The fields of Has and Absent.
const (
	FieldTID             Fields = 1 << iota // Modbus tid (Absent: bytes that were no MBAP header)
	FieldUnit                               // Modbus unit (Absent)
	FieldFunction                           // Modbus function (Absent)
	FieldAddress                            // Modbus address (Absent: a truncated request)
	FieldCount                              // Modbus count (Absent)
	FieldReadAddress                        // Modbus FC 23 read_address (Absent)
	FieldReadCount                          // Modbus FC 23 read_count (Absent)
	FieldAndMask                            // Modbus FC 22 and_mask (Absent)
	FieldOrMask                             // Modbus FC 22 or_mask (Absent)
	FieldFile                               // Modbus FC 20/21 file (Absent)
	FieldStatus                             // OPC UA status (Absent: no response, Error or abort gave one)
	FieldRequestID                          // OPC UA request_id (Absent: a connection protocol message)
	FieldChannel                            // OPC UA channel (Absent)
	FieldIndex                              // OPC UA index (Has: an operation of a Write or Call)
	FieldAttribute                          // OPC UA attribute (Has: on the wire, even 0)
	FieldTokenID                            // OPC UA token_id (Has)
	FieldLifetime                           // OPC UA requested_lifetime_ms (Has)
	FieldRevisedLifetime                    // OPC UA revised_lifetime_ms (Has)
	FieldHello                              // OPC UA Hello buffer sizes (Has)
	FieldAcknowledge                        // OPC UA Acknowledge buffer sizes (Has)
	FieldOperations                         // OPC UA count: the request's operations were counted on the wire, 0 included (Has)
)

// Shows reports whether the JSON shows field f of a kind whose zero is a
// value: f is in Has, or is an Absent kind not marked absent.
func (e *Event) Shows(f Fields) bool {
	if f&hasKinds != 0 {
		return e.Has&f != 0
	}
	return e.Absent&f == 0
}

// AllFields is every field of Has and Absent.
const AllFields = FieldOperations<<1 - 1

// hasKinds are the fields that are shown only when in Has.
const hasKinds = FieldIndex | FieldAttribute | FieldTokenID | FieldLifetime | FieldRevisedLifetime | FieldHello | FieldAcknowledge | FieldOperations

// HasValue reports whether Value holds a value. A tag that is bad, a NaN
// reading and an event without a value carry NaN (JSON null): a value that
// is not there never compares as 0 (issue 9).
func (e *Event) HasValue() bool { return e.Value == e.Value }

// NoValue is what Value holds when there is no value: NaN.
var NoValue = math.NaN()

// Stage of a wire request's event. A dissector that can emit a request
// before its response (a Modbus request, an OPC UA request) emits it twice:
// once as StageRequest when the request is complete on the wire, for the
// rules that do not look at the response, and once as StageResponse when
// it is answered or given up on, for the rules that do. Everything else —
// polled values, orphan responses, framing errors, and every event of a
// source that emits once — is StageWhole: every rule sees it.
type Stage uint8

const (
	StageWhole    Stage = iota // a complete observation: every rule sees it, event streams show it
	StageRequest               // a request complete on the wire, response not in yet: rules that do not look at the response; event streams skip it
	StageResponse              // the same request answered or given up on: rules that look at the response; event streams show it
)

// Why a request was emitted without a response (Event.Unanswered).
const (
	UnansweredTimeout = "timeout" // no response within the response timeout
	UnansweredClosed  = "closed"  // the connection ended first
	UnansweredReused  = "reused"  // a new request reused its transaction id
	UnansweredEvicted = "evicted" // too many requests were outstanding
	UnansweredEOF     = "eof"     // the capture file ended first
	UnansweredIdle    = "idle"    // the connection was dropped for idleness or to make room
	UnansweredStopped = "stopped" // the capture stopped first
)

// What an OpAsset event reports (Event.Asset).
const (
	AssetServer = "server" // a server not seen before (Server, Device, Protocol)
	AssetClient = "client" // a client not seen before (Client; Server is the first it talked to)
	AssetWriter = "writer" // a client writing to a server it had not written to before (Client, Server)
)

// DeviceObject is one object of a Modbus Read Device Identification
// response (FC 43/14).
type DeviceObject struct {
	ID    uint8
	Value string
}

// Emit hands an event to its consumer. The Event is only valid during the
// call: a consumer that keeps it copies it.
type Emit func(*Event)

// Source is anything that produces events until its context is cancelled:
// a poller, a live capture.
type Source interface {
	Run(ctx context.Context, emit Emit) error
}

// SourceKind says where an event came from.
type SourceKind uint8

const (
	UnknownSource SourceKind = iota
	Wire                     // decoded from traffic crossing the gateway
	Poll                     // read actively from a device
)

var sourceNames = [...]string{"", "wire", "poll"}

func (s SourceKind) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// Protocol of an event.
type Protocol uint8

const (
	ProtoUnknown Protocol = iota
	ProtoModbus
	ProtoOPCUA
)

var protocolNames = [...]string{"", "modbus", "opcua"}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "unknown"
}

// Op is the class of operation an event represents; rules match on it.
type Op uint8

const (
	OpUnknown    Op = iota
	OpRead          // reads process data
	OpWrite         // changes process data
	OpDiagnostic    // Modbus FC 7, 8, 11, 12
	OpIdentify      // Modbus FC 17, 43/14
	OpOther         // anything else, including unknown and user-defined function codes
	OpSession       // OPC UA session and channel management
	OpCall          // OPC UA method call
	OpStatus        // a polled device came up or went down (Quality up or down)
	OpBrowse        // OPC UA discovery of the address space: Browse, BrowseNext, TranslateBrowsePathsToNodeIds, RegisterNodes
	OpManage        // OPC UA node management: AddNodes, AddReferences, DeleteNodes, DeleteReferences
	OpAsset         // the passive inventory saw something new: a server, a client, a client writing to a server
)

var opNames = [...]string{"", "read", "write", "diagnostic", "identify", "other", "session", "call", "status", "browse", "manage", "asset"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "unknown"
}

// ParseOp returns the Op named s.
func ParseOp(s string) (Op, bool) {
	for i, n := range opNames {
		if i > 0 && n == s {
			return Op(i), true
		}
	}
	return OpUnknown, false
}

// Table is the Modbus data table a request addresses.
type Table uint8

const (
	TableNone     Table = iota
	TableCoil           // read-write bits
	TableDiscrete       // read-only bits
	TableInput          // read-only registers
	TableHolding        // read-write registers
	TableFile           // FC 20/21 file records
)

var tableNames = [...]string{"", "coil", "discrete", "input", "holding", "file"}

func (t Table) String() string {
	if int(t) < len(tableNames) {
		return tableNames[t]
	}
	return "unknown"
}

// ParseRegisterRef reads the 1-based register references of device
// manuals: a table digit (0 coil, 1 discrete input, 3 input register, 4
// holding register) and a 1-based number, in the 5-digit form (40001 =
// holding register at protocol address 0, up to 9999) or the 6-digit form
// (400001, up to 65536). It returns the table and the 0-based address.
func ParseRegisterRef(s string) (Table, uint16, error) {
	if len(s) != 5 && len(s) != 6 {
		return 0, 0, errors.New("want 5 or 6 digits: a table digit (0 coil, 1 discrete, 3 input, 4 holding) and a 1-based number, like 40001 or 400001")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, 0, errors.New("want digits only")
		}
	}
	var t Table
	switch s[0] {
	case '0':
		t = TableCoil
	case '1':
		t = TableDiscrete
	case '3':
		t = TableInput
	case '4':
		t = TableHolding
	default:
		return 0, 0, fmt.Errorf("table digit %c: want 0 (coil), 1 (discrete input), 3 (input register) or 4 (holding register)", s[0])
	}
	n, _ := strconv.Atoi(s[1:])
	if n < 1 || n > 65536 {
		return 0, 0, errors.New("register numbers count from 1 to 65536")
	}
	return t, uint16(n - 1), nil
}

// ParseTable returns the Table named s.
func ParseTable(s string) (Table, bool) {
	for i, n := range tableNames {
		if i > 0 && n == s {
			return Table(i), true
		}
	}
	return TableNone, false
}
