package scenario_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch/agent"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// TestEveryNumberHasARange: each number of the format, just outside its
// documented range (docs/sim.md, Ranges), is refused at its file:line:col
// with the range said; the same file with the value just inside loads
// (issue 12: coil value 7, walk step -3, sine 1e308, period 1ns, tick 0s
// ran).
func TestEveryNumberHasARange(t *testing.T) {
	const base = `name: r
%TOP%
plants:
  - name: p
    listen: "%LISTEN%"
    points:
      - {name: h, table: holding, address: 0, scale: %SCALE%, %POINT%}
      - {name: c, table: coil, address: 0}
actors:
  - {name: a, from: 127.0.0.30, target: p, do: hmi, reads: [h], %ACTOR%}
  - {name: b, from: %FROM%, target: p, do: unit_scan, unit: 250, count: %COUNT%}
expect:
  - {rule: "*", %EXPECT%}
`
	fill := func(m map[string]string) string {
		def := map[string]string{"%TOP%": "", "%LISTEN%": "127.0.0.13:25042", "%POINT%": "value: 1", "%ACTOR%": "every: 1s",
			"%FROM%": "127.0.0.31", "%COUNT%": "6", "%SCALE%": "0.1", "%EXPECT%": "at_most: 0"}
		out := base
		for k, v := range def {
			if m[k] != "" {
				v = m[k]
			}
			out = strings.ReplaceAll(out, k, v)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		bad, ok  map[string]string
		wantLine int
		want     string
	}{
		{"duration", map[string]string{"%TOP%": "duration: 200h"}, map[string]string{"%TOP%": "duration: 168h"}, 2, "duration: 200h0m0s: want 100ms-168h"},
		{"duration 0", map[string]string{"%TOP%": "duration: 0s"}, map[string]string{"%TOP%": "duration: 100ms"}, 2, "duration: 0s: want 100ms-168h"},
		{"tick 0", map[string]string{"%TOP%": "tick: 0s"}, map[string]string{"%TOP%": "tick: 1ms"}, 2, "tick: 0s: want 1ms-10s"},
		{"tick", map[string]string{"%TOP%": "tick: 11s"}, map[string]string{"%TOP%": "tick: 10s"}, 2, "tick: 11s: want 1ms-10s"},
		{"seed 0", map[string]string{"%TOP%": "seed: 0"}, map[string]string{"%TOP%": "seed: 1"}, 2, "seed: 0: want 1 or more"},
		{"seed -1", map[string]string{"%TOP%": "seed: -1"}, map[string]string{"%TOP%": "seed: 9223372036854775807"}, 2, "seed: -1: want a whole number, 0 or more"},
		{"listen", map[string]string{"%LISTEN%": "0.0.0.0:25042"}, map[string]string{"%LISTEN%": "127.0.0.13:25042"}, 5, `plants[0].listen: "0.0.0.0:25042": want a loopback address`},
		{"listen v6", map[string]string{"%LISTEN%": "[::]:25042"}, map[string]string{"%LISTEN%": "[::1]:25042"}, 5, `want a loopback address`},
		{"scale", map[string]string{"%SCALE%": "1e-7"}, map[string]string{"%SCALE%": "1e6"}, 7, "scale: 1e-07: want 1e-06-1e+06"},
		{"register value", map[string]string{"%POINT%": "value: 6553.6"}, map[string]string{"%POINT%": "value: 6553.5"}, 7, "value: 6553.6: want 0-6553.5 (register 0-65535 × scale 0.1)"},
		{"register value negative", map[string]string{"%POINT%": "value: -0.1"}, map[string]string{"%POINT%": "value: 0"}, 7, "value: -0.1: want 0-6553.5"},
		{"constant", map[string]string{"%POINT%": "constant: 1e308"}, map[string]string{"%POINT%": "constant: 6553.5"}, 7, "constant: 1e+308: want 0-6553.5"},
		{"ramp to", map[string]string{"%POINT%": "ramp: {from: 0, to: 1e308, over: 1s}"}, map[string]string{"%POINT%": "ramp: {from: 0, to: 10, over: 1s}"}, 7, "ramp.to: 1e+308"},
		{"ramp over", map[string]string{"%POINT%": "ramp: {from: 0, to: 1, over: 1ns}"}, map[string]string{"%POINT%": "ramp: {from: 0, to: 1, over: 1ms}"}, 7, "ramp.over: 1ns: want 1ms-168h"},
		{"sine overflow", map[string]string{"%POINT%": "sine: {mean: 6000, amplitude: 600, period: 1s}"}, map[string]string{"%POINT%": "sine: {mean: 5000, amplitude: 600, period: 1s}"}, 7, "sine: mean 6000 ± amplitude 600: want within 0-6553.5"},
		{"sine amplitude", map[string]string{"%POINT%": "sine: {mean: 10, amplitude: -1, period: 1s}"}, map[string]string{"%POINT%": "sine: {mean: 10, amplitude: 0, period: 1s}"}, 7, "sine.amplitude: -1: want 0-6553.5"},
		{"sine period", map[string]string{"%POINT%": "sine: {mean: 10, amplitude: 1, period: 1ns}"}, map[string]string{"%POINT%": "sine: {mean: 10, amplitude: 1, period: 168h}"}, 7, "sine.period: 1ns: want 1ms-168h"},
		{"walk step", map[string]string{"%POINT%": "walk: {start: 5, step: -3, min: 0, max: 10}"}, map[string]string{"%POINT%": "walk: {start: 5, step: 10, min: 0, max: 10}"}, 7, "walk.step: -3: want more than 0, at most max - min (10)"},
		{"walk step large", map[string]string{"%POINT%": "walk: {start: 5, step: 11, min: 0, max: 10}"}, map[string]string{"%POINT%": "walk: {start: 5, step: 0.001, min: 0, max: 10}"}, 7, "walk.step: 11"},
		{"tank inflow", map[string]string{"%POINT%": "tank: {level: 5, pump: c, inflow: -1, outflow: 1}"}, map[string]string{"%POINT%": "tank: {level: 5, pump: c, inflow: 0, outflow: 1e6}"}, 7, "tank.inflow: -1: want 0-1e+06 per second"},
		{"tank band", map[string]string{"%POINT%": "tank: {level: 5, pump: c, inflow: 1, outflow: 1, band: 101}"}, map[string]string{"%POINT%": "tank: {level: 5, pump: c, inflow: 1, outflow: 1, band: 100}"}, 7, "tank.band: 101: want 0-100"},
		{"lag tau", map[string]string{"%POINT%": "lag: {setpoint: c, start: 0, tau: 0s}"}, map[string]string{"%POINT%": "lag: {setpoint: c, start: 0, tau: 1ms}"}, 7, "lag.tau: 0s: want 1ms-168h"},
		{"alarm", map[string]string{"%POINT%": "alarm: {of: c, above: 1e16}"}, map[string]string{"%POINT%": "alarm: {of: c, above: 1e15}"}, 7, "alarm.above: 1e+16: want a number within ±1e+15"},
		{"actor at", map[string]string{"%ACTOR%": "at: 169h"}, map[string]string{"%ACTOR%": "at: 168h"}, 10, "actors[0].at: 169h0m0s: want 0-168h"},
		{"actor every", map[string]string{"%ACTOR%": "every: 1us"}, map[string]string{"%ACTOR%": "every: 1ms"}, 10, "actors[0].every: 1µs: want 0 (once) or 1ms-168h"},
		{"actor for", map[string]string{"%ACTOR%": "for: -1s"}, map[string]string{"%ACTOR%": "for: 0s"}, 10, "actors[0].for: -1s"},
		{"actor values", map[string]string{"%ACTOR%": "point: h, values: [1e300]"}, map[string]string{"%ACTOR%": "point: h, values: [-1e15]"}, 10, "actors[0].values[0]: 1e+300: want a number within ±1e+15"},
		{"actor unit", map[string]string{"%ACTOR%": "unit: 256"}, map[string]string{"%ACTOR%": "unit: 255"}, 10, "actors[0].unit: 256: want 0-255"},
		{"unit + count", map[string]string{"%COUNT%": "7"}, map[string]string{"%COUNT%": "6"}, 11, "actors[1].count: 7: want 1-6 (units 250-255: unit + count may not pass 256)"},
		{"same from", map[string]string{"%FROM%": "127.0.0.30"}, map[string]string{"%FROM%": "127.0.0.32"}, 11, `actors[1].from: 127.0.0.30: actor "a" has this address: want one of its own`},
		{"at_most", map[string]string{"%EXPECT%": "at_most: 1000001"}, map[string]string{"%EXPECT%": "at_most: 1000000"}, 13, "expect[0].at_most: 1000001: want 0-1000000"},
		{"at_least", map[string]string{"%EXPECT%": "at_least: -1"}, map[string]string{"%EXPECT%": "at_least: 1000000"}, 13, "expect[0].at_least: -1: want 0-1000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := scenario.Parse("r.yaml", []byte(fill(tc.ok))); err != nil {
				t.Fatalf("inside the range: %v", err)
			}
			_, err := scenario.Parse("r.yaml", []byte(fill(tc.bad)))
			var probs agent.ConfigError
			if !errors.As(err, &probs) {
				t.Fatalf("outside the range: loaded (%v)", err)
			}
			if len(probs) != 1 || probs[0].Line != tc.wantLine || !strings.Contains(probs[0].Msg, tc.want) {
				t.Errorf("got %v\nwant one problem at line %d: %s", err, tc.wantLine, tc.want)
			}
		})
	}
}

