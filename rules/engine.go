package rules

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/plcwatch/plcwatch"
)

// DefaultMaxGroups bounds the groups (clients, devices, tags ...) one
// stateful rule tracks; beyond it the group idle the longest is forgotten.
const DefaultMaxGroups = 10000

// DefaultMaxBaselineKeys bounds the tuples one baseline rule learns and
// remembers.
const DefaultMaxBaselineKeys = 100000

// Options configure an Engine.
type Options struct {
	Site     string
	Gateway  string
	Baseline *Baseline // learned tuples; nil keeps them in memory only
	// MaxGroups bounds the groups of one stateful rule, and the open folds
	// of one rule: a sweep over addresses or spoofed clients must not grow
	// memory without end. Default DefaultMaxGroups.
	MaxGroups int
	// MaxBaselineKeys bounds the tuples one baseline rule keeps. Beyond
	// it a new tuple still alerts after learning, but is not remembered.
	MaxBaselineKeys int
}

// RuleHits is what one rule did.
type RuleHits struct {
	ID      string
	Matched uint64 // events that met match, schedule and when
	Alerts  uint64 // alerts raised; a folded alert counts once
	Folded  uint64 // identical alerts folded into a count
	Errors  uint64 // when expressions that failed on an event (e.g. values[3] of a one-register write)
	// Overflow counts state not kept because a bound was hit: an alert
	// raised unfolded because the rule's folds were full, a tuple not
	// remembered because its baseline was full.
	Overflow uint64
}

// Engine evaluates events against a rule set and raises alerts. It owns
// its state and is driven by one goroutine: no locks on the event path.
type Engine struct {
	set      *Set
	opts     Options
	raise    func(*plcwatch.Alert)
	scratch  plcwatch.Alert // the alert being raised: reused, see NewEngine
	idBuf    []byte
	states   []ruleState
	gsets    []groupSet
	hits     []RuleHits
	seen     []uint32
	stamp    uint32
	cand     []int32
	env      Env
	envOf    *plcwatch.Event
	vm       vm.VM
	key      []byte
	val      []byte
	nowNs    int64 // the event's time, once per event
	alerts   uint64
	tickAt   time.Time
	baseline *Baseline
}

type ruleState struct {
	digest string
	gset   int // index into Engine.gsets; -1 for rules without groups
	slot   int // the rule's slot in each group of its set
	folds  map[string]*fold
}

// groupSet is the group table shared by the stateful rules that group by the
// same fields (five default rules group by client and server): one lookup
// per event serves them all.
type groupSet struct {
	fields []field
	rules  []int32 // enabled rule indexes, by slot
	table  map[string]*groupEntry
	stamp  uint32 // the event cur was looked up for
	cur    *groupEntry
	// byConn caches entries by TCP connection, for sets whose fields do
	// not change within one (client, server): most events then skip the
	// key and the map. Direct-mapped; cleared when an entry is evicted.
	byConn *[connCache]connEntry
}

const connCache = 1024

type connEntry struct {
	conn uint64
	ent  *groupEntry
}

// connConstant reports whether fields stay the same for every event of
// one TCP connection.
func connConstant(fields []field) bool {
	for _, f := range fields {
		switch f {
		case fieldClient, fieldClientPort, fieldServer, fieldProtocol:
		default:
			return false
		}
	}
	return true
}

type groupEntry struct {
	last  time.Time // last event: the idlest entry is evicted first
	slots []group
}

// buckets count events per sub-window: head is the newest sub-window index
// (time / width), count a ring of the last windowBuckets of them.
type buckets struct {
	head  int64
	count [windowBuckets]int32
	total int32
}

// group is the state of one group of one stateful rule.
type group struct {
	ring     []int64           // threshold: times of the last count events
	buckets  *buckets          // threshold with a large count: events per sub-window
	head, n  int               //
	distinct map[string]*int64 // threshold with distinct: value -> last seen
	small    *[256]int64       // distinct over a one-byte field (unit, function ...): last seen by value
	nsmall   int               // values in small seen at least once
	since    time.Time         // for: when the condition started to hold
	fired    bool              // for: already raised for this stretch
	value    float64           // change: the reference value (first, then last alerted)
	hasValue bool              //
}

