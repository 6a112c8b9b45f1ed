package capture_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// The OPC UA captures of the shared set, with the server port when it is
// not 4840 (tshark needed a decode-as for those too). All of them are
// BSD-3-Clause (cisagov/icsnpp-opcua-binary) or CC BY 4.0 (ITI) and are
// copied to testdata/pcaps/opcua, except emre_opycua_share, which states no
// licence and is read from the shared folder when it is there.
var opcuaCaptures = []struct {
	name string
	port uint16
}{
	{"emre_opycua_share", 4840},
	{"icsnpp_opcua_with-gap", 4840},
	{"icsnpp_opcua_with-gap_with-handshake", 4840},
	{"icsnpp_open62541_browse_has_server_idx", 4840},
	{"icsnpp_open62541_browse_next", 4840},
	{"icsnpp_open62541_browse_request_with_results", 4840},
	{"icsnpp_open62541_browse_with_diagnostic_info", 4840},
	{"icsnpp_open62541_client-server-getEndpoints", 4840},
	{"icsnpp_open62541_client-server_encrypted", 4840},
	{"icsnpp_open62541_client-server_mainloop-4-InnerDiagInfo", 4840},
	{"icsnpp_open62541_client-server_mainloop-ActivateSession-diagInfo", 4840},
	{"icsnpp_open62541_client-server_mainloop-hasInnerDiagInfo", 4840},
	{"icsnpp_open62541_client-server_mainloop-hasInnerDiagInfohasAddlInfo", 4840},
	{"icsnpp_open62541_client-server_mainloop-hasInnerStatusCode", 4840},
	{"icsnpp_open62541_client-server_mainloop-no-handshake", 4840},
	{"icsnpp_open62541_client-server_mainloop-not-localhost-non-standard-port", 48010},
	{"icsnpp_open62541_client-server_mainloop-not-localhost", 4840},
	{"icsnpp_open62541_client-server_mainloop-withStringTable", 4840},
	{"icsnpp_open62541_client-server_mainloop", 4840},
	{"icsnpp_open62541_client-server_minimal", 4840},
	{"icsnpp_open62541_create_monitored_items", 4840},
	{"icsnpp_open62541_discover_getendpoints_discover_urls", 4840},
	{"icsnpp_open62541_read_service_test_data", 4840},
	{"icsnpp_open62541_read_service_test_data_with_history", 4840},
	{"icsnpp_pending_overflow", 4840},
	{"icsnpp_python_opcua-client-server_encrypted", 4840},
	{"icsnpp_python_opcua-client-server_minimal-2", 4840},
	{"icsnpp_python_opcua-client-server_minimal", 4840},
	{"icsnpp_tests_open62541_client-server_mainloop", 4840},
	{"iti_opc-ua-ap-method-wireshark-freeze", 12001},
}

// opcuaDisagreements lists every frame where plcwatch's list of service
// requests differs from tshark's, and why plcwatch is right. The test
// fails on a disagreement missing here and on a listed one that no longer
// happens.
var opcuaDisagreements = map[string]map[int]string{}

// opcuaCapturePaths finds a capture and its truth: testdata first, then
// the shared set.
func opcuaCapturePaths(t testing.TB, name string) (pcap, truthDir string, ok bool) {
	root := repoRoot(t)
	pcap = filepath.Join(root, "testdata", "pcaps", "opcua", name+".pcap")
	if _, err := os.Stat(pcap); err == nil {
		return pcap, filepath.Join(root, "testdata", "pcaps", "truth"), true
	}
	shared := os.Getenv("PLCWATCH_SHARED_PCAPS")
	if shared == "" {
		shared = filepath.Join(root, "..", "shared", "pcaps")
	}
	pcap = filepath.Join(shared, "opcua", name+".pcap")
	if _, err := os.Stat(pcap); err != nil {
		return "", "", false
	}
	return pcap, filepath.Join(shared, "truth"), true
}

