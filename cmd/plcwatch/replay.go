package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/rules"
)

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts agent.ReplayOptions
	pcap := fs.String("pcap", "", "capture file to decode (pcap or pcapng)")
	fs.BoolVar(&opts.Events, "events", false, "print every decoded event as a JSON line")
	format := fs.String("format", "jsonl", "output format (jsonl)")
	fs.Var((*portList)(&opts.Capture.ModbusPorts), "modbus-ports", "comma-separated TCP ports of Modbus/TCP servers (default 502)")
	fs.Var((*portList)(&opts.Capture.OPCUAPorts), "opcua-ports", "comma-separated TCP ports of OPC UA servers (default 4840)")
	fs.DurationVar(&opts.Capture.ResponseTimeout, "response-timeout", 0, "how long a request waits for its response before it is a timeout event (default 5s)")
	var rulePaths stringList
	fs.Var(&rulePaths, "rules", "rule file, folder or glob to evaluate (repeatable); alerts go to stdout")
	baseline := fs.String("baseline", "", "baseline file for baseline rules, loaded and saved (default: learn in memory)")
	fs.StringVar(&opts.Site, "site", "", "site name in alerts")
	fs.StringVar(&opts.Gateway, "gateway", "", "gateway name in alerts")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *pcap == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "plcwatch replay: --pcap FILE is required, and nothing else")
		fs.Usage()
		return 2
	}
	if *format != "jsonl" {
		fmt.Fprintf(stderr, "plcwatch replay: --format %q: only jsonl is supported\n", *format)
		return 2
	}
	if len(rulePaths) > 0 {
		if opts.Rules = loadRules(stderr, "replay", rulePaths...); opts.Rules == nil {
			return 1
		}
		if *baseline != "" {
			b, err := rules.LoadBaseline(*baseline)
			if err != nil {
				fmt.Fprintln(stderr, "plcwatch replay:", err)
				return 1
			}
			opts.Baseline = b
		}
	}
	sum, err := agent.Replay(ctx, *pcap, opts, stdout)
	if opts.Rules != nil {
		agent.WriteHits(stderr, sum.Hits)
	}
	fmt.Fprintln(stderr, sum)
	if sum.Truncated {
		fmt.Fprintf(stderr, "plcwatch replay: warning: %s ends in the middle of a packet; everything before it was decoded\n", *pcap)
	}
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch replay:", err)
		return 1
	}
	return 0
}

// portList is a flag.Value for "502,5020".
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
			return fmt.Errorf("%q is not a TCP port", f)
		}
		*p = append(*p, uint16(n))
	}
	return nil
}
