package opcua

import (
	"strconv"

	"github.com/plcwatch/plcwatch"
)

// service describes one service of OPC 10000-4 by the numeric ids (ns=0)
// of its request's and response's default binary encodings.
type service struct {
	req, resp         uint16
	reqName, respName string
	op                plcwatch.Op
	fast              fastKind // decoded by hand on the hot path, not by gopcua
	multi             bool     // one event per operation (WriteValue, CallMethodRequest)
}

type fastKind uint8

const (
	notFast fastKind = iota
	fastRead
	fastPublish
)

// Encoding ids of the messages the dissector handles specially.
const (
	idServiceFault       = 397
	idOpenChannelReq     = 446
	idOpenChannelResp    = 449
	idCloseChannelReq    = 452
	idCreateSessionReq   = 461
	idCreateSessionResp  = 464
	idActivateSessionReq = 467
	idActivateResp       = 470
	idCloseSessionReq    = 473
	idReadReq            = 631
	idReadResp           = 634
	idWriteReq           = 673
	idWriteResp          = 676
	idCallReq            = 712
	idCallResp           = 715
	idPublishReq         = 826
	idPublishResp        = 829

	// UserIdentityToken encodings (OPC 10000-4 §7.40).
	idAnonymousToken = 321
	idUserNameToken  = 324
	idX509Token      = 327
	idIssuedToken    = 940
)