// fold holds identical alerts raised within a rule's fold window: the first
// went out at once, the rest go out as one alert with their count.
type fold struct {
	start   time.Time
	pending int
	last    plcwatch.Event
	msg     string
}

// NewEngine returns an engine for set that calls raise for every alert.
// The alert is the engine's and valid only during the call: raise encodes
// or copies what it keeps (an alert is ~1 KB; at thousands a second a fresh
// one each time is most of the daemon's garbage).
func NewEngine(set *Set, opts Options, raise func(*plcwatch.Alert)) *Engine {
	if opts.MaxGroups <= 0 {
		opts.MaxGroups = DefaultMaxGroups
	}
	if opts.MaxBaselineKeys <= 0 {
		opts.MaxBaselineKeys = DefaultMaxBaselineKeys
	}
	e := &Engine{opts: opts, raise: raise, baseline: opts.Baseline}
	if e.baseline == nil {
		e.baseline = NewBaseline("")
	}
	e.Reload(set)
	return e
}

// Reload switches to a new rule set. Rules that are unchanged (same id, same
// text, same lists) keep their state: thresholds, held conditions, last
// values and pending folds. Learned baselines live in the Baseline and
// survive any reload.
func (e *Engine) Reload(set *Set) {
	type kept struct {
		state ruleState
		hits  RuleHits
		gs    *groupSet
	}
	old := map[string]kept{}
	if e.set != nil {
		for i, r := range e.set.enabled {
			k := kept{state: e.states[i], hits: e.hits[i]}
			if k.state.gset >= 0 {
				k.gs = &e.gsets[k.state.gset]
			}
			old[r.ID] = k
		}
	}
	e.set = set
	e.states = make([]ruleState, len(set.enabled))
	e.hits = make([]RuleHits, len(set.enabled))
	e.seen = make([]uint32, len(set.enabled))
	e.gsets = nil
	for i, r := range set.enabled {
		e.hits[i] = RuleHits{ID: r.ID}
		st := ruleState{digest: r.digest, gset: -1}
		if fields := groupFields(r); fields != nil {
			st.gset, st.slot = e.joinGroupSet(int32(i), fields)
		}
		if k, ok := old[r.ID]; ok && k.state.digest == r.digest {
			st.folds = k.state.folds
			e.hits[i] = k.hits
			if k.gs != nil {
				e.carryGroups(k.gs, k.state.slot, &e.gsets[st.gset], st.slot)
			}
		}
		e.states[i] = st
	}
	// Entries carried over need a slot for every rule of their new set.
	for gi := range e.gsets {
		gs := &e.gsets[gi]
		for _, ent := range gs.table {
			for len(ent.slots) < len(gs.rules) {
				ent.slots = append(ent.slots, group{})
			}
		}
	}
}

// groupFields are the fields a stateful rule keeps separate state by.
func groupFields(r *Rule) []field {
	switch {
	case r.threshold != nil:
		return r.threshold.by
	case r.hold > 0:
		return heldGroup
	case r.change != nil:
		return r.change.group
	}
	return nil
}

// joinGroupSet puts rule ri in the group set for fields, making it if
// needed, and returns the set and the rule's slot in it.
func (e *Engine) joinGroupSet(ri int32, fields []field) (int, int) {
	for gi := range e.gsets {
		if slices.Equal(e.gsets[gi].fields, fields) {
			e.gsets[gi].rules = append(e.gsets[gi].rules, ri)
			return gi, len(e.gsets[gi].rules) - 1
		}
	}
	gs := groupSet{fields: fields, rules: []int32{ri}, table: map[string]*groupEntry{}}
	if connConstant(fields) {
		gs.byConn = new([connCache]connEntry)
	}
	e.gsets = append(e.gsets, gs)
	return len(e.gsets) - 1, 0
}

// carryGroups copies an unchanged rule's groups across a reload.
func (e *Engine) carryGroups(from *groupSet, fromSlot int, to *groupSet, toSlot int) {
	for k, oe := range from.table {
		ne := to.table[k]
		if ne == nil {
			ne = &groupEntry{last: oe.last}
			to.table[k] = ne
		}
		for len(ne.slots) <= toSlot {
			ne.slots = append(ne.slots, group{})
		}
		ne.slots[toSlot] = oe.slots[fromSlot]
	}
}

