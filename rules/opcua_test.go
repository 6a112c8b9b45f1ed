package rules

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Issue 11: the OPC UA match keys and when fields, on hand-made events of
// the kinds the OPC UA dissector emits.

func uaEvent(op plcwatch.Op, service, node string) plcwatch.Event {
	return plcwatch.Event{Time: t0, Source: plcwatch.Wire, Protocol: plcwatch.ProtoOPCUA, Op: op, Service: service, Node: node,
		Client: netip.MustParseAddrPort("10.0.0.7:50000"), Server: netip.MustParseAddrPort("10.0.1.2:4840"),
		Device: "ua-1", Channel: 7, RequestID: 42, SecurityPolicy: "None", SecurityMode: "None",
		Identity: "anonymous", SessionName: "s1", Endpoint: "opc.tcp://10.0.1.2:4840", Value: plcwatch.NoValue}
}

const uaRules = `
lists:
  hmis: [10.0.0.5]
rules:
  - id: tank-write
    title: write to a tank node
    severity: high
    match: {protocol: opcua, op: write, node: "ns=2;s=Tank.*"}
  - id: ns3
    title: namespace 3 by index
    severity: low
    match: {namespace: 3}
  - id: ns-uri
    title: a namespace by URI
    severity: low
    match: {namespace: "urn:plant:tags"}
  - id: ns0
    title: namespace 0
    severity: low
    match: {protocol: opcua, namespace: 0}
  - id: manage
    title: node management
    severity: high
    match: {service: ["AddNodes*", "Delete*"]}
  - id: insecure
    title: security None
    severity: medium
    match: {security_mode: None, security_policy: None, op: session}
  - id: anonymous-writer
    title: anonymous session writes
    severity: high
    match: {identity: anonymous, op: [write, call]}
  - id: user-bob
    title: bob
    severity: low
    match: {user: "bo*"}
  - id: denied
    title: access denied
    severity: medium
    match: {status: [BadUserAccessDenied, BadIdentityToken*]}
  - id: status-code
    title: a status by number
    severity: low
    match: {status: 0x80340000}
  - id: when-fields
    title: the new fields in when
    severity: low
    when: >-
      value_type == "Double" and attribute == 13 and index_range == "1:2" and request_id == 42 and index == 1
      and channel == 7 and session_name == "s1" and endpoint startsWith "opc.tcp://" and thumbprint == ""
      and security_policy == "None" and security_mode == "None" and identity == "anonymous" and user == ""
      and namespace == "2" and has_value and value > 80 and source_time.IsZero()
  - id: browse-sweep
    title: many nodes browsed
    severity: low
    match: {op: browse}
    threshold: {count: 20, window: 1m, distinct: node, by: [client, server]}
  - id: bad-burst
    title: Bad statuses per user
    severity: low
    match: {status: "Bad*"}
    threshold: {count: 3, window: 1m, by: [client, user]}
`

func TestOPCUAKeys(t *testing.T) {
	set := loadText(t, uaRules)
	write := uaEvent(plcwatch.OpWrite, "WriteRequest", "ns=2;s=Tank.Level")
	write.Attribute, write.IndexRange, write.ValueType, write.Value, write.Index = 13, "1:2", "Double", 85.5, 1
	ns3 := uaEvent(plcwatch.OpRead, "ReadRequest", "ns=3;i=1001")
	uri := uaEvent(plcwatch.OpRead, "ReadRequest", "nsu=urn:plant:tags;s=Pump.Speed")
	ns0 := uaEvent(plcwatch.OpBrowse, "BrowseRequest", "i=85")
	add := uaEvent(plcwatch.OpManage, "AddNodesRequest", "")
	session := uaEvent(plcwatch.OpSession, "ActivateSessionRequest", "")
	call := uaEvent(plcwatch.OpCall, "CallRequest", "ns=2;s=Reset")
	call.Identity, call.User = "username", "bob"
	denied := uaEvent(plcwatch.OpSession, "ActivateSessionRequest", "")
	denied.Identity, denied.User, denied.Status, denied.StatusName = "username", "mallory", 0x801F0000, "BadUserAccessDenied"
	code := uaEvent(plcwatch.OpRead, "ReadRequest", "")
	code.Status = 0x80340000
	tests := []struct {
		name string
		ev   plcwatch.Event
		want []string
	}{
		{"write to a tank node, anonymous", write, []string{"anonymous-writer", "tank-write", "when-fields"}},
		{"namespace index", ns3, []string{"ns3"}},
		{"namespace URI", uri, []string{"ns-uri"}},
		{"namespace 0", ns0, []string{"ns0"}},
		{"node management", add, []string{"manage"}},
		{"security None", session, []string{"insecure"}},
		{"call by bob", call, []string{"user-bob"}},
		{"access denied", denied, []string{"denied", "insecure"}},
		{"status by number", code, []string{"status-code"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, r := run(t, set, []plcwatch.Event{tt.ev})
			var got []string
			for id := range r.byRule() {
				got = append(got, id)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("fired %v, want %v", got, tt.want)
			}
			for _, h := range e.Hits() {
				if h.Errors > 0 {
					t.Errorf("%s: %d expression errors", h.ID, h.Errors)
				}
			}
		})
	}
}

