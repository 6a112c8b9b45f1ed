package modbustcp

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/plcwatch/plcwatch"
)

// A PDU layout as the specification gives it, for the truncation tests:
// fields end at a byte offset (the function code is byte 0), lists of
// values start at one. Cut anywhere, a PDU must keep every field and every
// list item that ends before the cut, report nothing after it, and say in
// Malformed what is missing (issue 9).
type field struct {
	name    string
	end     int                       // offset just after the field
	get     func(*plcwatch.Event) int // nil: not in the event (a byte count)
	missing string
}

type list struct {
	start    int    // offset of the first item
	size     int    // bytes per item; 0: bits, packed
	n        int    // items in the whole PDU
	orphanN  int    // items of a response decoded without its request (bits: 8 per byte), when not n
	none     string // reason when the PDU ends before the first item's bytes start coming
	cut      string // reason when it ends inside the list
	response bool   // the list is Event.Response, not Event.Values
}

type layout struct {
	name   string
	req    string // the request (a response's own request, for pairing)
	resp   string // "" for a request layout
	fields []field
	list   *list
	tail   string // reason for a cut after the fields and the list
}

var (
	fAddress   = func(ev *plcwatch.Event) int { return int(ev.Address) }
	fCount     = func(ev *plcwatch.Event) int { return int(ev.Count) }
	fFile      = func(ev *plcwatch.Event) int { return int(ev.File) }
	fAnd       = func(ev *plcwatch.Event) int { return int(ev.AndMask) }
	fOr        = func(ev *plcwatch.Event) int { return int(ev.OrMask) }
	fReadAddr  = func(ev *plcwatch.Event) int { return int(ev.ReadAddress) }
	fReadCount = func(ev *plcwatch.Event) int { return int(ev.ReadCount) }
	fSub       = func(ev *plcwatch.Event) int {
		if !ev.HasSub {
			return -1
		}
		return int(ev.SubFunction)
	}
)

