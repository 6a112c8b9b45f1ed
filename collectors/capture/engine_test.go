package capture_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/collectors/capture/modbustcp"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

var (
	t0      = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	client4 = netip.MustParseAddrPort("192.0.2.10:49152")
	server4 = netip.MustParseAddrPort("192.0.2.20:502")
	client6 = netip.MustParseAddrPort("[2001:db8::10]:49152")
	server6 = netip.MustParseAddrPort("[2001:db8::20]:502")
)

// A write of three registers at 100 and its echo; a read of two holding
// registers at 7 and its answer.
var (
	writeReq  = pcapgen.MBAP(1, 17, 16, 0, 100, 0, 3, 6, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc)
	writeResp = pcapgen.MBAP(1, 17, 16, 0, 100, 0, 3)
	readReq   = pcapgen.MBAP(2, 17, 3, 0, 7, 0, 2)
	readResp  = pcapgen.MBAP(2, 17, 3, 4, 0x01, 0x02, 0x03, 0x04)
	wantWrite = "tid=1 unit=17 fc=16 op=write table=holding addr=100 count=3 values=[4660 22136 39612] resp=[] exc=0 mal=\"\" unans=\"\""
	wantRead  = "tid=2 unit=17 fc=3 op=read table=holding addr=7 count=2 values=[] resp=[258 772] exc=0 mal=\"\" unans=\"\""
)

// render is the part of an event these tests compare.
func render(ev *plcwatch.Event) string {
	return fmt.Sprintf("tid=%d unit=%d fc=%d op=%s table=%s addr=%d count=%d values=%v resp=%v exc=%d mal=%q unans=%q",
		ev.TID, ev.Unit, ev.Function, ev.Op, ev.Table, ev.Address, ev.Count,
		ev.Values.Ints(nil), ev.Response.Ints(nil), ev.Exception, ev.Malformed, ev.Unanswered)
}