// Set returns the rule set in use.
func (e *Engine) Set() *Set { return e.set }

// Hits returns what each enabled rule did so far.
func (e *Engine) Hits() []RuleHits { return append([]RuleHits(nil), e.hits...) }

// Process evaluates one event. An event that no rule can match costs a few
// index lookups and allocates nothing.
func (e *Engine) Process(ev *plcwatch.Event) {
	if !ev.Time.Before(e.tickAt) {
		e.Tick(ev.Time)
	}
	e.stamp++
	if e.stamp == 0 {
		clear(e.seen)
		for gi := range e.gsets {
			e.gsets[gi].stamp, e.gsets[gi].cur = 0, nil
		}
		e.stamp = 1
	}
	e.cand = e.set.index.candidates(ev, e.cand[:0], e.seen, e.stamp)
	e.envOf = nil
	e.nowNs = ev.Time.UnixNano()
	for _, ri := range e.cand {
		r := e.set.enabled[ri]
		if !r.match.decided && !r.match.matches(ev) {
			continue
		}
		if r.schedule != nil && !r.schedule.allows(ev.Time) {
			continue
		}
		cond := true
		if r.when != nil {
			if e.envOf != ev {
				e.env.fill(ev)
				e.envOf = ev
			}
			out, err := e.vm.Run(r.when, &e.env)
			if err != nil {
				e.hits[ri].Errors++
				cond = false
			} else {
				cond, _ = out.(bool)
			}
		}
		if r.hold > 0 {
			// A held condition needs the events where it is false too.
			e.hits[ri].Matched++
			e.held(ri, r, ev, cond)
			continue
		}
		if !cond {
			continue
		}
		e.hits[ri].Matched++
		switch {
		case r.threshold != nil:
			e.thresholdHit(ri, r, ev)
		case r.change != nil:
			e.changeHit(ri, r, ev)
		case r.baseline != nil:
			e.baselineHit(ri, r, ev)
		default:
			e.fire(ri, r, ev, "")
		}
	}
}

// groupKey builds the binary key of ev's group from fields, in e.key.
func (e *Engine) groupKey(ev *plcwatch.Event, fields []field) []byte {
	b := e.key[:0]
	for _, f := range fields {
		b = appendFieldKey(b, ev, f)
	}
	e.key = b
	return b
}

// keyText renders fields of ev for people: "client=10.0.0.9 unit=3". It
// is the key of learned tuples and part of alert messages.
func keyText(b []byte, ev *plcwatch.Event, fields []field) []byte {
	for i, f := range fields {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f.String()...)
		b = append(b, '=')
		b = appendField(b, ev, f)
	}
	return b
}

// group returns ev's group of rule ri. The rules of a group set share one
// lookup per event; a new entry evicts the idlest when the set is full.
func (e *Engine) group(ri int32, ev *plcwatch.Event) *group {
	st := &e.states[ri]
	gs := &e.gsets[st.gset]
	if gs.stamp != e.stamp || gs.cur == nil {
		var ce *connEntry
		if gs.byConn != nil && ev.Conn != 0 {
			ce = &gs.byConn[ev.Conn%connCache]
			if ce.conn == ev.Conn {
				gs.cur, gs.stamp = ce.ent, e.stamp
				gs.cur.last = ev.Time
				return &gs.cur.slots[st.slot]
			}
		}
		key := e.groupKey(ev, gs.fields)
		ent, ok := gs.table[string(key)]
		if !ok {
			if len(gs.table) >= e.opts.MaxGroups {
				var idle string
				var idleAt time.Time
				for k, g := range gs.table {
					if idle == "" || g.last.Before(idleAt) {
						idle, idleAt = k, g.last
					}
				}
				delete(gs.table, idle)
				if gs.byConn != nil {
					*gs.byConn = [connCache]connEntry{} // it may hold the evicted entry
				}
			}
			ent = &groupEntry{slots: make([]group, len(gs.rules))}
			gs.table[string(key)] = ent
		}
		if ce != nil {
			*ce = connEntry{ev.Conn, ent}
		}
		ent.last = ev.Time
		gs.stamp, gs.cur = e.stamp, ent
	}
	return &gs.cur.slots[st.slot]
}