// requestLayouts covers every public function code and a sample of the
// others.
var requestLayouts = []layout{
	{name: "FC 1", req: "01 0013 0013", fields: []field{{"address", 3, fAddress, MissingAddress}, {"quantity", 5, fCount, MissingQuantity}}},
	{name: "FC 2", req: "02 00c4 0016", fields: []field{{"address", 3, fAddress, MissingAddress}, {"quantity", 5, fCount, MissingQuantity}}},
	{name: "FC 3", req: "03 006b 0003", fields: []field{{"address", 3, fAddress, MissingAddress}, {"quantity", 5, fCount, MissingQuantity}}},
	{name: "FC 4", req: "04 0008 0001", fields: []field{{"address", 3, fAddress, MissingAddress}, {"quantity", 5, fCount, MissingQuantity}}},
	{name: "FC 5", req: "05 00ac ff00", fields: []field{{"address", 3, fAddress, MissingAddress}},
		list: &list{start: 3, size: 2, n: 1, none: MissingOutputValue, cut: MissingOutputValue}},
	{name: "FC 6", req: "06 0001 0003", fields: []field{{"address", 3, fAddress, MissingAddress}},
		list: &list{start: 3, size: 2, n: 1, none: MissingRegisterValue, cut: MissingRegisterValue}},
	{name: "FC 7", req: "07"},
	{name: "FC 8/4", req: "08 0004 0000", fields: []field{{"sub-function", 3, fSub, MissingSubFunction}},
		list: &list{start: 3, size: 2, n: 1, none: MissingData, cut: DataCutShort}},
	{name: "FC 8/1", req: "08 0001 ff00", fields: []field{{"sub-function", 3, fSub, MissingSubFunction}},
		list: &list{start: 3, size: 2, n: 1, none: MissingData, cut: DataCutShort}},
	{name: "FC 11", req: "0b"},
	{name: "FC 12", req: "0c"},
	{name: "FC 15", req: "0f 0013 000a 02 cd01",
		fields: []field{{"address", 3, fAddress, MissingAddress}, {"quantity", 5, fCount, MissingQuantity}, {"byte count", 6, nil, MissingByteCount}},
		list:   &list{start: 6, size: 0, n: 10, none: ValuesCutShort, cut: ValuesCutShort}},
	{name: "FC 16", req: "10 0001 0003 06 000a 0102 ffff",
		fields: []field{{"address", 3, fAddress, MissingAddress}, {"quantity", 5, fCount, MissingQuantity}, {"byte count", 6, nil, MissingByteCount}},
		list:   &list{start: 6, size: 2, n: 3, none: ValuesCutShort, cut: ValuesCutShort}},
	{name: "FC 17", req: "11"},
	{name: "FC 20", req: "14 0e 06 0004 0001 0002 06 0003 0009 0002",
		fields: []field{{"byte count", 2, nil, MissingByteCount}, {"reference type", 3, nil, MissingReferenceType},
			{"file", 5, fFile, MissingFileNumber}, {"record", 7, fAddress, MissingRecordNumber}, {"length", 9, fCount, MissingRecordLength}},
		tail: SubRequestCutShort},
	{name: "FC 21", req: "15 16 06 0004 0007 0003 06af 04be 100d 06 0004 0008 0001 1234",
		fields: []field{{"byte count", 2, nil, MissingByteCount}, {"reference type", 3, nil, MissingReferenceType},
			{"file", 5, fFile, MissingFileNumber}, {"record", 7, fAddress, MissingRecordNumber}, {"length", 9, fCount, MissingRecordLength}},
		list: &list{start: 9, size: 2, n: 3, none: RecordDataCutShort, cut: RecordDataCutShort},
		tail: SubRequestCutShort},
	{name: "FC 22", req: "16 0004 00f2 0025",
		fields: []field{{"address", 3, fAddress, MissingAddress}, {"and mask", 5, fAnd, MissingAndMask}, {"or mask", 7, fOr, MissingOrMask}}},
	{name: "FC 23", req: "17 0003 0006 000e 0003 06 00ff 00fe 00fd",
		fields: []field{{"read address", 3, fReadAddr, MissingReadAddress}, {"read quantity", 5, fReadCount, MissingReadQuantity},
			{"write address", 7, fAddress, MissingWriteAddress}, {"write quantity", 9, fCount, MissingWriteQuantity},
			{"byte count", 10, nil, MissingByteCount}},
		list: &list{start: 10, size: 2, n: 3, none: ValuesCutShort, cut: ValuesCutShort}},
	{name: "FC 24", req: "18 04de", fields: []field{{"address", 3, fAddress, MissingAddress}}},
	{name: "FC 43/14", req: "2b 0e 01 00",
		fields: []field{{"MEI type", 2, fSub, MissingMEIType}, {"read device id code", 3, nil, MissingDeviceIDCode}, {"object id", 4, nil, MissingObjectID}},
		list:   &list{start: 2, size: 1, n: 2}},
	{name: "FC 43/13", req: "2b 0d 0102 0304", fields: []field{{"MEI type", 2, fSub, MissingMEIType}}, list: &list{start: 2, size: 1, n: 4}},
	{name: "FC 9 (reserved)", req: "09 0102 03", list: &list{start: 1, size: 1, n: 3}},
	{name: "FC 65 (user-defined)", req: "41 deadbeef", list: &list{start: 1, size: 1, n: 4}},
	{name: "FC 90 (UMAS)", req: "5a 00 02 fe", list: &list{start: 1, size: 1, n: 3}},
}

