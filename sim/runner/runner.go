// Package runner runs a scenario: it starts its plants, steps their
// processes, and fires its actors on their schedules, each from its own
// source address, optionally recording every connection to a capture.
package runner

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua"

	"github.com/plcwatch/plcwatch/sim/actors"
	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// Options of a run.
type Options struct {
	// Speed > 1 runs the scenario faster: schedules shrink and the process
	// steps further per tick by this factor (tests run the demo at 3). 0 is 1.
	Speed float64
	// Recorder, when not nil, records every actor's connection.
	Recorder *actors.Recorder
	// OnAction is told every firing of an actor, as it ends (called from
	// the actors' goroutines, one at a time).
	OnAction func(Action)
	// Hold keeps the plants serving (and their processes running) this
	// long after the scenario's duration, so that a poller watching them
	// does not see them go away as the scenario ends.
	Hold time.Duration
	// Started, when not nil, is called once the plants serve, before the
	// first actor fires: where a test or the demo starts its agent.
	Started func(plants map[string]*plant.Plant)
}

// Action is one firing of an actor.
type Action struct {
	Time time.Time
	At   time.Duration // when it was due, since the start, in scenario time (× Speed)
	// Actual is when it fired, since the start, in scenario time: later
	// than At when the actor's previous action or its connection took
	// longer than its period.
	Actual time.Duration
	Actor  string
	Do     string
	Target string
	Server string         // the target plant's address (host:port)
	Client netip.AddrPort // the connection's source address and port; port 0 when unknown (OPC UA: gopcua dials)
	Did    string         // what it did, in words
	Err    error
}

// Run runs s until its duration (divided by Speed) has passed or ctx ends.
// It returns an error only when a plant cannot start; an actor's errors are
// in its Actions.
func Run(ctx context.Context, s *scenario.Scenario, o Options) error {
	if o.Speed <= 0 {
		o.Speed = 1
	}
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) / o.Speed) }
	since := func(start time.Time) time.Duration { return time.Duration(float64(time.Since(start)) * o.Speed) }
	plants := map[string]*plant.Plant{}
	defer func() {
		for _, p := range plants {
			p.Close()
		}
	}()
	var proxies []*proxy
	defer func() {
		for _, p := range proxies {
			p.close()
		}
	}()
	for i := range s.Plants {
		sp := &s.Plants[i]
		listen := sp.Listen
		if sp.Protocol == "opcua" && o.Recorder != nil {
			// gopcua's client takes no connection of ours to record: a
			// recording proxy takes the plant's address, the server a free
			// port beside it.
			host, _, _ := net.SplitHostPort(sp.Listen)
			listen = net.JoinHostPort(host, "0")
		}
		p, err := plant.StartAt(ctx, sp, s.Seed+uint64(i), listen)
		if err != nil {
			return err
		}
		plants[sp.Name] = p
		if listen != sp.Listen {
			px, err := startProxy(sp.Listen, p.Addr(), o.Recorder)
			if err != nil {
				return fmt.Errorf("plant %q: %w", sp.Name, err)
			}
			proxies = append(proxies, px)
		}
	}
	plantCtx, cancelPlants := context.WithTimeout(ctx, scale(s.Duration)+o.Hold)
	defer cancelPlants()
	ctx, cancel := context.WithTimeout(ctx, scale(s.Duration))
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, p := range plants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Run(plantCtx, s.Tick, o.Speed)
		}()
	}
	if o.Started != nil {
		o.Started(plants)
	}
	start := time.Now()
	var mu sync.Mutex
	report := func(a Action) {
		if o.OnAction != nil {
			mu.Lock()
			defer mu.Unlock()
			o.OnAction(a)
		}
	}
	for i := range s.Actors {
		a := &s.Actors[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if scenario.IsOPCUA(a.Do) {
				opcuaActor(ctx, s, a, start, scale, since, report)
				return
			}
			actor(ctx, s, a, o, start, scale, since, report)
		}()
	}
	<-ctx.Done()
	<-plantCtx.Done()
	return nil
}

