package publish

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/agent/spool"
	"github.com/plcwatch/plcwatch/sim/pki"
)

func newSpool(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), MaxBytes: 64 << 20, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// prefix is a topic prefix of the test's own, so that tests sharing the
// machine's broker do not see each other.
func prefix(t *testing.T) string {
	return fmt.Sprintf("plcwatch-test/%s/%d", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
}

// alert is a stand-in alert document with an id and a sequence number.
func alert(i int) []byte {
	return []byte(fmt.Sprintf(`{"schema":"plcwatch.alert/v1","id":"a%06d","n":%d}`, i, i))
}

func appendAlerts(t *testing.T, sp *spool.Spool, pfx string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		sev := []string{"low", "high"}[i%2]
		if err := sp.Append(Record(AlertTopic(pfx, sev), alert(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// checkAlerts checks that every alert 0..n-1 arrived, that first arrivals
// are in order, and that a repeat carries the same id and content.
func checkAlerts(t *testing.T, msgs []mqtttest.Message, n int) {
	t.Helper()
	seen := map[int]string{}
	last := -1
	dups := 0
	for _, m := range msgs {
		if !strings.Contains(m.Topic, "/alerts/") {
			continue
		}
		var a struct {
			ID string
			N  int
		}
		if err := json.Unmarshal(m.Payload, &a); err != nil {
			t.Fatalf("payload %q: %v", m.Payload, err)
		}
		if prev, ok := seen[a.N]; ok {
			dups++
			if prev != string(m.Payload) {
				t.Fatalf("alert %d delivered twice with different content", a.N)
			}
			continue
		}
		if a.N <= last {
			t.Fatalf("alert %d arrived after %d: out of order", a.N, last)
		}
		last = a.N
		seen[a.N] = string(m.Payload)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct alerts arrived, want %d", len(seen), n)
	}
	t.Logf("%d alerts arrived in order (%d duplicates with the same id)", n, dups)
}

func countDistinct(msgs []mqtttest.Message) int {
	seen := map[string]bool{}
	for _, m := range msgs {
		if strings.Contains(m.Topic, "/alerts/") {
			seen[string(m.Payload)] = true
		}
	}
	return len(seen)
}

func statusIs(want string) func([]mqtttest.Message) bool {
	return func(msgs []mqtttest.Message) bool {
		for i := len(msgs) - 1; i >= 0; i-- {
			if strings.HasSuffix(msgs[i].Topic, "/status") {
				return string(msgs[i].Payload) == want
			}
		}
		return false
	}
}

func start(t *testing.T, cfg Config, sp *spool.Spool) (*Publisher, func()) {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID = fmt.Sprintf("plcwatch-test-%d", time.Now().UnixNano())
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 3 * time.Second
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 3 * time.Second
	}
	p := New(cfg, sp)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = p.Run(ctx) }()
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return p, stop
}

func TestAlertsArriveInOrderAndStatus(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/#")
	sp := newSpool(t)
	appendAlerts(t, sp, pfx, 0, 500)
	p, stop := start(t, Config{Brokers: []string{broker}, TopicPrefix: pfx, QoS: 1}, sp)
	msgs, err := sub.WaitFor(20*time.Second, func(m []mqtttest.Message) bool { return countDistinct(m) == 500 && statusIs("online")(m) })
	if err != nil {
		t.Fatalf("%v: %d alerts", err, countDistinct(msgs))
	}
	checkAlerts(t, msgs, 500)
	for _, m := range msgs {
		if strings.Contains(m.Topic, "/alerts/") {
			var a struct{ N int }
			json.Unmarshal(m.Payload, &a)
			if want := AlertTopic(pfx, []string{"low", "high"}[a.N%2]); m.Topic != want {
				t.Fatalf("alert %d on %s, want %s", a.N, m.Topic, want)
			}
		}
	}
	// The subscriber can see the last alerts before their PUBACKs reach
	// the publisher: wait for the spool to be acknowledged.
	for i := 0; sp.Stats().Depth != 0 && i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if st := sp.Stats(); st.Depth != 0 {
		t.Errorf("spool still holds %d records", st.Depth)
	}
	// A clean stop delivers what is left and says offline.
	appendAlerts(t, sp, pfx, 500, 10)
	p.Drain()
	if _, err := sub.WaitFor(10*time.Second, func(m []mqtttest.Message) bool { return countDistinct(m) == 510 && statusIs("offline")(m) }); err != nil {
		t.Fatalf("after Drain: %v", err)
	}
	// Status is retained: a late subscriber reads it.
	late := mqtttest.Subscribe(t, broker, pfx+"/status")
	if msgs, err := late.WaitFor(5*time.Second, statusIs("offline")); err != nil || !msgs[len(msgs)-1].Retained {
		t.Errorf("status not retained: %v %+v", err, msgs)
	}
	// Run returns once the drain is done; only then is it disconnected.
	stop()
	if st := p.Stats(); st.Published != 510 || st.Connected {
		t.Errorf("stats %+v", st)
	}
}

// An outage of the network (the broker stays up) loses nothing, at QoS 1
// or 2, with a second cut in the middle of delivering the backlog. QoS 2
// is slower (two round trips an alert, a window of 20): a smaller backlog.
func TestOutageLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		qos byte
		n   int
	}{{1, 10000}, {2, 4000}} {
		t.Run(fmt.Sprintf("qos %d", tc.qos), func(t *testing.T) { outageLosesNothing(t, tc.qos, tc.n) })
	}
}

func outageLosesNothing(t *testing.T, qos byte, n int) {
	broker := mqtttest.Broker(t, nil)
	u, _ := url.Parse(broker)
	proxy := mqtttest.NewProxy(t, u.Host)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/#")
	sp := newSpool(t)
	_, _ = start(t, Config{Brokers: []string{proxy.URL("tcp")}, TopicPrefix: pfx, QoS: qos}, sp)
	if _, err := sub.WaitFor(10*time.Second, statusIs("online")); err != nil {
		t.Fatal("publisher never came online")
	}
	// The broker becomes unreachable: n alerts are raised meanwhile.
	proxy.Cut()
	if _, err := sub.WaitFor(10*time.Second, statusIs("offline")); err != nil {
		t.Fatal("no last will when the connection was cut")
	}
	appendAlerts(t, sp, pfx, 0, n)
	time.Sleep(2 * time.Second)
	if d := sp.Stats().Depth; d != uint64(n) {
		t.Fatalf("spool depth %d during the outage, want all %d", d, n)
	}
	// Back, then cut again mid-delivery, then back for good.
	proxy.Restore()
	if _, err := sub.WaitFor(30*time.Second, func(m []mqtttest.Message) bool { return countDistinct(m) >= n*3/10 }); err != nil {
		t.Fatal("delivery did not resume")
	}
	proxy.Cut()
	time.Sleep(500 * time.Millisecond)
	proxy.Restore()
	msgs, err := sub.WaitFor(60*time.Second, func(m []mqtttest.Message) bool { return countDistinct(m) == n })
	if err != nil {
		t.Fatalf("%v: %d of %d alerts", err, countDistinct(msgs), n)
	}
	checkAlerts(t, msgs, n)
}

func TestLastWillOnAbruptDrop(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	u, _ := url.Parse(broker)
	proxy := mqtttest.NewProxy(t, u.Host)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/status")
	_, _ = start(t, Config{Brokers: []string{proxy.URL("tcp")}, TopicPrefix: pfx, QoS: 1}, newSpool(t))
	if _, err := sub.WaitFor(10*time.Second, statusIs("online")); err != nil {
		t.Fatal("never online")
	}
	proxy.Cut()
	if _, err := sub.WaitFor(10*time.Second, statusIs("offline")); err != nil {
		t.Fatal("the broker did not publish the last will")
	}
	proxy.Restore()
	if _, err := sub.WaitFor(10*time.Second, statusIs("online")); err != nil {
		t.Fatal("not online again after the connection came back")
	}
}

func TestFailoverToTheNextBroker(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/#")
	sp := newSpool(t)
	appendAlerts(t, sp, pfx, 0, 10)
	dead := "tcp://" + mqtttest.FreeAddr(t)
	p, _ := start(t, Config{Brokers: []string{dead, broker}, TopicPrefix: pfx, QoS: 1}, sp)
	if _, err := sub.WaitFor(15*time.Second, func(m []mqtttest.Message) bool { return countDistinct(m) == 10 }); err != nil {
		t.Fatal("alerts did not arrive through the second broker")
	}
	if st := p.Stats(); st.Broker != broker {
		t.Errorf("connected to %q, want %q", st.Broker, broker)
	}
}

func newPKI(t *testing.T) *pki.PKI {
	t.Helper()
	p, err := pki.New()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSAndMTLS(t *testing.T) {
	p := newPKI(t)
	tlsBroker := mqtttest.Broker(t, &mqtttest.BrokerOptions{TLS: &tls.Config{Certificates: []tls.Certificate{p.Server}}})
	mtlsBroker := mqtttest.Broker(t, &mqtttest.BrokerOptions{TLS: &tls.Config{Certificates: []tls.Certificate{p.Server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.CAPool}})
	authBroker := mqtttest.Broker(t, &mqtttest.BrokerOptions{Username: "gw", Password: "s3cret"})
	tests := []struct {
		name     string
		broker   string
		tls      *tls.Config
		user     string
		password string
		wantKind string // "" for a connection that works
	}{
		{"TLS", tlsBroker, &tls.Config{RootCAs: p.CAPool}, "", "", ""},
		{"mTLS", mtlsBroker, &tls.Config{RootCAs: p.CAPool, Certificates: []tls.Certificate{p.Client}}, "", "", ""},
		{"untrusted server", tlsBroker, &tls.Config{}, "", "", "tls"},
		{"mTLS without a client certificate", mtlsBroker, &tls.Config{RootCAs: p.CAPool}, "", "", "tls"},
		{"right credentials", authBroker, nil, "gw", "s3cret", ""},
		{"wrong credentials", authBroker, nil, "gw", "guess", "auth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pfx := prefix(t)
			sp := newSpool(t)
			appendAlerts(t, sp, pfx, 0, 3)
			pub, stop := start(t, Config{Brokers: []string{tc.broker}, TopicPrefix: pfx, QoS: 1, TLS: tc.tls,
				Username: tc.user, Password: tc.password, ConnectTimeout: 2 * time.Second}, sp)
			deadline := time.Now().Add(8 * time.Second)
			for time.Now().Before(deadline) {
				st := pub.Stats()
				if tc.wantKind == "" && st.Published == 3 {
					break
				}
				if tc.wantKind != "" && st.ConnectErrors >= 2 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			stop()
			st := pub.Stats()
			if tc.wantKind == "" {
				if st.Published != 3 {
					t.Fatalf("published %d of 3: %s", st.Published, st.LastError)
				}
				return
			}
			// A clear error, counted by kind, retried with backoff: not
			// a crash and not a tight loop.
			if st.ConnectErrors < 2 || st.ConnectErrors > 20 || st.ErrorsByKind[tc.wantKind] != st.ConnectErrors {
				t.Fatalf("connect errors %d, by kind %v (last: %s), want %s", st.ConnectErrors, st.ErrorsByKind, st.LastError, tc.wantKind)
			}
			if strings.Contains(st.LastError, tc.password+"\"") && tc.password != "" {
				t.Error("the password appears in the error")
			}
			t.Logf("%s: %s", tc.wantKind, st.LastError)
			if d := sp.Stats().Depth; d != 3 {
				t.Errorf("spool depth %d: the alerts must wait for a broker that works", d)
			}
		})
	}
}

// BenchmarkPublish drains a spool of b.N alerts to the broker (MQTT_URL, else
// in-process) with QoS 1 and reports alerts per second: spool reads,
// publishes, PUBACKs and spool acknowledgements, end to end.
func BenchmarkPublish(b *testing.B) { benchPublish(b, 1) }

// BenchmarkPublishQoS2 is BenchmarkPublish at QoS 2: two round trips per
// alert (PUBREC, PUBCOMP), and no more in flight than the broker takes
// (ReceiveMaximum, Mosquitto's default 20).
func BenchmarkPublishQoS2(b *testing.B) { benchPublish(b, 2) }

func benchPublish(b *testing.B, qos byte) {
	broker := mqtttest.Broker(b, nil)
	pfx := fmt.Sprintf("plcwatch-bench/%d", time.Now().UnixNano())
	sp, err := spool.Open(spool.Options{Dir: b.TempDir(), MaxBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	payload := make([]byte, 700) // the size of a typical alert
	for i := 0; i < b.N; i++ {
		if err := sp.Append(Record(AlertTopic(pfx, "high"), payload)); err != nil {
			b.Fatal(err)
		}
	}
	p := New(Config{Brokers: []string{broker}, ClientID: fmt.Sprintf("bench-%d", time.Now().UnixNano()), TopicPrefix: pfx, QoS: qos}, sp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	go p.Run(ctx)
	for sp.Stats().Depth > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "alerts/s")
}
