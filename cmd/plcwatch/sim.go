package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/agent/alertsub"
	"github.com/plcwatch/plcwatch/sim/actors"
	"github.com/plcwatch/plcwatch/sim/check"
	"github.com/plcwatch/plcwatch/sim/modbussim"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/runner"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

func newSimCmd(stdout, stderr io.Writer) *cobra.Command {
	var f simScenarioFlags
	c := group(&cobra.Command{
		Use:   "sim [--scenario FILE [--pcap FILE]]",
		Short: "Simulated plants with attackers, devices and captures, for tests, demos and integrators",
		Long: `With --scenario, run a scenario file (docs/sim.md): simulated Modbus/TCP PLCs whose registers
move like a process, and actors — a legitimate HMI, attackers — that talk to them on a schedule,
each from its own loopback address. Every action is printed on stdout as it happens. With --pcap,
the scenario's own traffic is recorded to a capture (no root needed): plcwatch replay and rules
test read it. The subcommands check a scenario against a configuration's rules, serve plain
simulated devices, and write synthetic captures.`,
		Example: `  plcwatch sim --scenario configs/scenarios/demo.yaml --pcap demo.pcap
  plcwatch sim check --scenario configs/scenarios/demo.yaml --config configs/demo/plcwatch.yaml`,
	}, stderr)
	help := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if f.scenario == "" {
			return help(cmd, args)
		}
		if !(f.speed > 0 && f.speed <= 100) { // NaN too (issue 12)
			return usagef("--speed %g: want more than 0, at most 100", f.speed)
		}
		if f.hold < 0 || f.hold > 168*time.Hour {
			return usagef("--hold %s: want 0-168h", f.hold)
		}
		return code(simScenario(cmd.Context(), f, stdout, stderr))
	}
	fl := c.Flags()
	fl.StringVar(&f.scenario, "scenario", "", "scenario `FILE` to run (YAML, docs/sim.md)")
	fl.StringVar(&f.pcap, "pcap", "", "record the scenario's traffic to this capture `FILE` (pcap); - streams it to stdout, and actions go to stderr")
	fl.Float64Var(&f.speed, "speed", 1, "run the scenario this many times faster than its schedule")
	fl.DurationVar(&f.hold, "hold", 0, "keep the plants serving this long after the scenario's actors are done")
	_ = c.MarkFlagFilename("scenario", "yaml", "yml")
	_ = c.MarkFlagFilename("pcap", "pcap")
	c.Annotations = map[string]string{"exit": `  0  the scenario ran to its end (or was interrupted)
  1  the scenario has problems (printed as file:line:col), a plant could not listen, or the capture could not be written
  2  the command line is wrong`}
	c.AddCommand(newSimCheckCmd(stdout, stderr), newSimPcapCmd(stderr), newSimModbusCmd(stdout, stderr))
	return c
}

// simScenarioFlags are plcwatch sim --scenario's command line.
type simScenarioFlags struct {
	scenario, pcap string
	speed          float64
	hold           time.Duration
}