// services lists every service of OPC 10000-4 (and the discovery services
// of OPC 10000-12) with the op its events carry (docs/events.md).
var services = []service{
	{req: 422, resp: 425, reqName: "FindServersRequest", respName: "FindServersResponse", op: plcwatch.OpOther},
	{req: 12208, resp: 12209, reqName: "FindServersOnNetworkRequest", respName: "FindServersOnNetworkResponse", op: plcwatch.OpOther},
	{req: 428, resp: 431, reqName: "GetEndpointsRequest", respName: "GetEndpointsResponse", op: plcwatch.OpOther},
	{req: 437, resp: 440, reqName: "RegisterServerRequest", respName: "RegisterServerResponse", op: plcwatch.OpOther},
	{req: 12211, resp: 12212, reqName: "RegisterServer2Request", respName: "RegisterServer2Response", op: plcwatch.OpOther},
	{req: idOpenChannelReq, resp: idOpenChannelResp, reqName: "OpenSecureChannelRequest", respName: "OpenSecureChannelResponse", op: plcwatch.OpSession},
	{req: idCloseChannelReq, resp: 455, reqName: "CloseSecureChannelRequest", respName: "CloseSecureChannelResponse", op: plcwatch.OpSession},
	{req: idCreateSessionReq, resp: idCreateSessionResp, reqName: "CreateSessionRequest", respName: "CreateSessionResponse", op: plcwatch.OpSession},
	{req: idActivateSessionReq, resp: idActivateResp, reqName: "ActivateSessionRequest", respName: "ActivateSessionResponse", op: plcwatch.OpSession},
	{req: idCloseSessionReq, resp: 476, reqName: "CloseSessionRequest", respName: "CloseSessionResponse", op: plcwatch.OpSession},
	{req: 479, resp: 482, reqName: "CancelRequest", respName: "CancelResponse", op: plcwatch.OpOther},
	{req: 488, resp: 491, reqName: "AddNodesRequest", respName: "AddNodesResponse", op: plcwatch.OpManage},
	{req: 494, resp: 497, reqName: "AddReferencesRequest", respName: "AddReferencesResponse", op: plcwatch.OpManage},
	{req: 500, resp: 503, reqName: "DeleteNodesRequest", respName: "DeleteNodesResponse", op: plcwatch.OpManage},
	{req: 506, resp: 509, reqName: "DeleteReferencesRequest", respName: "DeleteReferencesResponse", op: plcwatch.OpManage},
	{req: 527, resp: 530, reqName: "BrowseRequest", respName: "BrowseResponse", op: plcwatch.OpBrowse},
	{req: 533, resp: 536, reqName: "BrowseNextRequest", respName: "BrowseNextResponse", op: plcwatch.OpBrowse},
	{req: 554, resp: 557, reqName: "TranslateBrowsePathsToNodeIdsRequest", respName: "TranslateBrowsePathsToNodeIdsResponse", op: plcwatch.OpBrowse},
	{req: 560, resp: 563, reqName: "RegisterNodesRequest", respName: "RegisterNodesResponse", op: plcwatch.OpBrowse},
	{req: 566, resp: 569, reqName: "UnregisterNodesRequest", respName: "UnregisterNodesResponse", op: plcwatch.OpBrowse},
	{req: 615, resp: 618, reqName: "QueryFirstRequest", respName: "QueryFirstResponse", op: plcwatch.OpBrowse},
	{req: 621, resp: 624, reqName: "QueryNextRequest", respName: "QueryNextResponse", op: plcwatch.OpBrowse},
	{req: idReadReq, resp: idReadResp, reqName: "ReadRequest", respName: "ReadResponse", op: plcwatch.OpRead, fast: fastRead},
	{req: 664, resp: 667, reqName: "HistoryReadRequest", respName: "HistoryReadResponse", op: plcwatch.OpRead},
	{req: idWriteReq, resp: idWriteResp, reqName: "WriteRequest", respName: "WriteResponse", op: plcwatch.OpWrite, multi: true},
	{req: 700, resp: 703, reqName: "HistoryUpdateRequest", respName: "HistoryUpdateResponse", op: plcwatch.OpWrite},
	{req: idCallReq, resp: idCallResp, reqName: "CallRequest", respName: "CallResponse", op: plcwatch.OpCall, multi: true},
	{req: 751, resp: 754, reqName: "CreateMonitoredItemsRequest", respName: "CreateMonitoredItemsResponse", op: plcwatch.OpRead},
	{req: 763, resp: 766, reqName: "ModifyMonitoredItemsRequest", respName: "ModifyMonitoredItemsResponse", op: plcwatch.OpRead},
	{req: 769, resp: 772, reqName: "SetMonitoringModeRequest", respName: "SetMonitoringModeResponse", op: plcwatch.OpRead},
	{req: 775, resp: 778, reqName: "SetTriggeringRequest", respName: "SetTriggeringResponse", op: plcwatch.OpRead},
	{req: 781, resp: 784, reqName: "DeleteMonitoredItemsRequest", respName: "DeleteMonitoredItemsResponse", op: plcwatch.OpRead},
	{req: 787, resp: 790, reqName: "CreateSubscriptionRequest", respName: "CreateSubscriptionResponse", op: plcwatch.OpRead},
	{req: 793, resp: 796, reqName: "ModifySubscriptionRequest", respName: "ModifySubscriptionResponse", op: plcwatch.OpRead},
	{req: 799, resp: 802, reqName: "SetPublishingModeRequest", respName: "SetPublishingModeResponse", op: plcwatch.OpRead},
	{req: idPublishReq, resp: idPublishResp, reqName: "PublishRequest", respName: "PublishResponse", op: plcwatch.OpRead, fast: fastPublish},
	{req: 832, resp: 835, reqName: "RepublishRequest", respName: "RepublishResponse", op: plcwatch.OpRead},
	{req: 841, resp: 844, reqName: "TransferSubscriptionsRequest", respName: "TransferSubscriptionsResponse", op: plcwatch.OpRead},
	{req: 847, resp: 850, reqName: "DeleteSubscriptionsRequest", respName: "DeleteSubscriptionsResponse", op: plcwatch.OpRead},
}

// msgType is what a message's type id says it is.
type msgType struct {
	svc      *service // nil: not a service plcwatch knows
	response bool
	fault    bool // ServiceFault: a response to any request
}

// serviceIndex finds a service by either of its encoding ids.
type serviceIndex map[uint32]msgType

func newServiceIndex() serviceIndex {
	ix := serviceIndex{idServiceFault: {fault: true, response: true}}
	for i := range services {
		s := &services[i]
		ix[uint32(s.req)] = msgType{svc: s}
		ix[uint32(s.resp)] = msgType{svc: s, response: true}
	}
	return ix
}

// unknownName is the service field of a message whose type id no table
// knows: the type id itself, as a NodeId ("i=12345").
func unknownName(n *nodeID) string {
	if n.kind <= nodeNumeric && n.ns == 0 && n.nsURI == nil {
		return "i=" + strconv.FormatUint(uint64(n.num), 10)
	}
	return string(appendNodeID(nil, n))
}
