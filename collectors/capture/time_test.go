package capture_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// stamp is how a test capture stamps one packet: packets are numbered from
// 1 in the order written; the default is the connection's running time.
type stamp func(n int, t time.Time) time.Time

// timedCapture writes two connections. A polls a device every second (a
// read and its answer 1 ms later, then the client's ACK); B sends one write
// at 2.5 s to a slow device that answers 2 s later, and at 12.5 s a
// force-listen-only that is never answered. stamp rewrites the stamps.
func timedCapture(t *testing.T, st stamp) ([]plcwatch.Event, capture.Stats, map[int]time.Time) {
	t.Helper()
	stamps := map[int]time.Time{} // packet number -> the stamp written
	n := 0
	at := func(c *pcapgen.Conn, when time.Time) {
		n++
		c.Time = st(n, when)
		stamps[n] = c.Time
	}
	evs, stats := run(t, pcapgen.Options{}, capture.Config{}, func(w *pcapgen.Writer) {
		a := w.Conn(client4, server4, t0, 1000)
		b := w.Conn(netip.MustParseAddrPort("192.0.2.11:49153"), netip.MustParseAddrPort("192.0.2.21:502"), t0, 5000)
		hs := func(c *pcapgen.Conn, when time.Time) {
			at(c, when)
			c.Segment(pcapgen.ToServer, c.Next(pcapgen.ToServer), pcapgen.SYN, nil)
			c.Advance(pcapgen.ToServer, 1)
			at(c, when)
			c.Segment(pcapgen.ToClient, c.Next(pcapgen.ToClient), pcapgen.SYN|pcapgen.ACK, nil)
			c.Advance(pcapgen.ToClient, 1)
			at(c, when)
			c.Segment(pcapgen.ToServer, c.Next(pcapgen.ToServer), pcapgen.ACK, nil)
		}
		hs(a, t0)
		hs(b, t0)
		for i := 0; i < 20; i++ {
			base := t0.Add(time.Duration(i+1) * time.Second)
			tid := uint16(i + 1)
			at(a, base)
			a.Send(pcapgen.ToServer, pcapgen.MBAP(tid, 1, 3, 0, 7, 0, 1))
			if i == 1 {
				at(b, base.Add(500*time.Millisecond))
				b.Send(pcapgen.ToServer, pcapgen.MBAP(1, 1, 6, 0, 9, 0, 42))
			}
			if i == 3 {
				at(b, base.Add(500*time.Millisecond))
				b.Send(pcapgen.ToClient, pcapgen.MBAP(1, 1, 6, 0, 9, 0, 42))
			}
			if i == 11 {
				at(b, base.Add(500*time.Millisecond))
				b.Send(pcapgen.ToServer, pcapgen.MBAP(2, 1, 8, 0, 4, 0, 0))
			}
			at(a, base.Add(time.Millisecond))
			a.Send(pcapgen.ToClient, pcapgen.MBAP(tid, 1, 3, 2, 0, byte(i)))
			at(a, base.Add(2*time.Millisecond))
			a.Segment(pcapgen.ToServer, a.Next(pcapgen.ToServer), pcapgen.ACK, nil)
		}
	})
	return evs, stats, stamps
}

// checkTimed asserts what every variant of timedCapture must give: 20
// answered reads and one answered write, each at the stamp of its own
// request packet, and the force-listen-only given up on for want of a
// response (why).
func checkTimed(t *testing.T, evs []plcwatch.Event, stamps map[int]time.Time, why string) {
	t.Helper()
	reads, writes := 0, 0
	for _, ev := range evs {
		if ev.Orphan || ev.Malformed != "" {
			t.Errorf("frame %d: orphan or malformed: %s", ev.Frame, ev.AppendJSON(nil))
			continue
		}
		if want := stamps[int(ev.Frame)]; !ev.Time.Equal(want) {
			t.Errorf("frame %d (fc %d tid %d): time %s, want its own packet's %s", ev.Frame, ev.Function, ev.TID, ev.Time, want)
		}
		switch ev.Function {
		case 3:
			reads++
			if ev.Unanswered != "" || ev.Response.Len() != 1 || int(ev.Response.At(0)) != int(ev.TID)-1 {
				t.Errorf("read tid %d: unanswered %q response %v", ev.TID, ev.Unanswered, ev.Response.Ints(nil))
			}
		case 6:
			writes++
			if ev.Unanswered != "" {
				t.Errorf("the slow write was given up on: %q", ev.Unanswered)
			}
		case 8:
			if ev.Unanswered != why {
				t.Errorf("force listen only: unanswered %q, want %q", ev.Unanswered, why)
			}
		}
	}
	if reads != 20 || writes != 1 {
		t.Errorf("%d reads and %d writes paired, want 20 and 1", reads, writes)
	}
}

