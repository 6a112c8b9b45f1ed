package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/inventory"
)

func newInventoryCmd(stdout, stderr io.Writer) *cobra.Command {
	var f struct {
		pcap, format string
		cfg          capture.Config
	}
	c := &cobra.Command{
		Use:   "inventory --pcap FILE [--format table|json]",
		Short: "The passive asset inventory of a capture: servers, clients, who does what to whom",
		Long: `Decode a capture (pcap or pcapng; - reads standard input) and print what it shows
(docs/inventory.md): the servers with their Modbus units and identity (FC 43/14) or OPC UA
endpoints and security policies; the clients; and for each client→server pair the
function codes or services used with counts, the address ranges read and written per
table, the nodes read and written, first and last seen. The daemon keeps the same
inventory live (GET /inventory, <topic_prefix>/inventory).`,
		Example: `  plcwatch inventory --pcap plant.pcap
  plcwatch inventory --pcap plant.pcap --format json | jq '.servers[].address'
  tcpdump -i eth1 -w - port 502 | plcwatch inventory --pcap - --format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.pcap == "" {
				return usagef("--pcap FILE is required")
			}
			if f.format != "table" && f.format != "json" {
				return usagef("--format %q: table or json", f.format)
			}
			// ContextReader: Ctrl-C ends a read of a quiet pipe at once.
			in := capture.ContextReader(cmd.Context(), os.Stdin)
			if f.pcap != "-" {
				file, err := os.Open(f.pcap)
				if err != nil {
					fmt.Fprintln(stderr, "plcwatch inventory:", err)
					return code(exitFail)
				}
				defer file.Close()
				in = file
			}
			name := f.pcap
			if name == "-" {
				name = "standard input"
			}
			skipped := func(fe *capture.FileError) {
				fmt.Fprintf(stderr, "plcwatch inventory: warning: %s: %v (skipped; reading on)\n", name, fe)
			}
			inv, _, err := inventory.ReadCapture(cmd.Context(), in, f.cfg, nil, skipped)
			if inv == nil || (err != nil && !isTruncated(err)) {
				fmt.Fprintf(stderr, "plcwatch inventory: %s: %v\n", f.pcap, err)
				return code(exitFail)
			}
			if err != nil {
				fmt.Fprintf(stderr, "plcwatch inventory: %s: %v (the inventory is of what came before)\n", f.pcap, err)
			}
			if f.format == "json" {
				b, err := json.MarshalIndent(inv, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(stdout, "%s\n", b)
				return err
			}
			return inv.WriteTable(stdout)
		},
		Annotations: map[string]string{"exit": `  0  the capture was read (a truncated last packet is a warning)
  1  the capture could not be read
  2  the command line is wrong`},
	}
	fl := c.Flags()
	fl.StringVar(&f.pcap, "pcap", "", "capture `FILE` to read: pcap or pcapng, - for standard input (required)")
	fl.StringVar(&f.format, "format", "table", "output `FORMAT`: table or json")
	fl.Var((*portList)(&f.cfg.ModbusPorts), "modbus-ports", "comma-separated TCP `PORTS` of Modbus/TCP servers (default 502)")
	fl.Var((*portList)(&f.cfg.OPCUAPorts), "opcua-ports", "comma-separated TCP `PORTS` of OPC UA servers (default 4840)")
	_ = c.MarkFlagFilename("pcap", "pcap", "pcapng", "cap")
	_ = c.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// isTruncated reports a capture cut short in its last packet: what came
// before is good.
func isTruncated(err error) bool { return errors.Is(err, capture.ErrTruncatedFile) }