func (e *Engine) thresholdHit(ri int32, r *Rule, ev *plcwatch.Event) {
	th := r.threshold
	g := e.group(ri, ev)
	now := e.nowNs
	if th.distinct != fieldNone {
		if v, ok := byteField(ev, th.distinct); ok {
			e.distinctSmall(ri, r, ev, g, v, now)
			return
		}
		if g.distinct == nil {
			g.distinct = map[string]*int64{}
		}
		e.val = appendFieldKey(e.val[:0], ev, th.distinct)
		if seen, ok := g.distinct[string(e.val)]; ok {
			*seen = now // a lookup, not an assignment: no key string is made
		} else {
			t := new(int64) // not &now: that would move now to the heap for every event
			*t = now
			g.distinct[string(e.val)] = t
		}
		if len(g.distinct) < th.count {
			return
		}
		// Enough values to fire, if they are all recent: forget the old
		// ones only now, so the common case costs one map write.
		for k, seen := range g.distinct {
			if now-*seen > int64(th.window) {
				delete(g.distinct, k)
			}
		}
		if len(g.distinct) >= th.count {
			clear(g.distinct)
			e.fire(ri, r, ev, fmt.Sprintf("%d distinct %s values within %s (%s)", th.count, th.distinct, th.window, keyText(nil, ev, th.by)))
		}
		return
	}
	if th.count > exactCount {
		e.bucketHit(ri, r, ev, g, now)
		return
	}
	if g.ring == nil {
		g.ring = make([]int64, th.count)
	}
	// The ring holds the times of the last count events: the oldest is at
	// head once it is full.
	g.ring[g.head] = now
	if g.head++; g.head == th.count {
		g.head = 0
	}
	if g.n < th.count {
		g.n++
	}
	if g.n == th.count && now-g.ring[g.head] <= int64(th.window) {
		g.n = 0
		e.fire(ri, r, ev, fmt.Sprintf("%d matching events within %s (%s)", th.count, th.window, keyText(nil, ev, th.by)))
	}
}

// exactCount is the largest threshold count kept exactly (a ring of that
// many times per group). Larger counts — floods, bursts — are counted in
// windowBuckets sub-windows, so a group costs the same small memory
// whatever the count; the window is then exact to a sixteenth.
const (
	exactCount    = 64
	windowBuckets = 16
)

// bucketHit counts an event in the sub-window of its time and fires when
// the sub-windows that make up the last window hold count events.
func (e *Engine) bucketHit(ri int32, r *Rule, ev *plcwatch.Event, g *group, now int64) {
	th := r.threshold
	width := int64(th.window) / windowBuckets
	if width == 0 {
		width = 1
	}
	if g.buckets == nil {
		g.buckets = new(buckets)
	}
	b := g.buckets
	cur := now / width
	switch {
	case cur-b.head >= windowBuckets:
		// Quiet for a whole window: nothing in it counts any more.
		b.count, b.total = [windowBuckets]int32{}, 0
		b.head = cur
	case cur > b.head:
		// Empty the sub-windows between the newest one and this event's.
		for i := b.head + 1; i <= cur; i++ {
			b.total -= b.count[i%windowBuckets]
			b.count[i%windowBuckets] = 0
		}
		b.head = cur
	case cur < b.head:
		cur = b.head // a packet a little out of time order counts as now
	}
	b.count[cur%windowBuckets]++
	b.total++
	if int(b.total) >= th.count {
		b.count, b.total = [windowBuckets]int32{}, 0
		e.fire(ri, r, ev, fmt.Sprintf("%d matching events within %s (%s)", th.count, th.window, keyText(nil, ev, th.by)))
	}
}

