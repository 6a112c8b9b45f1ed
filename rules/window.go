package rules

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Windows (issue 9 §8): an event counts at its own time. One that steps
// back by more than the window starts the count again — it is never
// "inside" with a negative span — and a step forward ages out what is
// older than the window, so one packet stamped an hour late costs at most
// the counts of one window and never freezes a group. Events a little out
// of order (within the window) count at their own times.

// exactCount is the largest threshold count kept exactly (a ring of that
// many times per group). Larger counts — floods, bursts — are counted in
// windowBuckets sub-windows, so a group costs the same small memory
// whatever the count; the window is then exact to a sixteenth.
const (
	exactCount    = 64
	windowBuckets = 16
)

// buckets count events per sub-window: head is the newest sub-window
// index (time / width), count a ring of the last windowBuckets of them.
type buckets struct {
	head    int64
	count   [windowBuckets]int32
	total   int32
	started bool
}

// smallDistinct is the distinct count for one-byte fields: last-seen
// times in an array, and which values were seen in a bit set (a time of 0
// is a time, not "never seen": a capture whose stamps are all 0 is
// counted like any other).
type smallDistinct struct {
	seen bits256
	at   [256]int64
	n    int
}

func (e *Engine) thresholdHit(ri int32, r *Rule, ev *plcwatch.Event) {
	th := r.threshold
	g := e.group(ri, ev)
	now := e.now
	if r.foldOnGroup && g.fold != nil && g.fold.open {
		// The group's alert is folding: what this event touched belongs
		// to the activity the folded alert will report.
		if d := now - g.fold.start; d >= 0 && d < 2*int64(r.fold.window) {
			g.fold.act.Note(ev)
		}
	}
	if th.distinct != fieldNone {
		if e.distinctHit(g, ev, th, now) {
			e.fire(ri, r, ev, fmt.Sprintf("%d distinct %s values within %s (%s)", th.count, th.distinct, th.window, keyText(nil, ev, th.by)))
		}
		return
	}
	var hit bool
	if th.count > exactCount {
		hit = bucketHit(g, now, th.count, th.window)
	} else {
		hit = countHit(g, now, th.count, th.window)
	}
	if hit {
		e.fire(ri, r, ev, fmt.Sprintf("%d matching events within %s (%s)", th.count, th.window, keyText(nil, ev, th.by)))
	}
}

// countHit counts an event at now in g's ring of the last count events and
// reports whether count of them fall within window; the count then starts
// again.
func countHit(g *group, now int64, count int, window time.Duration) bool {
	w := int64(window)
	if g.n > 0 && now < g.latest-w {
		g.n, g.head = 0, 0 // a step back beyond the window: a new start
	}
	if g.n == 0 || now > g.latest {
		g.latest = now
	}
	if len(g.ring) != count {
		g.ring, g.n, g.head = make([]int64, count), 0, 0
	}
	g.ring[g.head] = now
	if g.head++; g.head == count {
		g.head = 0
	}
	if g.n < count {
		g.n++
	}
	// Full: ring[head] is the oldest counted. If even it is outside the
	// window, so is the earliest (the common case: one comparison);
	// else find the earliest, as events may come a little out of order.
	if g.n < count || g.latest-g.ring[g.head] > w {
		return false
	}
	earliest := g.ring[0]
	for _, t := range g.ring[1:] {
		earliest = min(earliest, t)
	}
	if g.latest-earliest > w {
		return false
	}
	g.n = 0
	return true
}

