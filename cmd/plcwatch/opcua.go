package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/collectors/opcua"
)

func newOPCUACmd(stdout, stderr io.Writer) *cobra.Command {
	c := group(&cobra.Command{
		Use:   "opcua",
		Short: "Look at an OPC UA server: its address space, as plcwatch would monitor it",
		Long:  `Commands about OPC UA servers (docs/opcua.md).`,
	}, stderr)
	c.AddCommand(newOPCUABrowseCmd(stdout, stderr))
	return c
}

func newOPCUABrowseCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		d        opcua.Device
		bo       opcua.BrowseOptions
		sec      string
		pkiDir   string
		asConfig bool
		timeout  time.Duration
	)
	c := &cobra.Command{
		Use:   "browse --endpoint URL [--node ID] [--depth N] [--security POLICY/MODE] [flags]",
		Short: "Print a server's address space as a tree, or as tags to paste into the configuration",
		Long: `Connect to an OPC UA server as plcwatch's collector does (same security, users and
certificate trust) and walk its address space from a node (Objects by default) with Browse and
BrowseNext, printing each node's browse name, node class and node id, and each variable's data
type and current value. With --config, print the variables found as an opcua.devices entry to paste
into plcwatch's configuration, their node ids by namespace URI (nsu=) so that they survive the
server renumbering its namespaces. It only reads: discovery, session, Browse, BrowseNext and Read.`,
		Example: `  plcwatch opcua browse --endpoint opc.tcp://10.0.1.20:4840
  plcwatch opcua browse --endpoint opc.tcp://10.0.1.20:4840 --node 'ns=2;s=Line3' --depth 5 --config
  plcwatch opcua browse --endpoint opc.tcp://plc:4840 --security Basic256Sha256/SignAndEncrypt --pki /var/lib/plcwatch/pki --username plcwatch --password-file opcua.pw`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if d.Endpoint == "" {
				return usagef("--endpoint is required")
			}
			policy, mode, _ := strings.Cut(sec, "/")
			d.Security = opcua.Security{Policy: policy, Mode: mode}
			if d.Security.Policy == "" {
				d.Security.Policy = "auto"
			}
			if d.Security.Mode == "" {
				d.Security.Mode = "auto"
				if d.Security.Policy == "None" {
					d.Security.Mode = "None"
				}
			}
			d.Name, d.Timeout, d.ConnectTimeout = "browse", timeout, timeout
			d.Tags = []opcua.Tag{{Name: "browse", Node: "i=2258", Mode: "read"}}
			d.Defaults()
			for _, err := range d.Validate() {
				return usagef("%v", err)
			}
			if _, err := opcua.ParseNodeID(bo.Start); bo.Start != "" && err != nil {
				return usagef("--node: %v", err)
			}
			opts := opcua.Options{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			if pkiDir != "" {
				p, err := opcua.OpenPKI(opcua.PKIConfig{Dir: pkiDir})
				if err != nil {
					fmt.Fprintln(stderr, "plcwatch opcua browse:", err)
					return code(exitFail)
				}
				opts.PKI = p
			}
			var used opcua.Security
			bo.Used = &used
			nodes, err := opcua.Browse(cmd.Context(), d, opts, bo)
			if err != nil {
				fmt.Fprintln(stderr, "plcwatch opcua browse:", err)
				if pkiDir == "" && strings.Contains(err.Error(), "no endpoint") {
					fmt.Fprintln(stderr, "(secure endpoints need a client certificate: give --pki DIR)")
				}
				if len(nodes) == 0 {
					return code(exitFail)
				}
			}
			if asConfig {
				d.Security = used
				printConfig(stdout, d, pkiDir, nodes)
			} else {
				printTree(stdout, nodes)
			}
			if err != nil {
				return code(exitFail)
			}
			return nil
		},
		Annotations: map[string]string{"exit": `  0  the address space was printed
  1  the server could not be reached or browsed (the reason on stderr)
  2  the command line is wrong`},
	}
	fl := c.Flags()
	fl.StringVar(&d.Endpoint, "endpoint", "", "server `URL`, opc.tcp://host:port/path (required)")
	fl.StringVar(&bo.Start, "node", "", "node `ID` to start from (ns=2;s=Line3, nsu=URI;s=..., i=85; default Objects)")
	fl.IntVar(&bo.Depth, "depth", 3, "levels to walk below the start node")
	fl.BoolVar(&bo.Server, "server-object", false, "include the Server object (i=2253) and its diagnostics")
	fl.StringVar(&sec, "security", "auto", "`POLICY/MODE`: auto, None, Basic256Sha256/SignAndEncrypt, Aes256_Sha256_RsaPss/Sign, ...")
	fl.StringVar(&pkiDir, "pki", "", "certificate folder (own/, trusted/, rejected/) for secure endpoints; plcwatch run's is opcua.pki.dir")
	fl.BoolVar(&d.TrustOnFirstUse, "trust-on-first-use", false, "trust the server's certificate when trusted/ has none for it")
	fl.StringVar(&d.Auth.Username, "username", "", "user `NAME` (anonymous when not given)")
	fl.StringVar(&d.Auth.PasswordFile, "password-file", "", "`FILE` holding the password")
	fl.StringVar(&d.Auth.PasswordEnv, "password-env", "", "environment `VARIABLE` holding the password")
	fl.StringVar(&d.Auth.CertFile, "user-cert", "", "X.509 user certificate `FILE` (with --user-key)")
	fl.StringVar(&d.Auth.KeyFile, "user-key", "", "its key (PEM `FILE`)")
	fl.DurationVar(&timeout, "timeout", 10*time.Second, "per request and for connecting")
	fl.BoolVar(&asConfig, "config", false, "print the variables as an opcua.devices entry for the configuration")
	_ = c.MarkFlagFilename("password-file")
	_ = c.MarkFlagDirname("pki")
	return c
}

