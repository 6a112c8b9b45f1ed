package rules

import (
	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/modbustcp"
)

// index finds the rules that could match an event without looking at the
// rules that cannot: Modbus rules by function code and by 256-address
// block, OPC UA and protocol-agnostic rules in their own buckets. An event
// that matches nothing costs a few slice lookups, however many rules are
// loaded.
type index struct {
	byFunc  [256]*bucket // Modbus rules that name functions (directly, or through op or table)
	anyFunc bucket       // Modbus rules that do not narrow the function
	opcua   bucket
	other   bucket // events of no protocol (rules that name none)
	asset   bucket // rules that ask for op asset: the inventory's events (docs/inventory.md), and only those
	// poll holds the rules about polled events only (source: poll): few,
	// offered to every polled event and to no wire event — the many wire
	// reads of a site need not be offered the poll rules that name op read.
	poll []int32
	// polled holds the rules that look at a wire read compared with a
	// polled tag (Rule.needsPolled): offered only to such reads.
	polled []int32
}

type bucket struct {
	anyAddr [8][]int32    // rules without address ranges, by the flag states they accept
	blocks  *[256][]int32 // rules with address ranges, by address>>8
}

// Flag states: whether an event is malformed, carries an exception, is an
// orphan. Most protocol-wide rules are about one of these, and most events
// have none: sorting rules by the states they accept keeps a plain read
// from being offered the malformed, exception and orphan rules at all.
const (
	stateMalformed = 1 << iota
	stateException
	stateOrphan
)

func eventState(ev *plcwatch.Event) int {
	s := 0
	if ev.Malformed != "" {
		s |= stateMalformed
	}
	if ev.Exception != 0 {
		s |= stateException
	}
	if ev.Orphan {
		s |= stateOrphan
	}
	return s
}

// accepts reports whether a rule's match can hold for an event in state s.
func accepts(m *match, s int) bool {
	if m.malformed != 0 && (m.malformed > 0) != (s&stateMalformed != 0) {
		return false
	}
	if m.orphan != 0 && (m.orphan > 0) != (s&stateOrphan != 0) {
		return false
	}
	if m.exceptions != nil {
		if s&stateException == 0 {
			return m.exceptions.has(0)
		}
		e := *m.exceptions
		e[0] &^= 1
		return e != bits256{}
	}
	return true
}

func (b *bucket) add(r *Rule) {
	i := int32(r.index)
	if r.match.ranges == nil {
		for s := range b.anyAddr {
			if accepts(&r.match, s) {
				b.anyAddr[s] = append(b.anyAddr[s], i)
			}
		}
		return
	}
	if b.blocks == nil {
		b.blocks = new([256][]int32)
	}
	for _, rg := range r.match.ranges {
		for blk := int(rg.lo >> 8); blk <= int(rg.hi>>8); blk++ {
			l := b.blocks[blk]
			if len(l) == 0 || l[len(l)-1] != i {
				b.blocks[blk] = append(l, i)
			}
		}
	}
}

func buildIndex(rules []*Rule) index {
	var x index
	for _, r := range rules {
		r.match.decided = decidedByIndex(&r.match)
		if r.match.ops&(1<<plcwatch.OpAsset) != 0 {
			// Only the inventory's events are op asset, and only rules
			// that ask for them see them (Engine.Process): no other
			// event needs to be offered these rules.
			x.asset.add(r)
			if r.match.ops == 1<<plcwatch.OpAsset {
				continue
			}
		}
		if r.match.source == plcwatch.Poll {
			x.poll = append(x.poll, int32(r.index))
			continue
		}
		if r.needsPolled && r.match.ops&(1<<plcwatch.OpAsset) == 0 {
			x.polled = append(x.polled, int32(r.index))
			continue
		}
		p := r.match.protocol
		if p == 0 || p == plcwatch.ProtoModbus {
			if fcs := modbusFunctions(&r.match); fcs == nil {
				x.anyFunc.add(r)
			} else {
				for fc := 0; fc < 256; fc++ {
					if fcs.has(uint8(fc)) {
						if x.byFunc[fc] == nil {
							x.byFunc[fc] = new(bucket)
						}
						x.byFunc[fc].add(r)
					}
				}
			}
		}
		if p == 0 || p == plcwatch.ProtoOPCUA {
			x.opcua.add(r)
		}
		if p == 0 {
			x.other.add(r)
		}
	}
	return x
}

