package capture_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// TestOPCUATimeOfASplitMessage: an OPC UA message cut into three TCP
// segments, in every order the wire can give them, takes the time of the
// packet that completed it — the one carrying its last byte to arrive —
// as a Modbus ADU does (TestTimeOfASplitMessage, issue 9): whether the
// message is one chunk held by reassembly, several chunks assembled per
// secure channel, or one chunk too large for reassembly to hold.
func TestOPCUATimeOfASplitMessage(t *testing.T) {
	client := netip.MustParseAddrPort("192.0.2.10:49152")
	server := netip.MustParseAddrPort("192.0.2.20:4840")
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tok := ua.NewNumericNodeID(0, 777)
	write := func(text string) []byte {
		return pcapgen.Encode(&ua.WriteRequest{RequestHeader: pcapgen.RequestHeader(tok, 7, t0), NodesToWrite: []*ua.WriteValue{{
			NodeID: ua.NewStringNodeID(2, "Recipe"), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(text)}}}})
	}
	writeResp := pcapgen.Encode(&ua.WriteResponse{ResponseHeader: pcapgen.ResponseHeader(7, 0, t0),
		Results: []ua.StatusCode{ua.StatusBadUserAccessDenied}, DiagnosticInfos: []*ua.DiagnosticInfo{}})
	shapes := []struct {
		name       string
		body       []byte // the request
		chunk      int    // body bytes per chunk; 0: one chunk
		respChunk  int
		cuts       [2]float64 // where the two cuts fall, as fractions of the message
		wantChunks bool
	}{
		{name: "one chunk", body: write("bread"), cuts: [2]float64{0.3, 0.7}},
		{name: "three chunks", body: write(strings.Repeat("r", 300)), chunk: 128, respChunk: 20, cuts: [2]float64{0.4, 0.8}, wantChunks: true},
		{name: "cut at chunk boundaries", body: write(strings.Repeat("r", 300)), chunk: 128, respChunk: 20, cuts: [2]float64{-1, -2}, wantChunks: true},
		{name: "one chunk larger than reassembly holds", body: write(strings.Repeat("x", 80000)), cuts: [2]float64{0.3, 0.6}},
	}
	orders := []struct {
		name string
		segs []int // parts 0, 1, 2 in capture order, one per millisecond from 10 ms
	}{
		{"in order", []int{0, 1, 2}},
		{"last part first", []int{2, 0, 1}},
		{"reversed", []int{2, 1, 0}},
		{"middle part last", []int{0, 2, 1}},
		{"first part retransmitted after the rest", []int{0, 1, 2, 0}},
		{"middle part lost, the last retransmitted", []int{0, 2, 2, 1}},
		{"everything twice, backwards", []int{2, 1, 0, 2, 1, 0}},
	}
	for _, sh := range shapes {
		for _, o := range orders {
			for _, dir := range []pcapgen.Dir{pcapgen.ToServer, pcapgen.ToClient} {
				name := fmt.Sprintf("%s/%s/%s", sh.name, o.name, map[pcapgen.Dir]string{pcapgen.ToServer: "request", pcapgen.ToClient: "response"}[dir])
				t.Run(name, func(t *testing.T) {
					// The packet that completes the message is the last
					// to bring a part not seen before.
					complete, seen := 0, map[int]bool{}
					for i, p := range o.segs {
						if !seen[p] {
							seen[p], complete = true, i
						}
					}
					var c2s, s2c pcapgen.UACP
					c2s.Channel, s2c.Channel, c2s.Token, s2c.Token = 4, 4, 1, 1
					req := c2s.Message(7, sh.body, sh.chunk)
					resp := s2c.Message(7, writeResp, sh.respChunk)
					msg := req
					if dir == pcapgen.ToClient {
						msg = resp
					}
					cut := [3]int{0, int(sh.cuts[0] * float64(len(msg))), int(sh.cuts[1] * float64(len(msg)))}
					if sh.cuts[0] < 0 { // the chunk boundaries: after the first chunk, before the last
						first := int(uint32(msg[4]) | uint32(msg[5])<<8)
						last := len(msg) - (len(sh.body)%sh.chunk + 24)
						if dir == pcapgen.ToClient {
							last = len(msg) - (len(writeResp)%sh.respChunk + 24)
						}
						cut = [3]int{0, first, last}
					}
					ends := [3]int{cut[1], cut[2], len(msg)}
					for i := range 3 {
						if cut[i] >= ends[i] {
							t.Fatalf("part %d is empty: cuts %v of %d bytes", i, cut, len(msg))
						}
					}
					evs, st := run(t, pcapgen.Options{}, capture.Config{OPCUAPorts: []uint16{4840}}, func(w *pcapgen.Writer) {
						c := w.Conn(client, server, t0, 1000)
						c.Handshake()
						if dir == pcapgen.ToClient {
							c.Time = ms(5)
							for off := 0; off < len(req); off += 1448 { // a large request as a TCP stack sends it
								c.Time = ms(5)
								c.Send(pcapgen.ToServer, req[off:min(off+1448, len(req))])
							}
						}
						seq := c.Next(dir)
						for i, p := range o.segs {
							c.Time = ms(10 + i)
							c.Segment(dir, seq+uint32(cut[p]), pcapgen.PSH, msg[cut[p]:ends[p]])
						}
						c.Advance(dir, len(msg))
						if dir == pcapgen.ToServer {
							c.Time = ms(40)
							c.Send(pcapgen.ToClient, resp)
						}
					})
					if len(evs) != 1 || evs[0].Orphan || evs[0].Unanswered != "" || evs[0].Service != "WriteRequest" || evs[0].Malformed != "" {
						t.Fatalf("want one paired WriteRequest, got %d: %s", len(evs), evs[0].AppendJSON(nil))
					}
					if sh.wantChunks && st.OPCUA.Chunks < 3 {
						t.Fatalf("%d chunks framed: the message was not chunked", st.OPCUA.Chunks)
					}
					ev := evs[0]
					if ev.StatusName != "BadUserAccessDenied" {
						t.Errorf("status %q: the response was not read", ev.StatusName)
					}
					done := ms(10 + complete)
					wantTime, wantRTT := ms(5), done.Sub(ms(5))
					if dir == pcapgen.ToServer {
						wantTime, wantRTT = done, ms(40).Sub(done)
					}
					if !ev.Time.Equal(wantTime) || ev.RTT != wantRTT {
						t.Errorf("time %s rtt %s, want %s and %s", ev.Time.Format("05.000"), ev.RTT, wantTime.Format("05.000"), wantRTT)
					}
				})
			}
		}
	}
}
