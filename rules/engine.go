package rules

import (
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/plcwatch/plcwatch"
)

// DefaultMaxGroups bounds the groups (clients, devices, tags ...) one
// stateful rule tracks; beyond it one of the idlest groups is forgotten.
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
	// MaxImage bounds the polled tags and nodes the process image follows
	// (docs/correlation.md). Default DefaultMaxImage.
	MaxImage int
	// Decoder returns the decoder of a polled tag's registers, for the
	// engineering values of wire reads and writes (Event.Viewed,
	// Event.WrittenValue); nil, or a nil Decoder, leaves them NoValue.
	Decoder func(device, tag string) Decoder
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
//
// Time is the events' own (issue 9 §8): every window, hold and fold is
// measured with the time of the event that enters it, never with a
// "latest time seen" that one late stamp could move for every later
// event. A step back by more than a window starts that window again; zero
// is a time like any other.
type Engine struct {
	set      *Set
	opts     Options
	raise    func(*plcwatch.Alert)
	scratch  plcwatch.Alert // the alert being raised: reused, see NewEngine
	idBuf    []byte
	due      []keyedFold // dueFolds' buffer
	states   []ruleState
	gsets    []groupSet
	hits     []RuleHits
	seen     []uint32
	stamp    uint32
	cand     []int32
	env      Env
	envOf    *plcwatch.Event
	alt      plcwatch.Event // the request half of a StageResponse event, see responseMalformed
	altOf    *plcwatch.Event
	vm       vm.VM
	key      []byte
	val      []byte
	now      int64 // the event's time (nanos), once per event
	prev     int64 // the previous event's time
	hasPrev  bool
	tickAt   int64 // Process flushes folds when its clock reaches this
	alerts   uint64
	folds    int // open folds, all rules
	baseline *Baseline
	image    *image // the process image (image.go)
}

type ruleState struct {
	digest [12]byte
	gset   int // index into Engine.gsets; -1 for rules without groups
	slot   int // the rule's slot in each group of its set
	folds  map[string]*fold
}

// nanos is t as wall-clock nanoseconds since the Unix epoch (so windows
// are reproducible from the events alone). Unlike UnixNano it saturates
// rather than wraps, at ±2^62 ns (the years 1824 and 2116), so that the
// difference of any two times fits an int64: the zero time.Time (year 1)
// of an event without a time orders before every other time and equals
// itself — zero is a time too.
func nanos(t time.Time) int64 {
	const bound = 1 << 62
	s := t.Unix()
	switch {
	case s <= -bound/int64(time.Second):
		return -bound
	case s >= bound/int64(time.Second):
		return bound
	}
	return s*int64(time.Second) + int64(t.Nanosecond())
}

// tickEvery is how often, in event time, Process looks for folds to flush.
const tickEvery = int64(time.Second)

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
	last  int64 // last event's time: the idlest entry is evicted first
	slots []group
}

// group is the state of one group of one stateful rule.
type group struct {
	// Counting (threshold, change with count): the times of the last
	// count events, or per sub-window counts for large counts.
	ring    []int64
	head, n int
	buckets *buckets
	latest  int64 // the latest time counted: the window ends there

	// Distinct values (threshold with distinct).
	distinct map[string]*int64 // value -> last seen
	small    *smallDistinct    // one-byte fields (unit, function ...)

	// Held conditions (for).
	holding  bool
	fired    bool      // already raised for this stretch
	since    int64     // when the condition started to hold
	sinceT   time.Time // the same, for the message
	seenAt   int64     // the value's last event
	gap      int64     // and the interval before it: the value's cadence
	seenOnce bool

	// Changes: the reference value (first, then last changed).
	value    float64
	hasValue bool

	fold *fold // the open fold of a rule that folds by its groups
}

