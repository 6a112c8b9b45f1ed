// Package fleet_test runs plcwatch's fleet layout (docs/fleet.md) on two
// real Mosquitto brokers: gateways (the agent's publisher, spool and all)
// publish to a site broker, which bridges to a central broker, where SOC
// consumers share the alerts with a shared subscription.
package fleet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/agent/publish"
	"github.com/plcwatch/plcwatch/agent/spool"
)

// The SOC's shared subscription: every alert of every site and gateway,
// each to one consumer of the group "soc".
const sharedAlerts = "$share/soc/plcwatch/+/+/alerts/#"

// bridge returns the bridge section of site-broker.conf for a site broker
// of the test: the example's own lines, with the central broker's address
// and without its TLS files and credentials (the test's brokers are plain
// TCP on loopback), and the site's name in the topics.
func bridge(t *testing.T, central, site string) string {
	t.Helper()
	f, err := os.Open("site-broker.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, err := url.Parse(central)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	in := false
	for s := bufio.NewScanner(f); s.Scan(); {
		line := strings.TrimSpace(s.Text())
		if strings.HasPrefix(line, "connection ") {
			in = true
		}
		if !in || line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.Fields(line)[0] {
		case "address":
			line = "address " + u.Host
		case "bridge_cafile", "bridge_certfile", "bridge_keyfile":
			continue
		case "restart_timeout":
			line = "restart_timeout 1 2" // the test's broker comes back within a second
		}
		b.WriteString(strings.ReplaceAll(line, "site-a", site) + "\n")
	}
	// The central broker takes the bridge's certificate CN as its user
	// name; without TLS the test says it.
	b.WriteString("remote_username bridge-" + site + "\n")
	if !strings.Contains(b.String(), "cleansession false") || !strings.Contains(b.String(), "/alerts/# out 2") {
		t.Fatalf("site-broker.conf has no bridge section as docs/fleet.md describes it:\n%s", b.String())
	}
	return b.String()
}

// brokerConf returns the broker settings of an example configuration (the
// lines before its bridge section), without what needs the machine's files
// and ports: the listener, TLS, password file, ACL file and persistence
// folder. With them go the example ACL file, its site made the test's,
// and anonymous clients may connect with a user name and no password (the
// test's stand-in for passwords and certificates).
func brokerConf(t *testing.T, file, acl, site string) string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "connection ") {
			break
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.Fields(line)[0] {
		case "listener", "certfile", "keyfile", "cafile", "require_certificate", "use_identity_as_username", "tls_version",
			"password_file", "acl_file", "allow_anonymous", "persistence_location", "per_listener_settings":
			continue
		}
		b.WriteString(line + "\n")
	}
	rules, err := os.ReadFile(acl)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(acl))
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(rules), "site-a", site)), 0o644); err != nil {
		t.Fatal(err)
	}
	b.WriteString("acl_file " + path + "\nallow_anonymous true\n")
	return b.String()
}