// actor fires a on its schedule until ctx ends, over one connection that
// it dials again after an error.
func actor(ctx context.Context, s *scenario.Scenario, a *scenario.Actor, o Options, start time.Time,
	scale func(time.Duration) time.Duration, since func(time.Time) time.Duration, report func(Action)) {
	from := netip.MustParseAddr(a.From)
	server := s.Plant(a.Target).Listen
	var c *actors.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for n := 0; ; n++ {
		at, ok := next(ctx, s, a, n, start, scale)
		if !ok {
			return
		}
		act := Action{Time: time.Now(), At: at, Actual: since(start), Actor: a.Name, Do: a.Do, Target: a.Target, Server: server}
		if c == nil {
			var err error
			if c, err = actors.Dial(ctx, from, server, o.Recorder); err != nil {
				act.Err = err
				report(act)
				continue
			}
		}
		act.Client = c.Local()
		act.Did, act.Err = actors.Act(ctx, c, s, a, n)
		if act.Err != nil && ctx.Err() == nil {
			c.Close()
			c = nil
		}
		report(act)
	}
}

// next waits for the actor's nth firing and returns its time in the
// scenario, or false when there is none (or ctx ended).
func next(ctx context.Context, s *scenario.Scenario, a *scenario.Actor, n int, start time.Time, scale func(time.Duration) time.Duration) (time.Duration, bool) {
	end := time.Duration(1<<63 - 1)
	if a.For > 0 {
		end = a.At + a.For
	}
	at := a.At + time.Duration(n)*a.Every
	if at > end || (n > 0 && a.Every == 0) || at >= s.Duration {
		return 0, false
	}
	select {
	case <-ctx.Done():
		return 0, false
	case <-time.After(time.Until(start.Add(scale(at)))):
		return at, true
	}
}

// opcuaActor fires an OPC UA actor on its schedule over one session (a new
// one after an error); opcua_login opens its own.
func opcuaActor(ctx context.Context, s *scenario.Scenario, a *scenario.Actor, start time.Time,
	scale func(time.Duration) time.Duration, since func(time.Time) time.Duration, report func(Action)) {
	from := netip.MustParseAddr(a.From)
	server := s.Plant(a.Target).Listen
	endpoint := "opc.tcp://" + server
	var c *opcua.Client
	defer func() {
		if c != nil {
			c.Close(context.Background())
		}
	}()
	for n := 0; ; n++ {
		at, ok := next(ctx, s, a, n, start, scale)
		if !ok {
			return
		}
		act := Action{Time: time.Now(), At: at, Actual: since(start), Actor: a.Name, Do: a.Do, Target: a.Target, Server: server,
			Client: netip.AddrPortFrom(from, 0)}
		if c == nil && a.Do != scenario.DoOPCUALogin {
			var err error
			if c, err = actors.OPCUAConnect(ctx, from, endpoint, a.User, a.Password); err != nil {
				act.Err = err
				report(act)
				continue
			}
		}
		act.Did, act.Err = actors.ActOPCUA(ctx, c, s, a, n)
		if act.Err != nil && c != nil && ctx.Err() == nil {
			c.Close(context.Background())
			c = nil
		}
		report(act)
	}
}

// String is an action in one line: "12.0s attacker 127.0.0.66:41234 -> tank-plc: wrote level_sp = 98".
//
// The time is when the action fired, with when it was due after it when
// the two differ at the line's precision (0.1 s): "26.4s (due 26.0s)". The
// client is its address and port, or the address alone when the port is
// not known (OPC UA); the target is the plant with its address.
func (a Action) String() string {
	when := fmt.Sprintf("%5.1fs", a.Actual.Seconds())
	if due := fmt.Sprintf("%5.1fs", a.At.Seconds()); due != when {
		when += " (due " + strings.TrimSpace(due) + ")"
	}
	client := a.Client.String()
	switch {
	case !a.Client.IsValid():
		client = "-" // no connection: the error says why
	case a.Client.Port() == 0:
		client = a.Client.Addr().String()
	}
	target := a.Target
	if a.Server != "" {
		target += " " + a.Server
	}
	s := fmt.Sprintf("%s %s %s -> %s: %s", when, a.Actor, client, target, a.Did)
	if a.Err != nil {
		s += " (" + a.Err.Error() + ")"
	}
	return s
}