// decidedByIndex reports whether the buckets and flag states a rule is
// filed under already decide all of its conditions: its protocol (the
// bucket), malformed and orphan (the state), and an exception condition of
// "any" or "none" (the state). Such a rule matches every event it is
// offered.
func decidedByIndex(m *match) bool {
	if m.source != 0 || m.ops != 0 || m.funcs != nil || m.units != nil || m.tables != 0 || m.ranges != nil ||
		m.clients != nil || m.clientsNot != nil || m.servers != nil || m.serversNot != nil || m.extra {
		return false
	}
	if m.exceptions != nil {
		var none, any bits256
		none.set(0)
		any.setRange(1, 255)
		return *m.exceptions == none || *m.exceptions == any
	}
	return true
}

// modbusFunctions is the set of function codes a Modbus event can have to
// match m, or nil for any. Ops and tables narrow it through each function's
// class; "other" does not, because events that are not a proper request
// (a broken MBAP header) carry op other with whatever byte stood where the
// function code would, and neither do "status", which no function code
// has (a polled device's up and down events), and "asset", which carries
// the function of the request that revealed it (docs/inventory.md).
func modbusFunctions(m *match) *bits256 {
	const unnarrowed = 1<<plcwatch.OpOther | 1<<plcwatch.OpStatus | 1<<plcwatch.OpAsset
	if m.funcs == nil && (m.ops == 0 || m.ops&unnarrowed != 0) && m.tables == 0 {
		return nil
	}
	var set bits256
	for fc := 0; fc < 256; fc++ {
		f := uint8(fc)
		if m.funcs != nil && !m.funcs.has(f) {
			continue
		}
		if m.ops != 0 && m.ops&unnarrowed == 0 {
			op := modbustcp.OpOf(f)
			ok := m.ops&(1<<op) != 0
			if f == modbustcp.EncapsulatedInterface {
				ok = m.ops&(1<<plcwatch.OpIdentify) != 0 // 43/14; 43/13 is "other"
			}
			if !ok {
				continue
			}
		}
		if m.tables != 0 && m.tables&(1<<modbustcp.TableOf(f)) == 0 {
			continue
		}
		set.set(f)
	}
	return &set
}

// candidates appends to out the rules that could match ev, each once and in
// rule order. seen and stamp deduplicate without clearing between events.
func (x *index) candidates(ev *plcwatch.Event, out []int32, seen []uint32, stamp uint32) []int32 {
	var buckets [2]*bucket
	switch {
	case ev.Op == plcwatch.OpAsset:
		buckets[0] = &x.asset
	case ev.Protocol == plcwatch.ProtoModbus:
		buckets = [2]*bucket{x.byFunc[ev.Function], &x.anyFunc}
	case ev.Protocol == plcwatch.ProtoOPCUA:
		buckets[0] = &x.opcua
	default:
		buckets[0] = &x.other
	}
	state := eventState(ev)
	for _, b := range buckets {
		if b == nil {
			continue
		}
		out = addOnce(out, b.anyAddr[state], seen, stamp)
		if b.blocks == nil || ev.Table == plcwatch.TableNone {
			continue
		}
		hi := int(ev.Address)
		if ev.Count > 1 {
			hi += int(ev.Count) - 1
		}
		if hi > 0xffff {
			hi = 0xffff
		}
		for blk := int(ev.Address >> 8); blk <= hi>>8; blk++ {
			out = addOnce(out, b.blocks[blk], seen, stamp)
		}
	}
	if ev.Source == plcwatch.Poll && ev.Op != plcwatch.OpAsset {
		out = addOnce(out, x.poll, seen, stamp)
	}
	if ev.PolledTag != "" {
		out = addOnce(out, x.polled, seen, stamp)
	}
	// Rule order: buckets interleave, and there are few candidates.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func addOnce(out, rules []int32, seen []uint32, stamp uint32) []int32 {
	for _, i := range rules {
		if seen[i] != stamp {
			seen[i] = stamp
			out = append(out, i)
		}
	}
	return out
}
