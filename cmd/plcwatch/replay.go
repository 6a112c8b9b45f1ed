package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/rules"
)

// replayFlags are plcwatch replay's command line.
type replayFlags struct {
	pcap     string
	config   string
	rules    []string
	baseline string
	format   string
	opts     agent.ReplayOptions
}

func newReplayCmd(stdout, stderr io.Writer) *cobra.Command {
	var f replayFlags
	c := &cobra.Command{
		Use:   "replay --pcap FILE [flags]",
		Short: "Decode a capture file; print alerts (and events) as JSON lines",
		Long: `Decode a pcap or pcapng capture as fast as the machine allows. With rules (--rules, or
the rules.paths of --config), every alert is printed on stdout as a JSON line
(docs/alerts.md); with --events, every decoded event too (docs/events.md). A summary line
(packets, events, alerts, drops, packets/s) and, with rules, the hits per rule go to stderr.

--config FILE takes from an agent configuration what replay can use: the site and gateway
names, the capture settings (Modbus and OPC UA ports, timeouts, bounds), the device names (modbus.devices
and assets, so that wire events carry a device's name) and, without --rules, its rules.
Flags given on the command line win.

--pcap - reads the capture from standard input as it arrives (pcap or pcapng; a pipe is never
seeked), printing each event and alert the moment it is decoded. A damaged file is read as far
as it can be: skipped pcapng blocks and a file cut short are warnings with their byte offsets
(docs/inputs.md); a file that is not a capture is an error.`,
		Example: `  plcwatch replay --pcap capture.pcapng --events | jq -c 'select(.op == "write")'
  plcwatch replay --pcap capture.pcap --rules configs/rules
  plcwatch replay --pcap capture.pcap --config /etc/plcwatch/plcwatch.yaml
  plcwatch replay --pcap opcua.pcapng --opcua-ports 4840,48010 --events
  tcpdump -i eth0 -U -w - 'tcp port 502' | plcwatch replay --pcap - --events
  tshark -i eth0 -l -w - -f 'tcp port 502' | plcwatch replay --pcap - --events`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.pcap == "" {
				return usagef("--pcap FILE is required")
			}
			if f.format != "jsonl" {
				return usagef("--format %q: only jsonl is supported", f.format)
			}
			fl := cmd.Flags()
			return code(replay(cmd.Context(), f, fl.Changed, stdout, stderr))
		},
		Annotations: map[string]string{"exit": `  0  the capture was read to its end (a truncated last packet is a warning)
  1  the capture, the configuration or the rules could not be read, or output failed
  2  the command line is wrong`},
	}
	fl := c.Flags()
	fl.StringVar(&f.pcap, "pcap", "", "capture `FILE` to decode: pcap or pcapng, gzipped or not; - reads standard input as it arrives (required)")
	fl.StringVarP(&f.config, "config", "c", "", "agent configuration `FILE` to take site, gateway, capture settings, device names and rules from")
	fl.StringArrayVar(&f.rules, "rules", nil, "rule `PATH` to evaluate: a file, folder or glob (repeatable); alerts go to stdout")
	fl.StringVar(&f.baseline, "baseline", "", "baseline `FILE` for baseline rules, loaded and saved (default: learn in memory)")
	fl.BoolVar(&f.opts.Events, "events", false, "print every decoded event as a JSON line")
	fl.StringVar(&f.format, "format", "jsonl", "output `FORMAT`: jsonl")
	fl.Var((*portList)(&f.opts.Capture.ModbusPorts), "modbus-ports", "comma-separated TCP `PORTS` of Modbus/TCP servers (default 502)")
	fl.Var((*portList)(&f.opts.Capture.OPCUAPorts), "opcua-ports", "comma-separated TCP `PORTS` of OPC UA servers (default 4840)")
	fl.DurationVar(&f.opts.Capture.ResponseTimeout, "response-timeout", 0, "how long a request waits for its response before it becomes a timeout event (default 5s)")
	fl.StringVar(&f.opts.Site, "site", "", "`SITE` name in alerts")
	fl.StringVar(&f.opts.Gateway, "gateway", "", "`GATEWAY` name in alerts")
	_ = c.MarkFlagFilename("pcap", "pcap", "pcapng", "cap")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	_ = c.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"jsonl"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// replay is plcwatch replay; changed reports whether a flag was given.