// simScenario is plcwatch sim --scenario: it runs a scenario, printing its
// actions, optionally recording its traffic.
func simScenario(ctx context.Context, f simScenarioFlags, stdout, stderr io.Writer) (exit int) {
	s, err := scenario.Load(f.scenario)
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch sim: %s has problems:\n", f.scenario)
		printProblems(stderr, err)
		return exitFail
	}
	quietGopcua()
	log := stdout
	o := runner.Options{Speed: f.speed, Hold: f.hold}
	if f.pcap != "" {
		out := io.Writer(nil)
		var file *os.File
		if f.pcap == "-" {
			out, log = stdout, stderr
		} else if file, err = os.Create(f.pcap); err != nil {
			fmt.Fprintln(stderr, "plcwatch sim:", err)
			return exitFail
		} else {
			out = file
		}
		w, _ := pcapgen.NewWriter(out, pcapgen.Options{})
		o.Recorder = actors.NewRecorder(w, f.pcap == "-")
		flushCtx, stopFlush := context.WithCancel(ctx)
		go o.Recorder.FlushEvery(flushCtx, time.Second)
		defer func() {
			stopFlush()
			err := o.Recorder.Flush()
			if file != nil {
				err = errors.Join(err, file.Close())
			}
			if err != nil { // the recording was asked for: without it the run failed (issue 12)
				fmt.Fprintln(stderr, "plcwatch sim: recording:", err)
				exit = exitFail
			}
		}()
	}
	o.Started = func(map[string]*plant.Plant) {
		for _, p := range s.Plants {
			proto := "Modbus/TCP"
			if p.Protocol == "opcua" {
				proto = "OPC UA"
			}
			fmt.Fprintf(log, "plant %s: %s on %s (%d points)\n", p.Name, proto, p.Listen, len(p.Points))
		}
		fmt.Fprintf(log, "scenario %s: %d actors for %s\n", s.Name, len(s.Actors), time.Duration(float64(s.Duration)/f.speed))
	}
	o.OnAction = func(a runner.Action) { fmt.Fprintln(log, a) }
	if err := runner.Run(ctx, s, o); err != nil {
		fmt.Fprintln(stderr, "plcwatch sim:", err)
		return exitFail
	}
	return exitOK
}

func newSimCheckCmd(stdout, stderr io.Writer) *cobra.Command {
	var path, config string
	var verbose, offline bool
	var logs []string
	var o check.Options
	c := &cobra.Command{
		Use:   "check --scenario FILE --config FILE [flags]",
		Short: "Run a scenario and check the alerts a configuration's rules raise against its expectations",
		Long: `Run a scenario (docs/sim.md) with its traffic recorded and check the alerts a configuration
raises against the scenario's expect: list, each alert attributed to the actor whose address is
its client.

As root, live: the agent itself runs beside the scenario (its rules and polling from --config;
live capture on lo with the plants' ports; an embedded broker on a free port, never the site's;
its spool and alert log in a temporary folder), and expectations are judged on what it raised;
the recording is then replayed offline through the same rules and must raise the same wire
alerts. Otherwise (or with --offline), the recording alone, through the agent's replay and rules
path: expectations marked poll: true are skipped.

One line per expectation, ok, FAILED or skip, then the alerts per rule and per actor.`,
		Example: `  plcwatch sim check --scenario configs/scenarios/demo.yaml --config configs/demo/plcwatch.yaml
  plcwatch sim check --scenario my-site.yaml --config /etc/plcwatch/plcwatch.yaml --speed 2 --pcap run.pcap`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" || (config == "") == (len(logs) == 0) {
				return usagef("--scenario FILE and one of --config FILE or --alerts FILE are required")
			}
			if len(logs) > 0 {
				return code(simCheckLogs(path, logs, stdout, stderr))
			}
			o.Live = !offline && os.Geteuid() == 0
			if !(o.Speed > 0 && o.Speed <= 100) { // NaN too (issue 12)
				return usagef("--speed %g: want more than 0, at most 100", o.Speed)
			}
			return code(simCheck(cmd.Context(), path, config, verbose, o, stdout, stderr))
		},
		Annotations: map[string]string{"exit": `  0  every expectation held
  1  an expectation failed (named on stdout), or the scenario, configuration or rules have problems
  2  the command line is wrong`},
	}
	fl := c.Flags()
	fl.StringVar(&path, "scenario", "", "scenario `FILE` (required)")
	fl.StringVarP(&config, "config", "c", "", "agent configuration `FILE` whose rules are checked (required)")
	fl.StringVar(&o.Pcap, "pcap", "", "keep the recording in this capture `FILE`")
	fl.BoolVar(&offline, "offline", false, "only replay the recording, even as root (poll expectations are skipped)")
	fl.StringArrayVar(&logs, "alerts", nil, "do not run the scenario: check the alerts a run raised, from this alert log `FILE` (JSON lines, as alert_log.path writes; repeatable)")
	fl.Float64Var(&o.Speed, "speed", 1, "run the scenario this many times faster (rules with windows or learning periods may then see something else)")
	fl.BoolVarP(&verbose, "verbose", "v", false, "print every action and every alert")
	_ = c.MarkFlagFilename("scenario", "yaml", "yml")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	return c
}