func TestEventTimesAreTheirOwnPackets(t *testing.T) {
	plain := func(_ int, t time.Time) time.Time { return t }
	// The packet numbers of timedCapture: 6 handshake packets, then per
	// second a read (and B's packets at seconds 2, 4, 12), its answer, an
	// ACK. Second 3's read is packet 14, its answer 15.
	hour := time.Hour
	tests := []struct {
		name  string
		stamp stamp
		why   string // the force-listen-only's fate
		idle  uint64 // connections dropped for idleness
	}{
		{"in order", plain, plcwatch.UnansweredTimeout, 0},
		{"one response stamped an hour late", func(n int, t time.Time) time.Time {
			if n == 15 {
				return t.Add(hour)
			}
			return t
		}, plcwatch.UnansweredTimeout, 0},
		{"one request stamped an hour late", func(n int, t time.Time) time.Time {
			if n == 14 {
				return t.Add(hour)
			}
			return t
		}, plcwatch.UnansweredTimeout, 0},
		{"one ACK stamped an hour late, one a day early", func(n int, t time.Time) time.Time {
			switch n {
			case 16:
				return t.Add(hour)
			case 26:
				return t.Add(-24 * hour)
			}
			return t
		}, plcwatch.UnansweredTimeout, 0},
		{"the clock steps back an hour and stays", func(n int, t time.Time) time.Time {
			if n >= 30 {
				return t.Add(-hour)
			}
			return t
		}, plcwatch.UnansweredTimeout, 0},
		// A step forward that the next packets confirm is time that
		// passed: B, quiet for an hour, is dropped for idleness and its
		// next request starts a new connection.
		{"the clock steps forward an hour and stays", func(n int, t time.Time) time.Time {
			if n >= 30 {
				return t.Add(hour)
			}
			return t
		}, plcwatch.UnansweredTimeout, 1},
		{"every stamp is zero", func(int, time.Time) time.Time { return time.Unix(0, 0).UTC() }, plcwatch.UnansweredEOF, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, st, stamps := timedCapture(t, tc.stamp)
			checkTimed(t, evs, stamps, tc.why)
			if st.IdleFlows != tc.idle || st.Flows != 2+tc.idle {
				t.Errorf("flows %d, idle %d: want %d and %d", st.Flows, st.IdleFlows, 2+tc.idle, tc.idle)
			}
		})
	}
}

func TestTimeOfASplitMessage(t *testing.T) {
	// A response in two segments, in every order the wire can give them:
	// the event takes the time of the packet that completed it, whatever
	// order they came in (issue 9).
	req := pcapgen.MBAP(1, 1, 3, 0, 0, 0, 4)
	resp := pcapgen.MBAP(1, 1, 3, 8, 0, 1, 0, 2, 0, 3, 0, 4)
	const cut = 9
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name     string
		segs     []int // 0: the first part, 1: the second; in capture order, one per millisecond from 10 ms
		complete int   // index in segs of the packet that completes the response
	}{
		{"in order", []int{0, 1}, 1},
		{"second part first", []int{1, 0}, 1},
		{"first part retransmitted after the second", []int{0, 1, 0}, 1},
		{"second part first, then both again", []int{1, 0, 1, 0}, 1},
		{"first part lost, second part retransmitted", []int{1, 1, 0}, 2},
	}
	for _, tc := range tests {
		for _, dir := range []pcapgen.Dir{pcapgen.ToServer, pcapgen.ToClient} {
			t.Run(fmt.Sprintf("%s/%s", tc.name, map[pcapgen.Dir]string{pcapgen.ToServer: "request", pcapgen.ToClient: "response"}[dir]), func(t *testing.T) {
				msg := resp
				if dir == pcapgen.ToServer {
					msg = req
				}
				evs, _ := run(t, pcapgen.Options{}, capture.Config{}, func(w *pcapgen.Writer) {
					c := w.Conn(client4, server4, t0, 1000)
					c.Handshake()
					if dir == pcapgen.ToClient {
						c.Time = ms(5)
						c.Send(pcapgen.ToServer, req)
					}
					seq := c.Next(dir)
					for i, part := range tc.segs {
						c.Time = ms(10 + i)
						if part == 0 {
							c.Segment(dir, seq, pcapgen.PSH, msg[:cut])
						} else {
							c.Segment(dir, seq+cut, pcapgen.PSH, msg[cut:])
						}
					}
					c.Advance(dir, len(msg))
					if dir == pcapgen.ToServer {
						c.Time = ms(20)
						c.Send(pcapgen.ToClient, resp)
					}
				})
				if len(evs) != 1 || evs[0].Orphan || evs[0].Unanswered != "" {
					t.Fatalf("want one paired event, got %v", renderAll(evs))
				}
				ev := evs[0]
				done := ms(10 + tc.complete)
				wantTime, wantRTT := ms(5), done.Sub(ms(5))
				if dir == pcapgen.ToServer {
					wantTime, wantRTT = done, ms(20).Sub(done)
				}
				if !ev.Time.Equal(wantTime) || ev.RTT != wantRTT {
					t.Errorf("time %s rtt %s, want %s and %s", ev.Time.Format("05.000"), ev.RTT, wantTime.Format("05.000"), wantRTT)
				}
			})
		}
	}
}