// run decodes a capture written by write and returns the events and the
// engine's statistics.
func run(t *testing.T, opts pcapgen.Options, cfg capture.Config, write func(w *pcapgen.Writer)) ([]plcwatch.Event, capture.Stats) {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgen.NewWriter(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	write(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var evs []plcwatch.Event
	e := capture.NewEngine(cfg, func(ev *plcwatch.Event) { evs = append(evs, *ev) })
	if err := capture.Read(context.Background(), &buf, e); err != nil {
		t.Fatal(err)
	}
	return evs, e.Stats()
}

func renderAll(evs []plcwatch.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = render(&evs[i])
	}
	return out
}

func expect(t *testing.T, evs []plcwatch.Event, want ...string) {
	t.Helper()
	got := renderAll(evs)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func TestLinkTypesAndFormats(t *testing.T) {
	links := []pcapgen.Link{pcapgen.Ethernet, pcapgen.EthernetVLAN, pcapgen.EthernetQinQ, pcapgen.SLL, pcapgen.SLL2, pcapgen.Raw, pcapgen.Null}
	for _, link := range links {
		for _, ng := range []bool{false, true} {
			for _, v6 := range []bool{false, true} {
				name := fmt.Sprintf("%s/pcapng=%v/ipv6=%v", link, ng, v6)
				t.Run(name, func(t *testing.T) {
					client, server := client4, server4
					if v6 {
						client, server = client6, server6
					}
					evs, _ := run(t, pcapgen.Options{Link: link, PCAPNG: ng}, capture.Config{}, func(w *pcapgen.Writer) {
						c := w.Conn(client, server, t0, 1000)
						c.Handshake()
						c.Send(pcapgen.ToServer, writeReq)
						c.Send(pcapgen.ToClient, writeResp)
						c.Send(pcapgen.ToServer, readReq)
						c.Send(pcapgen.ToClient, readResp)
						c.Close()
					})
					expect(t, evs, wantWrite, wantRead)
					for _, ev := range evs {
						if ev.Client != client || ev.Server != server || ev.Device != server.String() {
							t.Errorf("addresses: client %s server %s device %s", ev.Client, ev.Server, ev.Device)
						}
						if ev.Source != plcwatch.Wire || ev.Protocol != plcwatch.ProtoModbus {
							t.Errorf("source %s protocol %s", ev.Source, ev.Protocol)
						}
						if ev.RTT != 100*time.Microsecond {
							t.Errorf("rtt %s, want 100µs (one pcapgen step)", ev.RTT)
						}
					}
				})
			}
		}
	}
}

func TestSplitAtEveryOffset(t *testing.T) {
	req := append(append([]byte(nil), writeReq...), readReq...)
	resp := append(append([]byte(nil), writeResp...), readResp...)
	for _, dir := range []pcapgen.Dir{pcapgen.ToServer, pcapgen.ToClient} {
		payload := req
		if dir == pcapgen.ToClient {
			payload = resp
		}
		for cut := 1; cut < len(payload); cut++ {
			t.Run(fmt.Sprintf("dir=%d/cut=%d", dir, cut), func(t *testing.T) {
				evs, _ := run(t, pcapgen.Options{}, capture.Config{}, func(w *pcapgen.Writer) {
					c := w.Conn(client4, server4, t0, 1000)
					c.Handshake()
					if dir == pcapgen.ToServer {
						c.SendSplit(pcapgen.ToServer, req, cut)
						c.Send(pcapgen.ToClient, resp)
					} else {
						c.Send(pcapgen.ToServer, req)
						c.SendSplit(pcapgen.ToClient, resp, cut)
					}
				})
				expect(t, evs, wantWrite, wantRead)
			})
		}
	}
	t.Run("one byte per segment", func(t *testing.T) {
		evs, _ := run(t, pcapgen.Options{}, capture.Config{}, func(w *pcapgen.Writer) {
			c := w.Conn(client4, server4, t0, 1000)
			c.Handshake()
			for i := range req {
				c.Send(pcapgen.ToServer, req[i:i+1])
			}
			for i := range resp {
				c.Send(pcapgen.ToClient, resp[i:i+1])
			}
		})
		expect(t, evs, wantWrite, wantRead)
	})
}

func TestSegmentsAndStreams(t *testing.T) {
	third := pcapgen.MBAP(3, 17, 5, 0, 9, 0xff, 0)
	thirdResp := third
	wantThird := "tid=3 unit=17 fc=5 op=write table=coil addr=9 count=1 values=[1] resp=[] exc=0 mal=\"\" unans=\"\""
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name  string
		write func(c *pcapgen.Conn)
		want  []string
		check func(t *testing.T, st capture.Stats)
	}{
		{
			name: "two ADUs per segment",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, cat(writeReq, readReq))
				c.Send(pcapgen.ToClient, cat(writeResp, readResp))
			},
			want: []string{wantWrite, wantRead},
		},
		{
			name: "three ADUs per segment, responses one by one",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, cat(writeReq, readReq, third))
				c.Send(pcapgen.ToClient, readResp)
				c.Send(pcapgen.ToClient, thirdResp)
				c.Send(pcapgen.ToClient, writeResp)
			},
			want: []string{wantRead, wantThird, wantWrite},
		},
		{
			name: "retransmitted request and response",
			write: func(c *pcapgen.Conn) {
				seq := c.Next(pcapgen.ToServer)
				c.Send(pcapgen.ToServer, writeReq)
				c.Segment(pcapgen.ToServer, seq, pcapgen.PSH|pcapgen.ACK, writeReq)
				rseq := c.Next(pcapgen.ToClient)
				c.Send(pcapgen.ToClient, writeResp)
				c.Segment(pcapgen.ToClient, rseq, pcapgen.PSH|pcapgen.ACK, writeResp)
			},
			want:  []string{wantWrite},
			check: func(t *testing.T, st capture.Stats) { wantCount(t, "retransmitted", st.Reassembly.Retransmitted, 2) },
		},
		{
			name: "retransmission that carries new bytes too",
			write: func(c *pcapgen.Conn) {
				seq := c.Next(pcapgen.ToServer)
				c.Send(pcapgen.ToServer, writeReq)
				// The stack resends the unacknowledged write with the next
				// request appended: only the new bytes are new.
				c.Segment(pcapgen.ToServer, seq, pcapgen.PSH|pcapgen.ACK, cat(writeReq, readReq))
				c.Send(pcapgen.ToClient, cat(writeResp, readResp))
			},
			want: []string{wantWrite, wantRead},
			check: func(t *testing.T, st capture.Stats) {
				wantCount(t, "overlap bytes", st.Reassembly.OverlapBytes, uint64(len(writeReq)))
			},
		},
		{
			name: "out of order: second segment first",
			write: func(c *pcapgen.Conn) {
				seq := c.Next(pcapgen.ToServer)
				c.Segment(pcapgen.ToServer, seq+uint32(len(writeReq)), pcapgen.PSH, readReq)
				c.Segment(pcapgen.ToServer, seq, pcapgen.PSH, writeReq)
				c.Advance(pcapgen.ToServer, len(writeReq)+len(readReq))
				c.Send(pcapgen.ToClient, cat(writeResp, readResp))
			},
			want:  []string{wantWrite, wantRead},
			check: func(t *testing.T, st capture.Stats) { wantCount(t, "out of order", st.Reassembly.OutOfOrder, 1) },
		},
		{
			name: "out of order inside an ADU",
			write: func(c *pcapgen.Conn) {
				seq := c.Next(pcapgen.ToServer)
				c.Segment(pcapgen.ToServer, seq+10, pcapgen.PSH, writeReq[10:])
				c.Segment(pcapgen.ToServer, seq+4, pcapgen.PSH, writeReq[4:10])
				c.Segment(pcapgen.ToServer, seq, pcapgen.PSH, writeReq[:4])
				c.Advance(pcapgen.ToServer, len(writeReq))
				c.Segment(pcapgen.ToClient, c.Next(pcapgen.ToClient), pcapgen.PSH, writeResp)
			},
			want: []string{wantWrite},
		},
		{
			name: "lost segment, receiver ACKs past it: skip at once",
			write: func(c *pcapgen.Conn) {
				seq := c.Next(pcapgen.ToServer)
				// The capture lost the write; the read that follows it
				// arrives, then the server's ACK shows it got both.
				c.Segment(pcapgen.ToServer, seq+uint32(len(writeReq)), pcapgen.PSH, readReq)
				c.Advance(pcapgen.ToServer, len(writeReq)+len(readReq))
				c.Send(pcapgen.ToClient, cat(writeResp, readResp))
			},
			// The write's response has no request: an orphan (not a
			// request, so not rendered by the request list below).
			want:  []string{wantRead},
			check: func(t *testing.T, st capture.Stats) { wantCount(t, "gaps", st.Reassembly.Gaps, 1) },
		},
		{
			name: "lost segment never acknowledged: skipped after the hole timeout",
			write: func(c *pcapgen.Conn) {
				seq := c.Next(pcapgen.ToServer)
				c.Segment(pcapgen.ToServer, seq+uint32(len(writeReq)), pcapgen.PSH, readReq)
				c.Time = c.Time.Add(3 * time.Second)
				// Timers take a jump of the stamps once a second packet
				// confirms it: one alone may be an outlier.
				c.Segment(pcapgen.ToServer, seq, pcapgen.ACK, nil)
				c.Segment(pcapgen.ToClient, c.Next(pcapgen.ToClient), pcapgen.PSH, readResp)
			},
			// The response comes after the hole timeout released the read.
			want: []string{wantRead},
		},
		{
			name: "capture starts mid-stream, in the middle of an ADU",
			write: func(c *pcapgen.Conn) {
				// No handshake: the first bytes are the tail of a write.
				c.Send(pcapgen.ToServer, cat(writeReq[5:], readReq))
				c.Send(pcapgen.ToClient, cat(writeResp[3:], readResp))
				c.Send(pcapgen.ToServer, third)
				c.Send(pcapgen.ToClient, thirdResp)
			},
			want: []string{wantRead, wantThird},
		},
		{
			name: "sequence numbers wrap around",
			write: func(c *pcapgen.Conn) {
				for i := 0; i < 4; i++ {
					c.SendSplit(pcapgen.ToServer, writeReq, 3)
					c.Send(pcapgen.ToClient, writeResp)
				}
			},
			want: []string{wantWrite, wantWrite, wantWrite, wantWrite},
		},
		{
			name: "no response: timeout event",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, writeReq)
				c.Time = c.Time.Add(6 * time.Second)
				c.Send(pcapgen.ToServer, readReq)
				c.Send(pcapgen.ToClient, readResp)
			},
			want: []string{strings.Replace(wantWrite, `unans=""`, `unans="timeout"`, 1), wantRead},
		},
		{
			name: "connection reset with a request outstanding",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, writeReq)
				c.Segment(pcapgen.ToClient, c.Next(pcapgen.ToClient), pcapgen.RST|pcapgen.ACK, nil)
				c.Time = c.Time.Add(3 * time.Second)
				c.Segment(pcapgen.ToClient, c.Next(pcapgen.ToClient), pcapgen.ACK, nil)
			},
			want: []string{strings.Replace(wantWrite, `unans=""`, `unans="closed"`, 1)},
		},
		{
			name: "capture ends with a request outstanding",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, writeReq)
			},
			want: []string{strings.Replace(wantWrite, `unans=""`, `unans="eof"`, 1)},
		},
		// Breaker 1: a write cut after 10 of its 12 bytes, then FIN, left
		// no trace. It is reported as far as it came (Zeek and Suricata
		// report such truncations too).
		{
			name: "request cut short by the connection's end",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, pcapgen.MBAP(7, 1, 6, 0, 1, 0, 2)[:10])
				c.Close()
			},
			want:  []string{`tid=7 unit=1 fc=6 op=write table=holding addr=1 count=1 values=[] resp=[] exc=0 mal="ADU cut short: its connection ended inside it: ` + modbustcp.MissingRegisterValue + `" unans="closed"`},
			check: func(t *testing.T, st capture.Stats) { wantCount(t, "cut short", st.Modbus.CutShort, 1) },
		},
		{
			name: "capture ends inside a request",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, pcapgen.MBAP(7, 1, 6, 0, 1, 0, 2)[:10])
			},
			want: []string{`tid=7 unit=1 fc=6 op=write table=holding addr=1 count=1 values=[] resp=[] exc=0 mal="ADU cut short: its connection ended inside it: ` + modbustcp.MissingRegisterValue + `" unans="eof"`},
		},
		{
			name: "connection ends inside an MBAP header",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, writeReq)
				c.Send(pcapgen.ToClient, writeResp)
				c.Send(pcapgen.ToServer, readReq[:5])
				c.Close()
			},
			want:  []string{wantWrite},
			check: func(t *testing.T, st capture.Stats) { wantCount(t, "cut short", st.Modbus.CutShort, 1) },
		},
		{
			name: "transaction id reused before the response",
			write: func(c *pcapgen.Conn) {
				c.Send(pcapgen.ToServer, writeReq)
				c.Send(pcapgen.ToServer, writeReq)
				c.Send(pcapgen.ToClient, writeResp)
			},
			want: []string{strings.Replace(wantWrite, `unans=""`, `unans="reused"`, 1), wantWrite},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isn := uint32(1000)
			if strings.Contains(tc.name, "wrap") {
				isn = 0xffffffff - 30
			}
			evs, st := run(t, pcapgen.Options{}, capture.Config{}, func(w *pcapgen.Writer) {
				c := w.Conn(client4, server4, t0, isn)
				if !strings.Contains(tc.name, "mid-stream") {
					c.Handshake()
				}
				tc.write(c)
			})
			var reqs []plcwatch.Event
			for _, ev := range evs {
				if !ev.Orphan {
					reqs = append(reqs, ev)
				}
			}
			expect(t, reqs, tc.want...)
			if tc.check != nil {
				tc.check(t, st)
			}
		})
	}
}