// simCheck is plcwatch sim check.
func simCheck(ctx context.Context, path, config string, verbose bool, o check.Options, stdout, stderr io.Writer) int {
	s, err := scenario.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch sim check: %s has problems:\n", path)
		printProblems(stderr, err)
		return exitFail
	}
	// The validation of config check and run (agent.Check), offline: the
	// live agent captures on lo, not on the configuration's interfaces. A
	// rules folder without rules is refused here as there (issue 12).
	cfg, err := agent.Check(config, agent.CheckOptions{Offline: true})
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch sim check: %s has problems:\n", config)
		printProblems(stderr, err)
		return exitFail
	}
	if verbose {
		o.Log = stdout
	}
	quietGopcua()
	how := "the recording replayed offline"
	if o.Live {
		how = "the agent live (capture on lo, polling) and the recording offline"
	}
	fmt.Fprintf(stderr, "running %s (%s) against the rules of %s: %s ...\n", path, time.Duration(float64(s.Duration)/o.Speed), config, how)
	rep, err := check.Run(ctx, s, cfg, o)
	var probs agent.ConfigError
	if errors.As(err, &probs) {
		fmt.Fprintf(stderr, "plcwatch sim check: %s expects what the rules of %s cannot raise:\n", path, config)
		printProblems(stderr, err)
		return exitFail
	} else if err != nil {
		fmt.Fprintln(stderr, "plcwatch sim check:", err)
		return exitFail
	}
	if verbose {
		for _, a := range rep.Alerts {
			fmt.Fprintln(stdout, alertsub.Summary(&a.Alert, false), "actor="+a.Actor)
		}
	}
	rep.Write(stdout)
	if failed := rep.Failed(); len(failed) > 0 {
		fmt.Fprintf(stdout, "%d of %d expectations failed\n", len(failed), len(rep.Results))
		return exitFail
	}
	fmt.Fprintf(stdout, "all %d expectations held\n", len(rep.Results))
	return exitOK
}