// decodeOPCUA runs a capture through an engine listening for OPC UA on
// port and returns every event, both stages included (requests are
// emitted early, as the daemon runs the engine).
func decodeOPCUA(t testing.TB, path string, port uint16) ([]plcwatch.Event, capture.Stats) {
	cfg := capture.Config{OPCUAPorts: []uint16{port}, EarlyRequests: true}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var evs []plcwatch.Event
	e := capture.NewEngine(cfg, func(ev *plcwatch.Event) { evs = append(evs, *ev) })
	if err := capture.ReadFile(context.Background(), path, e); err != nil {
		t.Fatal(err)
	}
	return evs, e.Stats()
}

// requestServiceIDs are the binary encoding ids of the request messages
// (OPC 10000-4, as tshark prints opcua.servicenodeid.numeric).
var requestServiceIDs = map[string]int{
	"FindServersRequest": 422, "FindServersOnNetworkRequest": 12208, "GetEndpointsRequest": 428,
	"RegisterServerRequest": 437, "RegisterServer2Request": 12211, "OpenSecureChannelRequest": 446,
	"CloseSecureChannelRequest": 452, "CreateSessionRequest": 461, "ActivateSessionRequest": 467,
	"CloseSessionRequest": 473, "CancelRequest": 479, "AddNodesRequest": 488, "AddReferencesRequest": 494,
	"DeleteNodesRequest": 500, "DeleteReferencesRequest": 506, "BrowseRequest": 527, "BrowseNextRequest": 533,
	"TranslateBrowsePathsToNodeIdsRequest": 554, "RegisterNodesRequest": 560, "UnregisterNodesRequest": 566,
	"QueryFirstRequest": 615, "QueryNextRequest": 621, "ReadRequest": 631, "HistoryReadRequest": 664,
	"WriteRequest": 673, "HistoryUpdateRequest": 700, "CallRequest": 712, "CreateMonitoredItemsRequest": 751,
	"ModifyMonitoredItemsRequest": 763, "SetMonitoringModeRequest": 769, "SetTriggeringRequest": 775,
	"DeleteMonitoredItemsRequest": 781, "CreateSubscriptionRequest": 787, "ModifySubscriptionRequest": 793,
	"SetPublishingModeRequest": 799, "PublishRequest": 826, "RepublishRequest": 832,
	"TransferSubscriptionsRequest": 841, "DeleteSubscriptionsRequest": 847,
}

func isRequestID(id int) bool {
	for _, v := range requestServiceIDs {
		if v == id {
			return true
		}
	}
	return false
}

// opcuaRequests returns, per frame, the service ids of the requests
// plcwatch decoded (one per request, not per operation), sorted.
func opcuaRequests(evs []plcwatch.Event) map[int][]int {
	out := map[int][]int{}
	type key struct {
		conn  uint64
		frame uint64
		rqid  uint32
	}
	seen := map[key]bool{}
	for _, ev := range evs {
		if ev.Stage == plcwatch.StageRequest || ev.Orphan || ev.Protocol != plcwatch.ProtoOPCUA {
			continue
		}
		id, ok := requestServiceIDs[ev.Service]
		if !ok {
			if n, err := strconv.Atoi(strings.TrimPrefix(ev.Service, "i=")); err == nil && strings.HasPrefix(ev.Service, "i=") {
				id = n // a service plcwatch does not know, by its id
			} else {
				continue
			}
		}
		k := key{ev.Conn, ev.Frame, ev.RequestID}
		if seen[k] {
			continue // the second operation of a Write or Call
		}
		seen[k] = true
		out[int(ev.Frame)] = append(out[int(ev.Frame)], id)
	}
	for f := range out {
		sort.Ints(out[f])
	}
	return out
}

