package reassembly

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder frames messages as a length byte and that many bytes, and
// records each with the frame that delivered it; gaps are recorded as "|".
type recorder struct {
	got []string
}

func (r *recorder) Data(dir Dir, data []byte, m Meta) int {
	n := 0
	for len(data[n:]) > 0 && len(data[n:]) > int(data[n]) {
		l := int(data[n])
		r.got = append(r.got, fmt.Sprintf("%d:%s@%d", dir, data[n+1:n+1+l], m.Frame))
		n += 1 + l
	}
	return n
}

func (r *recorder) Gap(dir Dir, m Meta) { r.got = append(r.got, fmt.Sprintf("%d:|@%d", dir, m.Frame)) }

func msg(s string) []byte { return append([]byte{byte(len(s))}, s...) }

type step struct {
	dir Dir // 0 and 1 are directions; 2 asks SkipStaleHoles
	seg Segment
}

func seg(dir Dir, seq uint32, payload []byte) step {
	return step{dir: dir, seg: Segment{Seq: seq, Payload: payload}}
}

func acked(s step, ack uint32) step {
	s.seg.HasAck, s.seg.Ack = true, ack
	return s
}

func TestConn(t *testing.T) {
	const isn = 100
	ab := append(msg("a"), msg("b")...)
	tests := []struct {
		name  string
		steps []step
		lim   Limits
		want  string
	}{
		{
			name:  "in order after SYN",
			steps: []step{{dir: 0, seg: Segment{Seq: isn - 1, SYN: true}}, seg(0, isn, msg("a")), seg(0, isn+2, msg("b"))},
			want:  "0:a@2 0:b@3",
		},
		{
			name:  "first data without SYN is a gap, then in order",
			steps: []step{seg(0, isn, msg("a")), seg(0, isn+2, msg("b"))},
			want:  "0:|@1 0:a@1 0:b@2",
		},
		{
			name:  "message split over segments is delivered with the last",
			steps: []step{seg(0, isn, ab[:1]), seg(0, isn+1, ab[1:3]), seg(0, isn+3, ab[3:])},
			want:  "0:|@1 0:a@2 0:b@3",
		},
		{
			name:  "exact retransmission is dropped",
			steps: []step{seg(0, isn, msg("a")), seg(0, isn, msg("a")), seg(0, isn+2, msg("b"))},
			want:  "0:|@1 0:a@1 0:b@3",
		},
		{
			name:  "overlap: only new bytes count, first copy wins",
			steps: []step{seg(0, isn, msg("a")), seg(0, isn, []byte{1, 'X', 1, 'b'})},
			want:  "0:|@1 0:a@1 0:b@2",
		},
		{
			name:  "out of order is held until the hole fills, then delivered with its own packet",
			steps: []step{seg(0, isn, msg("a")), seg(0, isn+4, msg("c")), seg(0, isn+2, msg("b"))},
			want:  "0:|@1 0:a@1 0:b@3 0:c@2",
		},
		{
			name: "hole the receiver already acknowledged is skipped at once",
			steps: []step{
				seg(0, isn, msg("a")),
				acked(seg(1, 5000, nil), isn+4), // the server has bytes up to isn+4
				seg(0, isn+4, msg("c")),         // msg b was lost by the capture
			},
			want: "0:|@1 0:a@1 0:|@3 0:c@3",
		},
		{
			name: "later ACK past a hole releases held segments",
			steps: []step{
				seg(0, isn, msg("a")),
				seg(0, isn+4, msg("c")),
				acked(seg(1, 5000, nil), isn+6),
			},
			want: "0:|@1 0:a@1 0:|@3 0:c@2",
		},
		{
			name: "too many held segments skip the hole",
			lim:  Limits{MaxPending: 64, MaxEarly: 1 << 10, MaxSegments: 2},
			steps: []step{
				seg(0, isn, msg("a")),
				seg(0, isn+4, msg("c")), seg(0, isn+6, msg("d")), seg(0, isn+8, msg("e")),
			},
			want: "0:|@1 0:a@1 0:|@4 0:c@2 0:d@3 0:e@4",
		},
		{
			name: "incomplete message beyond MaxPending is dropped with a gap",
			lim:  Limits{MaxPending: 4, MaxEarly: 1 << 10, MaxSegments: 8},
			steps: []step{
				seg(0, isn, []byte{200, 'x', 'x', 'x', 'x', 'x'}),
				seg(0, isn+6, msg("b")),
			},
			want: "0:|@1 0:|@1 0:b@2",
		},
		{
			// -2^31 in sequence space: negated in a 32-bit int it stays
			// negative, and slicing with it panicked on armv7.
			name:  "a segment half the sequence space behind is old",
			steps: []step{seg(0, isn, msg("a")), seg(0, isn+2+1<<31, msg("x")), seg(0, isn+2, msg("b"))},
			want:  "0:|@1 0:a@1 0:b@3",
		},
		{
			name:  "sequence numbers wrap around",
			steps: []step{seg(0, 0xffffffff, msg("a")), seg(0, 1, msg("b")), seg(0, 0xffffffff, msg("a"))},
			want:  "0:|@1 0:a@1 0:b@2",
		},
		{
			name: "snap length cut: delivered part, then a gap for the rest",
			steps: []step{
				{dir: 0, seg: Segment{Seq: isn, Payload: []byte{9, 'p', 'a'}, Missing: 8}},
				seg(0, isn+11, msg("b")),
			},
			want: "0:|@1 0:|@1 0:b@2",
		},
		{
			name: "directions are independent",
			steps: []step{
				{dir: 0, seg: Segment{Seq: isn - 1, SYN: true}},
				{dir: 1, seg: Segment{Seq: 7999, SYN: true, HasAck: true, Ack: isn}},
				seg(0, isn, msg("q")), seg(1, 8000, msg("r")),
			},
			want: "0:q@3 1:r@4",
		},
		{
			name: "a stale hole is skipped when asked",
			steps: []step{
				seg(0, isn, msg("a")),
				seg(0, isn+4, msg("c")),
				{dir: 2}, // SkipStaleHoles at 2s
			},
			want: "0:|@1 0:a@1 0:|@3 0:c@2",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			var st Stats
			lim := tc.lim
			if lim.MaxPending == 0 {
				lim = DefaultLimits
			}
			c := Conn{Consumer: &r, Limits: &lim, Stats: &st, Budget: &Budget{Max: 1 << 20}}
			start := time.Unix(1e9, 0)
			for i, s := range tc.steps {
				m := Meta{Time: start.Add(time.Duration(i) * time.Millisecond), Frame: uint64(i + 1)}
				if s.dir == 2 {
					m.Time = start.Add(2 * time.Second)
					c.SkipStaleHoles(m.Time.Add(-time.Second), m)
					continue
				}
				seg := s.seg
				c.Add(s.dir, &seg, m)
			}
			if got := strings.Join(r.got, " "); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			c.Release()
			if c.Budget.Used != 0 {
				t.Errorf("budget: %d bytes still counted after Release", c.Budget.Used)
			}
		})
	}
}

func TestBudgetBoundsAllConnections(t *testing.T) {
	var r recorder
	var st Stats
	budget := Budget{Max: 8}
	lim := DefaultLimits
	conns := make([]Conn, 3)
	for i := range conns {
		conns[i] = Conn{Consumer: &r, Limits: &lim, Stats: &st, Budget: &budget}
		conns[i].Add(0, &Segment{Seq: 10, Payload: msg("a")}, Meta{Frame: 1})
		conns[i].Add(0, &Segment{Seq: 20, Payload: msg("xyz")}, Meta{Frame: 2})
	}
	if budget.Used > budget.Max {
		t.Errorf("budget used %d > max %d", budget.Used, budget.Max)
	}
	if st.EarlyOverflow == 0 {
		t.Error("no overflow counted although the shared budget was exceeded")
	}
}
