package agent_test

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/sim/modbussim"
)

// TestFirstHeartbeatCountsDevices: the heartbeat sent as the agent
// connects reports the polled devices as they are, not all down because
// none had been polled yet (issue 9: "the first heartbeat says
// devices_up: 0").
func TestFirstHeartbeatCountsDevices(t *testing.T) {
	broker := mqtttest.Broker(t, nil)
	pfx := prefix(t)
	sub := mqtttest.Subscribe(t, broker, pfx+"/heartbeat")
	plc, err := modbussim.Serve(mqtttest.FreeAddr(t), &modbussim.Image{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plc.Close()
	// A device that takes its connections and never answers: known down
	// only after its timeout, long after the broker connection is made.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dir := t.TempDir()
	writeRules(t, dir, fmt.Sprintf(writeRule, "w"))
	startDaemon(t, dir, fmt.Sprintf(`rules: {paths: [rules]}
mqtt: {brokers: [%s], topic_prefix: %s, heartbeat: 1h, client_id: %s}
spool: {dir: spool}
http: {listen: "off"}
modbus:
  devices:
    - {name: up, address: %q, interval: 10s, tags: [{name: t, register: "40001"}]}
    - {name: down, address: %q, interval: 10s, timeout: 700ms, retries: 0, tags: [{name: t, register: "40001"}]}
`, broker, pfx, strings.ReplaceAll(pfx, "/", "-"), plc.Addr, silent.Addr().String()))
	msgs, err := sub.WaitFor(15*time.Second, func(m []mqtttest.Message) bool { return len(m) > 0 })
	if err != nil {
		t.Fatal("no heartbeat")
	}
	var hb struct {
		Devices        int `json:"devices"`
		DevicesUp      int `json:"devices_up"`
		DevicesPending int `json:"devices_pending"`
	}
	if err := json.Unmarshal(msgs[0].Payload, &hb); err != nil {
		t.Fatal(err)
	}
	if hb.Devices != 2 || hb.DevicesUp != 1 || hb.DevicesPending != 0 {
		t.Errorf("first heartbeat: %s", msgs[0].Payload)
	}
}