func TestOPCUAAgreesWithTshark(t *testing.T) {
	for _, c := range opcuaCaptures {
		t.Run(c.name, func(t *testing.T) {
			pcap, truthDir, ok := opcuaCapturePaths(t, c.name)
			if !ok {
				t.Skipf("%s.pcap: not in testdata (its licence does not allow a copy) and ../shared/pcaps is absent", c.name)
			}
			evs, st := decodeOPCUA(t, pcap, c.port)
			if st.OPCUA.Panics != 0 {
				t.Errorf("gopcua panicked %d times", st.OPCUA.Panics)
			}
			// The open62541 client of these captures activates its
			// session as user1 with the password "password", in clear
			// text on the wire: it must not be in any event (the key
			// password_clear, which says so, aside).
			for _, ev := range evs {
				js := strings.ReplaceAll(string(ev.AppendJSON(nil)), `"password_clear":true`, "")
				for _, secret := range []string{"password", "70617373776f7264", "cGFzc3dvcmQ"} {
					if strings.Contains(js, secret) {
						t.Fatalf("a password is in an event: %s", js)
					}
				}
			}
			rows := tsharkRows(t, filepath.Join(truthDir, c.name+".tsv"))
			port := strconv.Itoa(int(c.port))
			want := map[int][]int{}
			encrypted := map[int]bool{}
			for _, row := range rows {
				if row["tcp.dstport"] != port {
					continue
				}
				f, _ := strconv.Atoi(row["frame.number"])
				if row["opcua.servicenodeid.numeric"] == "" && strings.Contains(row["_ws.col.Info"], "ServiceId 0") {
					encrypted[f] = true
				}
				for _, s := range strings.Split(row["opcua.servicenodeid.numeric"], "|") {
					if id, err := strconv.Atoi(s); err == nil && isRequestID(id) {
						want[f] = append(want[f], id)
					}
				}
				sort.Ints(want[f])
			}
			got := opcuaRequests(evs)
			frames := map[int]bool{}
			for f := range want {
				frames[f] = true
			}
			for f := range got {
				frames[f] = true
			}
			var order []int
			for f := range frames {
				order = append(order, f)
			}
			sort.Ints(order)
			listed := opcuaDisagreements[c.name]
			total := 0
			seen := map[int]bool{}
			for _, f := range order {
				total += len(want[f])
				if fmt.Sprint(want[f]) == fmt.Sprint(got[f]) {
					continue
				}
				seen[f] = true
				if _, ok := listed[f]; ok {
					continue
				}
				t.Errorf("frame %d: tshark requests %v, plcwatch %v", f, want[f], got[f])
			}
			for f, why := range listed {
				if !seen[f] {
					t.Errorf("frame %d is listed as a disagreement (%s) but plcwatch and tshark now agree: update the list", f, why)
				}
			}
			for f := range encrypted {
				if len(got[f]) > 0 {
					t.Errorf("frame %d is encrypted (tshark: ServiceId 0) but plcwatch decoded %v", f, got[f])
				}
			}
			checkResponses(t, rows, port, evs)
			checkWrites(t, filepath.Join(truthDir, c.name+".writes.tsv"), evs)
			checkCalls(t, filepath.Join(truthDir, c.name+".calls.tsv"), evs)
			t.Logf("%d requests in %d frames agree; %d encrypted frames; %d listed disagreements", total, len(want), len(encrypted), len(listed))
		})
	}
}

// checkResponses checks that every response tshark decoded answered a
// request plcwatch paired (same client port and request id), and that a
// Bad ServiceResult (a ServiceFault among them) is the request's status.
func checkResponses(t *testing.T, rows []map[string]string, port string, evs []plcwatch.Event) {
	type key struct {
		client uint16
		rqid   uint32
	}
	answered := map[key]*plcwatch.Event{}
	for i := range evs {
		ev := &evs[i]
		if ev.Stage == plcwatch.StageResponse && ev.Unanswered == "" && ev.Index == 0 {
			answered[key{ev.Client.Port(), ev.RequestID}] = ev
		}
	}
	for _, row := range rows {
		if row["tcp.srcport"] != port || row["opcua.servicenodeid.numeric"] == "" || row["opcua.transport.type"] == "OPN" {
			continue
		}
		cport, _ := strconv.Atoi(row["tcp.dstport"])
		rqids := strings.Split(row["opcua.security.rqid"], "|")
		results := strings.Split(row["opcua.ServiceResult"], "|")
		for i, r := range rqids {
			id, _ := strconv.ParseUint(r, 10, 32)
			ev, ok := answered[key{uint16(cport), uint32(id)}]
			if !ok {
				// A response to a request before the capture began is an
				// orphan in plcwatch too.
				if !hasOrphan(evs, uint16(cport), uint32(id)) {
					t.Errorf("frame %s: response to request %d: plcwatch has neither its request answered nor an orphan", row["frame.number"], id)
				}
				continue
			}
			if i < len(results) {
				res := num(results[i])
				if res&0x80000000 != 0 && uint64(ev.Status) != res {
					t.Errorf("frame %s: request %d: ServiceResult 0x%08X, plcwatch status 0x%08X (%s)", row["frame.number"], id, res, ev.Status, ev.StatusName)
				}
			}
		}
	}
}

