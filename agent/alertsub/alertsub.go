// Package alertsub is "plcwatch alerts": a subscriber that prints the alerts
// of any MQTT broker (Mosquitto, a cluster, the agent's embedded broker) as
// readable one-line summaries, or as they came with --json — the demo's
// printer as a command a SOC analyst or an operator can run (issue 9 §5).
//
// It reconnects on its own and subscribes again after every reconnect. The
// agent delivers at least once: an alert seen again (same id) is printed
// once.
package alertsub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcwatch/plcwatch/agent/publish"
	"github.com/plcwatch/plcwatch/secret"
)

// DefaultTopic is every plcwatch agent's alerts, with the default topic
// prefixes (plcwatch/<site>/<gateway>).
const DefaultTopic = "plcwatch/+/+/alerts/#"

// Options of the subscriber.
type Options struct {
	Brokers      []string // broker URLs, tried in order: tcp://, ssl://, ws://, wss://
	Topics       []string // topic filters; default DefaultTopic
	ClientID     string   // default plcwatch-alerts-<host>-<pid>
	Username     string
	PasswordFile string // the password, from a file (never on the command line)
	CAFile       string // TLS: CA certificates to trust (PEM)
	CertFile     string // TLS: client certificate (mutual TLS) ...
	KeyFile      string // ... and its key
	ServerName   string
	Insecure     bool // TLS without verifying the broker's certificate
	QoS          byte // of the subscription; default 1
	JSON         bool // print each message as it came
	// Color: severity in color (a terminal).
	Color bool
}

// Run subscribes and prints until ctx ends. It returns the exit code: 0
// when stopped, 1 when it cannot start (a password or certificate file it
// cannot read), 2 for options that make no sense.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) int {
	if len(o.Brokers) == 0 {
		fmt.Fprintln(stderr, "plcwatch alerts: --broker URL is required (like tcp://broker:1883)")
		return 2
	}
	if len(o.Topics) == 0 {
		o.Topics = []string{DefaultTopic}
	}
	if o.QoS > 2 {
		fmt.Fprintln(stderr, "plcwatch alerts: --qos: want 0, 1 or 2")
		return 2
	}
	if o.ClientID == "" {
		host, _ := os.Hostname()
		o.ClientID = fmt.Sprintf("plcwatch-alerts-%s-%d", host, os.Getpid())
	}
	opts := mqtt.NewClientOptions()
	for _, b := range o.Brokers {
		opts.AddBroker(b)
	}
	opts.SetClientID(o.ClientID).SetCleanSession(true).SetOrderMatters(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(2 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second)
	if o.Username != "" {
		opts.SetUsername(o.Username)
	}
	if o.PasswordFile != "" {
		// Its errors do not repeat the name given: it might be the
		// password itself.
		pw, err := secret.File("--password-file", o.PasswordFile)
		if err != nil {
			fmt.Fprintf(stderr, "plcwatch alerts: %v\n", err)
			return 1
		}
		opts.SetPassword(pw)
	}
	tc, err := tlsConfig(o)
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch alerts: %v\n", err)
		return 1
	}
	if tc != nil {
		opts.SetTLSConfig(tc)
	}
	p := &printer{out: stdout, json: o.JSON, color: o.Color, seen: newSeen(4096)}
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "plcwatch alerts: "+format+"\n", a...)
	}
	brokers := make([]string, len(o.Brokers))
	for i, b := range o.Brokers {
		brokers[i] = publish.Redact(b)
	}
	filters := map[string]byte{}
	for _, t := range o.Topics {
		filters[t] = o.QoS
	}
	var emu sync.Mutex
	said := map[string]bool{} // errors said since the last connection
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		emu.Lock()
		clear(said)
		emu.Unlock()
		// A clean session forgets subscriptions: subscribe on every
		// connect, the first and each reconnect.
		tok := c.SubscribeMultiple(filters, p.handle)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			say("subscribe %s: %v", strings.Join(o.Topics, " "), tok.Error())
			return
		}
		say("connected to %s; subscribed to %s", strings.Join(brokers, " "), strings.Join(o.Topics, " "))
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		say("connection lost (%v): reconnecting", err)
	})
	opts.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		var msg string
		switch f := n.(type) {
		case mqtt.ConnectionNotificationBrokerFailed: // the network
			msg = fmt.Sprintf("%s: %v", f.Broker.Redacted(), f.Reason)
		case mqtt.ConnectionNotificationFailed: // the broker said no (credentials, ...)
			msg = fmt.Sprintf("%s: %v", strings.Join(brokers, " "), f.Reason)
		default:
			return
		}
		// Each error said once until it connects: a wrong password is
		// one clear line, not one every few seconds.
		emu.Lock()
		changed := !said[msg]
		said[msg] = true
		emu.Unlock()
		if changed {
			say("cannot connect: %s (trying again)", msg)
		}
	})
	c := mqtt.NewClient(opts)
	c.Connect() // with ConnectRetry it keeps trying in the background
	<-ctx.Done()
	c.Disconnect(250)
	return 0
}