func newSimPcapCmd(stderr io.Writer) *cobra.Command {
	o := pcapgen.DefaultPoll
	u := pcapgen.DefaultOPCUA
	var out, protocol string
	var ng bool
	c := &cobra.Command{
		Use:   "pcap -o FILE [--protocol modbus|opcua] [flags]",
		Short: "Write a synthetic Modbus/TCP or OPC UA polling capture",
		Long: `Write a synthetic capture for benchmarks and tests. Modbus (the default): clients polling
servers, with writes, requests split over two segments and pipelined requests in one. OPC UA
(--protocol opcua): Read and Publish polling with writes, calls and chunked responses. The
same seed writes the same file. Flags also take one dash (-packets N), as they did before.`,
		Example: `  plcwatch sim pcap -o poll.pcap --packets 100000
  plcwatch sim pcap --protocol opcua -o opcua.pcap --packets 100000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" || o.Packets < 1 || o.Conns < 1 {
				return usagef("-o FILE is required; --packets and --conns must be positive")
			}
			if protocol != "modbus" && protocol != "opcua" {
				return usagef("--protocol %q: modbus or opcua", protocol)
			}
			for name, v := range map[string]float64{"writes": o.Writes, "split": o.Split, "coalesced": o.Coalesced,
				"publish": u.Publish, "calls": u.Calls, "chunked": u.Chunked} {
				if !(v >= 0 && v <= 1) { // NaN too
					return usagef("--%s %g: want a share, 0-1", name, v)
				}
			}
			if u.Nodes < 1 || u.Nodes > 10000 {
				return usagef("--nodes %d: want 1-10000", u.Nodes)
			}
			u.Packets, u.Conns, u.Seed = o.Packets, o.Conns, o.Seed
			if cmd.Flags().Changed("writes") {
				u.Writes = o.Writes
			}
			return code(simPcap(out, protocol, o, u, ng, stderr))
		},
	}
	fl := c.Flags()
	fl.StringVarP(&out, "output", "o", "", "capture `FILE` to write (required)")
	fl.StringVar(&protocol, "protocol", "modbus", "modbus (Modbus/TCP polling) or opcua (OPC UA Read/Publish polling with writes, calls and chunked responses)")
	fl.IntVar(&o.Packets, "packets", o.Packets, "data segments to write")
	fl.IntVar(&o.Conns, "conns", o.Conns, "client-server connections")
	fl.Float64Var(&o.Writes, "writes", o.Writes, "share of requests that are writes (0-1; opcua default 0.02)")
	fl.Float64Var(&o.Split, "split", o.Split, "modbus: share of requests split over two segments (0-1)")
	fl.Float64Var(&o.Coalesced, "coalesced", o.Coalesced, "modbus: share of rounds with 2-3 pipelined requests in one segment (0-1)")
	fl.Float64Var(&u.Publish, "publish", u.Publish, "opcua: share of requests that are PublishRequests (0-1)")
	fl.Float64Var(&u.Calls, "calls", u.Calls, "opcua: share of requests that are CallRequests (0-1)")
	fl.Float64Var(&u.Chunked, "chunked", u.Chunked, "opcua: share of ReadResponses sent in several chunks (0-1)")
	fl.IntVar(&u.Nodes, "nodes", u.Nodes, "opcua: nodes per ReadRequest")
	fl.Uint64Var(&o.Seed, "seed", o.Seed, "random seed (the same seed writes the same file)")
	fl.BoolVar(&ng, "pcapng", false, "write pcapng instead of pcap")
	_ = c.MarkFlagFilename("output", "pcap", "pcapng")
	_ = c.RegisterFlagCompletionFunc("protocol", cobra.FixedCompletions([]string{"modbus", "opcua"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func simPcap(out, protocol string, o pcapgen.PollOptions, u pcapgen.OPCUAOptions, ng bool, stderr io.Writer) int {
	f, err := os.Create(out)
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch sim pcap:", err)
		return exitFail
	}
	w, _ := pcapgen.NewWriter(f, pcapgen.Options{PCAPNG: ng})
	var summary string
	if protocol == "opcua" {
		st := pcapgen.OPCUA(w, u)
		summary = fmt.Sprintf("packets=%d messages=%d requests=%d reads=%d publishes=%d writes=%d calls=%d chunked=%d",
			st.Packets, st.Messages, st.Requests, st.Reads, st.Publishes, st.Writes, st.Calls, st.Chunked)
	} else {
		st := pcapgen.Poll(w, o)
		summary = fmt.Sprintf("packets=%d requests=%d writes=%d", st.Packets, st.Requests, st.Writes)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		fmt.Fprintln(stderr, "plcwatch sim pcap:", err)
		return exitFail
	}
	fmt.Fprintf(stderr, "wrote %s: %s\n", out, summary)
	return exitOK
}

// simModbusFlags are plcwatch sim modbus's command line.
type simModbusFlags struct {
	listen   string
	devices  int
	tags     int
	tick     time.Duration
	config   string
	interval time.Duration
}

func newSimModbusCmd(stdout, stderr io.Writer) *cobra.Command {
	var f simModbusFlags
	c := &cobra.Command{
		Use:   "modbus [flags]",
		Short: "Serve simulated Modbus/TCP devices (and write the config that polls them)",
		Long: `Serve simulated Modbus/TCP devices on consecutive ports until interrupted: holding
registers 0..tags-1 move like a process, input registers count, coil 0 toggles. With
--config, write the modbus: section of a plcwatch configuration that polls them.`,
		Example: `  plcwatch sim modbus --listen 127.0.0.1:5020
  plcwatch sim modbus --devices 3 --tags 2 --config sim.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, portText, err := net.SplitHostPort(f.listen)
			port, perr := strconv.Atoi(portText)
			switch {
			case err != nil || perr != nil:
				return usagef("--listen %q: want host:port", f.listen)
			case f.devices < 1 || port+f.devices > 65536:
				return usagef("--devices %d: want 1 or more, within the ports after %d", f.devices, port)
			case f.tags < 1 || f.tags > modbussim.Size:
				return usagef("--tags %d: want 1-%d", f.tags, modbussim.Size)
			case f.tick <= 0 || f.interval <= 0:
				return usagef("--tick and --interval must be positive")
			}
			return code(simModbus(cmd.Context(), host, port, f, stderr))
		},
		Annotations: map[string]string{"exit": `  0  interrupted (SIGINT, SIGTERM)
  1  a port could not be opened, or --config not written
  2  the command line is wrong`},
	}
	fl := c.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:5020", "`ADDRESS` (host:port) of the first device; the others take the next ports")
	fl.IntVar(&f.devices, "devices", 1, "devices to serve")
	fl.IntVar(&f.tags, "tags", 10, "moving holding registers per device (0..tags-1), and tags per device in --config")
	fl.DurationVar(&f.tick, "tick", time.Second, "how often the values move")
	fl.StringVar(&f.config, "config", "", "write the plcwatch configuration (modbus: devices: ...) that polls these devices to `FILE`")
	fl.DurationVar(&f.interval, "interval", time.Second, "poll interval written into --config")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	return c
}

