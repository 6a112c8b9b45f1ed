package capture_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/collectors/capture/modbustcp"
)

// The Modbus captures of the shared set. Those whose licence allows it are
// copied to testdata/pcaps (see its NOTICE.md); the rest are read from the
// shared folder when it is there.
var modbusCaptures = []string{
	"emre_FC1-permit", "emre_Modbus", "emre_ModbusFloat", "emre_crash",
	"emre_modbus-encapsulated-transport", "emre_modbus-mask-write-register",
	"emre_modbus-read-write-multiple-registers", "emre_modbusAnalog",
	"icsnpp_modbus_example", "iti_ModbusTCP", "iti_mb2", "iti_modbus_test", "iti_modbus_test_2",
	"iti_modbus_test_data_part1", "iti_modbus_test_data_part2",
	"suricata_modbus-keywords-write", "suricata_modbus",
	"zeek_4SICS-GeekLounge-151022-min", "zeek_fuzz-1011", "zeek_fuzz-72",
	"zeek_modbus-and-non-modbus-p502", "zeek_modbus-eit", "zeek_modbusBig", "zeek_modbusSmall",
}

// disagreements lists every frame where plcwatch's reading of a request
// differs from tshark's, and why plcwatch's is the right one. The test fails
// if a disagreement is missing from this list, and if a listed one no longer
// happens, so the list is always exactly true.
var disagreements = map[string]map[int]string{
	"iti_mb2": {
		1131: "frame 1131 (seq 139, 60 bytes) retransmits frame 1014's 12 bytes (tid 22505) and carries 48 new " +
			"bytes: requests 22506-22509, which the server answered (frames 3008 and 3674). tshark flags the " +
			"whole segment as a retransmission and does not dissect the new bytes; plcwatch trims the 12 seen " +
			"bytes and decodes the four new requests",
	},
	"iti_modbus_test_data_part2": {
		22: "FC 6 PDU of 7 bytes where the function defines 5: plcwatch reads register value 0 and flags the " +
			"request malformed (PDU longer than its function needs); tshark prints all 4 data bytes as the " +
			"value. The server agrees with plcwatch: it answered exception 3 (illegal data value)",
		64: "FC 23 PDU cut off after the read quantity (tshark: Malformed Packet): both read 0+0; plcwatch flags " +
			"it malformed (PDU shorter than its function needs: write address missing) and has no write address " +
			"or count to report (0 in the event), tshark leaves those fields empty",
	},
	"zeek_fuzz-72": {
		7: "frame 6 carries a 10-byte FC 33 ADU plus 2 stray bytes, frame 7 a whole FC 34 ADU. tshark takes the " +
			"stray bytes as the start of a PDU that frame 7 continues and decodes nothing in frame 7; plcwatch " +
			"reports the stray bytes as not Modbus (MBAP length 0) and finds frame 7's ADU, to which the " +
			"server's frame 8 answers with function 0xA2, the exception form of FC 34",
	},
}

// repoRoot is the module root, found from the test's working directory.
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// capturePaths returns the capture and its tshark truth: from testdata when
// copied there, else from the shared folder ($PLCWATCH_SHARED_PCAPS or
// ../shared/pcaps next to the checkout).
func capturePaths(t testing.TB, name string) (pcap, truth string, ok bool) {
	root := repoRoot(t)
	pcap = filepath.Join(root, "testdata", "pcaps", "modbus", name+".pcap")
	truth = filepath.Join(root, "testdata", "pcaps", "truth", name+".tsv")
	if _, err := os.Stat(pcap); err == nil {
		return pcap, truth, true
	}
	shared := os.Getenv("PLCWATCH_SHARED_PCAPS")
	if shared == "" {
		shared = filepath.Join(root, "..", "shared", "pcaps")
	}
	pcap = filepath.Join(shared, "modbus", name+".pcap")
	truth = filepath.Join(shared, "truth", name+".tsv")
	if _, err := os.Stat(pcap); err != nil {
		return "", "", false
	}
	return pcap, truth, true
}

