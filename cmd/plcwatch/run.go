package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/agent"
)

const defaultConfig = "/etc/plcwatch/plcwatch.yaml"

func newRunCmd(_, stderr io.Writer) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "Run the agent: capture, polling, rules, alerts over MQTT",
		Long: `Run the agent (the daemon) until SIGTERM or SIGINT: capture on capture.interfaces, poll the
configured devices, evaluate the rules and publish alerts over MQTT, spooled to disk first.
SIGHUP reloads the rules (a broken set is refused and the running one kept).

Before anything starts, the configuration goes through the same checks as
"plcwatch config check": every problem is printed as file:line:col: message and
nothing runs. Logs go to stderr (log.level, log.format).`,
		Example: `  sudo plcwatch run --config configs/plcwatch.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return code(runDaemon(cmd.Context(), path, stderr))
		},
		Annotations: map[string]string{"exit": `  0  stopped cleanly (SIGTERM, SIGINT)
  1  refused to start (configuration problems, printed one per line) or stopped on an error
  2  the command line is wrong`},
	}
	c.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration `FILE` (YAML, docs/config.md)")
	_ = c.MarkFlagFilename("config", "yaml", "yml")
	return c
}

// runDaemon is plcwatch run: it checks the configuration as config check
// does, then runs the agent until ctx ends, reloading its rules on SIGHUP.
func runDaemon(ctx context.Context, path string, stderr io.Writer) int {
	cfg, err := agent.Check(path, agent.CheckOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch run: %s has problems; nothing was started:\n", path)
		printProblems(stderr, err)
		return exitFail
	}
	log := newLogger(stderr, cfg.Log)
	for _, w := range cfg.Warnings() {
		log.Warn(w.Msg, "at", w.Pos())
	}
	agent.Version = versionString()
	a, err := agent.New(cfg, log)
	if err != nil {
		agent.LogError(log, "cannot start", err)
		return exitFail
	}
	// Reading a large configuration and the rules leaves megabytes of
	// garbage that a daemon allocating little would otherwise keep until
	// its heap doubles: hand it back to the system before running.
	debug.FreeOSMemory()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading rules")
			_ = a.Reload()
		}
	}()
	if err := a.Run(ctx); err != nil {
		agent.LogError(log, "stopped with an error", err)
		return exitFail
	}
	return exitOK
}

func newLogger(w io.Writer, c agent.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// printProblems prints a configuration's problems one per line
// (file:line:col: message), or the error as it is.
func printProblems(w io.Writer, err error) {
	for _, p := range agent.Problems(err) {
		fmt.Fprintln(w, p)
	}
}

func newConfigCmd(stdout, stderr io.Writer) *cobra.Command {
	c := group(&cobra.Command{
		Use:   "config",
		Short: "Check a configuration file",
		Long:  `Commands about the agent's configuration file (docs/config.md).`,
	}, stderr)
	var offline bool
	var path string
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Check a configuration: every problem as file:line:col: message",
		Long: `Check a configuration file the way "plcwatch run" does before it starts, and report every
problem at once, one per line on stdout, as file:line:col: message: keys and values
(types, ranges), the rules it names (loaded and linted), the baseline, certificate and
password files, the capture interfaces and the privilege to capture on them (CAP_NET_RAW),
and the addresses the agent listens on. Whatever "run" would refuse, "config check" refuses,
so deploy/plcwatch.service runs it as ExecStartPre. The result is on stdout: every problem,
or "FILE: ok (summary)". Warnings (settings that work but are risky) go to stderr and do not
fail the check.

FILE is the configuration file (default ` + defaultConfig + `); --config FILE says the same.`,
		Example: `  plcwatch config check configs/plcwatch.yaml
  plcwatch config check --offline site-b.yaml    # on a workstation, before deploying`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return usagef("one configuration file at a time")
			case len(args) == 1 && cmd.Flags().Changed("config"):
				return usagef("give the file as an argument or with --config, not both")
			case len(args) == 1:
				path = args[0]
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return code(checkConfig(path, agent.CheckOptions{Offline: offline}, stdout, stderr))
		},
		Annotations: map[string]string{"exit": `  0  the configuration is valid ("FILE: ok (summary)" on stdout)
  1  problems found (each on stdout as file:line:col: message)
  2  the command line is wrong`},
	}
	check.Flags().StringVarP(&path, "config", "c", defaultConfig, "configuration `FILE` (or give it as the argument)")
	check.Flags().BoolVar(&offline, "offline", false, "check the file and the files it names only, not this machine's interfaces, privileges and ports")
	_ = check.MarkFlagFilename("config", "yaml", "yml")
	check.ValidArgsFunction = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
	}
	c.AddCommand(check)
	return c
}

// checkConfig is plcwatch config check: exit 0 and a summary when the
// configuration is valid, 1 and every problem as file:line:col: message
// when not.
func checkConfig(path string, opts agent.CheckOptions, stdout, stderr io.Writer) int {
	cfg, err := agent.Check(path, opts)
	if err != nil {
		printProblems(stdout, err)
		return exitFail
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", w.Pos(), w.Msg)
	}
	// The result on stdout, as the problems are: a script reads one
	// stream and the exit code; warnings are remarks, on stderr.
	fmt.Fprintf(stdout, "%s: ok (%s)\n", path, cfg.Summary())
	return exitOK
}