// TestCoilValue: a coil's value (and an OPC UA method's, setting one) is 0
// or 1; an oversized address is one problem, not also a bogus "already".
func TestCoilValueAndOversizedAddress(t *testing.T) {
	src := `plants:
  - name: p
    listen: "127.0.0.13:25042"
    points:
      - {name: c, table: coil, address: 0, value: 7}
      - {name: x, table: holding, address: 5000}
      - {name: y, table: holding, address: 5000}
`
	_, err := scenario.Parse("c.yaml", []byte(src))
	got := err.Error()
	for _, want := range []string{"c.yaml:5:51: plants[0].points[0].value: 7: want 0 or 1", "points[1].address: 5000: want 0-4095", "points[2].address: 5000: want 0-4095"} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "already") {
		t.Errorf("an address out of range is also reported as taken:\n%s", got)
	}
}

// TestLoadRefusesAHugeFile: a file beyond MaxFileBytes is refused before
// decoding (13 MB took 660 MB), and a large file without aliases is not
// said to expand "through its aliases".
func TestLoadRefusesAHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte("name: big\ndescription: "+strings.Repeat("x", scenario.MaxFileBytes)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := scenario.Load(path)
	if err == nil || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Errorf("got %v, want larger than 4 MiB", err)
	}
	var b strings.Builder
	b.WriteString("plants:\n  - {name: p, listen: \"127.0.0.13:25042\", points: [{name: h, table: holding}]}\n")
	b.WriteString("actors:\n  - {name: a, from: 127.0.0.30, target: p, do: write, point: h, values: [")
	b.WriteString(strings.Repeat("0,", 1100000))
	b.WriteString("0]}\n")
	_, err = scenario.Parse("many.yaml", []byte(b.String()))
	if err == nil || strings.Contains(err.Error(), "aliases") || !strings.Contains(err.Error(), "the file has more than") {
		t.Errorf("got %v, want: the file has more than ... values", err)
	}
}
