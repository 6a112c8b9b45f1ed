package reassembly

import (
	"testing"
	"time"
)

func TestMetaLater(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	early := Meta{Time: t0.Add(time.Second), Frame: 7}
	late := Meta{Time: t0, Frame: 9} // stamped earlier, captured later
	sameA := Meta{Time: t0, Frame: 5}
	sameB := Meta{Time: t0.Add(time.Millisecond), Frame: 5}
	for _, tc := range []struct {
		name       string
		m, o, want Meta
	}{
		{"frame wins over time", early, late, late},
		{"either order", late, early, late},
		{"same frame: later time", sameB, sameA, sameB},
		{"same frame: later time, other order", sameA, sameB, sameB},
		{"tie: the argument", Meta{Frame: 1, Clock: 1}, Meta{Frame: 1, Clock: 2}, Meta{Frame: 1, Clock: 2}},
	} {
		if got := tc.m.Later(tc.o); got != tc.want {
			t.Errorf("%s: %+v.Later(%+v) = %+v, want %+v", tc.name, tc.m, tc.o, got, tc.want)
		}
	}
}
