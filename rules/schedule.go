package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // gateways often have no zoneinfo; schedules name zones
)

// schedule makes a rule active only inside its active windows (when there
// are any) and never inside its mute windows — maintenance windows and
// shift patterns. Times are read in the schedule's time zone, from the
// event's own time, so a replayed capture is judged by when it happened.
type schedule struct {
	loc    *time.Location
	active []window
	mute   []window
}

// window is a span of the day on some days: weekdays, or one date range.
// A span whose end is not after its start crosses midnight into the next
// day.
type window struct {
	days     uint8 // bit per time.Weekday; 0 when dates are used
	from, to civilDate
	start    int // minutes after midnight
	end      int // minutes after midnight, up to 1440
}

type civilDate struct{ y, m, d int }

func (c civilDate) before(o civilDate) bool {
	if c.y != o.y {
		return c.y < o.y
	}
	if c.m != o.m {
		return c.m < o.m
	}
	return c.d < o.d
}

func (s *schedule) allows(t time.Time) bool {
	t = t.In(s.loc)
	if len(s.active) > 0 && !anyWindow(s.active, t) {
		return false
	}
	return !anyWindow(s.mute, t)
}

func anyWindow(ws []window, t time.Time) bool {
	for i := range ws {
		if ws[i].contains(t) {
			return true
		}
	}
	return false
}

func (w *window) contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	if w.end > w.start {
		return m >= w.start && m < w.end && w.onDay(t)
	}
	// Crosses midnight: the evening of a listed day, or the early hours
	// of the day after one.
	return (m >= w.start && w.onDay(t)) || (m < w.end && w.onDay(t.AddDate(0, 0, -1)))
}

func (w *window) onDay(t time.Time) bool {
	if w.days != 0 {
		return w.days&(1<<t.Weekday()) != 0
	}
	y, mo, d := t.Date()
	c := civilDate{y, int(mo), d}
	return !c.before(w.from) && !w.to.before(c)
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseWindow reads "mon-fri 08:00-17:00", "sat,sun 00:00-24:00",
// "daily 22:00-06:00", "22:00-06:00" (daily), "2026-12-24 00:00-24:00" or
// "2026-12-24..2026-12-27 06:00-18:00".
func parseWindow(s string) (window, error) {
	var w window
	f := strings.Fields(s)
	var days, span string
	switch len(f) {
	case 1:
		days, span = "daily", f[0]
	case 2:
		days, span = f[0], f[1]
	default:
		return w, fmt.Errorf("window %q: want [DAYS] HH:MM-HH:MM", s)
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return w, fmt.Errorf("window %q: time span %q is not HH:MM-HH:MM", s, span)
	}
	var err error
	if w.start, err = clock(a); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	if w.end, err = clock(b); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	if w.start == 1440 {
		return w, fmt.Errorf("window %q: a span cannot start at 24:00", s)
	}
	if w.start == w.end {
		return w, fmt.Errorf("window %q: empty span (use 00:00-24:00 for a whole day)", s)
	}
	switch {
	case days == "daily" || days == "*":
		w.days = 0x7f
	case len(days) >= 10 && days[4] == '-' && days[0] >= '0' && days[0] <= '9':
		from, to, isRange := strings.Cut(days, "..")
		if w.from, err = date(from); err != nil {
			return w, fmt.Errorf("window %q: %w", s, err)
		}
		w.to = w.from
		if isRange {
			if w.to, err = date(to); err != nil {
				return w, fmt.Errorf("window %q: %w", s, err)
			}
			if w.to.before(w.from) {
				return w, fmt.Errorf("window %q: date range ends before it starts", s)
			}
		}
	default:
		for _, part := range strings.Split(days, ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			a, ok := dayNames[strings.ToLower(lo)]
			if !ok {
				return w, fmt.Errorf("window %q: %q is not a day (mon..sun, daily, or YYYY-MM-DD)", s, lo)
			}
			b := a
			if isRange {
				if b, ok = dayNames[strings.ToLower(hi)]; !ok {
					return w, fmt.Errorf("window %q: %q is not a day", s, hi)
				}
			}
			for d := a; ; d = (d + 1) % 7 {
				w.days |= 1 << d
				if d == b {
					break
				}
			}
		}
	}
	return w, nil
}

func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM, 00:00 to 24:00)", s)
	}
	return hh*60 + mm, nil
}

func date(s string) (civilDate, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return civilDate{}, fmt.Errorf("%q is not a date (YYYY-MM-DD)", s)
	}
	y, m, d := t.Date()
	return civilDate{y, int(m), d}, nil
}
