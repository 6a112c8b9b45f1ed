package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/plcwatch/plcwatch/agent/alertsub"
)

func newAlertsCmd(stdout, stderr io.Writer) *cobra.Command {
	var o alertsub.Options
	var qos int
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
			if qos < 0 || qos > 2 {
				return usagef("--qos %d: want 0, 1 or 2", qos)
			}
			o.QoS = byte(qos)
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
	_ = c.MarkFlagFilename("password-file")
	_ = c.MarkFlagFilename("tls-ca", "pem", "crt")
	_ = c.MarkFlagFilename("tls-cert", "pem", "crt")
	_ = c.MarkFlagFilename("tls-key", "pem", "key")
	return c
}