func TestOPCUAStatefulKeys(t *testing.T) {
	set := loadText(t, uaRules)
	var evs []plcwatch.Event
	for i := 0; i < 25; i++ {
		ev := uaEvent(plcwatch.OpBrowse, "BrowseRequest", fmt.Sprintf("ns=2;i=%d", i))
		ev.Time = t0.Add(time.Duration(i) * time.Second)
		evs = append(evs, ev)
	}
	for i := 0; i < 4; i++ {
		ev := uaEvent(plcwatch.OpSession, "ActivateSessionRequest", "")
		ev.Time = t0.Add(time.Duration(i) * time.Second)
		ev.Identity, ev.User, ev.Status, ev.StatusName = "username", "admin", 0x80210000, "BadIdentityTokenRejected"
		evs = append(evs, ev)
	}
	_, r := run(t, set, evs)
	if got := r.byRule(); got["browse-sweep"] != 1 || got["bad-burst"] != 1 {
		t.Errorf("alerts %v, want one browse-sweep and one bad-burst", got)
	}
	stages := map[string]string{}
	for _, rl := range set.Rules {
		stages[rl.ID] = rl.Stage()
	}
	for id, want := range map[string]string{"tank-write": "request", "denied": "response", "status-code": "response",
		"bad-burst": "response", "browse-sweep": "request", "insecure": "request"} {
		if stages[id] != want {
			t.Errorf("%s: stage %s, want %s", id, stages[id], want)
		}
	}
}

func TestLintKnowsOPCUAKeys(t *testing.T) {
	tests := []struct{ text, want string }{
		{"match: {securty_mode: None}", `unknown key "securty_mode" in match (did you mean "security_mode"?)`},
		{"match: {identity: anonymus}", `identity "anonymus": want anonymous, username, certificate, issued (did you mean "anonymous"?)`},
		{"match: {security_mode: none}", `security_mode "none": want None, Sign, SignAndEncrypt (did you mean "None"?)`},
		{"match: {namespace: \"a;b\"}", `namespace "a;b": want an index (0-65535) or a namespace URI`},
		{"match: {op: brwose}", `op "brwose": want one of read, write, diagnostic, identify, other, session, call, status, browse, manage, asset (did you mean "browse"?)`},
		{"when: statusname == \"x\"", `when: unknown name statusname (did you mean status_name?)`},
		{"when: int(values[0]) % 2 == 1 and valeu > 1", `when: unknown name valeu (did you mean value?)`},
		{"threshold: {count: 2, window: 1s, by: [sesion_name]}", `by: "sesion_name" is not an event field (did you mean "session_name"?)`},
		{"fold: {window: 1m, by: [clinet]}", `fold by: "clinet" is not an event field (did you mean "client"?)`},
		{"change: {count: 3}", `count needs a window`},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "r.yaml")
			text := "rules:\n  - id: a\n    title: t\n    severity: low\n    " + tt.text + "\n"
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestStatusNotThereIsNotGood: an OPC UA request never answered carries no
// status (issue 11 review: absent, not 0). Neither the status match key
// nor a when that names status takes it for Good; has_status speaks of it.
func TestStatusNotThereIsNotGood(t *testing.T) {
	set := loadText(t, `
rules:
  - id: good-key
    title: answered Good, by the match key
    severity: low
    match: {protocol: opcua, status: Good}
  - id: good-when
    title: answered Good, by when
    severity: low
    match: {protocol: opcua}
    when: status == 0
  - id: no-status
    title: no status at all
    severity: low
    match: {protocol: opcua}
    when: not has_status
`)
	answered := uaEvent(plcwatch.OpWrite, "WriteRequest", "ns=2;s=A")
	never := answered
	never.Absent |= plcwatch.FieldStatus
	never.Unanswered = plcwatch.UnansweredTimeout
	for _, tc := range []struct {
		name string
		ev   plcwatch.Event
		want map[string]int
	}{
		{"answered Good", answered, map[string]int{"good-key": 1, "good-when": 1}},
		{"never answered", never, map[string]int{"no-status": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := run(t, set, split(tc.ev))
			if got := r.byRule(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("fired %v, want %v", got, tc.want)
			}
		})
	}
}