// brokers starts a central broker and a site broker bridged to it, both
// with persistence and room to queue a burst for a consumer or the bridge
// that is away (Mosquitto's default max_queued_messages, 1,000, would drop
// beyond: a loss of configuration, not of the path under test).
//
// Both take their settings and ACLs from deploy/fleet's examples. The
// central broker takes more QoS 2 publishes in flight from one client
// (max_inflight_messages 100) than a bridge sends (the site's default, 20):
// with both at 20, Mosquitto 2.0.11's central broker refused some of the
// bridge's QoS 2 publishes with quota exceeded (rc151 in its log) while
// acknowledging them — PUBREC, then PUBCOMP, as MQTT 3.1.1 allows no
// refusal — and the alerts were gone: 1 of 800 in a steady burst, 253 of
// 800 when the bridge caught up after a restart (docs/fleet.md).
func brokers(t *testing.T, site string) (central, siteBroker *mqtttest.MosquittoProcess) {
	t.Helper()
	centralConf := brokerConf(t, "central-broker.conf", "central.acl", site)
	for _, want := range []string{"persistence true", "max_queued_messages 100000", "max_inflight_messages 100"} {
		if !strings.Contains(centralConf, want+"\n") {
			t.Fatalf("central-broker.conf has no %q, which docs/fleet.md and this test rely on:\n%s", want, centralConf)
		}
	}
	central = mqtttest.StartMosquitto(t, centralConf)
	t.Cleanup(func() {
		if n := strings.Count(central.Log(), "rc151"); n > 0 {
			t.Errorf("the central broker refused %d publishes for quota (rc151): acknowledged and dropped", n)
		}
	})
	siteBroker = mqtttest.StartMosquitto(t, brokerConf(t, "site-broker.conf", "site.acl", site)+bridge(t, central.URL(), site))
	// The bridge is up when a message published at the site reaches the
	// central broker.
	probe := mqtttest.SubscribeAs(t, central.URL(), consumer, "plcwatch/"+site+"/+/alerts/#")
	deadline := time.Now().Add(20 * time.Second)
	for len(probe.Messages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the bridge did not come up:\nsite: %s\ncentral: %s", siteBroker.Log(), central.Log())
		}
		publishOnce(t, siteBroker.URL(), "probe", "plcwatch/"+site+"/probe/alerts/x", []byte("probe"))
		time.Sleep(200 * time.Millisecond)
	}
	return central, siteBroker
}

// gateway is one plcwatch agent's delivery: its spool and publisher, as
// the daemon wires them (client id plcwatch-<site>-<gateway>, topic
// prefix plcwatch/<site>/<gateway>).
type gateway struct {
	name   string
	prefix string
	sp     *spool.Spool
	p      *publish.Publisher
	drain  func() error
}

// consumer is the SOC consumers' user name in central.acl.
const consumer = "soc-consumer"

// exampleGateway is deploy/fleet/gateway.yaml, loaded as the agent loads
// its configuration: what the docs show is what the test runs (its user
// name, QoS and receive maximum).
func exampleGateway(t *testing.T) *agent.Config {
	t.Helper()
	cfg, err := agent.LoadConfig("gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Username != cfg.Gateway || cfg.MQTT.QoS != 2 || cfg.MQTT.PasswordFile == "" || cfg.MQTT.TLS.CAFile == "" ||
		len(cfg.MQTT.Brokers) != 1 || !strings.HasPrefix(cfg.MQTT.Brokers[0], "ssl://") {
		t.Fatalf("gateway.yaml is not the example docs/fleet.md describes (username = gateway, qos 2, password_file, tls.ca_file, ssl://): %+v", cfg.MQTT)
	}
	return cfg
}

// startGateway starts gateway name of site, configured as gateway.yaml
// but for its broker, names and QoS: its broker user name is its name.
func startGateway(t *testing.T, broker, site, name string, qos byte) *gateway {
	t.Helper()
	ex := exampleGateway(t)
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), MaxBytes: 64 << 20, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	g := &gateway{name: name, prefix: "plcwatch/" + site + "/" + name, sp: sp}
	g.p = publish.New(publish.Config{Brokers: []string{broker}, ClientID: "plcwatch-" + site + "-" + name,
		Username: name, TopicPrefix: g.prefix, QoS: qos, ReceiveMaximum: ex.MQTT.ReceiveMaximum, VerifyTimeout: ex.MQTT.VerifyTimeout,
		PublishTimeout: 3 * time.Second, ConnectTimeout: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)}, sp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	g.drain = func() error {
		g.p.Drain()
		select {
		case err := <-done:
			done <- err
			return err
		case <-time.After(60 * time.Second):
			return fmt.Errorf("gateway %s: the drain did not end within a minute", name)
		}
	}
	return g
}