func hasOrphan(evs []plcwatch.Event, cport uint16, rqid uint32) bool {
	for _, ev := range evs {
		if ev.Orphan && ev.Client.Port() == cport && ev.RequestID == rqid {
			return true
		}
	}
	return false
}

// tsharkNode turns tshark's "ns=0;i=85" into the standard text form
// plcwatch writes ("i=85": namespace 0 is left out).
func tsharkNode(s string) string {
	return strings.TrimPrefix(s, "ns=0;")
}

// operations returns the answered per-operation events of a service.
func operations(evs []plcwatch.Event, service string) map[[2]uint64]plcwatch.Event {
	out := map[[2]uint64]plcwatch.Event{}
	for _, ev := range evs {
		if ev.Service == service && ev.Stage == plcwatch.StageResponse {
			out[[2]uint64{ev.Frame, uint64(ev.RequestID)<<16 | uint64(ev.Index)}] = ev
		}
	}
	return out
}

// checkWrites compares every WriteValue tshark found with plcwatch's event
// for it: node, attribute, type, value and the result status.
func checkWrites(t *testing.T, path string, evs []plcwatch.Event) {
	if _, err := os.Stat(path); err != nil {
		return
	}
	ops := operations(evs, "WriteRequest")
	for _, row := range tsharkRows(t, path) {
		frame, rqid, idx := num(row["frame.number"]), num(row["request_id"]), num(row["index"])
		ev, ok := ops[[2]uint64{frame, rqid<<16 | idx}]
		if !ok {
			t.Errorf("frame %d: tshark WriteValue %d of request %d: plcwatch has no event", frame, idx, rqid)
			continue
		}
		if want := tsharkNode(row["nodeid"]); ev.Node != want {
			t.Errorf("frame %d write %d: node %q, tshark %q", frame, idx, ev.Node, want)
		}
		if uint64(ev.Attribute) != num(row["attribute_id"]) {
			t.Errorf("frame %d write %d: attribute %d, tshark %s", frame, idx, ev.Attribute, row["attribute_id"])
		}
		if want := typeName(num(row["variant_type"])); ev.ValueType != want {
			t.Errorf("frame %d write %d: value type %q, tshark %s (%s)", frame, idx, ev.ValueType, row["variant_type"], want)
		}
		if got := eventValue(&ev); got != row["value"] {
			t.Errorf("frame %d write %d: value %q, tshark %q", frame, idx, got, row["value"])
		}
		if row["result_status"] != "" && uint64(ev.Status) != num(row["result_status"]) {
			t.Errorf("frame %d write %d: status 0x%08X, tshark %s", frame, idx, ev.Status, row["result_status"])
		}
	}
}