func wantCount(t *testing.T, what string, got, want uint64) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %d, want %d", what, got, want)
	}
}

func TestSnapLengthCutsPayload(t *testing.T) {
	// A 96-byte snap length keeps the headers and part of a 200-byte
	// write: the engine must report a gap, not invent registers.
	big := []byte{16, 0, 0, 0, 96, 192}
	big = append(big, make([]byte, 192)...)
	evs, st := run(t, pcapgen.Options{Snaplen: 96}, capture.Config{}, func(w *pcapgen.Writer) {
		c := w.Conn(client4, server4, t0, 1)
		c.Handshake()
		c.Send(pcapgen.ToServer, pcapgen.MBAP(9, 1, big...))
		c.Send(pcapgen.ToServer, readReq)
		c.Send(pcapgen.ToClient, readResp)
	})
	wantCount(t, "truncated segments", st.Reassembly.Truncated, 1)
	expect(t, evs, wantRead)
}

func TestFlowTableBound(t *testing.T) {
	evs, st := run(t, pcapgen.Options{}, capture.Config{MaxFlows: 4}, func(w *pcapgen.Writer) {
		for i := 0; i < 10; i++ {
			c := w.Conn(netip.AddrPortFrom(client4.Addr(), uint16(50000+i)), server4, t0.Add(time.Duration(i)*time.Millisecond), 1)
			c.Handshake()
			c.Send(pcapgen.ToServer, writeReq)
		}
	})
	wantCount(t, "evictions", st.FlowEvictions, 6)
	wantCount(t, "flows", st.Flows, 10)
	if len(evs) != 10 {
		t.Fatalf("%d events, want every write reported (6 evicted, 4 at eof)", len(evs))
	}
	for i, ev := range evs {
		want := "idle"
		if i >= 6 {
			want = "eof"
		}
		if ev.Unanswered != want {
			t.Errorf("event %d: unanswered %q, want %q", i, ev.Unanswered, want)
		}
	}
}

func TestOtherTrafficIsIgnored(t *testing.T) {
	evs, st := run(t, pcapgen.Options{}, capture.Config{}, func(w *pcapgen.Writer) {
		c := w.Conn(client4, netip.MustParseAddrPort("192.0.2.20:8080"), t0, 1)
		c.Handshake()
		c.Send(pcapgen.ToServer, writeReq)
	})
	if len(evs) != 0 || st.OtherPorts != 4 {
		t.Errorf("%d events, %d packets on other ports: want 0 and 4", len(evs), st.OtherPorts)
	}
}