// distinctSmall is the distinct count for one-byte fields: an array of
// last-seen times instead of a map, and a recount only when enough values
// were ever seen to possibly fire.
func (e *Engine) distinctSmall(ri int32, r *Rule, ev *plcwatch.Event, g *group, v uint8, now int64) {
	th := r.threshold
	if g.small == nil {
		g.small = new([256]int64)
	}
	if g.small[v] == 0 {
		g.nsmall++
	}
	g.small[v] = now
	if g.nsmall < th.count {
		return
	}
	g.nsmall = 0
	for i, seen := range g.small {
		switch {
		case seen == 0:
		case now-seen > int64(th.window):
			g.small[i] = 0
		default:
			g.nsmall++
		}
	}
	if g.nsmall >= th.count {
		*g.small = [256]int64{}
		g.nsmall = 0
		e.fire(ri, r, ev, fmt.Sprintf("%d distinct %s values within %s (%s)", th.count, th.distinct, th.window, keyText(nil, ev, th.by)))
	}
}

// byteField returns the value of a one-byte field.
func byteField(ev *plcwatch.Event, f field) (uint8, bool) {
	switch f {
	case fieldUnit:
		return ev.Unit, true
	case fieldFunction:
		return ev.Function, true
	case fieldTable:
		return uint8(ev.Table), true
	case fieldOp:
		return uint8(ev.Op), true
	case fieldProtocol:
		return uint8(ev.Protocol), true
	}
	return 0, false
}

// heldGroup is what a "for" rule tracks separately: one polled value.
var heldGroup = []field{fieldDevice, fieldTag, fieldNode}

func (e *Engine) held(ri int32, r *Rule, ev *plcwatch.Event, cond bool) {
	g := e.group(ri, ev)
	if !cond {
		g.since, g.fired = time.Time{}, false
		return
	}
	if g.since.IsZero() {
		g.since = ev.Time
	}
	if !g.fired && ev.Time.Sub(g.since) >= r.hold {
		g.fired = true
		e.fire(ri, r, ev, fmt.Sprintf("condition held for %s (since %s)", ev.Time.Sub(g.since).Round(time.Millisecond), g.since.UTC().Format(time.RFC3339)))
	}
}

func (e *Engine) changeHit(ri int32, r *Rule, ev *plcwatch.Event) {
	g := e.group(ri, ev)
	if !g.hasValue {
		// The first value is the reference changes are measured from.
		g.value, g.hasValue = ev.Value, true
		return
	}
	// Measured from the reference, not from the last value: a setpoint
	// walked up in small steps still alerts once it is delta away.
	ref := g.value
	d := math.Abs(ev.Value - ref)
	if (r.change.by == 0 && ev.Value != ref) || (r.change.by > 0 && d > r.change.by) {
		g.value = ev.Value
		e.fire(ri, r, ev, fmt.Sprintf("value changed from %g to %g (by %g)", ref, ev.Value, ev.Value-ref))
	}
}

func (e *Engine) baselineHit(ri int32, r *Rule, ev *plcwatch.Event) {
	spec := r.baseline
	lr := e.baseline.rule(r.ID, spec, ev.Time)
	learning := ev.Time.Before(lr.Started.Add(spec.learn))
	var first string
	n := 0
	e.eachKey(ev, spec.key, func(key []byte) {
		if _, known := lr.Keys[string(key)]; known {
			return
		}
		if len(lr.Keys) < e.opts.MaxBaselineKeys {
			lr.Keys[string(key)] = ev.Time.UTC()
			e.baseline.dirty = true
		} else {
			e.hits[ri].Overflow++
		}
		if !learning {
			if n == 0 {
				first = string(key)
			}
			n++
		}
	})
	if n == 1 {
		e.fire(ri, r, ev, "first seen after learning: "+first)
	} else if n > 1 {
		e.fire(ri, r, ev, fmt.Sprintf("%d tuples first seen after learning, the first: %s", n, first))
	}
}

// eachKey calls fn with the key of every tuple ev carries: one, or one per
// address of a multi-address write when the key names address.
func (e *Engine) eachKey(ev *plcwatch.Event, fields []field, fn func([]byte)) {
	addr := -1
	for i, f := range fields {
		if f == fieldAddress {
			addr = i
		}
	}
	if addr < 0 || ev.Table == plcwatch.TableNone || ev.Count <= 1 {
		e.key = keyText(e.key[:0], ev, fields)
		fn(e.key)
		return
	}
	base := *ev
	for a := int(ev.Address); a < int(ev.Address)+int(ev.Count) && a <= 0xffff; a++ {
		base.Address = uint16(a)
		e.key = keyText(e.key[:0], &base, fields)
		fn(e.key)
	}
}

