package rules

import (
	"net/netip"
	"path"

	"github.com/plcwatch/plcwatch"
)

// bits256 is a set of byte values (function codes, units, exception codes).
type bits256 [4]uint64

func (b *bits256) set(v uint8)      { b[v>>6] |= 1 << (v & 63) }
func (b *bits256) has(v uint8) bool { return b[v>>6]&(1<<(v&63)) != 0 }
func (b *bits256) setRange(lo, hi uint8) {
	for v := int(lo); v <= int(hi); v++ {
		b.set(uint8(v))
	}
}

// addrRange is an inclusive range of protocol addresses, optionally in one
// table (a rule written with 1-based register numbers names its table).
type addrRange struct {
	table  plcwatch.Table
	lo, hi uint16
}

// match is the stateless part of a rule: every condition that is set must
// hold. A nil or zero condition matches anything.
type match struct {
	protocol   plcwatch.Protocol
	source     plcwatch.SourceKind
	ops        uint16 // bit per plcwatch.Op
	funcs      *bits256
	subs       []uint16
	units      *bits256
	tables     uint8 // bit per plcwatch.Table
	ranges     []addrRange
	clients    []netip.Prefix
	clientsNot []netip.Prefix
	servers    []netip.Prefix
	serversNot []netip.Prefix
	ports      []uint16 // server ports
	devices    []string // glob patterns
	tags       []string
	nodes      []string
	namespaces []string // indexes as text ("2") or URIs
	services   []string
	// OPC UA channel and session.
	securityModes    []string
	securityPolicies []string // globs
	identities       []string
	users            []string // globs
	statuses         []string // status name globs; "" where statusCodes holds a number
	statusCodes      []uint32
	malformed        int8 // 1: must be malformed, -1: must not, 0: either
	orphan           int8
	exceptions       *bits256 // exception codes (0 = none)
	unanswered       []string
	extra            bool // any of subs, ports, devices, tags, nodes, namespaces, services, unanswered or an OPC UA key is set
	decided          bool // the index alone decides every condition: matches need not run
}

// matches reports whether ev meets every condition. It does not allocate.
func (m *match) matches(ev *plcwatch.Event) bool {
	if m.protocol != 0 && ev.Protocol != m.protocol {
		return false
	}
	if m.source != 0 && ev.Source != m.source {
		return false
	}
	if m.ops != 0 && m.ops&(1<<ev.Op) == 0 {
		return false
	}
	if m.funcs != nil && !m.funcs.has(ev.Function) {
		return false
	}
	if m.units != nil && !m.units.has(ev.Unit) {
		return false
	}
	if m.tables != 0 && m.tables&(1<<ev.Table) == 0 {
		return false
	}
	if m.ranges != nil && !m.overlaps(ev) {
		return false
	}
	if !prefixes(m.clients, m.clientsNot, ev.Client.Addr()) || !prefixes(m.servers, m.serversNot, ev.Server.Addr()) {
		return false
	}
	if m.malformed != 0 && (ev.Malformed != "") != (m.malformed > 0) {
		return false
	}
	if m.orphan != 0 && ev.Orphan != (m.orphan > 0) {
		return false
	}
	if m.exceptions != nil && !m.exceptions.has(ev.Exception) {
		return false
	}
	return !m.extra || m.matchesExtra(ev)
}

// matchesExtra checks the conditions most rules do not use, so that the
// common rule pays one branch for all of them.
func (m *match) matchesExtra(ev *plcwatch.Event) bool {
	if m.subs != nil && (!ev.HasSub || !containsU16(m.subs, ev.SubFunction)) {
		return false
	}
	if m.ports != nil && !containsU16(m.ports, ev.Server.Port()) {
		return false
	}
	if m.devices != nil && !globs(m.devices, ev.Device) {
		return false
	}
	if m.tags != nil && !globs(m.tags, ev.Tag) {
		return false
	}
	if m.nodes != nil && !globs(m.nodes, ev.Node) {
		return false
	}
	if m.namespaces != nil && (ev.Node == "" || !containsStr(m.namespaces, namespaceText(ev.Node))) {
		return false
	}
	if m.services != nil && !globs(m.services, ev.Service) {
		return false
	}
	if m.unanswered != nil && !containsStr(m.unanswered, ev.Unanswered) {
		return false
	}
	if m.securityModes != nil && !containsStr(m.securityModes, ev.SecurityMode) {
		return false
	}
	if m.securityPolicies != nil && !globs(m.securityPolicies, ev.SecurityPolicy) {
		return false
	}
	if m.identities != nil && !containsStr(m.identities, ev.Identity) {
		return false
	}
	if m.users != nil && !globs(m.users, ev.User) {
		return false
	}
	if m.statuses != nil && !m.status(ev) {
		return false
	}
	return true
}

// status reports whether ev's status is one of the rule's: a name glob
// against StatusName ("Good" when the code is 0 and no name was given), or
// a number against Status.
func (m *match) status(ev *plcwatch.Event) bool {
	if !ev.Shows(plcwatch.FieldStatus) {
		return false // no status on the wire (a request never answered) is no status, not Good
	}
	name := ev.StatusName
	if name == "" && ev.Status == 0 {
		name = "Good"
	}
	for _, p := range m.statuses {
		if p == "" {
			if containsU32(m.statusCodes, ev.Status) {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func containsU32(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// overlaps reports whether the addresses ev touches overlap a range: a
// write that covers any address of the range matches. An event without a
// table (diagnostics) or without a known address (an orphan read) touches
// none.
func (m *match) overlaps(ev *plcwatch.Event) bool {
	if ev.Table == plcwatch.TableNone || (ev.Orphan && ev.Op == plcwatch.OpRead) {
		return false
	}
	lo := uint32(ev.Address)
	hi := lo
	if ev.Count > 1 {
		hi = lo + uint32(ev.Count) - 1
	}
	for _, r := range m.ranges {
		if r.table != plcwatch.TableNone && r.table != ev.Table {
			continue
		}
		if lo <= uint32(r.hi) && uint32(r.lo) <= hi {
			return true
		}
	}
	return false
}

// prefixes is the client/server test: in some positive prefix (when there
// are any) and in no negative one.
func prefixes(in, out []netip.Prefix, a netip.Addr) bool {
	if in == nil && out == nil {
		return true
	}
	a = a.Unmap()
	if in != nil {
		ok := false
		for _, p := range in {
			if p.Contains(a) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, p := range out {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

func globs(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func containsU16(list []uint16, v uint16) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func containsStr(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
