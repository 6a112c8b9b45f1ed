package capture_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/rules"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// opcuaRuleVerdicts is what the shipped OPC UA rules (configs/rules/opcua-
// *.yaml) must raise on each third-party capture: exactly these rules.
var opcuaRuleVerdicts = map[string][]string{
	// The open62541 example client, as user1 (its password in clear text:
	// opcua-password-clear): writes ns=1;s=the.answer twice, calls a
	// method, adds four nodes.
	"icsnpp_open62541_client-server_mainloop":                                 {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-4-InnerDiagInfo":                 {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-ActivateSession-diagInfo":        {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-hasInnerDiagInfo":                {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-hasInnerDiagInfohasAddlInfo":     {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-hasInnerStatusCode":              {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-no-handshake":                    {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-not-localhost-non-standard-port": {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-not-localhost":                   {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_mainloop-withStringTable":                 {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_open62541_client-server_minimal":                                  {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_tests_open62541_client-server_mainloop":                           {"opcua-node-management", "opcua-password-clear"},
	"icsnpp_opcua_with-gap_with-handshake":                                    {"opcua-node-management", "opcua-password-clear"},
	// Reading, browsing, subscribing, discovery: nothing to raise.
	"icsnpp_opcua_with-gap":                                nil,
	"icsnpp_open62541_browse_has_server_idx":               nil,
	"icsnpp_open62541_browse_next":                         nil,
	"icsnpp_open62541_browse_request_with_results":         nil,
	"icsnpp_open62541_browse_with_diagnostic_info":         nil,
	"icsnpp_open62541_client-server-getEndpoints":          nil,
	"icsnpp_open62541_client-server_encrypted":             nil,
	"icsnpp_open62541_create_monitored_items":              nil,
	"icsnpp_open62541_discover_getendpoints_discover_urls": nil,
	"icsnpp_python_opcua-client-server_encrypted":          nil,
	"icsnpp_python_opcua-client-server_minimal":            nil,
	"icsnpp_python_opcua-client-server_minimal-2":          nil,
	// The server's test data holds matrices whose dimensions (2 × 2)
	// disagree with their length (3): malformed by OPC 10000-6 §5.2.2.16
	// (gopcua refuses them too; tshark shows them without comment).
	"icsnpp_open62541_read_service_test_data":              {"opcua-malformed", "opcua-password-clear"},
	"icsnpp_open62541_read_service_test_data_with_history": {"opcua-malformed", "opcua-password-clear"},
	// A regression trace of requests and responses sent the wrong way.
	"icsnpp_pending_overflow": {"opcua-malformed"},
	// Crafted CallRequests whose MethodId cannot be read (they froze
	// Wireshark), in anonymous sessions.
	"iti_opc-ua-ap-method-wireshark-freeze": {"opcua-anonymous-write", "opcua-malformed"},
}

// opcuaRules loads the shipped OPC UA rules, all enabled ones and the
// site ones with test lists.
func opcuaRules(t *testing.T) *rules.Set {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "configs", "rules")
	set, err := rules.Load(filepath.Join(dir, "opcua-writes.yaml"), filepath.Join(dir, "opcua-recon.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// fire runs events through the rules and returns the ids that raised,
// sorted. Both stages of every request go to the engine, as the capture
// emits them: the engine decides which rules see which stage.
func fire(t *testing.T, set *rules.Set, evs []plcwatch.Event) []string {
	t.Helper()
	fired := map[string]bool{}
	eng := rules.NewEngine(set, rules.Options{}, func(a *plcwatch.Alert) { fired[a.Rule.ID] = true })
	for i := range evs {
		eng.Process(&evs[i])
	}
	eng.Close()
	var got []string
	for id := range fired {
		got = append(got, id)
	}
	slices.Sort(got)
	return got
}

func TestOPCUARulesOnCaptures(t *testing.T) {
	set := opcuaRules(t)
	for _, c := range opcuaCaptures {
		want, ok := opcuaRuleVerdicts[c.name]
		if !ok && c.name != "emre_opycua_share" {
			t.Errorf("%s: no verdict: say what the rules must raise on it", c.name)
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			pcap, _, ok := opcuaCapturePaths(t, c.name)
			if !ok {
				t.Skipf("%s.pcap: not in testdata and ../shared/pcaps is absent", c.name)
			}
			evs, _ := decodeOPCUA(t, pcap, c.port)
			if got := fire(t, set, evs); !slices.Equal(got, want) {
				t.Errorf("rules that fired: %v, want %v", got, want)
			}
		})
	}
}

// TestOPCUARulesOnScenarios plays what the captures lack: a browse sweep,
// a password guesser, a write loop, and the synthetic plant (polling,
// publishing, authenticated writes and calls) on which nothing may fire
// but the anonymous sessions' writes.
func TestOPCUARulesOnScenarios(t *testing.T) {
	set := opcuaRules(t)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	decode := func(t *testing.T, write func(w *pcapgen.Writer)) []plcwatch.Event {
		var buf bytes.Buffer
		w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
		write(w)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		cfg := capture.Config{}
		cfg.Defaults()
		var evs []plcwatch.Event
		e := capture.NewEngine(cfg, func(ev *plcwatch.Event) { evs = append(evs, *ev) })
		if err := capture.Read(context.Background(), &buf, e); err != nil {
			t.Fatal(err)
		}
		return evs
	}
	// session opens a connection with a session activated as identity.
	session := func(w *pcapgen.Writer, identity any) (*pcapgen.Conn, *pcapgen.UACP, *pcapgen.UACP, *ua.NodeID) {
		c := w.Conn(netipPort("10.0.0.66:51000"), netipPort("10.0.0.10:4840"), t0, 1000)
		c.Handshake()
		var c2s, s2c pcapgen.UACP
		c2s.Channel, s2c.Channel, c2s.Token, s2c.Token = 4, 4, 1, 1
		tok := ua.NewNumericNodeID(0, 777)
		c.Send(pcapgen.ToServer, c2s.Message(1, pcapgen.Encode(&ua.ActivateSessionRequest{RequestHeader: pcapgen.RequestHeader(tok, 1, t0),
			ClientSignature: &ua.SignatureData{}, UserIdentityToken: ua.NewExtensionObject(identity), UserTokenSignature: &ua.SignatureData{}}), 0))
		c.Send(pcapgen.ToClient, s2c.Message(1, pcapgen.Encode(&ua.ActivateSessionResponse{ResponseHeader: pcapgen.ResponseHeader(1, 0, t0)}), 0))
		return c, &c2s, &s2c, tok
	}
	t.Run("browse sweep", func(t *testing.T) {
		evs := decode(t, func(w *pcapgen.Writer) {
			c, c2s, s2c, tok := session(w, &ua.UserNameIdentityToken{UserName: "viewer"})
			for i := uint32(0); i < 40; i++ {
				c.Send(pcapgen.ToServer, c2s.Message(10+i, pcapgen.Encode(&ua.BrowseRequest{RequestHeader: pcapgen.RequestHeader(tok, 10+i, t0),
					View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, NodesToBrowse: []*ua.BrowseDescription{
						{NodeID: ua.NewNumericNodeID(2, 5000+i), ReferenceTypeID: ua.NewNumericNodeID(0, 33), IncludeSubtypes: true, ResultMask: 63}}}), 0))
				c.Send(pcapgen.ToClient, s2c.Message(10+i, pcapgen.Encode(&ua.BrowseResponse{ResponseHeader: pcapgen.ResponseHeader(10+i, 0, t0)}), 0))
			}
		})
		if got := fire(t, set, evs); !slices.Equal(got, []string{"opcua-browse-sweep"}) {
			t.Errorf("fired %v", got)
		}
	})
	t.Run("password guessing", func(t *testing.T) {
		evs := decode(t, func(w *pcapgen.Writer) {
			c, c2s, s2c, tok := session(w, &ua.AnonymousIdentityToken{})
			for i := uint32(0); i < 6; i++ {
				c.Send(pcapgen.ToServer, c2s.Message(20+i, pcapgen.Encode(&ua.ActivateSessionRequest{RequestHeader: pcapgen.RequestHeader(tok, 20+i, t0),
					ClientSignature: &ua.SignatureData{}, UserIdentityToken: ua.NewExtensionObject(&ua.UserNameIdentityToken{UserName: "admin", Password: []byte{byte('a' + i)}}),
					UserTokenSignature: &ua.SignatureData{}}), 0))
				c.Send(pcapgen.ToClient, s2c.Message(20+i, pcapgen.Encode(&ua.ServiceFault{ResponseHeader: pcapgen.ResponseHeader(20+i, ua.StatusBadIdentityTokenRejected, t0)}), 0))
			}
		})
		// The guesses cross the wire in clear text too.
		if got := fire(t, set, evs); !slices.Equal(got, []string{"opcua-access-denied-burst", "opcua-password-clear"}) {
			t.Errorf("fired %v", got)
		}
	})
	t.Run("write loop", func(t *testing.T) {
		evs := decode(t, func(w *pcapgen.Writer) {
			c, c2s, s2c, tok := session(w, &ua.UserNameIdentityToken{UserName: "operator"})
			for i := uint32(0); i < 60; i++ {
				c.Send(pcapgen.ToServer, c2s.Message(30+i, pcapgen.Encode(&ua.WriteRequest{RequestHeader: pcapgen.RequestHeader(tok, 30+i, t0),
					NodesToWrite: []*ua.WriteValue{{NodeID: ua.NewStringNodeID(2, "Valve7.Open"), AttributeID: ua.AttributeIDValue,
						Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(i%2 == 0)}}}}), 0))
				c.Send(pcapgen.ToClient, s2c.Message(30+i, pcapgen.Encode(&ua.WriteResponse{ResponseHeader: pcapgen.ResponseHeader(30+i, 0, t0), Results: []ua.StatusCode{0}}), 0))
			}
		})
		if got := fire(t, set, evs); !slices.Equal(got, []string{"opcua-write-burst"}) {
			t.Errorf("fired %v", got)
		}
	})
	t.Run("site rules", func(t *testing.T) {
		// opcua-site.yaml with its rules enabled and the lists filled: a
		// workstation allowed to write (10.0.0.5) and a server that must
		// be secured (10.0.0.10). 10.0.0.66 writes over a channel of
		// policy None to it.
		dir := t.TempDir()
		site, err := os.ReadFile(filepath.Join(repoRoot(t), "configs", "rules", "opcua-site.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		site = bytes.ReplaceAll(site, []byte("enabled: false"), []byte("enabled: true"))
		lists := "lists:\n  engineering_workstations: [10.0.0.5]\n  opcua_secure_servers: [10.0.0.10]\n"
		for name, body := range map[string][]byte{"opcua-site.yaml": site, "lists.yaml": []byte(lists)} {
			if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		siteSet, err := rules.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		evs := decode(t, func(w *pcapgen.Writer) {
			c, c2s, s2c, tok := session(w, &ua.UserNameIdentityToken{UserName: "operator"})
			c.Send(pcapgen.ToServer, c2s.Open(2, pcapgen.Encode(&ua.OpenSecureChannelRequest{RequestHeader: pcapgen.RequestHeader(nil, 2, t0),
				RequestType: ua.SecurityTokenRequestTypeRenew, SecurityMode: ua.MessageSecurityModeNone, ClientNonce: []byte{}, RequestedLifetime: 60000})))
			c.Send(pcapgen.ToClient, s2c.Open(2, pcapgen.Encode(&ua.OpenSecureChannelResponse{ResponseHeader: pcapgen.ResponseHeader(2, 0, t0),
				SecurityToken: &ua.ChannelSecurityToken{ChannelID: 4, TokenID: 2}, ServerNonce: []byte{}})))
			c.Send(pcapgen.ToServer, c2s.Message(3, pcapgen.Encode(&ua.WriteRequest{RequestHeader: pcapgen.RequestHeader(tok, 3, t0),
				NodesToWrite: []*ua.WriteValue{{NodeID: ua.NewStringNodeID(2, "Setpoint"), AttributeID: ua.AttributeIDValue,
					Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(80.0)}}}}), 0))
			c.Send(pcapgen.ToClient, s2c.Message(3, pcapgen.Encode(&ua.WriteResponse{ResponseHeader: pcapgen.ResponseHeader(3, 0, t0), Results: []ua.StatusCode{0}}), 0))
		})
		if got := fire(t, siteSet, evs); !slices.Equal(got, []string{"opcua-security-none", "opcua-write-unauthorized-host"}) {
			t.Errorf("fired %v", got)
		}
	})
	t.Run("synthetic plant", func(t *testing.T) {
		evs := decode(t, func(w *pcapgen.Writer) {
			o := pcapgen.DefaultOPCUA
			o.Packets = 20000
			pcapgen.OPCUA(w, o)
		})
		// Its authenticated sessions send their passwords unencrypted
		// (pcapgen's user name tokens name no encryption algorithm).
		if got := fire(t, set, evs); !slices.Equal(got, []string{"opcua-anonymous-write", "opcua-password-clear"}) {
			t.Errorf("fired %v, want only the anonymous sessions' writes and the passwords in clear text", got)
		}
	})
}

func netipPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestOPCUARulesDoNotWaitForResponses: with EarlyRequests (as the daemon
// and replay with rules run the engine), a Write, a Call and an
// ActivateSession to a server that never answers raise their alerts on
// the packet that carried them, not when the response timeout gives up on
// them (issue 9 §4, DESIGN.md: a request's alert never waits for its
// response). Without EarlyRequests the same alerts wait for the timeout:
// the setting is what makes the difference.
func TestOPCUARulesDoNotWaitForResponses(t *testing.T) {
	set := opcuaRules(t)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	c := w.Conn(netipPort("10.0.0.66:51000"), netipPort("10.0.0.10:4840"), t0, 1000)
	c.Handshake()
	var c2s, s2c pcapgen.UACP
	c2s.Channel, s2c.Channel, c2s.Token, s2c.Token = 4, 4, 1, 1
	tok := ua.NewNumericNodeID(0, 777)
	c.Send(pcapgen.ToServer, c2s.Message(1, pcapgen.Encode(&ua.ActivateSessionRequest{RequestHeader: pcapgen.RequestHeader(tok, 1, t0),
		ClientSignature: &ua.SignatureData{}, UserIdentityToken: ua.NewExtensionObject(&ua.AnonymousIdentityToken{}), UserTokenSignature: &ua.SignatureData{}}), 0))
	c.Send(pcapgen.ToClient, s2c.Message(1, pcapgen.Encode(&ua.ActivateSessionResponse{ResponseHeader: pcapgen.ResponseHeader(1, 0, t0)}), 0))
	// From here the server answers nothing.
	c.Time = t0.Add(time.Second)
	c.Send(pcapgen.ToServer, c2s.Message(2, pcapgen.Encode(&ua.WriteRequest{RequestHeader: pcapgen.RequestHeader(tok, 2, t0),
		NodesToWrite: []*ua.WriteValue{{NodeID: ua.NewStringNodeID(2, "Setpoint"), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(80.0)}}}}), 0))
	c.Time = t0.Add(2 * time.Second)
	c.Send(pcapgen.ToServer, c2s.Message(3, pcapgen.Encode(&ua.ActivateSessionRequest{RequestHeader: pcapgen.RequestHeader(tok, 3, t0),
		ClientSignature: &ua.SignatureData{}, UserIdentityToken: ua.NewExtensionObject(&ua.UserNameIdentityToken{UserName: "admin", Password: []byte("s3cret")}),
		UserTokenSignature: &ua.SignatureData{}}), 0))
	// The client goes on talking to the silent server for a minute.
	for i := 1; i <= 60; i++ {
		c.Time = t0.Add(time.Duration(2+i) * time.Second)
		c.Segment(pcapgen.ToServer, c.Next(pcapgen.ToServer), pcapgen.ACK, nil)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	pcap := buf.Bytes()

	type raised struct {
		at         uint64 // the packet being handled when the alert was raised
		frame      uint64 // the event's: the packet that carried the request
		service    string
		unanswered string
	}
	run := func(early bool) map[string]raised {
		cfg := capture.Config{EarlyRequests: early}
		cfg.Defaults()
		got := map[string]raised{}
		var e *capture.Engine
		eng := rules.NewEngine(set, rules.Options{}, func(a *plcwatch.Alert) {
			got[a.Rule.ID] = raised{at: e.Stats().Packets, frame: a.Event.Frame, service: a.Event.Service, unanswered: a.Event.Unanswered}
		})
		e = capture.NewEngine(cfg, func(ev *plcwatch.Event) { eng.Process(ev) })
		if err := capture.Read(context.Background(), bytes.NewReader(pcap), e); err != nil {
			t.Fatal(err)
		}
		eng.Close()
		return got
	}
	// Handshake 3 packets, the anonymous activation and its answer, then
	// the Write (packet 6) and the user's ActivateSession (packet 7).
	want := map[string]uint64{"opcua-anonymous-write": 6, "opcua-password-clear": 7}
	service := map[string]string{"opcua-anonymous-write": "WriteRequest", "opcua-password-clear": "ActivateSessionRequest"}
	early := run(true)
	for id, frame := range want {
		a, ok := early[id]
		if !ok {
			t.Errorf("early: %s did not fire (fired: %v)", id, early)
			continue
		}
		if a.at != frame || a.frame != frame || a.service != service[id] || a.unanswered != "" {
			t.Errorf("early: %s raised at packet %d on %s of frame %d (unanswered %q), want at once, at packet %d", id, a.at, a.service, a.frame, a.unanswered, frame)
		}
	}
	late := run(false)
	for id, frame := range want {
		a, ok := late[id]
		if !ok || a.at <= frame+4 || a.frame != frame || a.unanswered != plcwatch.UnansweredTimeout {
			t.Errorf("without EarlyRequests: %s raised at packet %d on frame %d (unanswered %q, fired %v), want after the timeout", id, a.at, a.frame, a.unanswered, ok)
		}
	}
}