// responseLayouts: the fields are those a response echoes, which only an
// orphan takes from it; lists are the read values, which every response
// gives.
var responseLayouts = []layout{
	{name: "FC 1", req: "01 0013 0013", resp: "01 03 cd6b05", fields: []field{{"byte count", 2, nil, RespMissingByteCount}},
		list: &list{start: 2, size: 0, n: 19, orphanN: 24, none: RespValuesCutShort, cut: RespValuesCutShort, response: true}},
	{name: "FC 2", req: "02 00c4 0016", resp: "02 03 acdb35", fields: []field{{"byte count", 2, nil, RespMissingByteCount}},
		list: &list{start: 2, size: 0, n: 22, orphanN: 24, none: RespValuesCutShort, cut: RespValuesCutShort, response: true}},
	{name: "FC 3", req: "03 006b 0003", resp: "03 06 022b 0000 0064", fields: []field{{"byte count", 2, nil, RespMissingByteCount}},
		list: &list{start: 2, size: 2, n: 3, none: RespValuesCutShort, cut: RespValuesCutShort, response: true}},
	{name: "FC 4", req: "04 0008 0002", resp: "04 04 000a 000b", fields: []field{{"byte count", 2, nil, RespMissingByteCount}},
		list: &list{start: 2, size: 2, n: 2, none: RespValuesCutShort, cut: RespValuesCutShort, response: true}},
	{name: "FC 5", req: "05 00ac ff00", resp: "05 00ac ff00", fields: []field{{"address", 3, fAddress, RespMissingAddress}},
		list: &list{start: 3, size: 2, n: 1, none: RespMissingOutputValue, cut: RespMissingOutputValue}},
	{name: "FC 6", req: "06 0001 0003", resp: "06 0001 0003", fields: []field{{"address", 3, fAddress, RespMissingAddress}},
		list: &list{start: 3, size: 2, n: 1, none: RespMissingRegisterValue, cut: RespMissingRegisterValue}},
	{name: "FC 7", req: "07", resp: "07 6d", list: &list{start: 1, size: 1, n: 1, none: RespMissingData, cut: RespMissingData, response: true}},
	{name: "FC 8", req: "08 0004 0000", resp: "08 0004 0000", fields: []field{{"sub-function", 3, fSub, RespMissingSubFunction}},
		list: &list{start: 3, size: 2, n: 1, none: RespMissingData, cut: RespDataCutShort, response: true}},
	{name: "FC 11", req: "0b", resp: "0b ffff 0108", list: &list{start: 1, size: 2, n: 2, none: RespDataCutShort, cut: RespDataCutShort, response: true}},
	{name: "FC 12", req: "0c", resp: "0c 08 0000 0108 0121 2000", fields: []field{{"byte count", 2, nil, RespMissingByteCount}},
		list: &list{start: 2, size: 1, n: 8, none: RespDataCutShort, cut: RespDataCutShort, response: true}},
	{name: "FC 15", req: "0f 0013 000a 02 cd01", resp: "0f 0013 000a", fields: []field{{"address", 3, fAddress, RespMissingAddress}, {"quantity", 5, fCount, RespMissingQuantity}}},
	{name: "FC 16", req: "10 0001 0002 04 000a 0102", resp: "10 0001 0002", fields: []field{{"address", 3, fAddress, RespMissingAddress}, {"quantity", 5, fCount, RespMissingQuantity}}},
	{name: "FC 17", req: "11", resp: "11 03 42 ff 00", fields: []field{{"byte count", 2, nil, RespMissingByteCount}},
		list: &list{start: 2, size: 1, n: 3, none: RespDataCutShort, cut: RespDataCutShort, response: true}},
	{name: "FC 20", req: "14 0e 06 0004 0001 0002 06 0003 0009 0002", resp: "14 0c 05 06 0df8 0020 05 06 33cd 0040",
		fields: []field{{"byte count", 2, nil, RespMissingByteCount}, {"sub-response length and type", 4, nil, RespSubResponseCutShort}},
		list:   &list{start: 4, size: 2, n: 2, none: RespSubResponseCutShort, cut: RespSubResponseCutShort, response: true},
		tail:   RespSubResponseCutShort},
	{name: "FC 21", req: "15 0d 06 0004 0007 0003 06af 04be 100d", resp: "15 0d 06 0004 0007 0003 06af 04be 100d",
		fields: []field{{"byte count", 2, nil, RespMissingByteCount}}, tail: RespDataCutShort},
	{name: "FC 22", req: "16 0004 00f2 0025", resp: "16 0004 00f2 0025",
		fields: []field{{"address", 3, fAddress, RespMissingAddress}, {"and mask", 5, fAnd, RespMissingAndMask}, {"or mask", 7, fOr, RespMissingOrMask}}},
	{name: "FC 23", req: "17 0003 0006 000e 0003 06 00ff 00ff 00ff", resp: "17 0c 00fe 0acd 0001 0003 000d 00ff",
		fields: []field{{"byte count", 2, nil, RespMissingByteCount}},
		list:   &list{start: 2, size: 2, n: 6, none: RespValuesCutShort, cut: RespValuesCutShort, response: true}},
	{name: "FC 24", req: "18 04de", resp: "18 0006 0002 01b8 1284",
		fields: []field{{"byte count", 3, nil, RespMissingByteCount}, {"FIFO count", 5, fCount, RespMissingFIFOCount}},
		list:   &list{start: 5, size: 2, n: 2, none: RespValuesCutShort, cut: RespValuesCutShort, response: true}},
	{name: "FC 43/14", req: "2b 0e 01 00", resp: "2b 0e 01 01 00 00 03 00 07 436f6d70616e79 01 07 50726f64756374 02 04 56322e31",
		fields: []field{{"MEI type", 2, fSub, RespMissingMEIType}, {"device identification header", 7, nil, RespMissingDeviceIDHead}},
		tail:   RespDeviceIDObjects},
	{name: "exception", req: "03 0000 0001", resp: "83 02"},
}

