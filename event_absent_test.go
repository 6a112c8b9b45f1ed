package plcwatch

import (
	"encoding/json"
	"math/bits"
	"slices"
	"strings"
	"testing"
	"time"
)

// absentRows says, for every field whose zero is a value (Event.Has,
// Event.Absent), an event that would show it and the JSON keys it shows.
var absentRows = map[Fields]struct {
	ev   Event
	keys []string
}{
	FieldTID:             {Event{Protocol: ProtoModbus}, []string{"tid"}},
	FieldUnit:            {Event{Protocol: ProtoModbus}, []string{"unit"}},
	FieldFunction:        {Event{Protocol: ProtoModbus}, []string{"function"}},
	FieldAddress:         {Event{Protocol: ProtoModbus, Function: 3, Table: TableHolding}, []string{"address"}},
	FieldCount:           {Event{Protocol: ProtoModbus, Function: 3, Table: TableHolding}, []string{"count"}},
	FieldReadAddress:     {Event{Protocol: ProtoModbus, Function: 23, Table: TableHolding}, []string{"read_address"}},
	FieldReadCount:       {Event{Protocol: ProtoModbus, Function: 23, Table: TableHolding}, []string{"read_count"}},
	FieldAndMask:         {Event{Protocol: ProtoModbus, Function: 22, Table: TableHolding}, []string{"and_mask"}},
	FieldOrMask:          {Event{Protocol: ProtoModbus, Function: 22, Table: TableHolding}, []string{"or_mask"}},
	FieldFile:            {Event{Protocol: ProtoModbus, Function: 20, Table: TableFile}, []string{"file"}},
	FieldStatus:          {Event{Protocol: ProtoOPCUA}, []string{"status"}},
	FieldRequestID:       {Event{Protocol: ProtoOPCUA}, []string{"request_id"}},
	FieldChannel:         {Event{Protocol: ProtoOPCUA}, []string{"channel"}},
	FieldIndex:           {Event{Protocol: ProtoOPCUA}, []string{"index"}},
	FieldAttribute:       {Event{Protocol: ProtoOPCUA}, []string{"attribute"}},
	FieldTokenID:         {Event{Protocol: ProtoOPCUA}, []string{"token_id"}},
	FieldLifetime:        {Event{Protocol: ProtoOPCUA}, []string{"requested_lifetime_ms"}},
	FieldRevisedLifetime: {Event{Protocol: ProtoOPCUA}, []string{"revised_lifetime_ms"}},
	FieldHello:           {Event{Protocol: ProtoOPCUA}, []string{"receive_buffer_size", "send_buffer_size", "max_message_size", "max_chunk_count"}},
	FieldAcknowledge:     {Event{Protocol: ProtoOPCUA}, []string{"ack_receive_buffer_size", "ack_send_buffer_size", "ack_max_message_size", "ack_max_chunk_count"}},
	FieldOperations:      {Event{Protocol: ProtoOPCUA}, []string{"count"}},
}

// keysOf returns the keys of a JSON object and their values.
func keysOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

// TestAbsentIsNotZero: every number whose zero is a value is in an event's
// JSON exactly when it was on the wire — shown as 0 when it was 0, left
// out when it was not — and reads back the same (issue 11 review). A field
// added to Has or Absent without a row here fails the test.
func TestAbsentIsNotZero(t *testing.T) {
	for i := 0; i < bits.Len32(uint32(AllFields)); i++ {
		f := Fields(1) << i
		row, ok := absentRows[f]
		if !ok {
			t.Errorf("field bit %d has no row in absentRows: say which keys it shows", i)
			continue
		}
		for _, src := range []SourceKind{Wire, Poll} {
			if src == Poll && (f == FieldTID || f&(FieldRequestID|FieldChannel|FieldIndex) != 0) {
				continue // wire-only fields
			}
			ev := row.ev
			ev.Time, ev.Source, ev.Op, ev.Value = time.Unix(0, 0), src, OpOther, NoValue
			// Not on the wire: f marked absent, or not in Has.
			ev.Absent, ev.Has = f&^hasKinds, 0
			notThere := ev
			absent := keysOf(t, ev.AppendJSON(nil))
			// On the wire, and 0.
			ev.Absent, ev.Has = 0, f&hasKinds
			present := keysOf(t, ev.AppendJSON(nil))
			for _, k := range row.keys {
				if _, ok := absent[k]; ok {
					t.Errorf("%s %s: %q shown although not on the wire: %s", src, row.keys[0], k, ev.AppendJSON(nil))
				}
				if v, ok := present[k]; !ok || v != 0.0 {
					t.Errorf("%s %s: %q is %v, want 0: on the wire, 0 is a value", src, row.keys[0], k, v)
				}
			}
			if len(present) != len(absent)+len(row.keys) {
				t.Errorf("%s %s: %d keys present, %d absent: the bit shows other keys too", src, row.keys[0], len(present), len(absent))
			}
			for _, in := range []Event{ev, notThere} {
				var out Event
				if err := out.UnmarshalJSON(in.AppendJSON(nil)); err != nil {
					t.Fatal(err)
				}
				if a, b := in.AppendJSON(nil), out.AppendJSON(nil); string(a) != string(b) {
					t.Errorf("round trip:\n in  %s\n out %s", a, b)
				}
			}
		}
	}
}

// TestNothingOnTheWireShowsNothing: an event of every protocol, source and
// op that carries nothing shows no number but the contract's (time and
// the kind of event; exception and malformed on Modbus, DESIGN.md).
func TestNothingOnTheWireShowsNothing(t *testing.T) {
	always := []string{"time", "source", "protocol", "op"}
	for _, p := range []Protocol{ProtoModbus, ProtoOPCUA} {
		for _, src := range []SourceKind{Wire, Poll} {
			for op := OpRead; op.String() != "unknown"; op++ {
				ev := Event{Time: time.Unix(0, 0), Source: src, Protocol: p, Op: op, Value: NoValue, Absent: AllFields &^ hasKinds}
				for k := range keysOf(t, ev.AppendJSON(nil)) {
					if slices.Contains(always, k) || (p == ProtoModbus && op != OpStatus && (k == "exception" || k == "malformed")) {
						continue
					}
					t.Errorf("%s %s %s: %q shown: %s", p, src, op, k, strings.TrimSpace(string(ev.AppendJSON(nil))))
				}
			}
		}
	}
}
