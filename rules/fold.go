package rules

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Folding (issue 9 §10: one activity, one alert). A rule's alerts that
// agree on its fold fields (fold.by: by default the actor and its target —
// client and server, device and tag; a threshold's own by) within the fold
// window fold into one: the first goes out at once, the rest go out as one
// alert when the window ends, with their count and the activity they
// covered — the function codes, units, address range, nodes and clients
// the sweep varied, first and last time. An activity that goes on into
// the next window goes on folding: one alert per window while it lasts,
// each with the activity since its start; only after a quiet window does
// the next alert go out at once again.

// fire raises an alert for r, or folds it into the open fold of its key.
func (e *Engine) fire(ri int32, r *Rule, ev *plcwatch.Event, msg string) {
	if r.fold.window <= 0 {
		e.emit(ri, r, ev, 1, msg, nil)
		return
	}
	st := &e.states[ri]
	key := e.groupKey(ev, r.fold.by)
	if f, ok := st.folds[string(key)]; ok {
		// Inside the window, by the event's own time, or in the next one
		// while the activity goes on. An event from before the fold
		// opened (a step back) or after a quiet window opens anew.
		w := int64(r.fold.window)
		d := e.now - f.start
		if d >= w && d < 2*w && f.pending > 0 {
			e.emitFold(ri, r, f)
			f.start += w
			d -= w
		}
		if d >= 0 && d < w {
			f.pending++
			f.last = *ev
			f.msg = msg
			if !r.foldOnGroup {
				f.act.Note(ev) // a group's fold notes every event itself
			}
			e.hits[ri].Folded++
			return
		}
		e.emitFold(ri, r, f)
		e.closeFold(f)
		delete(st.folds, string(key))
	}
	if st.folds == nil {
		st.folds = map[string]*fold{}
	}
	if len(st.folds) >= e.opts.MaxGroups {
		// Full: raise it unfolded rather than forget an open fold's count.
		e.hits[ri].Overflow++
		e.emit(ri, r, ev, 1, msg, nil)
		return
	}
	f := &fold{start: e.now, open: true}
	f.act.Note(ev)
	st.folds[string(key)] = f
	e.folds++
	if r.foldOnGroup {
		e.group(ri, ev).fold = f
	}
	e.emit(ri, r, ev, 1, msg, nil)
}

func (e *Engine) closeFold(f *fold) {
	f.open = false
	e.folds--
}

// emitFold raises a fold's folded alerts as one, if there are any.
func (e *Engine) emitFold(ri int32, r *Rule, f *fold) {
	if f.pending == 0 {
		return
	}
	defer func() { f.pending, f.msg = 0, "" }()
	msg := fmt.Sprintf("%d more since %s", f.pending, f.act.First.UTC().Format(time.RFC3339))
	if s := activityText(&f.act); s != "" {
		msg += ": " + s
	}
	if f.msg != "" {
		msg = f.msg + "; " + msg
	}
	e.emit(ri, r, &f.last, f.pending, msg, &f.act)
}

// activityText is the activity in a few words, for the alert's message.
func activityText(a *plcwatch.Activity) string {
	var parts []string
	if n := a.Functions.Len(); n > 1 {
		parts = append(parts, "functions "+string(a.Functions.AppendText(nil)))
	}
	if n := a.Units.Len(); n > 1 {
		parts = append(parts, "units "+string(a.Units.AppendText(nil)))
	}
	if a.HasAddr && a.AddrHi != a.AddrLo {
		parts = append(parts, "addresses "+strconv.Itoa(int(a.AddrLo))+"-"+strconv.Itoa(int(a.AddrHi)))
	}
	if a.Nodes.N > 1 {
		s := fmt.Sprintf("%d nodes", a.Nodes.N)
		if a.Nodes.More {
			s = fmt.Sprintf("more than %d nodes", a.Nodes.N)
		}
		parts = append(parts, s)
	}
	if a.Clients.N > 1 {
		s := fmt.Sprintf("%d clients", a.Clients.N)
		if a.Clients.More {
			s = fmt.Sprintf("more than %d clients", a.Clients.N)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// Tick flushes folds whose window has passed by now. Process calls it as
// event time moves; a daemon also calls it on a timer so that a folded
// count goes out even when the wire falls quiet.
func (e *Engine) Tick(now time.Time) { e.tick(nanos(now)) }

// tick flushes the folds whose window has passed by clock, and those that
// opened more than a window after it: a step back (a late stamp that
// opened a fold, a clock set back) must not hold a fold open until time
// catches up with it. A fold that folded something goes on for another
// window, in case the activity goes on; one that folded nothing closes.
func (e *Engine) tick(clock int64) {
	e.tickAt = clock + tickEvery
	if e.folds == 0 {
		return
	}
	for i, r := range e.set.enabled {
		st := &e.states[i]
		if len(st.folds) == 0 {
			continue
		}
		w := int64(r.fold.window)
		due := e.dueFolds(st.folds, func(f *fold) bool { d := clock - f.start; return d >= w || d <= -w })
		for _, kf := range due {
			f := kf.f
			if d := clock - f.start; d >= w && d < 2*w && f.pending > 0 {
				e.emitFold(int32(i), r, f)
				f.start += w
				continue
			}
			e.emitFold(int32(i), r, f)
			e.closeFold(f)
			delete(st.folds, kf.k)
		}
	}
}

// keyedFold is a fold and its key in the rule's fold map.
type keyedFold struct {
	k string
	f *fold
}

// dueFolds returns the folds of m for which due holds, oldest first (ties
// by key): alerts go out in the same order, and with the same ids, on
// every run of the same capture, which ranging over the map would not give.
func (e *Engine) dueFolds(m map[string]*fold, due func(*fold) bool) []keyedFold {
	out := e.due[:0]
	for k, f := range m {
		if due(f) {
			out = append(out, keyedFold{k, f})
		}
	}
	slices.SortFunc(out, func(a, b keyedFold) int {
		if c := cmp.Compare(a.f.start, b.f.start); c != 0 {
			return c
		}
		return strings.Compare(a.k, b.k)
	})
	e.due = out[:0]
	return out
}

// Close flushes every pending fold: the replay or the daemon is ending.
func (e *Engine) Close() {
	for i, r := range e.set.enabled {
		st := &e.states[i]
		for _, kf := range e.dueFolds(st.folds, func(*fold) bool { return true }) {
			e.emitFold(int32(i), r, kf.f)
			e.closeFold(kf.f)
			delete(st.folds, kf.k)
		}
	}
}

func (e *Engine) emit(ri int32, r *Rule, ev *plcwatch.Event, count int, msg string, act *plcwatch.Activity) {
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
	if act != nil {
		a.Activity = *act
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