// raise appends alert i to the gateway's spool, as the agent does when a
// rule matches: the spool is where an alert counts as raised.
func (g *gateway) raise(t *testing.T, i int) {
	sev := []string{"low", "medium", "high", "critical"}[i%4]
	doc := fmt.Sprintf(`{"schema":"plcwatch.alert/v1","id":"%s-%06d","gateway":%q,"n":%d}`, g.name, i, g.name, i)
	if err := g.sp.Append(publish.Record(publish.AlertTopic(g.prefix, sev), []byte(doc))); err != nil {
		t.Error(err)
	}
}

// tally counts, across consumers, the copies of each alert id.
func tally(t *testing.T, consumers ...*mqtttest.Subscriber) (copies map[string]int, per []int) {
	t.Helper()
	copies = map[string]int{}
	for _, c := range consumers {
		n := 0
		for _, m := range c.Messages() {
			if !strings.Contains(m.Topic, "/alerts/") || strings.Contains(m.Topic, "/probe/") {
				continue
			}
			var a struct{ ID string }
			if err := json.Unmarshal(m.Payload, &a); err != nil || a.ID == "" {
				t.Fatalf("alert %q on %s: %v", m.Payload, m.Topic, err)
			}
			copies[a.ID]++
			n++
		}
		per = append(per, n)
	}
	return copies, per
}

// burst raises n alerts on each gateway at perSecond each; mid, when not
// nil, runs once a fifth of them are raised.
func burst(t *testing.T, gws []*gateway, n, perSecond int, mid func()) {
	t.Helper()
	var wg sync.WaitGroup
	midDone := make(chan struct{})
	for gi, g := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / time.Duration(perSecond))
			defer tick.Stop()
			for i := range n {
				<-tick.C
				g.raise(t, i)
				if gi == 0 && i == n/5 {
					if mid != nil {
						mid()
					}
					close(midDone)
				}
			}
		}()
	}
	wg.Wait()
	<-midDone
	for _, g := range gws {
		if err := g.drain(); err != nil {
			t.Fatal(err)
		}
		if d := g.sp.Stats().Depth; d != 0 {
			t.Fatalf("gateway %s: %d alerts left in the spool", g.name, d)
		}
		// site.acl lets each gateway read its status back: the publish
		// check passes (a failed one would mean the alerts were dropped).
		if st := g.p.Stats(); st.Verify != publish.VerifyOK {
			t.Errorf("gateway %s: publish check %q: %s", g.name, st.Verify, st.VerifyError)
		}
	}
}

// publishOnce publishes one message at QoS 1 with a client of its own,
// as user (site.acl lets a user write under plcwatch/<site>/<user>/).
func publishOnce(t *testing.T, broker, user, topic string, payload []byte) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("probe-%d", time.Now().UnixNano())).
		SetUsername(user).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", broker, tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// Two gateways of a site publish a burst of alerts to the site broker; the
