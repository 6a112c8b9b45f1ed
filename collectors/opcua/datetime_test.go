package opcua

import (
	"math"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
)

// gopcuaTime is gopcua v0.8.0's decoding of DateTime ticks (ua/buffer.go
// ReadTime), copied to make the wrapped values the agent receives.
func gopcuaTime(ticks uint64) time.Time {
	if ticks == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64((ticks-116444736000000000)*100)).UTC()
}

func ticksOf(t time.Time) uint64 {
	return uint64(t.Unix()+11644473600)*1e7 + uint64(t.Nanosecond()/100)
}

func TestFixDateTime(t *testing.T) {
	for _, tc := range []struct {
		ticks uint64
		want  string // "" absent
	}{
		{0, ""}, // 1601-01-01: OPC UA's no date
		{ticksOf(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)), "9999-12-31T23:59:59Z"},
		{ticksOf(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)), "9999-12-31T00:00:00Z"},
		{math.MaxInt64, "9999-12-31T23:59:59.9999999Z"}, // the encoded maximum
		{math.MaxUint64, "9999-12-31T23:59:59.9999999Z"},
		{ticksOf(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)), "3000-01-01T00:00:00Z"},
		{ticksOf(time.Date(2026, 11, 29, 8, 30, 0, 1234500, time.UTC)), "2026-11-29T08:30:00.0012345Z"},
		{ticksOf(time.Date(1816, 3, 30, 5, 56, 7, 0, time.UTC)), "1816-03-30T05:56:07Z"},
		{ticksOf(time.Date(1620, 5, 1, 0, 0, 0, 0, time.UTC)), "1620-05-01T00:00:00Z"},
		{1, "1601-01-01T00:00:00.0000001Z"},
	} {
		got, ok := fixDateTime(gopcuaTime(tc.ticks))
		s := ""
		if ok {
			s = got.Format(time.RFC3339Nano)
		}
		if s != tc.want {
			t.Errorf("ticks %d: %q, want %q", tc.ticks, s, tc.want)
		}
	}
}

// TestSetValueOddTypes: DateTimes gopcua wrapped, OPC UA's "no date",
// and ExtensionObjects (stable text, no addresses; arrays with their
// count), through setValue as a Read or a notification gives them.
func TestSetValueOddTypes(t *testing.T) {
	future := gopcuaTime(ticksOf(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)))
	unknown := &ua.ExtensionObject{EncodingMask: ua.ExtensionObjectBinary, TypeID: ua.NewFourByteExpandedNodeID(1, 340)}
	rng := ua.NewExtensionObject(&ua.Range{Low: 1.5, High: 9})
	for _, tc := range []struct {
		name    string
		value   any
		quality string
		text    string
		count   uint16
	}{
		{"future", future, "good", "9999-12-31T23:59:59Z", 0},
		{"no date", time.Time{}, "bad", "", 0},
		{"dates", []time.Time{future, {}}, "good", `["9999-12-31T23:59:59Z",""]`, 2},
		{"unknown", unknown, "good", `{"type":"ns=1;i=340"}`, 0},
		{"range", rng, "good", `{"type":"i=886","value":{"Low":1.5,"High":9}}`, 0},
		{"array", []*ua.ExtensionObject{unknown, rng}, "good", `["{\"type\":\"ns=1;i=340\"}","{\"type\":\"i=886\",\"value\":{\"Low\":1.5,\"High\":9}}"]`, 2},
	} {
		v, err := ua.NewVariant(tc.value)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for range 2 { // the same text every time
			dv := &ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
				Value: v, SourceTimestamp: future, ServerTimestamp: time.Time{}}
			var ev plcwatch.Event
			setValue(&ev, dv, 1, 0)
			if ev.Quality != tc.quality || ev.Text != tc.text || ev.Count != tc.count {
				t.Errorf("%s: quality %s text %s count %d, want %s %s %d", tc.name, ev.Quality, ev.Text, ev.Count, tc.quality, tc.text, tc.count)
			}
			if !ev.SourceTime.Equal(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)) || !ev.ServerTime.IsZero() {
				t.Errorf("%s: source_time %v server_time %v", tc.name, ev.SourceTime, ev.ServerTime)
			}
		}
	}
}