// request is one Modbus request as both readers describe it, in a form that
// compares with ==.
type request struct {
	tid, unit, fc uint64
	fields        string // function-specific: reference, count, written values
}

func (r request) String() string {
	return fmt.Sprintf("tid=%d unit=%d fc=%d %s", r.tid, r.unit, r.fc, r.fields)
}

// tsharkRequests reads the truth file: per frame, the requests (queries, sent
// to port 502) tshark decoded in it, in order.
func tsharkRequests(t testing.TB, path string) map[int][]request {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	sc.Scan()
	col := map[string]int{}
	for i, name := range strings.Split(sc.Text(), "\t") {
		col[name] = i
	}
	out := map[int][]request{}
	for sc.Scan() {
		row := strings.Split(sc.Text(), "\t")
		get := func(name string) []string {
			v := row[col[name]]
			if v == "" {
				return nil
			}
			return strings.Split(v, "|")
		}
		if len(get("tcp.dstport")) == 0 || get("tcp.dstport")[0] != "502" {
			continue // tshark calls what goes to 502 a query
		}
		frame, _ := strconv.Atoi(row[col["frame.number"]])
		queues := map[string][]string{}
		pop := func(name string, n int) []string {
			q, ok := queues[name]
			if !ok {
				q = get(name)
			}
			if n > len(q) {
				n = len(q)
			}
			v := q[:n]
			queues[name] = q[n:]
			return v
		}
		tids, units, fcs := get("mbtcp.trans_id"), get("mbtcp.unit_id"), get("modbus.func_code")
		for i := range tids {
			if i >= len(fcs) || i >= len(units) {
				break // a frame tshark could not finish: no function code
			}
			r := request{tid: num(tids[i]), unit: num(units[i]), fc: num(fcs[i])}
			one := func(name string) string { return strings.Join(pop(name, 1), "") }
			switch r.fc {
			case 1, 2:
				r.fields = fmt.Sprintf("ref=%s count=%s", one("modbus.reference_num"), one("modbus.bit_cnt"))
			case 3, 4:
				r.fields = fmt.Sprintf("ref=%s count=%s", one("modbus.reference_num"), one("modbus.word_cnt"))
			case 5:
				ref, data := one("modbus.reference_num"), one("modbus.data")
				r.fields = fmt.Sprintf("ref=%s values=%s", ref, coilValue(data))
			case 6:
				ref, data := one("modbus.reference_num"), one("modbus.data")
				r.fields = fmt.Sprintf("ref=%s values=%s", ref, words(data))
			case 15:
				ref, cnt, _, data := one("modbus.reference_num"), one("modbus.bit_cnt"), one("modbus.byte_cnt"), one("modbus.data")
				r.fields = fmt.Sprintf("ref=%s count=%s values=%s", ref, cnt, bits(data, int(num(cnt))))
			case 16:
				ref, cnt, _ := one("modbus.reference_num"), one("modbus.word_cnt"), one("modbus.byte_cnt")
				pop("modbus.regnum16", int(num(cnt)))
				vals := pop("modbus.regval_uint16", int(num(cnt)))
				r.fields = fmt.Sprintf("ref=%s count=%s values=%s", ref, cnt, strings.Join(vals, ","))
			case 22:
				ref, and, or := one("modbus.reference_num"), one("modbus.and_mask"), one("modbus.or_mask")
				r.fields = fmt.Sprintf("ref=%s and=%d or=%d", ref, num(and), num(or))
			case 23:
				rr, rc := one("modbus.read_reference_num"), one("modbus.read_word_cnt")
				wr, wc := one("modbus.write_reference_num"), one("modbus.write_word_cnt")
				one("modbus.byte_cnt")
				data := one("modbus.data")
				r.fields = fmt.Sprintf("read=%s+%s ref=%s count=%s values=%s", rr, rc, wr, wc, words(data))
			case 8:
				r.fields = "sub=" + one("modbus.diagnostic_code")
			case 24:
				r.fields = "ref=" + one("modbus.reference_num")
			}
			out[frame] = append(out[frame], r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ours renders a plcwatch event the way tsharkRequests renders a row.
func ours(ev *plcwatch.Event) request {
	r := request{tid: uint64(ev.TID), unit: uint64(ev.Unit), fc: uint64(ev.Function)}
	vals := func() string {
		s := make([]string, ev.Values.Len())
		for i := range s {
			s[i] = strconv.Itoa(int(ev.Values.At(i)))
		}
		return strings.Join(s, ",")
	}
	switch ev.Function {
	case 1, 2, 3, 4:
		r.fields = fmt.Sprintf("ref=%d count=%d", ev.Address, ev.Count)
	case 5, 6:
		r.fields = fmt.Sprintf("ref=%d values=%s", ev.Address, vals())
	case 15, 16:
		r.fields = fmt.Sprintf("ref=%d count=%d values=%s", ev.Address, ev.Count, vals())
	case 22:
		r.fields = fmt.Sprintf("ref=%d and=%d or=%d", ev.Address, ev.AndMask, ev.OrMask)
	case 23:
		r.fields = fmt.Sprintf("read=%d+%d ref=%d count=%d values=%s", ev.ReadAddress, ev.ReadCount, ev.Address, ev.Count, vals())
	case 8:
		r.fields = fmt.Sprintf("sub=%d", ev.SubFunction)
	case 24:
		r.fields = fmt.Sprintf("ref=%d", ev.Address)
	}
	return r
}

func num(s string) uint64 {
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		n, _ := strconv.ParseUint(h, 16, 64)
		return n
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func coilValue(hexData string) string {
	if strings.EqualFold(hexData, "ff00") {
		return "1"
	}
	return "0"
}

func words(hexData string) string {
	b, _ := hex.DecodeString(hexData)
	s := make([]string, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		s = append(s, strconv.Itoa(int(b[i])<<8|int(b[i+1])))
	}
	return strings.Join(s, ",")
}

func bits(hexData string, n int) string {
	b, _ := hex.DecodeString(hexData)
	s := make([]string, 0, n)
	for i := 0; i < n && i/8 < len(b); i++ {
		s = append(s, strconv.Itoa(int(b[i/8]>>(i%8)&1)))
	}
	return strings.Join(s, ",")
}

// decode runs a capture through a default engine and returns every event.
func decode(t testing.TB, path string) []plcwatch.Event {
	var cfg capture.Config
	cfg.Defaults()
	var evs []plcwatch.Event
	e := capture.NewEngine(cfg, func(ev *plcwatch.Event) { evs = append(evs, *ev) })
	if err := capture.ReadFile(context.Background(), path, e); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestAgreesWithTshark(t *testing.T) {
	for _, name := range modbusCaptures {
		t.Run(name, func(t *testing.T) {
			pcap, truth, ok := capturePaths(t, name)
			if !ok {
				t.Skipf("%s.pcap: not in testdata (its licence does not allow a copy) and ../shared/pcaps is absent", name)
			}
			want := tsharkRequests(t, truth)
			got := map[int][]request{}
			for _, ev := range decodeRequests(t, pcap) {
				if modbustcp.IsFramingError(ev.Malformed) {
					// plcwatch says these bytes are not a Modbus/TCP ADU
					// (an impossible MBAP header); tshark must not have
					// decoded a request from them either.
					if len(want[int(ev.Frame)]) > 0 {
						t.Errorf("frame %d: plcwatch says %q, tshark decoded %v", ev.Frame, ev.Malformed, want[int(ev.Frame)])
					}
					continue
				}
				got[int(ev.Frame)] = append(got[int(ev.Frame)], ours(&ev))
			}
			var frames []int
			for f := range want {
				frames = append(frames, f)
			}
			for f := range got {
				if _, ok := want[f]; !ok {
					frames = append(frames, f)
				}
			}
			sort.Ints(frames)
			listed := disagreements[name]
			seen := map[int]bool{}
			n := 0
			for _, f := range frames {
				w, g := sorted(want[f]), sorted(got[f])
				if fmt.Sprint(w) == fmt.Sprint(g) {
					continue
				}
				seen[f] = true
				if _, ok := listed[f]; ok {
					continue
				}
				n++
				if n <= 20 {
					t.Errorf("frame %d:\n  tshark:   %v\n  plcwatch: %v", f, w, g)
				}
			}
			if n > 20 {
				t.Errorf("... and %d more frames disagree", n-20)
			}
			for f, why := range listed {
				if !seen[f] {
					t.Errorf("frame %d is listed as a disagreement (%s) but plcwatch and tshark now agree: update the list", f, why)
				}
			}
			var total int
			for _, r := range want {
				total += len(r)
			}
			t.Logf("%d tshark requests in %d frames; %d listed disagreements", total, len(want), len(listed))
		})
	}
}

// decodeRequests returns the events that stand for requests: not orphan
// responses.
func decodeRequests(t testing.TB, path string) []plcwatch.Event {
	var out []plcwatch.Event
	for _, ev := range decode(t, path) {
		if !ev.Orphan {
			out = append(out, ev)
		}
	}
	return out
}

func sorted(rs []request) []request {
	out := append([]request(nil), rs...)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// TestResponsesAgreeWithTshark checks what plcwatch pairs with each request
// against tshark's reading of the response it matched (modbus.request_frame):
// the exception code, and the registers or bits a read returned.
func TestResponsesAgreeWithTshark(t *testing.T) {
	for _, name := range modbusCaptures {
		t.Run(name, func(t *testing.T) {
			pcap, truth, ok := capturePaths(t, name)
			if !ok {
				t.Skipf("%s.pcap: not in testdata (its licence does not allow a copy) and ../shared/pcaps is absent", name)
			}
			byReq := map[[2]uint64]plcwatch.Event{} // request frame, tid
			for _, ev := range decodeRequests(t, pcap) {
				byReq[[2]uint64{ev.Frame, uint64(ev.TID)}] = ev
			}
			checked := 0
			for _, row := range tsharkRows(t, truth) {
				if row["tcp.srcport"] != "502" || row["modbus.request_frame"] == "" || strings.Contains(row["mbtcp.trans_id"], "|") {
					continue // only responses tshark paired, one ADU per frame
				}
				key := [2]uint64{num(row["modbus.request_frame"]), num(row["mbtcp.trans_id"])}
				ev, ok := byReq[key]
				if !ok {
					t.Errorf("frame %s: tshark pairs a response with request frame %d tid %d; plcwatch has no such request", row["frame.number"], key[0], key[1])
					continue
				}
				checked++
				if want := num(row["modbus.exception_code"]); uint64(ev.Exception) != want {
					t.Errorf("frame %s (request %d): exception: tshark %d, plcwatch %d", row["frame.number"], key[0], want, ev.Exception)
				}
				var want string
				switch num(row["modbus.func_code"]) {
				case 3, 4:
					want = strings.ReplaceAll(row["modbus.regval_uint16"], "|", ",")
				case 23: // tshark shows FC 23's read registers as raw data
					want = words(row["modbus.data"])
				default:
					continue
				}
				if row["modbus.exception_code"] != "" {
					continue
				}
				got := make([]string, ev.Response.Len())
				for i := range got {
					got[i] = strconv.Itoa(int(ev.Response.At(i)))
				}
				if strings.Join(got, ",") != want {
					t.Errorf("frame %s (request %d): read values:\n  tshark   %s\n  plcwatch %s", row["frame.number"], key[0], want, strings.Join(got, ","))
				}
			}
			t.Logf("%d paired responses checked", checked)
		})
	}
}

// tsharkRows reads a truth file into one map per row, keyed by field name.
func tsharkRows(t testing.TB, path string) []map[string]string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	header := strings.Split(lines[0], "\t")
	rows := make([]map[string]string, 0, len(lines)-1)
	for _, l := range lines[1:] {
		row := map[string]string{}
		for i, v := range strings.Split(l, "\t") {
			if i < len(header) {
				row[header[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows
}