// printTree prints one node per line, indented by depth: browse name,
// node class, node id, and for variables data type and value.
func printTree(w io.Writer, nodes []opcua.BrowsedNode) {
	for _, n := range nodes {
		line := strings.Repeat("  ", n.Depth) + n.BrowseName + "  " + n.NodeClass + "  " + n.NodeID
		if n.NodeClass == "Variable" {
			line += "  " + n.DataType
			if n.ValueRank >= 1 {
				line += "[]"
			}
			if n.Value != "" {
				line += " = " + n.Value
			}
			if n.Status != "" {
				line += "  (" + n.Status + ")"
			}
		}
		if n.Truncated {
			line += "  …"
		}
		fmt.Fprintln(w, line)
	}
}

// printConfig prints the variables as the opcua: section of a
// configuration, with the security the browse used (never auto: auto in
// run may pick another endpoint than the browse did), its user's password
// file or variable and its certificate folder, so that run connects as the
// browse did. Paths are made absolute: the configuration's relative paths
// are from its own folder, not from where browse ran.
func printConfig(w io.Writer, d opcua.Device, pkiDir string, nodes []opcua.BrowsedNode) {
	name := "opcua-server"
	if u, err := url.Parse(d.Endpoint); err == nil && u.Hostname() != "" {
		name = strings.NewReplacer(".", "-", ":", "-").Replace(u.Hostname())
	}
	q := strconv.Quote
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	fmt.Fprintf(w, "# from plcwatch opcua browse --endpoint %s: the opcua: section of a configuration\n", d.Endpoint)
	fmt.Fprintf(w, "# (into one that has it already: the device under opcua.devices, pki once)\nopcua:\n")
	if pkiDir != "" {
		fmt.Fprintf(w, "  pki: {dir: %s}\n", q(abs(pkiDir)))
	}
	fmt.Fprintf(w, "  devices:\n    - name: %s\n      endpoint: %s\n      security: {policy: %s, mode: %s}\n", name, q(d.Endpoint), d.Security.Policy, d.Security.Mode)
	switch a := d.Auth; {
	case a.Username != "" && a.PasswordEnv != "":
		fmt.Fprintf(w, "      auth: {username: %s, password_env: %s}\n", q(a.Username), q(a.PasswordEnv))
	case a.Username != "":
		fmt.Fprintf(w, "      auth: {username: %s, password_file: %s}\n", q(a.Username), q(abs(a.PasswordFile)))
	case a.CertFile != "":
		fmt.Fprintf(w, "      auth: {cert_file: %s, key_file: %s}\n", q(abs(a.CertFile)), q(abs(a.KeyFile)))
	}
	fmt.Fprintf(w, "      interval: 10s\n      tags:\n")
	for _, n := range nodes {
		if n.NodeClass != "Variable" {
			continue
		}
		comment := n.DataType
		if n.ValueRank >= 1 {
			comment += "[]"
		}
		fmt.Fprintf(w, "        - {name: %s, node: %s}  # %s\n", q(n.Path), q(n.Stable), comment)
	}
}
