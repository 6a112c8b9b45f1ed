// Package check is plcwatch sim check: it runs a scenario, records its
// traffic, puts the recording through the agent's own replay and rules path
// (agent.Replay: the dissectors, the rules engine, the alert builder), and
// compares the alerts raised, attributed to the scenario's actors by their
// source addresses, with the scenario's expectations — an integrator's
// acceptance test for a site's rule set.
package check

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/agent/alertsub"
	"github.com/plcwatch/plcwatch/rules"
	"github.com/plcwatch/plcwatch/sim/actors"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/runner"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// Options of a check.
type Options struct {
	// Pcap is where the recording goes; empty: a temporary file, removed.
	Pcap string
	// Speed runs the scenario faster (runner.Options.Speed).
	Speed float64
	// Log, when not nil, is told every action as it happens.
	Log io.Writer
	// Live runs the agent itself beside the scenario (agent.New on the
	// configuration, with live capture on lo — root — an embedded broker
	// on a free port, its alert log in a temporary folder, and the
	// configuration's polling): expectations are judged on what it raised,
	// and the recording's alerts offline are compared with them.
	Live bool
}

// Result is one expectation and what was raised for it.
type Result struct {
	Expect  scenario.Expect
	Got     int
	Rules   []string // the rules counted, for a pattern
	Skipped bool     // a poll expectation, and nothing polled
}

// OK says whether the count is within the expectation.
func (r Result) OK() bool {
	return r.Skipped || r.Got >= r.Expect.Min() && (r.Expect.Max() < 0 || r.Got <= r.Expect.Max())
}

// Report is a check's outcome.
type Report struct {
	Results []Result
	Alerts  []Alert         // every alert raised, attributed (live: the agent's)
	Offline []Alert         // the recording's alerts, offline
	Live    bool            // Alerts are the running agent's
	Actions []runner.Action // every actor's firing
	Summary agent.ReplaySummary
}

// Failed are the results outside their expectation.
func (r *Report) Failed() []Result {
	var out []Result
	for _, x := range r.Results {
		if !x.OK() {
			out = append(out, x)
		}
	}
	return out
}

// Alert is a raised alert and the actor it is attributed to ("" when its
// client is none of the scenario's actors, or it has none: a poll alert).
type Alert struct {
	alertsub.Alert
	Actor string
	Raw   json.RawMessage
	// FollowUp: the alert closes a fold ("N more since ...", with an
	// activity object): the rest of an alert that went out at once and was
	// counted. Expectations and tallies leave it out, as docs/sim.md says:
	// an alert with folded duplicates is one.
	FollowUp bool
}

