// Package rules is plcwatch's detection language: rule files an operator
// writes and a colleague reviews (YAML), their loader with file:line:col
// errors, the compiler, and the evaluator that turns matching events into
// alerts — stateless matchers, thresholds over windows, conditions held for
// a duration, value changes, schedules, and baselines learned from traffic.
//
// docs/rules.md is the reference for rule authors.
package rules

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/plcwatch/plcwatch"
)

// Severity of a rule's alerts.
type Severity uint8

const (
	Info Severity = iota + 1
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"", "info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "unknown"
}

// ParseSeverity returns the severity named s.
func ParseSeverity(s string) (Severity, bool) {
	for i, n := range severityNames {
		if i > 0 && n == s {
			return Severity(i), true
		}
	}
	return 0, false
}

// Rule is one compiled rule.
type Rule struct {
	ID          string
	Title       string
	Description string
	Severity    Severity
	Attack      []string
	Tags        []string
	Enabled     bool
	File        string // where the rule was defined
	Line        int

	match     match
	when      *vm.Program
	whenSrc   string
	threshold *threshold
	hold      time.Duration // "for": how long when must hold
	change    *change
	schedule  *schedule
	baseline  *baselineSpec
	fold      foldSpec
	index     int      // position among the set's enabled rules
	digest    [12]byte // the rule as written: state survives a reload when it is unchanged
	alertRule plcwatch.AlertRule

	// stages has a bit per plcwatch.Stage the rule is evaluated at: a rule
	// that looks at the response waits for it (StageResponse), every
	// other rule fires on the request (StageRequest); both see
	// StageWhole (issue 9 §4; docs/rules.md "When a rule is evaluated").
	stages uint8
	// seesMalformedResponse: a request rule that names malformed is also
	// evaluated on the StageResponse event of a request whose response is
	// malformed (Malformed "response: ..."), unless it matched the request
	// already: the request was well formed, the response may not be.
	seesMalformedResponse bool
	// needsValue: when names value or raw (and not has_value). For an
	// event without a value it is false without running, and a held
	// condition neither starts nor ends (issue 9 §8).
	needsValue bool
	// needsStatus: when names status or status_name (and not has_status).
	// For an event whose status was not on the wire (an OPC UA request
	// never answered) it is false without running: a status that is not
	// there is not Good (issue 11 review).
	needsStatus bool
	// foldOnGroup: the rule folds by the fields it counts by (a threshold
	// with the default fold), so the group's open fold notes every
	// matching event, not only those that fire.
	foldOnGroup bool
	// correlates: when names a field of the process image (image.go).
	correlates bool
	// needsPolled: when names a field of a read response compared with a
	// polled tag (and not has_polled): false without running for an event
	// that was not compared (Event.PolledTag empty).
	needsPolled bool
}

// Correlates reports whether the rule's when names a field of the process
// image (written, polled, ...: docs/correlation.md): it can only fire for
// a device that plcwatch both polls and sees on a captured link.
func (r *Rule) Correlates() bool { return r.correlates }

// stage bits of Rule.stages.
const (
	onWhole    = 1 << plcwatch.StageWhole
	onRequest  = 1 << plcwatch.StageRequest
	onResponse = 1 << plcwatch.StageResponse
)

// Stage says when the rule is evaluated: "request" for a rule that fires
// as soon as a request is complete on the wire, "response" for one that
// looks at the response and waits for it.
func (r *Rule) Stage() string {
	if r.stages&onResponse != 0 {
		return "response"
	}
	return "request"
}

// foldSpec says which alerts of a rule fold into one: those with the same
// values of by within window of the first.
type foldSpec struct {
	window time.Duration // 0: every alert goes out
	by     []field
}

// Kind says which of the stateful forms a rule takes.
func (r *Rule) Kind() string {
	switch {
	case r.threshold != nil:
		return "threshold"
	case r.hold > 0:
		return "for"
	case r.change != nil:
		return "change"
	case r.baseline != nil:
		return "baseline"
	}
	return "match"
}

// Set is a loaded and compiled rule set.
type Set struct {
	Rules   []*Rule // every rule, in load order
	enabled []*Rule
	index   index
}

