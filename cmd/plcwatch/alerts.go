package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/agent/alertsub"
)

func newAlertsCmd(stdout, stderr io.Writer) *cobra.Command {
	var o alertsub.Options
	var qos int
	var file string
	c := &cobra.Command{
		Use:   "alerts --broker URL [--topic FILTER]... [flags]",
		Short: "Print the alerts of a broker as readable lines, as they come",
		Long: `Subscribe to a broker (any: Mosquitto, a cluster, a gateway's embedded broker) and print
every alert as one readable line (or, with --json, as it came), each once, reconnecting when the
broker goes away, until interrupted: what a SOC analyst or an operator runs to watch alerts live.`,
		Example: `  plcwatch alerts --broker tcp://127.0.0.1:18830
  plcwatch alerts --broker ssl://broker:8883 --tls-ca ca.pem --username soc --password-file soc.pw --topic 'plcwatch/plant-a/+/alerts/#'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.Brokers) == 0 && file == "" {
				return usagef("--broker URL (or --file FILE) is required")
			}
			if qos < 0 || qos > 2 {
				return usagef("--qos %d: want 0, 1 or 2", qos)
			}
			o.QoS = byte(qos)
			if file != "" {
				return code(printAlertLines(file, o.Color, stdout, stderr))
			}
			return code(alertsub.Run(cmd.Context(), o, stdout, stderr))
		},
		Annotations: map[string]string{"exit": `  0  interrupted (SIGINT, SIGTERM)
  1  cannot start (a password or certificate file it cannot read)
  2  the command line is wrong`},
	}
	fl := c.Flags()
	fl.StringArrayVar(&o.Brokers, "broker", nil, "broker `URL`: tcp://, ssl://, ws://, wss:// (repeatable: tried in order; required)")
	fl.StringArrayVar(&o.Topics, "topic", nil, "topic `FILTER` (repeatable; default "+alertsub.DefaultTopic+")")
	fl.StringVar(&o.Username, "username", "", "user name")
	fl.StringVar(&o.PasswordFile, "password-file", "", "`FILE` holding the password")
	fl.StringVar(&o.CAFile, "tls-ca", "", "CA certificates to trust for the broker (PEM `FILE`)")
	fl.StringVar(&o.CertFile, "tls-cert", "", "client certificate for mutual TLS (PEM `FILE`)")
	fl.StringVar(&o.KeyFile, "tls-key", "", "its key (PEM `FILE`)")
	fl.StringVar(&o.ServerName, "tls-server-name", "", "`NAME` to verify in the broker's certificate")
	fl.BoolVar(&o.Insecure, "tls-insecure", false, "do not verify the broker's certificate")
	fl.StringVar(&o.ClientID, "client-id", "", "MQTT client `ID` (default plcwatch-alerts-<host>-<pid>)")
	fl.IntVar(&qos, "qos", 1, "QoS of the subscription: 0, 1 or 2")
	fl.BoolVar(&o.JSON, "json", false, "print each alert as it came (JSON), not as a summary")
	fl.BoolVar(&o.Color, "color", false, "severity in color")
	fl.StringVar(&file, "file", "", "print the alerts of this `FILE` of JSON lines (an alert log, replay's output; - is stdin, read as it grows) instead of a broker's")
	_ = c.MarkFlagFilename("password-file")
	_ = c.MarkFlagFilename("tls-ca", "pem", "crt")
	_ = c.MarkFlagFilename("tls-cert", "pem", "crt")
	_ = c.MarkFlagFilename("tls-key", "pem", "key")
	return c
}

// printAlertLines is plcwatch alerts --file: the summaries of alerts given
// as JSON lines (make demo reads replay's output with it when it cannot
// capture live).
func printAlertLines(file string, color bool, stdout, stderr io.Writer) int {
	in := io.Reader(os.Stdin)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintln(stderr, "plcwatch alerts:", err)
			return exitFail
		}
		defer f.Close()
		in = f
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var a alertsub.Alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil || a.Rule.ID == "" {
			continue // not an alert: replay's other lines
		}
		fmt.Fprintln(stdout, alertsub.Summary(&a, color))
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "plcwatch alerts:", err)
		return exitFail
	}
	return exitOK
}