// bridge forwards them to the central broker, where two SOC consumers
// share them with $share/soc/plcwatch/+/+/alerts/#. At QoS 2 (gateway,
// bridge and consumers) every alert reaches exactly one consumer, once;
// at QoS 1 every alert arrives at least once (duplicates are counted, and
// a consumer drops them by alert id). Both consumers take a share. The
// gateways' retained status gives a fleet view on the central broker.
func TestFleetSharedSubscription(t *testing.T) {
	const n, perSecond = 400, 200
	for _, qos := range []byte{2, 1} {
		t.Run(fmt.Sprintf("qos %d", qos), func(t *testing.T) {
			site := fmt.Sprintf("site-q%d", qos)
			central, siteBroker := brokers(t, site)
			a := mqtttest.SubscribeSessionAs(t, central.URL(), consumer, sharedAlerts, 2)
			b := mqtttest.SubscribeSessionAs(t, central.URL(), consumer, sharedAlerts, 2)
			gws := []*gateway{startGateway(t, siteBroker.URL(), site, "gw-1", qos), startGateway(t, siteBroker.URL(), site, "gw-2", qos)}
			burst(t, gws, n, perSecond, nil)

			want := n * len(gws)
			wait(t, want, a, b)
			copies, per := tally(t, a, b)
			dups := 0
			for _, c := range copies {
				dups += c - 1
			}
			if len(copies) != want {
				t.Fatalf("%d of %d alerts reached the consumers", len(copies), want)
			}
			if per[0] == 0 || per[1] == 0 {
				t.Errorf("the consumers got %v alerts: the shared subscription did not split the load", per)
			}
			if qos == 2 && dups > 0 {
				t.Errorf("qos 2: %d alerts delivered more than once across the consumers", dups)
			}
			t.Logf("qos %d: %d alerts from %d gateways, consumers got %v, %d duplicates", qos, want, len(gws), per, dups)

			// The fleet view: a new client on the central broker learns
			// every gateway's status from the retained messages.
			status := mqtttest.SubscribeAs(t, central.URL(), consumer, "plcwatch/+/+/status")
			msgs, err := status.WaitFor(10*time.Second, func(m []mqtttest.Message) bool { return len(m) >= len(gws) })
			if err != nil {
				t.Fatalf("retained status on the central broker: %v (got %v)", err, msgs)
			}
			for _, m := range msgs {
				if !m.Retained {
					t.Errorf("status %s %q is not retained", m.Topic, m.Payload)
				}
			}
		})
	}
}

// A site broker restarted in the middle of a burst (SIGTERM, started again
// a second later with its persistence: the bridge's queue and session
// survive) loses no alert between the gateways and the SOC consumers, at
// QoS 2 and at QoS 1. Copies may arrive (a gateway sends again what the
// broker had not acknowledged when it went down); they carry the same
// alert id, by which the consumer drops them.
func TestFleetBridgeRestart(t *testing.T) {
	const n, perSecond = 400, 200
	for _, qos := range []byte{2, 1} {
		t.Run(fmt.Sprintf("qos %d", qos), func(t *testing.T) {
			site := fmt.Sprintf("site-r%d", qos)
			central, siteBroker := brokers(t, site)
			a := mqtttest.SubscribeSessionAs(t, central.URL(), consumer, sharedAlerts, 2)
			b := mqtttest.SubscribeSessionAs(t, central.URL(), consumer, sharedAlerts, 2)
			gws := []*gateway{startGateway(t, siteBroker.URL(), site, "gw-1", qos), startGateway(t, siteBroker.URL(), site, "gw-2", qos)}
			burst(t, gws, n, perSecond, func() {
				siteBroker.Stop()
				time.Sleep(time.Second) // alerts pile up in the gateways' spools
				siteBroker.Start()
			})
			want := n * len(gws)
			wait(t, want, a, b)
			copies, per := tally(t, a, b)
			dups := 0
			for _, c := range copies {
				dups += c - 1
			}
			if len(copies) != want {
				var miss []string
				for _, g := range gws {
					for i := range n {
						if id := fmt.Sprintf("%s-%06d", g.name, i); copies[id] == 0 {
							miss = append(miss, id)
						}
					}
				}
				t.Fatalf("%d of %d alerts lost across the restart: %v\nsite broker:\n%s", len(miss), want, miss[:min(len(miss), 20)], siteBroker.Log())
			}
			for _, g := range gws {
				if st := g.p.Stats(); st.Connects < 2 {
					t.Errorf("gateway %s connected %d times: the restart was not mid-burst", g.name, st.Connects)
				}
			}
			t.Logf("qos %d: %d alerts across a site broker restart, consumers got %v, %d duplicates", qos, want, per, dups)
		})
	}
}

// wait waits until the consumers together hold want distinct alerts, or a
// generous deadline (the machine may be loaded).
func wait(t *testing.T, want int, consumers ...*mqtttest.Subscriber) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if copies, _ := tally(t, consumers...); len(copies) >= want {
			time.Sleep(500 * time.Millisecond) // late duplicates, to count them
			return
		}
	}
}