// Enabled returns the rules that are enabled, in evaluation order.
func (s *Set) Enabled() []*Rule { return s.enabled }

// WantsAssets reports whether an enabled rule matches op asset: the
// passive inventory's events (docs/inventory.md) are for those rules only.
func (s *Set) WantsAssets() bool {
	for _, r := range s.enabled {
		if r.match.ops&(1<<plcwatch.OpAsset) != 0 {
			return true
		}
	}
	return false
}

// Lookup returns the rule with the given id.
func (s *Set) Lookup(id string) *Rule {
	for _, r := range s.Rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// threshold fires when Count matching events (or Count distinct values of
// a field) fall within Window, per group of the By fields.
type threshold struct {
	count    int
	window   time.Duration
	by       []field
	distinct field // 0: count events
}

// change fires when a value — polled, or written on the wire — moves by
// more than delta from its reference (any change when delta is 0), per
// group; with count, when it changed count times within window (a value
// flapping, an output toggled: brute force I/O).
type change struct {
	delta  float64
	group  []field
	count  int
	window time.Duration
}

// baselineSpec learns the Key tuples seen during Learn, then fires on the
// first occurrence of a tuple it has not seen.
type baselineSpec struct {
	learn time.Duration
	key   []field
	names []string // the key fields' names, as the baseline file records them
}

// field is an event field rules can group by or learn.
type field uint8

const (
	fieldNone field = iota
	fieldClient
	fieldClientPort
	fieldServer
	fieldUnit
	fieldFunction
	fieldSubfunction
	fieldTable
	fieldAddress
	fieldDevice
	fieldTag
	fieldNode
	fieldService
	fieldOp
	fieldProtocol
	fieldSource
	fieldException
	fieldQuality
	fieldUser
	fieldIdentity
	fieldSecurityPolicy
	fieldSecurityMode
	fieldSessionName
	fieldEndpoint
	fieldThumbprint
	fieldChannel
	fieldStatus
	fieldStatusName
	fieldNamespace
	fieldLast // not a field: one past the last
)

var fieldNames = map[string]field{
	"client": fieldClient, "client_port": fieldClientPort, "server": fieldServer,
	"unit": fieldUnit, "function": fieldFunction, "subfunction": fieldSubfunction,
	"table": fieldTable, "address": fieldAddress, "device": fieldDevice, "tag": fieldTag,
	"node": fieldNode, "service": fieldService, "op": fieldOp, "protocol": fieldProtocol,
	"source": fieldSource, "exception": fieldException, "quality": fieldQuality,
	"user": fieldUser, "identity": fieldIdentity, "security_policy": fieldSecurityPolicy,
	"security_mode": fieldSecurityMode, "session_name": fieldSessionName, "endpoint": fieldEndpoint,
	"thumbprint": fieldThumbprint, "channel": fieldChannel, "status": fieldStatus,
	"status_name": fieldStatusName, "namespace": fieldNamespace,
}

// responseField reports whether a field comes from a request's response:
// a rule that groups or counts by it waits for the response.
func responseField(f field) bool {
	return f == fieldException || f == fieldStatus || f == fieldStatusName
}

var fieldText = func() [fieldLast]string {
	var t [fieldLast]string
	for n, f := range fieldNames {
		t[f] = n
	}
	return t
}()

func (f field) String() string {
	if int(f) < len(fieldText) {
		return fieldText[f]
	}
	return "?"
}

// appendFieldKey appends a compact, unambiguous binary form of a field:
// group keys are looked up on every matching event, text is only for
// people (messages, learned baselines).
func appendFieldKey(b []byte, ev *plcwatch.Event, f field) []byte {
	switch f {
	case fieldClient:
		return appendAddrKey(b, ev.Client.Addr())
	case fieldClientPort:
		return binary.BigEndian.AppendUint16(b, ev.Client.Port())
	case fieldServer:
		return binary.BigEndian.AppendUint16(appendAddrKey(b, ev.Server.Addr()), ev.Server.Port())
	case fieldUnit:
		return append(b, ev.Unit)
	case fieldFunction:
		return append(b, ev.Function)
	case fieldSubfunction:
		return binary.BigEndian.AppendUint16(b, ev.SubFunction)
	case fieldTable:
		return append(b, byte(ev.Table))
	case fieldAddress:
		return binary.BigEndian.AppendUint16(b, ev.Address)
	case fieldOp:
		return append(b, byte(ev.Op))
	case fieldProtocol:
		return append(b, byte(ev.Protocol))
	case fieldSource:
		return append(b, byte(ev.Source))
	case fieldException:
		return append(b, ev.Exception)
	case fieldChannel:
		return binary.BigEndian.AppendUint32(b, ev.Channel)
	case fieldStatus:
		return binary.BigEndian.AppendUint32(b, ev.Status)
	}
	// Strings: length-prefixed so that two fields cannot run together.
	s := stringField(ev, f)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// stringField returns the value of a field held as a string.
func stringField(ev *plcwatch.Event, f field) string {
	switch f {
	case fieldDevice:
		return ev.Device
	case fieldTag:
		return ev.Tag
	case fieldNode:
		return ev.Node
	case fieldService:
		return ev.Service
	case fieldQuality:
		return ev.Quality
	case fieldUser:
		return ev.User
	case fieldIdentity:
		return ev.Identity
	case fieldSecurityPolicy:
		return ev.SecurityPolicy
	case fieldSecurityMode:
		return ev.SecurityMode
	case fieldSessionName:
		return ev.SessionName
	case fieldEndpoint:
		return ev.Endpoint
	case fieldThumbprint:
		return ev.Thumbprint
	case fieldStatusName:
		return ev.StatusName
	case fieldNamespace:
		return namespaceText(ev.Node)
	}
	return ""
}

// namespaceText is the namespace part of a node id: the index ("2") of
// "ns=2;s=A", the URI of "nsu=urn:x;s=A", "0" for a node in namespace 0,
// "" when there is no node.
func namespaceText(node string) string {
	if node == "" {
		return ""
	}
	if rest, ok := strings.CutPrefix(node, "ns="); ok {
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			return rest[:i]
		}
		return rest
	}
	if rest, ok := strings.CutPrefix(node, "nsu="); ok {
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			return rest[:i]
		}
		return rest
	}
	return "0"
}