// bucketHit counts an event in the sub-window of its own time and reports
// whether the sub-windows of the last window hold count events; the count
// then starts again.
func bucketHit(g *group, now int64, count int, window time.Duration) bool {
	width := int64(window) / windowBuckets
	if width == 0 {
		width = 1
	}
	if g.buckets == nil {
		g.buckets = new(buckets)
	}
	b := g.buckets
	cur := floorDiv(now, width)
	switch {
	case !b.started:
		b.head, b.started = cur, true
	case cur-b.head >= windowBuckets || b.head-cur >= windowBuckets:
		// Quiet for a whole window, or a step back beyond it (a new
		// start): nothing counted so far is in this event's window.
		b.count, b.total = [windowBuckets]int32{}, 0
		b.head = cur
	case cur > b.head:
		// Empty the sub-windows between the newest one and this event's.
		for i := b.head + 1; i <= cur; i++ {
			k := ringIndex(i)
			b.total -= b.count[k]
			b.count[k] = 0
		}
		b.head = cur
	}
	// An event a little out of order counts in its own sub-window, which
	// the ring still holds.
	b.count[ringIndex(cur)]++
	b.total++
	if int(b.total) < count {
		return false
	}
	b.count, b.total = [windowBuckets]int32{}, 0
	return true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func ringIndex(i int64) int { return int(((i % windowBuckets) + windowBuckets) % windowBuckets) }

// distinctHit notes ev's value of the distinct field at now and reports
// whether count distinct values were seen within the window; the count
// then starts again.
func (e *Engine) distinctHit(g *group, ev *plcwatch.Event, th *threshold, now int64) bool {
	w := int64(th.window)
	if v, ok := byteField(ev, th.distinct); ok {
		if g.small == nil {
			g.small = new(smallDistinct)
		}
		s := g.small
		if s.n > 0 && now < g.latest-w {
			*s = smallDistinct{} // a step back beyond the window: a new start
		}
		if s.n == 0 || now > g.latest {
			g.latest = now
		}
		if !s.seen.has(v) {
			s.seen.set(v)
			s.n++
			s.at[v] = now
		} else if now > s.at[v] {
			s.at[v] = now
		}
		if s.n < th.count {
			return false
		}
		// Enough values ever seen: forget those outside the window.
		s.n = 0
		for i := range s.at {
			if !s.seen.has(uint8(i)) {
				continue
			}
			if g.latest-s.at[i] > w {
				s.seen[i>>6] &^= 1 << (i & 63)
				continue
			}
			s.n++
		}
		if s.n < th.count {
			return false
		}
		*s = smallDistinct{}
		return true
	}
	if g.distinct == nil {
		g.distinct = map[string]*int64{}
	}
	if len(g.distinct) > 0 && now < g.latest-w {
		clear(g.distinct)
	}
	if len(g.distinct) == 0 || now > g.latest {
		g.latest = now
	}
	e.val = appendFieldKey(e.val[:0], ev, th.distinct)
	if seen, ok := g.distinct[string(e.val)]; ok {
		*seen = max(*seen, now) // a lookup, not an assignment: no key string is made
	} else {
		t := new(int64) // not &now: that would move now to the heap for every event
		*t = now
		g.distinct[string(e.val)] = t
	}
	if len(g.distinct) < th.count {
		return false
	}
	// Enough values to fire, if they are all recent: forget the old ones
	// only now, so the common case costs one map write.
	for k, seen := range g.distinct {
		if g.latest-*seen > w {
			delete(g.distinct, k)
		}
	}
	if len(g.distinct) < th.count {
		return false
	}
	clear(g.distinct)
	return true
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
	case fieldSource:
		return uint8(ev.Source), true
	case fieldException:
		return ev.Exception, true
	}
	return 0, false
}

// heldGroup is what a "for" rule tracks separately: one value.
var heldGroup = []field{fieldDevice, fieldTag, fieldNode}

