package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/rules"
)

func cmdRules(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "lint":
			return cmdRulesLint(args[1:], stdout, stderr)
		case "test":
			return cmdRulesTest(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, "usage: plcwatch rules lint PATH...  |  plcwatch rules test --rules PATH (--pcap FILE | --events FILE)")
	return 2
}

// cmdRulesLint prints every problem as file:line:col: message; it exits 0
// when all rules are valid, 1 otherwise.
func cmdRulesLint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: plcwatch rules lint FILE|DIR|GLOB...")
		return 2
	}
	set, err := rules.Load(fs.Args()...)
	if err != nil {
		var probs rules.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(stdout, p)
			}
			return 1
		}
		fmt.Fprintln(stdout, err)
		return 1
	}
	fmt.Fprintf(stderr, "%d rules, %d enabled: ok\n", len(set.Rules), len(set.Enabled()))
	return 0
}

// loadRules loads a rule set for a command, printing problems.
func loadRules(stderr io.Writer, cmd string, paths ...string) *rules.Set {
	set, err := rules.Load(paths...)
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch %s: the rules have problems (plcwatch rules lint shows them all):\n%v\n", cmd, err)
		return nil
	}
	return set
}

func cmdRulesTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var paths stringList
	fs.Var(&paths, "rules", "rule file, folder or glob (repeatable)")
	pcap := fs.String("pcap", "", "capture to decode and evaluate")
	events := fs.String("events", "", "events to evaluate, as JSON lines (what replay --events prints)")
	baseline := fs.String("baseline", "", "baseline file to load and save (default: learn in memory)")
	var opts agent.ReplayOptions
	fs.StringVar(&opts.Site, "site", "", "site name in alerts")
	fs.StringVar(&opts.Gateway, "gateway", "", "gateway name in alerts")
	fs.Var((*portList)(&opts.Capture.ModbusPorts), "modbus-ports", "comma-separated TCP ports of Modbus/TCP servers (default 502)")
	fs.Var((*portList)(&opts.Capture.OPCUAPorts), "opcua-ports", "comma-separated TCP ports of OPC UA servers (default 4840)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(paths) == 0 || (*pcap == "") == (*events == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: plcwatch rules test --rules PATH (--pcap FILE | --events FILE) [--baseline FILE]")
		return 2
	}
	if opts.Rules = loadRules(stderr, "rules test", paths...); opts.Rules == nil {
		return 1
	}
	if *baseline != "" {
		b, err := rules.LoadBaseline(*baseline)
		if err != nil {
			fmt.Fprintln(stderr, "plcwatch rules test:", err)
			return 1
		}
		opts.Baseline = b
	}
	var sum agent.ReplaySummary
	var err error
	if *pcap != "" {
		sum, err = agent.Replay(ctx, *pcap, opts, stdout)
	} else {
		sum, err = agent.ReplayEvents(ctx, *events, opts, stdout)
	}
	agent.WriteHits(stderr, sum.Hits)
	fmt.Fprintln(stderr, sum)
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch rules test:", err)
		return 1
	}
	return 0
}

func cmdBaseline(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "show" {
		fmt.Fprintln(stderr, "usage: plcwatch baseline show --baseline FILE")
		return 2
	}
	fs := flag.NewFlagSet("baseline show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("baseline", "", "baseline file")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "usage: plcwatch baseline show --baseline FILE")
		return 2
	}
	b, err := rules.LoadBaseline(*path)
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch baseline show:", err)
		return 1
	}
	if len(b.Rules) == 0 {
		fmt.Fprintf(stderr, "%s: nothing learned yet\n", *path)
		return 0
	}
	if err := b.Write(stdout, time.Now()); err != nil {
		fmt.Fprintln(stderr, "plcwatch baseline show:", err)
		return 1
	}
	return 0
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