// appendAddrKey appends an address as 4 bytes (IPv4) or 16 (IPv6) after a
// byte saying which: short keys hash faster.
func appendAddrKey(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(append(b, 4), v[:]...)
	}
	v := a.As16()
	return append(append(b, 6), v[:]...)
}

func fieldList() string { return strings.Join(fieldNameList(), ", ") }

func fieldNameList() []string {
	names := make([]string, 0, len(fieldNames))
	for n := range fieldNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// appendField appends an event field's value as text: the key of stateful
// groups and of learned tuples. address is appended by the caller, which
// may walk a write's range.
func appendField(b []byte, ev *plcwatch.Event, f field) []byte {
	switch f {
	case fieldClient:
		return ev.Client.Addr().AppendTo(b)
	case fieldClientPort:
		return appendUint(b, uint64(ev.Client.Port()))
	case fieldServer:
		return ev.Server.AppendTo(b)
	case fieldUnit:
		return appendUint(b, uint64(ev.Unit))
	case fieldFunction:
		return appendUint(b, uint64(ev.Function))
	case fieldSubfunction:
		return appendUint(b, uint64(ev.SubFunction))
	case fieldTable:
		return append(b, ev.Table.String()...)
	case fieldAddress:
		return appendUint(b, uint64(ev.Address))
	case fieldDevice:
		return append(b, ev.Device...)
	case fieldTag:
		return append(b, ev.Tag...)
	case fieldNode:
		return append(b, ev.Node...)
	case fieldService:
		return append(b, ev.Service...)
	case fieldOp:
		return append(b, ev.Op.String()...)
	case fieldProtocol:
		return append(b, ev.Protocol.String()...)
	case fieldSource:
		return append(b, ev.Source.String()...)
	case fieldException:
		return appendUint(b, uint64(ev.Exception))
	case fieldChannel:
		return appendUint(b, uint64(ev.Channel))
	case fieldStatus:
		return appendUint(b, uint64(ev.Status))
	}
	return append(b, stringField(ev, f)...)
}

func appendUint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }
