package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commands lists every command of the tree by its path ("rules lint").
func commands(t *testing.T) map[string]*cobra.Command {
	t.Helper()
	out := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), "plcwatch"), " ")
		out[path] = c
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRoot(t.Context(), new(strings.Builder), new(strings.Builder))
	root.InitDefaultCompletionCmd()
	walk(root)
	return out
}

// TestEveryCommandHasHelp asks every command and sub-command for -h and
// --help: exit 0, the help on stdout, what it does, every flag with its
// description, and the exit codes.
func TestEveryCommandHasHelp(t *testing.T) {
	cmds := commands(t)
	for _, want := range []string{"", "run", "config", "config check", "replay", "rules", "rules lint", "rules test",
		"baseline", "baseline show", "alerts", "sim", "sim pcap", "sim modbus", "version", "completion", "completion bash"} {
		if cmds[want] == nil {
			t.Errorf("no command %q", want)
		}
	}
	for path, c := range cmds {
		if path == "help" || strings.HasPrefix(path, "__") {
			continue
		}
		for _, flag := range []string{"-h", "--help"} {
			args := append(strings.Fields(path), flag)
			code, out, errOut := plcwatch(t, args...)
			if code != 0 || errOut != "" {
				t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
				continue
			}
			if !strings.Contains(out, "Usage:") || !strings.Contains(out, "Exit status:\n  0  ") || !strings.Contains(out, "  2  the command line is wrong") {
				t.Errorf("%v: no usage or exit codes:\n%s", args, out)
			}
			if c.Short == "" || (c.Long == "" && !strings.HasPrefix(path, "completion")) {
				t.Errorf("%q: no description", path)
			}
			c.Flags().VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(out, "--"+f.Name) || f.Usage == "" {
					t.Errorf("%v: flag --%s not described", args, f.Name)
				}
			})
		}
	}
	// The top help lists the commands and the flags.
	_, out, _ := plcwatch(t, "--help")
	for _, s := range []string{"run ", "config ", "replay ", "rules ", "alerts ", "baseline ", "sim ", "version ", "completion ", "--version", "--help"} {
		if !strings.Contains(out, s) {
			t.Errorf("top help lacks %q:\n%s", s, out)
		}
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "complete -o default -F __start_plcwatch plcwatch", "zsh": "#compdef plcwatch", "fish": "complete -c plcwatch"} {
		code, out, errOut := plcwatch(t, "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, %s, %.200s", shell, code, errOut, out)
		}
	}
	// The shell asks plcwatch itself what comes next.
	code, out, _ := plcwatch(t, "__complete", "rules", "")
	if code != 0 || !strings.Contains(out, "lint") || !strings.Contains(out, "test") {
		t.Errorf("completing 'rules ': exit %d, %q", code, out)
	}
}

// TestCommandLineErrors: a wrong command line exits 2 and says where help
// is; a command with nothing to do prints its help to stderr.
func TestCommandLineErrors(t *testing.T) {
	tests := [][]string{
		{}, {"nonsense"}, {"config"}, {"config", "nonsense"}, {"config", "check", "a.yaml", "b.yaml"},
		{"config", "check", "--config", "a.yaml", "b.yaml"}, {"rules"}, {"rules", "lint"}, {"rules", "test", "--rules", "x"},
		{"rules", "test", "--rules", "x", "--pcap", "a", "--events", "b"}, {"baseline", "show"}, {"sim"}, {"sim", "pcap"},
		{"sim", "pcap", "-o", "x", "--packets", "0"}, {"sim", "modbus", "--listen", "nonsense"}, {"replay", "--pcap"},
		{"replay", "--pcap", example, "extra"}, {"replay", "--nonsense"}, {"replay", "--pcap", example, "--modbus-ports", "0"},
		{"run", "extra"}, {"version", "extra"}, {"completion", "tcsh"},
	}
	for _, args := range tests {
		code, out, errOut := plcwatch(t, args...)
		if code != 2 || out != "" || errOut == "" {
			t.Errorf("%v: exit %d (want 2), stdout %q, stderr %q", args, code, out, errOut)
		}
		if len(args) > 0 && args[len(args)-1] != "config" && args[len(args)-1] != "rules" && args[len(args)-1] != "sim" &&
			!strings.Contains(errOut, "--help' for usage") {
			t.Errorf("%v: no pointer to --help: %q", args, errOut)
		}
	}
}

// TestLegacyFlags: flags written with one dash, as Go's flag package took
// them (the Makefile's "sim pcap -o F -packets N"), keep working.
func TestLegacyFlags(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.pcap")
	code, _, errOut := plcwatch(t, "sim", "pcap", "-o", out, "-packets", "300", "-seed=7")
	if code != 0 || !strings.Contains(errOut, "packets=30") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	code, _, errOut = plcwatch(t, "replay", "-pcap", out, "-modbus-ports", "502")
	if code != 0 || !strings.Contains(errOut, "packets=30") {
		t.Errorf("replay -pcap: exit %d: %s", code, errOut)
	}
	if code, out, _ := plcwatch(t, "-version"); code != 0 || !strings.HasPrefix(out, "plcwatch ") {
		t.Errorf("-version: exit %d, %q", code, out)
	}
	// A value that looks like a flag stays a value after --.
	if code, _, _ := plcwatch(t, "rules", "lint", "--", "-nonexistent"); code != 1 {
		t.Errorf("lint -- -nonexistent: exit %d, want 1 (no such file)", code)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}
