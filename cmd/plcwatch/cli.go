package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, the same for every command (documented in every --help).
const (
	exitOK    = 0 // done; for checks: nothing wrong
	exitFail  = 1 // the command failed, or a check found problems
	exitUsage = 2 // the command line was wrong
)

// exitStatus is the help text for the usual meaning of the exit codes; a
// command whose 1 means more says so in its own.
const exitStatus = `  0  done
  1  failed (the reason is on stderr)
  2  the command line is wrong`

// exitError carries a command's exit code through cobra; the command has
// already said why.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// usageError is a wrong command line: printed with a pointer to --help,
// exit 2.
type usageError struct{ error }

// code turns a command's result into the error cobra carries.
func code(c int) error {
	if c == exitOK {
		return nil
	}
	return exitError(c)
}

// usagef is a usage error in the command's words.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// run executes a command line and returns the process exit code: 0 done,
// 1 failed (or problems found), 2 the command line was wrong.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(ctx, stdout, stderr)
	root.SetArgs(legacyFlags(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return int(ee)
	}
	// Everything else cobra or a command reports is about the command
	// line: unknown commands and flags, missing or extra arguments.
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), err, cmd.CommandPath())
	return exitUsage
}

// newRoot builds the command tree. Commands write to stdout and stderr
// (never os.Stdout), so tests run them in-process.
func newRoot(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "plcwatch",
		Short: "Edge monitoring for industrial sites",
		Long: `plcwatch watches Modbus/TCP and OPC UA: passively, by decoding the traffic that crosses
the gateway (live, or from a capture file), and actively, by polling devices read-only.
Operator-written rules turn what it sees into alerts, spooled to disk and published to MQTT.

Start with "plcwatch replay --pcap FILE --events" on a capture, "plcwatch config check"
on a configuration, then "plcwatch run --config FILE" (docs/config.md).`,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// No command: the help, where a script's log will show it.
			cmd.SetOut(stderr)
			_ = cmd.Help()
			return exitError(exitUsage)
		},
		Annotations: map[string]string{"exit": exitStatus},
	}
	root.SetContext(ctx)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("plcwatch {{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.Flags().BoolP("version", "v", false, "print the version and exit")
	root.AddCommand(
		newRunCmd(stdout, stderr),
		newConfigCmd(stdout, stderr),
		newReplayCmd(stdout, stderr),
		newInventoryCmd(stdout, stderr),
		newRulesCmd(stdout, stderr),
		newBaselineCmd(stdout, stderr),
		newAlertsCmd(stdout, stderr),
		newSimCmd(stdout, stderr),
		newOPCUACmd(stdout, stderr),
		newVersionCmd(stdout),
		newManCmd(stderr),
	)
	// cobra's completion command, made here so that it behaves as the
	// others: exit codes in its help, 2 for a shell it does not know.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			group(c, stderr)
		}
	}
	// Every command says what its exit codes mean.
	var annotate func(c *cobra.Command)
	annotate = func(c *cobra.Command) {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		if c.Annotations["exit"] == "" {
			c.Annotations["exit"] = exitStatus
		}
		for _, sub := range c.Commands() {
			annotate(sub)
		}
	}
	annotate(root)
	return root
}

// group is a command that only holds others ("plcwatch rules"): alone, it
// prints its help to stderr and exits 2; with an unknown sub-command it
// says so.
func group(c *cobra.Command, stderr io.Writer) *cobra.Command {
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		cmd.SetOut(stderr)
		_ = cmd.Help()
		return exitError(exitUsage)
	}
	return c
}

// noArgs refuses positional arguments, as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// legacyFlag is "-name" or "-name=value": one dash, a long name.
var legacyFlag = regexp.MustCompile(`^-([a-zA-Z][a-zA-Z0-9-]+)(=.*)?$`)

// legacyFlags rewrites "-packets 10" to "--packets 10" for the flags of the
// command the line names. plcwatch's flags took one dash or two before it
// moved to cobra (Go's flag package), and scripts and Makefiles still call
// "sim pcap -o FILE -packets N": they keep working. Single-letter
// shorthands ("-o") and anything after "--" are left alone.
func legacyFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		cmd = root
	}
	lookup := func(name string) *pflag.Flag {
		if name == "help" || (name == "version" && cmd == root) {
			return &pflag.Flag{Name: name}
		}
		if f := cmd.Flags().Lookup(name); f != nil {
			return f
		}
		return cmd.InheritedFlags().Lookup(name)
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if m := legacyFlag.FindStringSubmatch(a); m != nil && lookup(m[1]) != nil {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}

// usageTemplate is cobra's, with the exit codes at the end.
const usageTemplate = `Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{with index .Annotations "exit"}}

Exit status:
{{.}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`