// items is how many items of l a PDU cut to n bytes holds whole.
func (l *list) items(n int, orphan bool) int {
	all := l.n
	if orphan && l.orphanN != 0 {
		all = l.orphanN
	}
	if n <= l.start {
		return 0
	}
	if l.size == 0 {
		return min(all, 8*(n-l.start))
	}
	return min(all, (n-l.start)/l.size)
}

// want is the reason a PDU cut to n bytes must give.
func (lay *layout) want(n int) string {
	for _, f := range lay.fields {
		if n < f.end {
			return f.missing
		}
	}
	if l := lay.list; l != nil {
		end := l.start + l.n*l.size
		if l.size == 0 {
			end = l.start + (l.n+7)/8
		}
		switch {
		case n == l.start && l.none != "":
			return l.none
		case n < end && l.cut != "":
			return l.cut
		}
	}
	if lay.resp != "" && lay.list == nil && len(lay.fields) == 0 {
		return RespExceptionNoCode
	}
	return lay.tail
}

func values(ev *plcwatch.Event, l *list) []int {
	if l.response {
		return ev.Response.Ints(nil)
	}
	return ev.Values.Ints(nil)
}

func TestTruncatedRequestKeepsEveryField(t *testing.T) {
	layouts := append([]layout(nil), requestLayouts...)
	// Every other function code has no layout to check against: its data
	// is reported as the bytes that were there.
	for fc := 0; fc < 128; fc++ {
		if !IsPublic(uint8(fc)) {
			layouts = append(layouts, layout{name: FunctionName(uint8(fc)), req: fmt.Sprintf("%02x 0102 0304", fc),
				list: &list{start: 1, size: 1, n: 4}})
		}
	}
	for _, lay := range layouts {
		full := h(lay.req)
		var whole plcwatch.Event
		DecodeRequest(&whole, full)
		if whole.Malformed != "" {
			t.Fatalf("%s: the whole request is malformed: %s", lay.name, whole.Malformed)
		}
		for n := 1; n < len(full); n++ {
			t.Run(fmt.Sprintf("%s/cut at %d of %d", lay.name, n, len(full)), func(t *testing.T) {
				var ev plcwatch.Event
				DecodeRequest(&ev, full[:n])
				checkCut(t, &lay, &ev, &whole, n, false)
			})
		}
	}
}