// held follows a condition that must hold for r.hold. Time held is
// measured between the value's own events, but a jump — a step back, or a
// step forward more than ten times the value's usual interval (and over a
// second): a late stamp, a wall clock stepped forward — is not time the
// condition was seen to hold: the hold starts again at that event. A
// genuine change of pace costs one interval: the interval after it is the
// new usual one. A
// stretch raises one alert; it ends when the condition is false.
func (e *Engine) held(ri int32, r *Rule, ev *plcwatch.Event, cond bool) {
	g := e.group(ri, ev)
	now := e.now
	jump := false
	if g.seenOnce {
		// The value's usual interval is known from its second event on:
		// the first interval of a value always counts.
		gap := now - g.seenAt
		jump = gap < 0 || (g.gap > 0 && gap > int64(time.Second) && gap > 10*g.gap)
		if gap > 0 {
			g.gap = gap
		}
	}
	g.seenAt, g.seenOnce = now, true
	if !cond {
		g.holding, g.fired = false, false
		return
	}
	if !g.holding || jump {
		if !g.holding {
			g.fired = false
		}
		g.holding, g.since, g.sinceT = true, now, ev.Time
	}
	if !g.fired && now-g.since >= int64(r.hold) {
		g.fired = true
		e.fire(ri, r, ev, fmt.Sprintf("condition held for %s (since %s)", time.Duration(now-g.since).Round(time.Millisecond), g.sinceT.UTC().Format(time.RFC3339)))
	}
}

// changeHit follows a value: a polled value, or the value a write puts on
// the wire. A missing value (a bad tag, a NaN reading) is not a change:
// the reference stays, and the next value is compared with it.
func (e *Engine) changeHit(ri int32, r *Rule, ev *plcwatch.Event) {
	v, ok := changeValue(ev)
	if !ok {
		return
	}
	g := e.group(ri, ev)
	if !g.hasValue {
		// The first value is the reference changes are measured from.
		g.value, g.hasValue = v, true
		return
	}
	// Measured from the reference, not from the last value: a setpoint
	// walked up in small steps still alerts once it is delta away.
	c := r.change
	ref := g.value
	d := roundedDiff(v, ref)
	if (c.delta == 0 && d == 0) || (c.delta > 0 && math.Abs(d) <= c.delta) {
		return
	}
	g.value = v
	if c.count > 0 {
		if countHit(g, e.now, c.count, c.window) {
			e.fire(ri, r, ev, fmt.Sprintf("value changed %d times within %s, the last from %s to %s", c.count, c.window, num(ref), num(v)))
		}
		return
	}
	e.fire(ri, r, ev, fmt.Sprintf("value changed from %s to %s (by %s)", num(ref), num(v), num(d)))
}

// changeValue is the value a change rule follows: an event's value, or
// for a write on the wire the first value it writes.
func changeValue(ev *plcwatch.Event) (float64, bool) {
	if hasValue(ev) {
		return round15(ev.Value), true
	}
	if ev.Op == plcwatch.OpWrite && ev.Values.Len() > 0 {
		v := ev.Values.Float(0)
		return round15(v), v == v
	}
	return 0, false
}

var pow10 = func() [23]float64 {
	var p [23]float64
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// round15 rounds v to 15 significant digits: what float64 arithmetic adds
// beyond them (986 × 0.1 = 98.60000000000001) is noise, never a reading.
// Comparisons and differences are made on rounded values, so value ==
// 98.6 holds and a change of 23.4 to 23.7 is 0.3 (issue 9 §8).
func round15(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	k := 14 - int(math.Floor(math.Log10(math.Abs(v))))
	if k <= 0 || k >= len(pow10) {
		return v // 15 digits or more before the point, or tiny: nothing to round
	}
	r := math.Round(v*pow10[k]) / pow10[k]
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return v
	}
	return r
}

// decimals is how many digits v has after the point, written shortest.
func decimals(v float64) int {
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], v, 'f', -1, 64)
	for i, c := range b {
		if c == '.' {
			return len(b) - i - 1
		}
	}
	return 0
}

// roundedDiff is a - b rounded to the precision of its operands: 23.7 -
// 23.4 is 0.3, not 0.3000000000000007.
func roundedDiff(a, b float64) float64 {
	d := a - b
	if p := max(decimals(a), decimals(b)); p < len(pow10) {
		d = math.Round(d*pow10[p]) / pow10[p]
	}
	return d
}

// num prints a number shortest (it is rounded already).
func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func (e *Engine) baselineHit(ri int32, r *Rule, ev *plcwatch.Event) {
	spec := r.baseline
	lr := e.baseline.rule(r.ID, spec, ev.Time)
	// Each event is judged by its own time: one stamped before learning
	// started (a clock set back) is learning.
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
