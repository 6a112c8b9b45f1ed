package opcua

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/sim/opcuasim"
)

// TestMaxNodesPerReadOne: a server with MaxNodesPerRead 1 or 2 comes up
// (the first Read asked three nodes and was refused with
// BadTooManyOperations, so the device never did) and its tags are read.
func TestMaxNodesPerReadOne(t *testing.T) {
	for _, limit := range []uint32{1, 2} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			s := simServer(t, opcuasim.Config{MaxNodesPerRead: limit}, map[string]any{"A": 1.0, "B": 2.0, "C": 3.0})
			d := Device{Name: "lim", Endpoint: s.Endpoint(), Interval: 200 * time.Millisecond, Security: Security{Policy: "None", Mode: "None"}}
			for _, n := range []string{"A", "B", "C"} {
				d.Tags = append(d.Tags, Tag{Name: n, Node: "nsu=urn:plcwatch:sim;s=" + n, Mode: "read"})
			}
			w := start(t, d, Options{})
			seen := map[string]bool{}
			w.until(30*time.Second, "the three tags good", func(ev *plcwatch.Event) bool {
				if ev.Op == plcwatch.OpStatus && ev.Quality == "down" {
					t.Fatalf("down: %s", ev.Error)
				}
				if ev.Op == plcwatch.OpRead && ev.Quality == "good" {
					seen[ev.Tag] = true
				}
				return len(seen) == 3
			})
			if st := w.c.Stats(); st.PlannedReads != int((3+limit-1)/limit) {
				t.Errorf("planned %d Reads, want %d", st.PlannedReads, (3+limit-1)/limit)
			}
		})
	}
}

// TestStopDuringRead: a stop while a Read waits for its response emits
// nothing for the Read's tags (it emitted one bad "context canceled"
// event per tag).
func TestStopDuringRead(t *testing.T) {
	s := simServer(t, opcuasim.Config{}, map[string]any{"A": 1.0})
	p := newProxy(t, fmt.Sprintf("127.0.0.1:%d", s.Port()))
	d := Device{Name: "stop", Endpoint: "opc.tcp://" + p.addr(), Interval: 300 * time.Millisecond, Timeout: 30 * time.Second,
		Security: Security{Policy: "None", Mode: "None"}}
	for i := range 50 {
		d.Tags = append(d.Tags, Tag{Name: fmt.Sprint("t", i), Node: "nsu=urn:plcwatch:sim;s=A", Mode: "read"})
	}
	d.Defaults()
	if errs := d.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := New(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	evs := make(chan plcwatch.Event, 10000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func(ev *plcwatch.Event) { evs <- *ev })
	}()
	deadline := time.After(30 * time.Second)
	for good := false; !good; {
		select {
		case ev := <-evs:
			good = ev.Op == plcwatch.OpRead && ev.Quality == "good"
		case <-deadline:
			t.Fatal("no good value")
		}
	}
	p.setCut(true)                     // the next Read goes unanswered
	time.Sleep(800 * time.Millisecond) // past the next interval: a Read is in flight
	for len(evs) > 0 {
		<-evs
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop took more than 10 s")
	}
	close(evs)
	for ev := range evs {
		if ev.Quality == "bad" || ev.Quality == "down" {
			t.Errorf("on stop: %s %s %q", ev.Tag, ev.Quality, ev.Error)
		}
	}
}
