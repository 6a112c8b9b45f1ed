package opcua

import (
	"math"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
)

// Inputs and outputs are summarised alike; a number among texts is written
// as strconv.FormatFloat(f, 'g', -1, 64) (what setArguments wrote before
// the two shared summarise).
func TestSummariseInputsAndOutputs(t *testing.T) {
	v := ua.MustVariant
	for _, tc := range []struct {
		name        string
		args        []*ua.Variant
		types, text string
		floats      []float64
	}{
		{"numbers", []*ua.Variant{v(int32(-3)), v(true), v(float32(0.5))}, "Int32,Boolean,Float", "", []float64{-3, 1, 0.5}},
		{"mixed", []*ua.Variant{v(float32(0.1)), v("on"), v(false), v(ua.StatusCode(0x80340000)), v(math.NaN())},
			"Float,String,Boolean,StatusCode,Double", "0.10000000149011612,on,0,2.15089152e+09,NaN", nil},
		{"missing", []*ua.Variant{v(uint16(7)), nil}, "UInt16,Null", "7,", nil},
	} {
		in, out := &plcwatch.Event{}, &plcwatch.Event{}
		setArguments(in, tc.args)
		setOutputs(out, tc.args)
		if in.ValueType != tc.types || out.OutputType != tc.types {
			t.Errorf("%s: types %q / %q, want %q", tc.name, in.ValueType, out.OutputType, tc.types)
		}
		if in.Text != tc.text || out.OutputText != tc.text {
			t.Errorf("%s: text %q / %q, want %q", tc.name, in.Text, out.OutputText, tc.text)
		}
		if got, want := in.Values.Len(), len(tc.floats); got != want || out.Response.Len() != want {
			t.Errorf("%s: %d / %d numbers, want %d", tc.name, got, out.Response.Len(), want)
		}
	}
}
