// Command plcwatch is the edge monitoring agent for industrial sites: it
// watches Modbus/TCP and OPC UA traffic and devices and raises alerts.
//
// main stays thin: it parses flags, sets up logging and signals, and calls
// the packages that do the work.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `plcwatch: edge monitoring for industrial sites

usage:
  plcwatch run --config FILE         the daemon: capture, rules, alerts over MQTT (SIGHUP reloads rules)
  plcwatch config check FILE         check a configuration: file:line:col: message per problem
  plcwatch replay --pcap FILE [--rules PATH] [--events] [--format jsonl] [--modbus-ports 502,...]
                                     decode a capture as fast as possible; alerts (and events)
                                     as JSON lines on stdout, a summary on stderr
  plcwatch rules lint PATH...        check rule files: file:line:col: message per problem
  plcwatch rules test --rules PATH (--pcap FILE | --events FILE)
                                     alerts as JSON lines, hits per rule on stderr
  plcwatch alerts --broker URL [--topic FILTER]... [--json]
                                     print the alerts of a broker as readable lines, as they come
  plcwatch baseline show --baseline FILE
                                     what baseline rules have learned
  plcwatch sim pcap -o FILE [--packets N]
                                     write a synthetic Modbus/TCP polling capture
  plcwatch sim modbus [--devices N] [--tags N] [--listen ADDR] [--config FILE]
                                     serve simulated Modbus/TCP devices (and write the config polling them)
  plcwatch version                   print the version

Run "plcwatch COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches a command line and returns the process exit code:
// 0 success, 1 the command failed, 2 the command line was wrong.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "replay":
		return cmdReplay(ctx, args[1:], stdout, stderr)
	case "sim":
		return cmdSim(ctx, args[1:], stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "rules":
		return cmdRules(ctx, args[1:], stdout, stderr)
	case "baseline":
		return cmdBaseline(args[1:], stdout, stderr)
	case "alerts":
		return cmdAlerts(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "plcwatch", versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "plcwatch: unknown command %q\n\n%s", args[0], usage)
	return 2
}