// simModbus serves simulated Modbus/TCP devices on consecutive ports until
// ctx ends, and can write the plcwatch configuration that polls them.
func simModbus(ctx context.Context, host string, port int, f simModbusFlags, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cfg strings.Builder
	cfg.WriteString("modbus:\n  devices:\n")
	var servers []*modbussim.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	for i := range f.devices {
		addr := net.JoinHostPort(host, strconv.Itoa(port+i))
		img := &modbussim.Image{}
		s, err := modbussim.Serve(addr, img, nil)
		if err != nil {
			fmt.Fprintln(stderr, "plcwatch sim modbus:", err)
			return exitFail
		}
		servers = append(servers, s)
		go modbussim.Process(ctx, img, f.tags, f.tick, 2*float64(i))
		fmt.Fprintf(&cfg, "    - name: sim-%03d\n      address: %s\n      interval: %s\n      tags:\n", i, addr, f.interval)
		for t := range f.tags {
			fmt.Fprintf(&cfg, "        - {name: r%d, table: holding, address: %d, scale: 0.1}\n", t, t)
		}
	}
	if f.config != "" {
		if err := os.WriteFile(f.config, []byte(cfg.String()), 0o644); err != nil {
			fmt.Fprintln(stderr, "plcwatch sim modbus:", err)
			return exitFail
		}
	}
	fmt.Fprintf(stderr, "serving %d simulated Modbus/TCP devices from %s (holding 0..%d move every %s; input registers count; coil 0 toggles); Ctrl-C stops\n",
		f.devices, net.JoinHostPort(host, strconv.Itoa(port)), f.tags-1, f.tick)
	<-ctx.Done()
	return exitOK
}

// simCheckLogs is plcwatch sim check --alerts: the expectations of a
// scenario against the alert logs of a run (make demo's summary).
func simCheckLogs(path string, logs []string, stdout, stderr io.Writer) int {
	s, err := scenario.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch sim check: %s has problems:\n", path)
		printProblems(stderr, err)
		return exitFail
	}
	rep := &check.Report{}
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			fmt.Fprintln(stderr, "plcwatch sim check:", err)
			return exitFail
		}
		alerts, err := check.Attribute(s, f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "plcwatch sim check: %s: %v\n", l, err)
			return exitFail
		}
		rep.Alerts = append(rep.Alerts, alerts...)
	}
	rep.Results = check.Compare(s, rep.Alerts)
	rep.Write(stdout)
	if failed := rep.Failed(); len(failed) > 0 {
		fmt.Fprintf(stdout, "%d of %d expectations failed\n", len(failed), len(rep.Results))
		return exitFail
	}
	fmt.Fprintf(stdout, "all %d expectations held\n", len(rep.Results))
	return exitOK
}

// quietGopcua silences the standard logger, through which gopcua's server
// prints its node set import and listener (sim/opcuasim leaves it alone;
// plcwatch logs through slog).
func quietGopcua() { stdlog.SetOutput(io.Discard) }