func TestTruncatedResponseKeepsEveryField(t *testing.T) {
	for _, lay := range responseLayouts {
		full := h(lay.resp)
		var whole, wholeOrphan plcwatch.Event
		DecodeRequest(&whole, h(lay.req))
		req := whole
		DecodeResponse(&whole, full)
		DecodeOrphan(&wholeOrphan, full)
		if whole.Malformed != "" || wholeOrphan.Malformed != "" {
			t.Fatalf("%s: the whole response is malformed: %q, as an orphan %q", lay.name, whole.Malformed, wholeOrphan.Malformed)
		}
		for n := 1; n < len(full); n++ {
			t.Run(fmt.Sprintf("%s/cut at %d of %d", lay.name, n, len(full)), func(t *testing.T) {
				ev := req
				DecodeResponse(&ev, full[:n])
				// Paired: the request's fields are the request's, whatever
				// the response lacks; its read values are kept to the cut.
				for _, f := range lay.fields {
					if f.get != nil && f.get(&ev) != f.get(&req) && f.name != "FIFO count" {
						t.Errorf("paired: %s is %d, the request said %d", f.name, f.get(&ev), f.get(&req))
					}
				}
				checkCut(t, &lay, &ev, &whole, n, false)
				var orphan plcwatch.Event
				DecodeOrphan(&orphan, full[:n])
				checkCut(t, &lay, &orphan, &wholeOrphan, n, true)
			})
		}
	}
}

// jsonKey is the JSON key of a layout's field.
var jsonKey = map[string]string{"address": "address", "quantity": "count", "and mask": "and_mask", "or mask": "or_mask",
	"file": "file", "record": "address", "length": "count", "read address": "read_address", "read quantity": "read_count",
	"write address": "address", "write quantity": "count", "FIFO count": "count"}

// checkCut compares the decoding of a PDU cut to n bytes with the whole
// one's.
func checkCut(t *testing.T, lay *layout, ev, whole *plcwatch.Event, n int, orphan bool) {
	t.Helper()
	what := "request"
	if lay.resp != "" {
		what = "paired"
		if orphan {
			what = "orphan"
		}
	}
	if ev.Function != whole.Function && !(lay.name == "exception" && ev.Function == 0x83) {
		t.Errorf("%s: function %d, want %d", what, ev.Function, whole.Function)
	}
	// The MEI type says whether FC 43 identifies: without it, it is other.
	mei := len(lay.fields) > 0 && lay.fields[0].name == "MEI type" && n < 2
	if (ev.Op != whole.Op && !(mei && ev.Op == plcwatch.OpOther)) || ev.Table != whole.Table {
		t.Errorf("%s: op %s table %s, want %s %s", what, ev.Op, ev.Table, whole.Op, whole.Table)
	}
	paired := lay.resp != "" && !orphan
	for _, f := range lay.fields {
		if f.get == nil || (paired && f.name != "FIFO count") {
			continue
		}
		got, want := f.get(ev), f.get(whole)
		if n < f.end {
			want = 0
			if f.name == "sub-function" || f.name == "MEI type" {
				want = -1
			}
		}
		if got != want {
			t.Errorf("%s: %s = %d, want %d", what, f.name, got, want)
		}
		// Not on the wire: not in the JSON either, never a 0 (issue 11
		// review). An orphan shows no address or count unless its
		// function echoes them (event_json.go): not checked here.
		key := jsonKey[f.name]
		if key == "" || orphan {
			continue
		}
		var m map[string]any
		ev.Source = plcwatch.Wire
		ev.Protocol = plcwatch.ProtoModbus
		if err := json.Unmarshal(ev.AppendJSON(nil), &m); err != nil {
			t.Fatal(err)
		}
		if _, shown := m[key]; shown != (n >= f.end) {
			t.Errorf("%s cut at %d: %q shown %v, want %v: %s", what, n, key, shown, n >= f.end, ev.AppendJSON(nil))
		}
	}
	if l := lay.list; l != nil && !(paired && !l.response) {
		want := values(whole, l)[:l.items(n, orphan)]
		if got := values(ev, l); !slices.Equal(got, want) {
			t.Errorf("%s: values %v, want %v", what, got, want)
		}
	}
	if lay.name == "FC 43/14" && lay.resp != "" {
		for i, o := range ev.Objects {
			if o != whole.Objects[i] {
				t.Errorf("%s: object %d is %v, want %v", what, i, o, whole.Objects[i])
			}
		}
	}
	if want := lay.want(n); ev.Malformed != want {
		t.Errorf("%s: malformed %q, want %q", what, ev.Malformed, want)
	}
}
