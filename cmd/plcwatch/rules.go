package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/rules"
)

func newRulesCmd(stdout, stderr io.Writer) *cobra.Command {
	c := group(&cobra.Command{
		Use:   "rules",
		Short: "Check rule files and try them on captures",
		Long:  `Commands about rule files (docs/rules.md).`,
	}, stderr)
	var lintConfig string
	lint := &cobra.Command{
		Use:   "lint PATH... [--config FILE]",
		Short: "Check rule files: every problem as file:line:col: message",
		Long: `Check rule files, folders (every .yaml and .yml below them) and globs: every problem is
printed on stdout as file:line:col: message; with none, a count of the rules on stderr.
With --config, rules that compare polled and wire values (docs/correlation.md) are
warned about (stderr, exit 0) when no polled device of that configuration is on a
captured link: they could never fire.`,
		Example: `  plcwatch rules lint configs/rules
  plcwatch rules lint '/etc/plcwatch/rules/*.yaml'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("name at least one rule file, folder or glob")
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			return code(lintRules(args, lintConfig, stdout, stderr))
		},
		Annotations: map[string]string{"exit": `  0  every rule is valid
  1  problems found (each on stdout as file:line:col: message)
  2  the command line is wrong`},
	}
	lint.Flags().StringVar(&lintConfig, "config", "", "agent configuration `FILE` whose devices and capture the rules will run with")
	_ = lint.MarkFlagFilename("config", "yaml", "yml")
	var t struct {
		rules    []string
		config   string
		pcap     string
		events   string
		baseline string
		opts     agent.ReplayOptions
	}
	test := &cobra.Command{
		Use:   "test (--rules PATH | --config FILE) (--pcap FILE | --events FILE) [flags]",
		Short: "Evaluate rules on a capture or on events: alerts and hits per rule",
		Long: `Evaluate rules on a capture (--pcap) or on events written as JSON lines (--events, what
"plcwatch replay --events" prints, or hand-written scenarios): every alert on stdout as a
JSON line, what every rule did (matched, alerts, folded, errors, overflow) and a summary
on stderr. Try rules here before they go near a plant.

--config FILE takes from an agent configuration what replay does: the site and gateway
names, the capture settings (Modbus and OPC UA ports, timeouts, bounds), the device names
and, without --rules, its rules. Flags given on the command line win.

A capture whose TCP traffic is all on ports not decoded (the defaults are 502 and 4840)
gives no PDUs: the summary then names the busiest TCP ports, to give with --modbus-ports
or --opcua-ports (or capture.modbus_ports / opcua_ports in --config).`,
		Example: `  plcwatch rules test --rules my-rules.yaml --pcap attack.pcap
  plcwatch rules test --rules my-rules.yaml --pcap site.pcap --modbus-ports 5520
  plcwatch rules test --config /etc/plcwatch/plcwatch.yaml --pcap site.pcap
  plcwatch rules test --rules configs/rules --events scenario.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (len(t.rules) == 0 && t.config == "") || (t.pcap == "") == (t.events == "") {
				return usagef("give --rules PATH (or --config FILE) and one of --pcap FILE or --events FILE")
			}
			opts, paths := t.opts, t.rules
			if t.config != "" {
				cfg, err := agent.LoadConfig(t.config)
				if err != nil {
					fmt.Fprintf(stderr, "plcwatch rules test: %s has problems:\n", t.config)
					printProblems(stderr, err)
					return code(exitFail)
				}
				opts = cfg.ReplayOptions(opts, cmd.Flags().Changed)
				if len(paths) == 0 {
					paths = cfg.Rules.Paths
				}
			}
			return code(testRules(cmd.Context(), paths, t.pcap, t.events, t.baseline, opts, stdout, stderr))
		},
		Annotations: map[string]string{"exit": `  0  the input was evaluated (alerts or not)
  1  the rules have problems, or the input could not be read
  2  the command line is wrong`},
	}
	fl := test.Flags()
	fl.StringArrayVar(&t.rules, "rules", nil, "rule `PATH`: a file, folder or glob (repeatable; required without --config)")
	fl.StringVarP(&t.config, "config", "c", "", "agent configuration `FILE` to take site, gateway, capture settings, device names and rules from")
	fl.StringVar(&t.pcap, "pcap", "", "capture `FILE` to decode and evaluate (- reads standard input as it arrives)")
	fl.StringVar(&t.events, "events", "", "`FILE` of events to evaluate, as JSON lines (what replay --events prints)")
	fl.StringVar(&t.baseline, "baseline", "", "baseline `FILE` to load and save (default: learn in memory)")
	fl.StringVar(&t.opts.Site, "site", "", "`SITE` name in alerts")
	fl.StringVar(&t.opts.Gateway, "gateway", "", "`GATEWAY` name in alerts")
	fl.Var((*portList)(&t.opts.Capture.ModbusPorts), "modbus-ports", "comma-separated TCP `PORTS` of Modbus/TCP servers (default 502)")
	fl.Var((*portList)(&t.opts.Capture.OPCUAPorts), "opcua-ports", "comma-separated TCP `PORTS` of OPC UA servers (default 4840)")
	_ = test.MarkFlagFilename("pcap", "pcap", "pcapng", "cap")
	_ = test.MarkFlagFilename("events", "jsonl", "json")
	_ = test.MarkFlagFilename("config", "yaml", "yml")
	c.AddCommand(lint, test)
	return c
}