// Run runs s, replays its recording through the rules of cfg (a loaded
// agent configuration: its rules, capture settings and device names; the
// scenario's plant ports are added to the Modbus ports) and compares.
func Run(ctx context.Context, s *scenario.Scenario, cfg *agent.Config, o Options) (*Report, error) {
	set, err := rules.Load(cfg.Rules.Paths...)
	if err != nil {
		return nil, fmt.Errorf("rules of %s: %w", cfg.File(), err)
	}
	var ids []string
	for _, r := range set.Rules {
		ids = append(ids, r.ID)
	}
	if probs := s.RuleProblems(ids); len(probs) > 0 {
		return nil, probs
	}
	path := o.Pcap
	if path == "" {
		f, err := os.CreateTemp("", "plcwatch-sim-*.pcap")
		if err != nil {
			return nil, err
		}
		f.Close()
		path = f.Name()
		defer os.Remove(path)
	}
	rep := &Report{Live: o.Live}
	ro := runner.Options{Speed: o.Speed, OnAction: func(a runner.Action) {
		rep.Actions = append(rep.Actions, a)
		if o.Log != nil {
			fmt.Fprintln(o.Log, a)
		}
	}}
	recCtx, stopRec := context.WithCancel(ctx)
	defer stopRec()
	var live *liveAgent
	if o.Live {
		dir, err := os.MkdirTemp("", "plcwatch-sim-check-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if live, err = startAgent(cfg, s, dir); err != nil {
			return nil, err
		}
		// The plants stay until the agent has stopped, so that it never
		// sees them go away.
		ro.Hold = 24 * time.Hour
		ro.Started = func(map[string]*plant.Plant) {
			live.run(recCtx)
			go func() {
				select {
				case <-recCtx.Done():
				case <-time.After(time.Duration(float64(s.Duration)/ro.Speed) + 2*time.Second): // two poll intervals more
				}
				live.stop()
				stopRec()
			}()
		}
	}
	if err := Record(recCtx, s, path, ro); err != nil {
		return nil, err
	}
	if live != nil {
		live.stop()
		if live.err != nil {
			return nil, fmt.Errorf("the agent: %w", live.err)
		}
		f, err := os.Open(live.alertLog)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err == nil {
			rep.Alerts, err = Attribute(s, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	opts := cfg.ReplayOptions(agent.ReplayOptions{Rules: set}, func(string) bool { return false })
	opts.Capture.ModbusPorts = Ports(s, "modbus", opts.Capture.ModbusPorts)
	opts.Capture.OPCUAPorts = Ports(s, "opcua", opts.Capture.OPCUAPorts)
	var out bytes.Buffer
	rep.Summary, err = agent.Replay(ctx, path, opts, &out)
	if err != nil {
		return nil, fmt.Errorf("replay of the recording: %w", err)
	}
	if rep.Offline, err = Attribute(s, &out); err != nil {
		return nil, err
	}
	if !o.Live {
		rep.Alerts = rep.Offline
	}
	rep.Results = Compare(s, rep.Alerts)
	if !o.Live {
		for i := range rep.Results {
			rep.Results[i].Skipped = rep.Results[i].Expect.Poll
		}
	}
	return rep, nil
}

// WireDifferences are the (rule, actor) pairs of wire alerts raised live
// but not offline, and offline but not live: the recording must tell the
// same story as the wire.
func (r *Report) WireDifferences() (liveOnly, offlineOnly []string) {
	pairs := func(as []Alert) map[string]bool {
		m := map[string]bool{}
		for _, a := range as {
			if a.Event.Source == "wire" && a.Actor != "" {
				m[a.Rule.ID+" from "+a.Actor] = true
			}
		}
		return m
	}
	l, o := pairs(r.Alerts), pairs(r.Offline)
	for k := range l {
		if !o[k] {
			liveOnly = append(liveOnly, k)
		}
	}
	for k := range o {
		if !l[k] {
			offlineOnly = append(offlineOnly, k)
		}
	}
	sort.Strings(liveOnly)
	sort.Strings(offlineOnly)
	return liveOnly, offlineOnly
}

// Record runs s with every actor's connection recorded to the capture
// file path.
func Record(ctx context.Context, s *scenario.Scenario, path string, o runner.Options) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, _ := pcapgen.NewWriter(f, pcapgen.Options{})
	o.Recorder = actors.NewRecorder(w, false)
	err = runner.Run(ctx, s, o)
	return errors.Join(err, o.Recorder.Flush(), f.Close())
}

// Ports adds the ports of the scenario's plants of protocol (modbus,
// opcua) to ports (the capture's ports of that protocol), once each.
func Ports(s *scenario.Scenario, protocol string, ports []uint16) []uint16 {
	out := slices.Clone(ports)
	for _, p := range s.Plants {
		if p.Protocol != protocol {
			continue
		}
		_, port, _ := net.SplitHostPort(p.Listen)
		n, _ := strconv.Atoi(port)
		if !slices.Contains(out, uint16(n)) {
			out = append(out, uint16(n))
		}
	}
	return out
}

// Attribute reads alerts (JSON lines, docs/alerts.md) and gives each the
// actor whose From address is the alert's client, talking to that actor's
// target: traffic from the same address to another server (another
// scenario's, seen by a live capture) is no actor's.
func Attribute(s *scenario.Scenario, r io.Reader) ([]Alert, error) {
	type key struct {
		from   netip.Addr
		server string
	}
	by := map[key]string{}
	for _, a := range s.Actors {
		ip, err := netip.ParseAddr(a.From)
		if p := s.Plant(a.Target); err == nil && p != nil {
			by[key{ip, p.Listen}] = a.Name
		}
	}
	var out []Alert
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var a Alert
		if err := json.Unmarshal(line, &a.Alert); err != nil {
			return out, fmt.Errorf("alert %q: %w", line, err)
		}
		a.Raw = slices.Clone(line)
		var fold struct {
			Activity json.RawMessage `json:"activity"`
		}
		if json.Unmarshal(line, &fold) == nil && len(fold.Activity) > 0 && string(fold.Activity) != "null" {
			a.FollowUp = true
		}
		if ap, err := netip.ParseAddrPort(a.Event.Client); err == nil {
			a.Actor = by[key{ap.Addr(), a.Event.Server}]
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// Compare counts, for each expectation, the alerts of its rule from its
// actor.
func Compare(s *scenario.Scenario, alerts []Alert) []Result {
	var out []Result
	for _, e := range s.Expect {
		r := Result{Expect: e}
		seen := map[string]bool{}
		for _, a := range alerts {
			if !a.FollowUp && e.Matches(a.Rule.ID) && (e.Actor == "" || e.Actor == a.Actor) {
				r.Got++
				if !seen[a.Rule.ID] {
					seen[a.Rule.ID] = true
					r.Rules = append(r.Rules, a.Rule.ID)
				}
			}
		}
		sort.Strings(r.Rules)
		out = append(out, r)
	}
	return out
}

// Write prints the report: one line per expectation (ok or FAILED), then
// the alerts per rule and per actor.
func (r *Report) Write(w io.Writer) {
	for _, x := range r.Results {
		mark := "ok    "
		switch {
		case x.Skipped:
			fmt.Fprintf(w, "skip   %s (a poll rule: only a live check, as root, polls the plants)\n", x.Expect)
			continue
		case !x.OK():
			mark = "FAILED"
		}
		extra := ""
		if len(x.Rules) > 0 && (len(x.Rules) > 1 || x.Rules[0] != x.Expect.Rule) {
			extra = " (" + strings.Join(x.Rules, ", ") + ")"
		}
		fmt.Fprintf(w, "%s %s; raised %d%s\n", mark, x.Expect, x.Got, extra)
	}
	perRule, perActor := map[string]int{}, map[string]int{}
	followUps := 0
	for _, a := range r.Alerts {
		if a.FollowUp {
			followUps++
			continue
		}
		perRule[a.Rule.ID]++
		who := a.Actor
		if who == "" {
			who = "(no actor: " + a.Event.Source + ")"
		}
		perActor[who]++
	}
	fmt.Fprintf(w, "alerts per rule: %s\n", counts(perRule))
	fmt.Fprintf(w, "alerts per actor: %s\n", counts(perActor))
	if followUps > 0 {
		fmt.Fprintf(w, "not counted: %d follow-ups of folded alerts (\"N more since ...\"): an alert and its folded duplicates are one\n", followUps)
	}
	if r.Live {
		liveOnly, offlineOnly := r.WireDifferences()
		if len(liveOnly)+len(offlineOnly) == 0 {
			fmt.Fprintln(w, "the recording, replayed offline, raised the same wire alerts as the agent live")
		} else {
			fmt.Fprintf(w, "the recording offline differs from the agent live: live only %s; offline only %s\n",
				strings.Join(liveOnly, ", "), strings.Join(offlineOnly, ", "))
		}
	}
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
