package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/plcwatch/plcwatch/agent/alertsub"
)

// cmdAlerts prints the alerts of a broker as they come (agent/alertsub).
func cmdAlerts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o alertsub.Options
	var brokers, topics stringList
	fs.Var(&brokers, "broker", "broker URL: tcp://, ssl://, ws://, wss:// (repeatable: tried in order)")
	fs.Var(&topics, "topic", "topic filter (repeatable; default "+alertsub.DefaultTopic+")")
	fs.StringVar(&o.Username, "username", "", "user name")
	fs.StringVar(&o.PasswordFile, "password-file", "", "file holding the password")
	fs.StringVar(&o.CAFile, "tls-ca", "", "CA certificates to trust for the broker (PEM)")
	fs.StringVar(&o.CertFile, "tls-cert", "", "client certificate for mutual TLS (PEM)")
	fs.StringVar(&o.KeyFile, "tls-key", "", "its key (PEM)")
	fs.StringVar(&o.ServerName, "tls-server-name", "", "name to verify in the broker's certificate")
	fs.BoolVar(&o.Insecure, "tls-insecure", false, "do not verify the broker's certificate")
	fs.StringVar(&o.ClientID, "client-id", "", "MQTT client id (default plcwatch-alerts-<host>-<pid>)")
	qos := fs.Int("qos", 1, "QoS of the subscription: 0, 1 or 2")
	fs.BoolVar(&o.JSON, "json", false, "print each alert as it came (JSON), not as a summary")
	fs.BoolVar(&o.Color, "color", false, "severity in color")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *qos < 0 || *qos > 2 {
		fmt.Fprintln(stderr, "plcwatch alerts: --broker URL [--topic FILTER]... and flags only; --qos 0, 1 or 2")
		return 2
	}
	o.Brokers, o.Topics, o.QoS = brokers, topics, byte(*qos)
	return alertsub.Run(ctx, o, stdout, stderr)
}