// lintRules prints every problem as file:line:col: message; it exits 0
// when all rules are valid, 1 otherwise.
func lintRules(paths []string, config string, stdout, stderr io.Writer) int {
	set, err := rules.Load(paths...)
	if err != nil {
		var probs rules.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(stdout, p)
			}
			return exitFail
		}
		fmt.Fprintln(stdout, err)
		return exitFail
	}
	if config != "" {
		cfg, err := agent.LoadConfig(config)
		if err != nil {
			fmt.Fprintln(stdout, err)
			return exitFail
		}
		for _, w := range cfg.CorrelationWarnings(set) {
			fmt.Fprintln(stderr, "warning:", w)
		}
	} else {
		for _, r := range set.Enabled() {
			if r.Correlates() {
				fmt.Fprintf(stderr, "note: %s:%d: rule %s compares polled and wire values: it fires only for a device both polled and on a captured link (lint with --config to check)\n", r.File, r.Line, r.ID)
			}
		}
	}
	fmt.Fprintf(stderr, "%d rules, %d enabled: ok\n", len(set.Rules), len(set.Enabled()))
	return exitOK
}

// loadRules loads a rule set for a command, printing problems one per line.
func loadRules(stderr io.Writer, cmd string, paths ...string) *rules.Set {
	set, err := rules.Load(paths...)
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch %s: the rules have problems (plcwatch rules lint shows them all):\n%v\n", cmd, err)
		return nil
	}
	return set
}

// testRules is plcwatch rules test.
func testRules(ctx context.Context, paths []string, pcap, events, baseline string, opts agent.ReplayOptions, stdout, stderr io.Writer) int {
	if opts.Rules = loadRules(stderr, "rules test", paths...); opts.Rules == nil {
		return exitFail
	}
	if baseline != "" {
		b, err := rules.LoadBaseline(baseline)
		if err != nil {
			fmt.Fprintln(stderr, "plcwatch rules test:", err)
			return exitFail
		}
		opts.Baseline = b
	}
	var sum agent.ReplaySummary
	var err error
	if pcap != "" {
		sum, err = agent.Replay(ctx, pcap, opts, stdout)
	} else {
		sum, err = agent.ReplayEvents(ctx, events, opts, stdout)
	}
	agent.WriteHits(stderr, sum.Hits)
	fmt.Fprintln(stderr, sum)
	if pcap != "" {
		fileWarnings(stderr, "rules test", pcap, sum)
	}
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch rules test:", err)
		return exitFail
	}
	return exitOK
}

func newBaselineCmd(stdout, stderr io.Writer) *cobra.Command {
	c := group(&cobra.Command{
		Use:   "baseline",
		Short: "Show what baseline rules have learned",
		Long:  `Commands about the file where baseline rules keep what they learned (rules.baseline_file).`,
	}, stderr)
	var path string
	show := &cobra.Command{
		Use:   "show --baseline FILE",
		Short: "Print what baseline rules have learned, per rule",
		Long: `Print, per baseline rule, whether it is still learning or enforcing and the tuples it has
learned (with when each was last seen), from a baseline file (rules.baseline_file).`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if path == "" {
				return usagef("--baseline FILE is required")
			}
			return code(showBaseline(path, stdout, stderr))
		},
	}
	show.Flags().StringVar(&path, "baseline", "", "baseline `FILE` (required)")
	_ = show.MarkFlagFilename("baseline", "json")
	c.AddCommand(show)
	return c
}

func showBaseline(path string, stdout, stderr io.Writer) int {
	b, err := rules.LoadBaseline(path)
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch baseline show:", err)
		return exitFail
	}
	if len(b.Rules) == 0 {
		fmt.Fprintf(stderr, "%s: nothing learned yet\n", path)
		return exitOK
	}
	if err := b.Write(stdout, time.Now()); err != nil {
		fmt.Fprintln(stderr, "plcwatch baseline show:", err)
		return exitFail
	}
	return exitOK
}
