package alertsub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
)

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name, alert, want string
	}{
		{"a wire write",
			`{"schema":"plcwatch.alert/v1","id":"a1","time":"2026-11-21T10:00:00.123456789Z","site":"plant-a","gateway":"gw-1",
			 "rule":{"id":"modbus-write","title":"Modbus write to a PLC","severity":"high","attack":["T0855","T0836"],"tags":[]},
			 "event":{"time":"2026-11-21T10:00:00.123456789Z","source":"wire","protocol":"modbus","op":"write","device":"plc-1","client":"10.0.0.57:2578","server":"10.0.0.3:502","tid":7,"unit":1,"function":16,"table":"holding","address":100,"count":3,"values":[7,8,9],"exception":0,"malformed":""},"count":1}`,
			`2026-11-21T10:00:00.123Z HIGH     modbus-write  plant-a/gw-1  10.0.0.57:2578 → 10.0.0.3:502 (plc-1) unit 1: write FC 16 holding 100+3 [7 8 9]  [T0855 T0836]  "Modbus write to a PLC"`},
		{"a diagnostic, answered with an exception, folded",
			`{"schema":"plcwatch.alert/v1","id":"a2","time":"2004-08-26T12:01:34.216894000Z","site":"s","gateway":"g",
			 "rule":{"id":"modbus-force-listen-only","title":"Force Listen Only","severity":"critical","attack":["T0858"],"tags":[]},
			 "event":{"source":"wire","protocol":"modbus","op":"diagnostic","client":"10.0.0.57:2578","server":"10.0.0.3:502","unit":10,"function":8,"subfunction":4,"values":[0],"exception":11},
			 "count":3,"message":"2 more identical alerts since 2004-08-26T12:01:34Z"}`,
			`2004-08-26T12:01:34.216Z CRITICAL modbus-force-listen-only  s/g  10.0.0.57:2578 → 10.0.0.3:502 unit 10: diagnostic FC 8/4 [0] → exception 11  [T0858]  ×3  "Force Listen Only": 2 more identical alerts since 2004-08-26T12:01:34Z`},
		{"a polled tag",
			`{"schema":"plcwatch.alert/v1","id":"a3","time":"2026-11-21T10:00:01Z","site":"demo","gateway":"gw-demo",
			 "rule":{"id":"boiler-hot","title":"Boiler above 95 degC","severity":"medium","attack":[],"tags":[]},
			 "event":{"source":"poll","protocol":"modbus","op":"read","device":"boiler-1","function":3,"table":"holding","address":0,"count":1,"tag":"temperature","value":97.5,"raw":975,"quality":"good"},"count":1}`,
			`2026-11-21T10:00:01.000Z MEDIUM   boiler-hot  demo/gw-demo  boiler-1: read FC 3 holding 0 temperature = 97.5  "Boiler above 95 degC"`},
		{"a device down",
			`{"schema":"plcwatch.alert/v1","id":"a4","time":"2026-11-21T10:00:02Z","site":"demo","gateway":"gw-demo",
			 "rule":{"id":"polled-device-down","title":"A polled device stopped answering","severity":"low","attack":[],"tags":[]},
			 "event":{"source":"poll","protocol":"modbus","op":"status","device":"chiller","quality":"down","error":"dial tcp 127.0.0.1:15029: connect: connection refused"},"count":1}`,
			`2026-11-21T10:00:02.000Z LOW      polled-device-down  demo/gw-demo  chiller: status down (dial tcp 127.0.0.1:15029: connect: connection refused)  "A polled device stopped answering"`},
		{"an OPC UA write, cut",
			`{"schema":"plcwatch.alert/v1","id":"a5","time":"2026-11-21T10:00:03Z","site":"s","gateway":"g",
			 "rule":{"id":"opcua-write","title":"OPC UA write","severity":"high","attack":["T0855"],"tags":[]},
			 "event":{"source":"wire","protocol":"opcua","op":"write","client":"10.0.0.9:50000","server":"10.0.0.4:4840","service":"WriteRequest","node":"ns=2;s=Tank.Level","user":"op1","values":[1,2,3,4,5,6,7,8,9,10],"status":2149646336,"status_name":"BadUserAccessDenied"},"count":1,"truncated":["event.values"]}`,
			`2026-11-21T10:00:03.000Z HIGH     opcua-write  s/g  10.0.0.9:50000 → 10.0.0.4:4840: write WriteRequest ns=2;s=Tank.Level user op1 [1 2 3 4 5 6 7 8 …2 more] → BadUserAccessDenied  [T0855]  "OPC UA write" (cut: event.values)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a Alert
			if err := json.Unmarshal([]byte(tc.alert), &a); err != nil {
				t.Fatal(err)
			}
			if got := Summary(&a, false); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestSummaryOPCUAValues: an OPC UA write or call line shows what was
// written or passed (two writes of 1 and of 2 printed the same line), in
// every shape docs/events.md gives it — a number, a Boolean as 0/1, an
// array in values, a string in text (bounded), a method's arguments — and
// the node's index range and the method's object.
func TestSummaryOPCUAValues(t *testing.T) {
	const head = `2026-11-21T10:00:03.000Z HIGH     r  s/g  10.0.0.9:50000 → 10.0.0.4:4840: `
	long := strings.Repeat("é", 70)
	for _, tc := range []struct {
		name, event, want string
	}{
		{"write 1", `"op":"write","service":"WriteRequest","node":"ns=1;s=the.answer","attribute":13,"value_type":"Int32","value":1`,
			`write WriteRequest ns=1;s=the.answer = 1`},
		{"write 2", `"op":"write","service":"WriteRequest","node":"ns=1;s=the.answer","attribute":13,"value_type":"Int32","value":2`,
			`write WriteRequest ns=1;s=the.answer = 2`},
		{"write a Boolean", `"op":"write","service":"WriteRequest","node":"ns=2;s=Pump.Run","value_type":"Boolean","value":0,"status":0`,
			`write WriteRequest ns=2;s=Pump.Run = 0`},
		{"write a Double", `"op":"write","service":"WriteRequest","node":"i=2258","value_type":"Double","value":-12.5`,
			`write WriteRequest i=2258 = -12.5`},
		{"write an array range", `"op":"write","service":"WriteRequest","node":"ns=2;s=Recipe","index_range":"2:4","value_type":"Int16","values":[5,6,7]`,
			`write WriteRequest ns=2;s=Recipe[2:4] [5 6 7]`},
		{"write a string", `"op":"write","service":"WriteRequest","node":"ns=2;s=Batch","value_type":"String","text":"lot \"42\"\n"`,
			`write WriteRequest ns=2;s=Batch = "lot \"42\"\n"`},
		{"write a long string, cut", `"op":"write","service":"WriteRequest","node":"ns=2;s=Note","value_type":"String","text":"` + long + `"`,
			`write WriteRequest ns=2;s=Note = "` + strings.Repeat("é", 64) + `…"`},
		{"write a null", `"op":"write","service":"WriteRequest","node":"ns=2;s=X","value_type":"Null","status_name":"BadTypeMismatch"`,
			`write WriteRequest ns=2;s=X → BadTypeMismatch`},
		{"call with a text argument", `"op":"call","service":"CallRequest","node":"ns=1;i=62541","object":"i=85","value_type":"String","text":"Hello Server","status_name":"BadNodeIdUnknown"`,
			`call CallRequest ns=1;i=62541 on i=85 args "Hello Server" → BadNodeIdUnknown`},
		{"call with arguments", `"op":"call","service":"CallRequest","node":"ns=2;s=Recipes.Load","object":"ns=2;s=Recipes","value_type":"String,Int32","text":"bread,-1","user":"op1"`,
			`call CallRequest ns=2;s=Recipes.Load on ns=2;s=Recipes user op1 args "bread,-1"`},
		{"call with a number", `"op":"call","service":"CallRequest","node":"ns=2;s=Valve.Open","object":"ns=2;s=Valve","value_type":"Int32","value":3`,
			`call CallRequest ns=2;s=Valve.Open on ns=2;s=Valve args 3`},
		{"call with numbers", `"op":"call","service":"CallRequest","node":"ns=2;s=M","object":"ns=2;s=O","value_type":"Int32,Int32","values":[3,4]`,
			`call CallRequest ns=2;s=M on ns=2;s=O [3 4]`},
		{"a session, no value", `"op":"session","service":"ActivateSessionRequest","identity":"anonymous"`,
			`session ActivateSessionRequest`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a Alert
			js := `{"schema":"plcwatch.alert/v1","id":"x","time":"2026-11-21T10:00:03Z","site":"s","gateway":"g","rule":{"id":"r","severity":"high"},` +
				`"event":{"source":"wire","protocol":"opcua","client":"10.0.0.9:50000","server":"10.0.0.4:4840",` + tc.event + `},"count":1}`
			if err := json.Unmarshal([]byte(js), &a); err != nil {
				t.Fatal(err)
			}
			if got := Summary(&a, false); got != head+tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, head+tc.want)
			}
		})
	}
}

// syncBuf is a buffer written by the subscriber and read by the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuf) waitFor(t *testing.T, what string, ok func(string) bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(s.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have:\n%s", what, s.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alertJSON(id, sev string, n int) string {
	return fmt.Sprintf(`{"schema":"plcwatch.alert/v1","id":%q,"time":"2026-11-21T10:00:00Z","site":"s","gateway":"g","rule":{"id":"r%d","title":"t","severity":%q,"attack":["T0855"],"tags":[]},"event":{"source":"wire","protocol":"modbus","op":"write","client":"10.0.0.1:1","server":"10.0.0.2:502","unit":1,"function":6,"table":"holding","address":%d,"count":1,"values":[1]},"count":1}`, id, n, sev, n)
}

// The subscriber against the brokers users have — Mosquitto and the
// embedded (mochi-mqtt) broker — through a connection that is cut and
// comes back: it prints alerts, each once, and subscribes again after it
// reconnects.
func TestSubscriber(t *testing.T) {
	mosquitto := func(t *testing.T) string { u, _ := mqtttest.Mosquitto(t, ""); return u }
	embedded := func(t *testing.T) string { return mqtttest.Broker(t, &mqtttest.BrokerOptions{}) }
	for _, tc := range []struct {
		name   string
		broker func(t *testing.T) string
		json   bool
	}{
		{"mosquitto", mosquitto, false},
		{"embedded", embedded, false},
		{"mosquitto --json", mosquitto, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := tc.broker(t)
			u, _ := url.Parse(broker)
			proxy := mqtttest.NewProxy(t, u.Host)
			pfx := fmt.Sprintf("plcwatch-test/%d", time.Now().UnixNano())
			var out, errOut syncBuf
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int)
			go func() {
				done <- Run(ctx, Options{Brokers: []string{proxy.URL("tcp")}, Topics: []string{pfx + "/+/+/alerts/#"}, JSON: tc.json}, &out, &errOut)
			}()
			defer func() { cancel(); <-done }()
			errOut.waitFor(t, "the subscription", func(s string) bool { return strings.Contains(s, "subscribed to") })
			pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
			if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			defer pub.Disconnect(100)
			send := func(topic, payload string) {
				if tok := pub.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatal(tok.Error())
				}
			}
			send(pfx+"/s/g/alerts/high", alertJSON("id1", "high", 1))
			send(pfx+"/s/g/alerts/high", alertJSON("id1", "high", 1)) // delivered again: printed once
			send(pfx+"/s/g/alerts/low", alertJSON("id2", "low", 2))
			out.waitFor(t, "two alerts", func(s string) bool { return strings.Count(s, "\n") >= 2 })
			proxy.Cut()
			errOut.waitFor(t, "the loss", func(s string) bool { return strings.Contains(s, "connection lost") })
			proxy.Restore()
			errOut.waitFor(t, "the subscription again", func(s string) bool { return strings.Count(s, "subscribed to") >= 2 })
			send(pfx+"/s/g/alerts/critical", alertJSON("id3", "critical", 3))
			out.waitFor(t, "the alert after the reconnect", func(s string) bool { return strings.Contains(s, "id3") || strings.Contains(s, "r3") })
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 3 {
				t.Fatalf("%d lines, want 3 (one per alert):\n%s", len(lines), out.String())
			}
			for i, l := range lines {
				if tc.json {
					var a Alert
					if err := json.Unmarshal([]byte(l), &a); err != nil || a.ID != fmt.Sprintf("id%d", i+1) {
						t.Errorf("line %d is not the alert as it came: %s", i, l)
					}
					continue
				}
				want := fmt.Sprintf("r%d  s/g  10.0.0.1:1 → 10.0.0.2:502 unit 1: write FC 6 holding %d [1]  [T0855]", i+1, i+1)
				if !strings.Contains(l, want) {
					t.Errorf("line %d: %s\nwant it to contain %s", i, l, want)
				}
			}
		})
	}
}

func TestNeedsABroker(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), Options{}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--broker") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	// A password given where its file's name belongs is not repeated.
	errOut.Reset()
	if code := Run(context.Background(), Options{Brokers: []string{"tcp://x:1"}, PasswordFile: "/nonexistent/S3cr3t-PW-xyz"}, &out, &errOut); code != 1 ||
		strings.Contains(errOut.String(), "S3cr3t-PW-xyz") || !strings.Contains(errOut.String(), "--password-file: the file it names cannot be read") {
		t.Errorf("a password file that cannot be read: exit %d: %s", code, errOut.String())
	}
}

// FuzzSummary: whatever a broker delivers on an alert topic, the printer
// prints a line (or the message as it is) and never panics.
func FuzzSummary(f *testing.F) {
	f.Add([]byte(alertJSON("id1", "high", 1)))
	f.Add([]byte(`{"schema":"x","event":{"unit":null,"subfunction":-1,"values":[{"a":1},null,"s"],"value":1e308}}`))
	f.Add([]byte(`{"schema":"plcwatch.alert/v1","time":"not a time","rule":{"severity":"\u0000"},"count":-5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Alert
		if json.Unmarshal(b, &a) != nil {
			return
		}
		line := Summary(&a, true)
		if strings.Contains(line, "\n") && !strings.Contains(string(b), `\n`) && !strings.Contains(string(b), "\n") {
			t.Errorf("a summary over two lines: %q", line)
		}
		p := &printer{out: io.Discard, seen: newSeen(4)}
		p.handle(nil, fakeMessage{b})
	})
}

type fakeMessage struct{ b []byte }

func (m fakeMessage) Duplicate() bool   { return false }
func (m fakeMessage) Qos() byte         { return 1 }
func (m fakeMessage) Retained() bool    { return false }
func (m fakeMessage) Topic() string     { return "t/alerts/high" }
func (m fakeMessage) MessageID() uint16 { return 1 }
func (m fakeMessage) Payload() []byte   { return m.b }
func (m fakeMessage) Ack()              {}
