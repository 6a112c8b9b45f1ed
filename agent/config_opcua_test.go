package agent

import (
	"errors"
	"strings"
	"testing"
)

// TestOPCUAProblemsHavePositions: the opcua section is decoded strictly
// and every problem is at its value's line and column, in the user's terms.
func TestOPCUAProblemsHavePositions(t *testing.T) {
	text := `rules: {paths: [r]}
opcua:
  pki: {dir: pki, cert_file: own.der}
  devices:
    - name: line-3
      endpoint: http://10.0.1.20:4840
      security: {policy: Basic256, mode: Encrypt}
      auth: {username: plcwatch}
      interval: 5
      tags:
        - {name: a, node: "ns=2;x=1"}
        - {name: b, node: "nsu=urn:x"}
        - {name: c, node: "ns=2;s=c", mode: poll}
        - {name: d, node: "ns=2;s=d", deadband: relative, queue_size: 0}
        - {name: e, node: "ns=2;s=e", mode: read, deadband: absolute}
        - {name: f, node: "ns=2;s=f", sampling: 1s}
`
	want := []string{
		`3:30: opcua.pki.cert_file: cert_file and key_file go together`,
		`6:17: opcua.devices[0].endpoint: "http://10.0.1.20:4840": want opc.tcp://host:port/path`,
		`7:42: opcua.devices[0].security.mode: "Encrypt": want auto, None, Sign or SignAndEncrypt`,
		`8:13: opcua.devices[0].auth: username "plcwatch" needs password_file or password_env`,
		`9:17: opcua.devices[0].interval: 5: want a duration with a unit`,
		`11:27: opcua.devices[0].tags[0].node: "ns=2;x=1": want ns=<index>;s=<name>`,
		`12:27: opcua.devices[0].tags[1].node: "nsu=urn:x": want nsu=<namespace URI>;s=<name>`,
		`13:45: opcua.devices[0].tags[2].mode: "poll": want subscribe or read`,
		`14:49: opcua.devices[0].tags[3].deadband: "relative": want none, absolute or percent`,
		`14:71: opcua.devices[0].tags[3].queue_size: 0: want 1-65535`,
		`15:45: opcua.devices[0].tags[4].mode: sampling_interval, queue_size, discard_oldest and deadband are for mode subscribe`,
		`16:39: unknown key "sampling" in opcua.devices[0].tags[5]`,
	}
	_, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(text))
	var ce ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want problems, got %v", err)
	}
	var got []string
	for _, p := range ce {
		got = append(got, strings.TrimPrefix(p.Error(), "/etc/plcwatch/test.yaml:"))
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Errorf("missing %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}

// TestPortsOutOfRange: every address the agent dials or listens on has
// its port checked at its value's position (issue 10: an OPC UA endpoint
// with port 99999 passed config check and run retried forever).
func TestPortsOutOfRange(t *testing.T) {
	text := `rules: {paths: [r]}
http: {listen: "127.0.0.1:99999"}
mqtt: {brokers: ["tcp://127.0.0.1:0", "tcp://127.0.0.1:1883", "ssl://:8883"]}
modbus:
  devices:
    - {name: m, address: "10.0.0.9:70000", tags: [{name: t, register: "40001"}]}
opcua:
  devices:
    - name: a
      endpoint: opc.tcp://127.0.0.1:99999
      tags: [{name: t, node: "ns=2;s=t"}]
    - name: b
      endpoint: opc.tcp://127.0.0.1:0/UA
      tags: [{name: t, node: "ns=2;s=t"}]
    - name: c
      endpoint: opc.tcp://:4840
      tags: [{name: t, node: "ns=2;s=t"}]
    - name: d
      endpoint: opc.tcp://[fe80::1]:65535/UA
      tags: [{name: t, node: "ns=2;s=t"}]
`
	want := []string{
		`2:16: http.listen: "127.0.0.1:99999": port "99999": want 0-65535`,
		`3:18: mqtt.brokers[0]: "tcp://127.0.0.1:0": port "0": want 1-65535`,
		`3:63: mqtt.brokers[2]: "ssl://:8883": no host`,
		`6:26: modbus.devices[0].address: "10.0.0.9:70000": port "70000": want 1-65535`,
		`10:17: opcua.devices[0].endpoint: "opc.tcp://127.0.0.1:99999": port "99999": want 1-65535`,
		`13:17: opcua.devices[1].endpoint: "opc.tcp://127.0.0.1:0/UA": port "0": want 1-65535`,
		`16:17: opcua.devices[2].endpoint: "opc.tcp://:4840": no host`,
	}
	_, err := ParseConfig("/etc/plcwatch/test.yaml", []byte(text))
	var ce ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want problems, got %v", err)
	}
	var got []string
	for _, p := range ce {
		got = append(got, strings.TrimPrefix(p.Error(), "/etc/plcwatch/test.yaml:"))
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Errorf("missing %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}