// checkCalls does the same for every CallMethodRequest.
func checkCalls(t *testing.T, path string, evs []plcwatch.Event) {
	if _, err := os.Stat(path); err != nil {
		return
	}
	ops := operations(evs, "CallRequest")
	for _, row := range tsharkRows(t, path) {
		frame, rqid, idx := num(row["frame.number"]), num(row["request_id"]), num(row["index"])
		ev, ok := ops[[2]uint64{frame, rqid<<16 | idx}]
		if !ok {
			t.Errorf("frame %d: tshark CallMethodRequest %d of request %d: plcwatch has no event", frame, idx, rqid)
			continue
		}
		if strings.Contains(row["method_id"], "?") {
			// tshark could not finish the MethodId: plcwatch must say the
			// request is malformed rather than make an id up.
			if ev.Malformed == "" {
				t.Errorf("frame %d call %d: tshark could not read the method id (%s); plcwatch reports %q without flagging it", frame, idx, row["method_id"], ev.Node)
			}
			continue
		}
		if want := tsharkNode(row["object_id"]); ev.Object != want {
			t.Errorf("frame %d call %d: object %q, tshark %q", frame, idx, ev.Object, want)
		}
		if want := tsharkNode(row["method_id"]); ev.Node != want {
			t.Errorf("frame %d call %d: method %q, tshark %q", frame, idx, ev.Node, want)
		}
		var args []string
		if ev.ValueType != "" {
			args = append(args, fmt.Sprintf("0x%02x:%s", typeCode(ev.ValueType), eventValue(&ev)))
		}
		if got := strings.Join(args, "|"); got != row["input_args(type:value)"] {
			t.Errorf("frame %d call %d: input arguments %q, tshark %q", frame, idx, got, row["input_args(type:value)"])
		}
		if row["result_status"] != "" && uint64(ev.Status) != num(row["result_status"]) {
			t.Errorf("frame %d call %d: status 0x%08X, tshark %s", frame, idx, ev.Status, row["result_status"])
		}
	}
}

var builtinTypes = []string{"Null", "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32",
	"Int64", "UInt64", "Float", "Double", "String", "DateTime", "Guid", "ByteString", "XmlElement",
	"NodeId", "ExpandedNodeId", "StatusCode", "QualifiedName", "LocalizedText", "ExtensionObject",
	"DataValue", "Variant", "DiagnosticInfo"}

func typeName(code uint64) string {
	if int(code) < len(builtinTypes) {
		return builtinTypes[code]
	}
	return "?"
}

func typeCode(name string) int {
	for i, n := range builtinTypes {
		if n == name {
			return i
		}
	}
	return -1
}

// eventValue renders an event's value as tshark prints it.
func eventValue(ev *plcwatch.Event) string {
	switch {
	case ev.Values.Kind() != plcwatch.NoValues:
		s := make([]string, ev.Values.Len())
		for i := range s {
			s[i] = strconv.FormatFloat(ev.Values.Float(i), 'g', -1, 64)
		}
		return strings.Join(s, "|")
	case ev.Text != "":
		return ev.Text
	case ev.HasValue():
		return strconv.FormatFloat(ev.Value, 'g', -1, 64)
	}
	return ""
}