func replay(ctx context.Context, f replayFlags, changed func(string) bool, stdout, stderr io.Writer) int {
	opts := f.opts
	paths := f.rules
	if f.config != "" {
		cfg, err := agent.LoadConfig(f.config)
		if err != nil {
			fmt.Fprintf(stderr, "plcwatch replay: %s has problems:\n", f.config)
			printProblems(stderr, err)
			return exitFail
		}
		opts = cfg.ReplayOptions(opts, changed)
		if len(paths) == 0 {
			paths = cfg.Rules.Paths
		}
	}
	if len(paths) > 0 {
		if opts.Rules = loadRules(stderr, "replay", paths...); opts.Rules == nil {
			return exitFail
		}
		if f.baseline != "" {
			b, err := rules.LoadBaseline(f.baseline)
			if err != nil {
				fmt.Fprintln(stderr, "plcwatch replay:", err)
				return exitFail
			}
			opts.Baseline = b
		}
	}
	sum, err := agent.Replay(ctx, f.pcap, opts, stdout)
	if opts.Rules != nil {
		agent.WriteHits(stderr, sum.Hits)
	}
	fmt.Fprintln(stderr, sum)
	fileWarnings(stderr, "replay", f.pcap, sum)
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch replay:", err)
		return exitFail
	}
	return exitOK
}

// fileWarnings prints what was skipped in a damaged capture and whether it
// was cut short: warnings, not failures, since every readable packet was
// decoded.
func fileWarnings(stderr io.Writer, cmd, path string, sum agent.ReplaySummary) {
	if path == "-" {
		path = "standard input"
	}
	for _, p := range sum.Problems {
		fmt.Fprintf(stderr, "plcwatch %s: warning: %s: %s\n", cmd, path, p)
	}
	if more := sum.Skipped - uint64(len(sum.Problems)); more > 0 {
		fmt.Fprintf(stderr, "plcwatch %s: warning: %s: %d more damaged stretches skipped\n", cmd, path, more)
	}
	if sum.UnknownLink > 0 {
		// Once per file: a capture of another link type decodes nothing,
		// and "pdus=0 events=0" alone does not say why.
		types := make([]string, len(sum.UnknownLinkTypes))
		for i, lt := range sum.UnknownLinkTypes {
			types[i] = strconv.FormatUint(uint64(lt), 10)
		}
		fmt.Fprintf(stderr, "plcwatch %s: warning: %s: %d packets of link type %s skipped: plcwatch does not decode that link type (docs/inputs.md lists those it does)\n",
			cmd, path, sum.UnknownLink, strings.Join(types, ", "))
	}
	if sum.PDUs == 0 && len(sum.OtherTCP) > 0 {
		// "pdus=0 events=0" after a capture full of TCP: its servers are
		// on ports not decoded (issue 12: a plant on port 5520).
		busy := make([]string, len(sum.OtherTCP))
		for i, pc := range sum.OtherTCP {
			busy[i] = fmt.Sprintf("%d (%d packets)", pc.Port, pc.Packets)
		}
		top := sum.OtherTCP[0].Port
		fmt.Fprintf(stderr, "plcwatch %s: warning: %s: no Modbus/TCP or OPC UA message on the ports decoded (Modbus %s, OPC UA %s); its TCP traffic is on port %s: "+
			"if that is a Modbus/TCP or OPC UA server, give its port with --modbus-ports %d or --opcua-ports %d (or capture.modbus_ports / opcua_ports in --config)\n",
			cmd, path, ports(sum.ModbusPorts), ports(sum.OPCUAPorts), strings.Join(busy, ", "), top, top)
	}
	if sum.Truncated {
		fmt.Fprintf(stderr, "plcwatch %s: warning: %s ends in the middle of a packet (at byte offset %d); everything before it was decoded\n", cmd, path, sum.TruncatedAt)
	}
}

// ports is a port list as a user writes it: "502,5020", "none".
func ports(p []uint16) string {
	if len(p) == 0 {
		return "none"
	}
	l := portList(p)
	return l.String()
}

// portList is a flag value for "502,5020".
type portList []uint16

func (p *portList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(int(v))
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(v string) error {
	*p = (*p)[:0]
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a TCP port (1-65535)", f)
		}
		*p = append(*p, uint16(n))
	}
	return nil
}

func (p *portList) Type() string { return "ports" }