func tlsConfig(o Options) (*tls.Config, error) {
	if o.CAFile == "" && o.CertFile == "" && o.KeyFile == "" && o.ServerName == "" && !o.Insecure {
		return nil, nil
	}
	c := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.Insecure, MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", o.CAFile)
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// printer prints messages, one line each, in the order they came.
type printer struct {
	mu    sync.Mutex
	out   io.Writer
	json  bool
	color bool
	seen  *seen
}

func (p *printer) handle(_ mqtt.Client, m mqtt.Message) {
	var a Alert
	isAlert := json.Unmarshal(m.Payload(), &a) == nil && a.Schema != ""
	p.mu.Lock()
	defer p.mu.Unlock()
	if isAlert && a.ID != "" && p.seen.add(a.ID) {
		return // delivered again (at least once): printed already
	}
	switch {
	case p.json:
		p.out.Write(append(m.Payload(), '\n'))
	case isAlert:
		io.WriteString(p.out, Summary(&a, p.color)+"\n")
	default:
		// Not an alert (a status, a heartbeat under a wider filter):
		// as it is, after its topic.
		fmt.Fprintf(p.out, "%s %s\n", m.Topic(), strings.TrimSpace(string(m.Payload())))
	}
}

// seen remembers the last n alert ids.
type seen struct {
	ids  map[string]struct{}
	ring []string
	next int
}

func newSeen(n int) *seen { return &seen{ids: map[string]struct{}{}, ring: make([]string, n)} }

// add reports whether id was seen already, and remembers it.
func (s *seen) add(id string) bool {
	if _, ok := s.ids[id]; ok {
		return true
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.ids[id] = struct{}{}
	return false
}

// Alert is what a summary needs of an alert (docs/alerts.md).
type Alert struct {
	Schema  string `json:"schema"`
	ID      string `json:"id"`
	Time    string `json:"time"`
	Site    string `json:"site"`
	Gateway string `json:"gateway"`
	Rule    struct {
		ID       string   `json:"id"`
		Title    string   `json:"title"`
		Severity string   `json:"severity"`
		Attack   []string `json:"attack"`
	} `json:"rule"`
	Event     Event    `json:"event"`
	Count     int      `json:"count"`
	Message   string   `json:"message"`
	Truncated []string `json:"truncated"`
}

// Event is what a summary needs of an event (docs/events.md).
type Event struct {
	Source      string   `json:"source"`
	Protocol    string   `json:"protocol"`
	Op          string   `json:"op"`
	Device      string   `json:"device"`
	Client      string   `json:"client"`
	Server      string   `json:"server"`
	Unit        *int     `json:"unit"`
	Function    int      `json:"function"`
	Subfunction *int     `json:"subfunction"`
	Table       string   `json:"table"`
	Address     *int     `json:"address"`
	Count       int      `json:"count"`
	Values      []any    `json:"values"`
	Exception   int      `json:"exception"`
	Malformed   string   `json:"malformed"`
	Unanswered  string   `json:"unanswered"`
	Tag         string   `json:"tag"`
	Value       *float64 `json:"value"`
	Text        string   `json:"text"`
	Quality     string   `json:"quality"`
	Error       string   `json:"error"`
	Service     string   `json:"service"`
	Node        string   `json:"node"`
	Object      string   `json:"object"`
	IndexRange  string   `json:"index_range"`
	StatusName  string   `json:"status_name"`
	User        string   `json:"user"`
}

var severityColor = map[string]string{"critical": "\x1b[1;31m", "high": "\x1b[31m", "medium": "\x1b[33m", "low": "\x1b[36m", "info": "\x1b[2m"}

// Summary is an alert in one line: when, how bad, which rule, where, who
// did what to what, the ATT&CK for ICS techniques, how many, and why.
//
//	2026-11-21T10:00:00.123Z HIGH     modbus-write  plant-a/gw-1  10.0.0.57:2578 → 10.0.0.3:502 unit 1: write FC 16 holding 100+3 [7 8 9]  [T0855]  "Modbus write to a PLC"
func Summary(a *Alert, color bool) string {
	var b strings.Builder
	t := a.Time
	if ts, err := time.Parse(time.RFC3339Nano, a.Time); err == nil {
		t = ts.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	b.WriteString(t)
	b.WriteByte(' ')
	sev := strings.ToUpper(a.Rule.Severity)
	if color {
		sev = severityColor[a.Rule.Severity] + sev + "\x1b[0m" + strings.Repeat(" ", max(1, 9-len(sev)))
	} else {
		sev = fmt.Sprintf("%-8s ", sev)
	}
	b.WriteString(sev)
	b.WriteString(a.Rule.ID)
	b.WriteString("  ")
	b.WriteString(a.Site + "/" + a.Gateway)
	b.WriteString("  ")
	b.WriteString(what(&a.Event))
	if len(a.Rule.Attack) > 0 {
		b.WriteString("  [" + strings.Join(a.Rule.Attack, " ") + "]")
	}
	if a.Count > 1 {
		fmt.Fprintf(&b, "  ×%d", a.Count)
	}
	if a.Rule.Title != "" {
		b.WriteString("  " + strconv.Quote(a.Rule.Title))
	}
	if a.Message != "" {
		b.WriteString(": " + a.Message)
	}
	if len(a.Truncated) > 0 {
		b.WriteString(" (cut: " + strings.Join(a.Truncated, ",") + ")")
	}
	return b.String()
}

// what says who did what where.
func what(e *Event) string {
	var b strings.Builder
	switch {
	case e.Source == "poll":
		b.WriteString(e.Device)
	case e.Client != "" || e.Server != "":
		b.WriteString(e.Client + " → " + e.Server)
		if e.Device != "" && e.Device != e.Server {
			b.WriteString(" (" + e.Device + ")")
		}
	default:
		b.WriteString(e.Device)
	}
	if e.Protocol == "modbus" && e.Unit != nil && e.Source == "wire" {
		fmt.Fprintf(&b, " unit %d", *e.Unit)
	}
	b.WriteString(": ")
	b.WriteString(e.Op)
	switch e.Protocol {
	case "modbus":
		if e.Function != 0 {
			fmt.Fprintf(&b, " FC %d", e.Function)
			if e.Subfunction != nil {
				fmt.Fprintf(&b, "/%d", *e.Subfunction)
			}
		}
		if e.Table != "" && e.Address != nil {
			fmt.Fprintf(&b, " %s %d", e.Table, *e.Address)
			if e.Count > 1 {
				fmt.Fprintf(&b, "+%d", e.Count)
			}
		}
	case "opcua":
		if e.Service != "" {
			b.WriteString(" " + e.Service)
		}
		if e.Node != "" {
			b.WriteString(" " + e.Node)
			if e.IndexRange != "" {
				b.WriteString("[" + e.IndexRange + "]")
			}
		}
		if e.Object != "" {
			b.WriteString(" on " + e.Object)
		}
		if e.User != "" {
			b.WriteString(" user " + e.User)
		}
		// What was written, or the method's input arguments: two writes
		// of 1 and of 2 must not print the same line. A value in "values"
		// is printed below, as for Modbus.
		if e.Tag == "" && len(e.Values) == 0 {
			sep := " = "
			if e.Op == "call" {
				sep = " args "
			}
			switch {
			case e.Text != "":
				b.WriteString(sep + strconv.Quote(cut(e.Text, maxText)))
			case e.Value != nil:
				b.WriteString(sep + strconv.FormatFloat(*e.Value, 'g', -1, 64))
			}
		}
	}
	if len(e.Values) > 0 {
		b.WriteString(" " + values(e.Values))
	}
	if e.Tag != "" {
		b.WriteString(" " + e.Tag)
		switch {
		case e.Text != "":
			b.WriteString(" = " + strconv.Quote(cut(e.Text, maxText)))
		case e.Value != nil:
			b.WriteString(" = " + strconv.FormatFloat(*e.Value, 'g', -1, 64))
		}
	}
	if e.Quality != "" && e.Quality != "good" {
		b.WriteString(" " + e.Quality)
	}
	if e.Exception != 0 {
		fmt.Fprintf(&b, " → exception %d", e.Exception)
	}
	if e.StatusName != "" {
		b.WriteString(" → " + e.StatusName)
	}
	if e.Unanswered != "" {
		b.WriteString(" (unanswered: " + e.Unanswered + ")")
	}
	if e.Malformed != "" {
		b.WriteString(" (malformed: " + e.Malformed + ")")
	}
	if e.Error != "" {
		b.WriteString(" (" + e.Error + ")")
	}
	return b.String()
}

// maxText bounds a text value in a summary, in runes: a written string or
// ByteString may be kilobytes, a line is for reading.
const maxText = 64

// cut is s up to n runes, with … when there was more.
func cut(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i] + "…"
		}
		n--
	}
	return s
}

// values prints at most 8 values.
func values(v []any) string {
	s := make([]string, 0, 9)
	for i, x := range v {
		if i == 8 {
			s = append(s, fmt.Sprintf("…%d more", len(v)-8))
			break
		}
		s = append(s, fmt.Sprint(x))
	}
	return "[" + strings.Join(s, " ") + "]"
}