// TestOPCUAChannelFactsAgreeWithTshark compares what plcwatch reads of the
// connection and secure channel set-up with tshark's reading
// (testdata/pcaps/truth/<capture>.channel.tsv, written by opcua-channel.sh
// there): every Hello's and Acknowledge's four sizes, and every
// OpenSecureChannel's token request type, requested lifetime, and its
// response's revised lifetime and token id. An OPN tshark cannot read
// (encrypted) gives plcwatch no lifetime either.
func TestOPCUAChannelFactsAgreeWithTshark(t *testing.T) {
	root := repoRoot(t)
	for _, c := range opcuaCaptures {
		t.Run(c.name, func(t *testing.T) {
			pcap, _, ok := opcuaCapturePaths(t, c.name)
			if !ok {
				t.Skipf("%s.pcap: not in testdata and ../shared/pcaps is absent", c.name)
			}
			truth := filepath.Join(root, "testdata", "pcaps", "truth", c.name+".channel.tsv")
			if _, err := os.Stat(truth); err != nil {
				if strings.HasPrefix(pcap, root) {
					t.Fatalf("%s: run testdata/pcaps/truth/opcua-channel.sh", err)
				}
				t.Skipf("no channel truth for a capture outside testdata (its licence does not allow a copy)")
			}
			evs, _ := decodeOPCUA(t, pcap, c.port)
			byFrame := map[uint64]*plcwatch.Event{}
			for i := range evs {
				ev := &evs[i]
				if ev.Stage == plcwatch.StageRequest || ev.Orphan {
					continue
				}
				if ev.Service == "Hello" || strings.HasPrefix(ev.Service, "OpenSecureChannel") {
					byFrame[ev.Frame] = ev
				}
			}
			num := func(row map[string]string, k string) (uint32, bool) {
				v, err := strconv.ParseUint(row[k], 0, 32)
				return uint32(v), err == nil
			}
			sizes := func(row map[string]string) (plcwatch.UACPBuffers, bool) {
				r, ok1 := num(row, "opcua.transport.rbs")
				s, ok2 := num(row, "opcua.transport.sbs")
				m, ok3 := num(row, "opcua.transport.mms")
				n, ok4 := num(row, "opcua.transport.mcc")
				return plcwatch.UACPBuffers{ReceiveBufferSize: r, SendBufferSize: s, MaxMessageSize: m, MaxChunkCount: n}, ok1 && ok2 && ok3 && ok4
			}
			hello := map[string]*plcwatch.Event{} // by tcp.stream: the last Hello
			opens := map[string]*plcwatch.Event{} // by tcp.stream and request id
			agreed := 0
			for _, row := range tsharkRows(t, truth) {
				frame, _ := strconv.Atoi(row["frame.number"])
				stream := row["tcp.stream"]
				if strings.Contains(row["opcua.transport.type"], "|") {
					t.Logf("frame %d: several messages, not compared", frame)
					continue
				}
				switch row["opcua.transport.type"] {
				case "HEL":
					ev := byFrame[uint64(frame)]
					want, _ := sizes(row)
					if ev == nil || ev.Has&plcwatch.FieldHello == 0 || ev.Hello != want {
						t.Errorf("frame %d: Hello sizes: tshark %+v, plcwatch %v", frame, want, ev)
						continue
					}
					hello[stream] = ev
				case "ACK":
					ev := hello[stream]
					want, _ := sizes(row)
					if ev == nil || ev.Has&plcwatch.FieldAcknowledge == 0 || ev.Acknowledge != want {
						t.Errorf("frame %d: Acknowledge sizes: tshark %+v, plcwatch %v", frame, want, ev)
						continue
					}
				case "OPN":
					rq := stream + "/" + row["opcua.security.rqid"]
					if req, ok := num(row, "opcua.RequestedLifetime"); ok {
						ev := byFrame[uint64(frame)]
						typ, _ := num(row, "opcua.SecurityTokenRequestType")
						wantType := map[uint32]string{0: "Issue", 1: "Renew"}[typ]
						if ev == nil || ev.Has&plcwatch.FieldLifetime == 0 || ev.Lifetime != req || ev.TokenRequest != wantType {
							t.Errorf("frame %d: OPN request: tshark lifetime %d %s, plcwatch %v", frame, req, wantType, ev)
							continue
						}
						opens[rq] = ev
					} else if revised, ok := num(row, "opcua.RevisedLifetime"); ok {
						tok, _ := num(row, "opcua.TokenId")
						ev := opens[rq]
						if ev == nil || ev.Has&(plcwatch.FieldRevisedLifetime|plcwatch.FieldTokenID) != plcwatch.FieldRevisedLifetime|plcwatch.FieldTokenID ||
							ev.RevisedLifetime != revised || ev.TokenID != tok {
							t.Errorf("frame %d: OPN response: tshark revised lifetime %d token %d, plcwatch %v", frame, revised, tok, ev)
							continue
						}
					} else if ev := byFrame[uint64(frame)]; ev != nil && ev.Has&(plcwatch.FieldLifetime|plcwatch.FieldRevisedLifetime|plcwatch.FieldTokenID) != 0 {
						t.Errorf("frame %d: an OPN tshark cannot read, plcwatch gives lifetimes or a token: %s", frame, ev.AppendJSON(nil))
						continue
					}
				default:
					continue
				}
				agreed++
			}
			t.Logf("%d Hello, Acknowledge and OpenSecureChannel messages agree", agreed)
		})
	}
}