// fire raises an alert for r, or folds it into the one raised for the same
// rule and the same client, server, unit, function, table, address,
// device, tag and node within the fold window.
func (e *Engine) fire(ri int32, r *Rule, ev *plcwatch.Event, msg string) {
	if r.fold <= 0 {
		e.emit(ri, r, ev, 1, msg)
		return
	}
	st := &e.states[ri]
	key := e.foldKey(ev)
	if f, ok := st.folds[string(key)]; ok {
		if ev.Time.Sub(f.start) < r.fold {
			f.pending++
			f.last = *ev
			f.msg = msg
			e.hits[ri].Folded++
			return
		}
		e.flushFold(ri, r, f)
		delete(st.folds, string(key))
	}
	if st.folds == nil {
		st.folds = map[string]*fold{}
	}
	if len(st.folds) >= e.opts.MaxGroups {
		// Full: raise it unfolded rather than forget an open fold's count.
		e.hits[ri].Overflow++
		e.emit(ri, r, ev, 1, msg)
		return
	}
	st.folds[string(key)] = &fold{start: ev.Time}
	e.emit(ri, r, ev, 1, msg)
}

// foldFields are what makes two alerts of a rule identical.
var foldFields = []field{fieldClient, fieldServer, fieldUnit, fieldFunction, fieldSubfunction, fieldTable, fieldAddress, fieldDevice, fieldTag, fieldNode}

func (e *Engine) foldKey(ev *plcwatch.Event) []byte { return e.groupKey(ev, foldFields) }

func (e *Engine) flushFold(ri int32, r *Rule, f *fold) {
	if f.pending == 0 {
		return
	}
	msg := fmt.Sprintf("%d more identical alerts since %s", f.pending, f.start.UTC().Format(time.RFC3339))
	if f.msg != "" {
		msg = f.msg + "; " + msg
	}
	e.emit(ri, r, &f.last, f.pending, msg)
}

// Tick flushes folds whose window has passed by now. Process calls it as
// event time moves; a daemon also calls it on a timer so that a folded
// count goes out even when the wire falls quiet.
func (e *Engine) Tick(now time.Time) {
	e.tickAt = now.Add(time.Second)
	for i, r := range e.set.enabled {
		st := &e.states[i]
		for k, f := range st.folds {
			if now.Sub(f.start) >= r.fold {
				e.flushFold(int32(i), r, f)
				delete(st.folds, k)
			}
		}
	}
}

// Close flushes every pending fold: the replay or the daemon is ending.
func (e *Engine) Close() {
	for i, r := range e.set.enabled {
		st := &e.states[i]
		for k, f := range st.folds {
			e.flushFold(int32(i), r, f)
			delete(st.folds, k)
		}
	}
}

func (e *Engine) emit(ri int32, r *Rule, ev *plcwatch.Event, count int, msg string) {
	e.alerts++
	e.hits[ri].Alerts++
	a := &e.scratch
	*a = plcwatch.Alert{
		ID:      e.alertID(r, ev),
		Time:    ev.Time,
		Site:    e.opts.Site,
		Gateway: e.opts.Gateway,
		Rule:    r.alertRule,
		Event:   *ev,
		Count:   count,
		Message: msg,
	}
	e.raise(a)
}

// alertID is unique per alert and reproducible: the same capture replayed
// with the same rules gives the same ids, so golden files and consumers'
// de-duplication both work.
func (e *Engine) alertID(r *Rule, ev *plcwatch.Event) string {
	b := e.idBuf[:0]
	b = append(b, e.opts.Gateway...)
	b = append(b, 0)
	b = append(b, r.ID...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(ev.Time.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, e.alerts)
	b = ev.Client.AppendTo(b)
	b = append(b, 0)
	b = ev.Server.AppendTo(b)
	b = append(b, 0)
	b = append(b, ev.Device...)
	b = append(b, 0)
	b = append(b, ev.Tag...)
	e.idBuf = b
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