// fold holds the alerts of a rule that share its fold fields within the
// fold window: the first went out at once, the rest go out as one alert
// with their count and what they touched.
// fold is an open fold of a rule (fold.go).
type fold struct {
	start   int64 // time of the event that opened it
	pending int
	last    plcwatch.Event
	msg     string
	act     plcwatch.Activity
	open    bool
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
	e := &Engine{opts: opts, raise: raise, baseline: opts.Baseline, image: newImage(opts.MaxImage, opts.Decoder)}
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
	e.altOf, e.envOf = nil, nil
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
	e.folds = 0
	for i := range e.states {
		e.folds += len(e.states[i].folds)
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

// ImageFull counts the polls of tags the process image had no room for
// (Options.MaxImage). Safe to call from any goroutine.
func (e *Engine) ImageFull() uint64 { return e.image.overflow.Load() }

// ImageSize is the number of polled tags and nodes in the process image.
// Only the engine's goroutine may call it.
func (e *Engine) ImageSize() int { return e.image.n }

// Set returns the rule set in use.
func (e *Engine) Set() *Set { return e.set }

// Hits returns what each enabled rule did so far.
func (e *Engine) Hits() []RuleHits { return append([]RuleHits(nil), e.hits...) }

// Process evaluates one event. An event that no rule can match costs a few
// index lookups and allocates nothing.
func (e *Engine) Process(ev *plcwatch.Event) {
	now := nanos(ev.Time)
	// The clock that flushes folds moves with the events, but not with one
	// event alone: it is the earlier of this event's time and the one
	// before, so one packet stamped an hour late moves it nowhere, and a
	// step back moves it back at once.
	clock := now
	if e.hasPrev && e.prev < clock {
		clock = e.prev
	}
	e.prev, e.hasPrev = now, true
	if clock >= e.tickAt || clock < e.tickAt-2*tickEvery {
		e.tick(clock)
	}
	e.now = now
	e.image.observe(ev, now)
	e.stamp++
	if e.stamp == 0 {
		clear(e.seen)
		for gi := range e.gsets {
			e.gsets[gi].stamp, e.gsets[gi].cur = 0, nil
		}
		e.stamp = 1
	}
	e.cand = e.set.index.candidates(ev, e.cand[:0], e.seen, e.stamp)
	e.envOf, e.altOf = nil, nil
	stage := uint8(1) << ev.Stage
	if ev.Stage > plcwatch.StageResponse {
		stage = onWhole
	}
	for _, ri := range e.cand {
		r := e.set.enabled[ri]
		if r.stages&stage == 0 && !(r.seesMalformedResponse && e.responseMalformed(r, ev)) {
			continue
		}
		if !r.match.decided && !r.match.matches(ev) {
			continue
		}
		if ev.Op == plcwatch.OpAsset && r.match.ops&(1<<plcwatch.OpAsset) == 0 {
			continue // only rules that ask for op asset see the inventory's events
		}
		if r.schedule != nil && !r.schedule.allows(ev.Time) {
			continue
		}
		cond := true
		if r.when != nil {
			if r.needsPolled && ev.PolledTag == "" {
				continue // a read not compared with a polled tag: false, as a missing value is
			}
			if (r.needsValue && !hasValue(ev)) || (r.needsStatus && !ev.Shows(plcwatch.FieldStatus)) {
				// No value: the condition is false without being run (a
				// value that is not there never compares as 0), and a
				// held condition neither starts nor ends.
				continue
			}
			cond = e.run(ri, r, ev)
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

// run evaluates r's when expression on ev; an expression that fails is
// false, and counted.
func (e *Engine) run(ri int32, r *Rule, ev *plcwatch.Event) bool {
	if e.envOf != ev {
		e.env.fill(ev)
		e.envOf = ev
	}
	out, err := e.vm.Run(r.when, &e.env)
	if err != nil {
		e.hits[ri].Errors++
		return false
	}
	b, _ := out.(bool)
	return b
}

// responsePrefix starts Malformed when the response, not the request, is
// what is malformed (the dissectors' convention: "response: ...").
const responsePrefix = "response:"

// responseMalformed reports whether a request rule that names malformed
// must also see ev: a StageResponse event whose response is malformed,
// when the rule did not already match its request (which it saw, well
// formed, at StageRequest). The request is ev without the response's
// malformation; a request rule looks at nothing else of the response.
func (e *Engine) responseMalformed(r *Rule, ev *plcwatch.Event) bool {
	if ev.Stage != plcwatch.StageResponse || !strings.HasPrefix(ev.Malformed, responsePrefix) {
		return false
	}
	if e.altOf != ev {
		e.alt = *ev
		e.alt.Malformed = ""
		e.altOf = ev
	}
	req := &e.alt
	if !r.match.matches(req) || (r.schedule != nil && !r.schedule.allows(req.Time)) {
		return true
	}
	if r.when == nil || (r.needsValue && !hasValue(req)) || (r.needsStatus && !req.Shows(plcwatch.FieldStatus)) {
		return r.when != nil
	}
	e.env.fill(req)
	e.envOf = req
	out, err := e.vm.Run(r.when, &e.env)
	matched, _ := out.(bool)
	return err != nil || !matched
}

// hasValue reports whether ev carries a value (a polled tag's, an OPC UA
// value): Value is not NaN, there is a tag or a value type to say it is
// one (the Modbus dissector leaves Value 0 on events without one), and the
// tag is not bad (a bad tag's value is null, whatever Value holds).
func hasValue(ev *plcwatch.Event) bool {
	return ev.HasValue() && (ev.Tag != "" || ev.ValueType != "") && ev.Quality != "bad"
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
				gs.cur.last = e.now
				return &gs.cur.slots[st.slot]
			}
		}
		key := e.groupKey(ev, gs.fields)
		ent, ok := gs.table[string(key)]
		if !ok {
			if len(gs.table) >= e.opts.MaxGroups {
				e.evictIdle(gs)
			}
			ent = &groupEntry{slots: make([]group, len(gs.rules))}
			gs.table[string(key)] = ent
		}
		if ce != nil {
			*ce = connEntry{ev.Conn, ent}
		}
		ent.last = e.now
		gs.stamp, gs.cur = e.stamp, ent
	}
	return &gs.cur.slots[st.slot]
}

// evictSample is how many groups evictIdle looks at.
const evictSample = 16

// evictIdle forgets a group of a full set: the idlest of a sample of them
// (map iteration starts at a random place), as Redis evicts. Finding the
// idlest of all would cost a scan of every group for each new one — a
// sweep over addresses or spoofed clients would make every event pay it.
func (e *Engine) evictIdle(gs *groupSet) {
	var idle string
	var idleAt int64
	n := 0
	for k, g := range gs.table {
		if n == 0 || g.last < idleAt {
			idle, idleAt = k, g.last
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(gs.table, idle)
	if gs.byConn != nil {
		*gs.byConn = [connCache]connEntry{} // it may hold the evicted entry
	}
}
