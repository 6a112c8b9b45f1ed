package rules

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

func writeRules(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const okRule = `
  - id: ok
    title: fine
    severity: low
`

func TestLintPositions(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // "line:col: message" (prefix of the message)
	}{
		{"unknown key with suggestion", "rules:\n  - id: a\n    title: t\n    severity: low\n    match:\n      fucntion: 16\n",
			[]string{`6:7: unknown key "fucntion" in match (did you mean "function"?)`}},
		{"unknown rule key", "rules:\n  - id: a\n    title: t\n    severity: low\n    treshold: {count: 1}\n",
			[]string{`5:5: unknown key "treshold" in a rule (did you mean "threshold"?)`}},
		{"bad CIDR", "rules:\n  - id: a\n    title: t\n    severity: low\n    match:\n      client: [10.0.0.1, 10.0.0/24]\n",
			[]string{`6:26: client "10.0.0/24": not an IP address or CIDR prefix`}},
		{"host bits set", "rules:\n  - id: a\n    title: t\n    severity: low\n    match: {server: 10.0.0.1/24}\n",
			[]string{`5:21: server "10.0.0.1/24": host bits set (did you mean 10.0.0.0/24?)`}},
		{"bad range", "rules:\n  - id: a\n    title: t\n    severity: low\n    match:\n      address: [\"10-5\", 70000]\n",
			[]string{`6:17: address "10-5": want a 0-based protocol address`, `6:25: address "70000": want a 0-based protocol address`}},
		{"unknown technique", "rules:\n  - id: a\n    title: t\n    severity: low\n    attack: [T0855, T0810]\n",
			[]string{`5:21: unknown ATT&CK for ICS technique "T0810"`}},
		{"expression error", "rules:\n  - id: a\n    title: t\n    severity: low\n    when: value > 1 and nosuchfield\n",
			[]string{`5:25: when: unknown name nosuchfield`}},
		{"expression error in a block", "rules:\n  - id: a\n    title: t\n    severity: low\n    when: |\n      value > 1 and\n        values[0] == \"x\"\n",
			[]string{`7:19: when: invalid operation: == (mismatched types float64 and string)`}},
		{"duplicate ids", "rules:\n  - id: a\n    title: t\n    severity: low\n  - id: a\n    title: t2\n    severity: low\n",
			[]string{`5:9: duplicate id "a" (first defined at `}},
		{"unclosed flow mapping: the line it opens", "rules:\n  - id: a\n    title: t\n    severity: low\n    match: {unit: 1,\n      function: 3\n  - id: b\n",
			[]string{`5:1: did not find expected ',' or '}' (a { opened on this line`}},
		{"unclosed flow list", "rules:\n  - id: a\n    title: t\n    severity: low\n    match:\n      unit: 1\n      function: [3\n  - id: b\n",
			[]string{`7:1: did not find expected ',' or ']'`}},
		{"bad indentation", "rules:\n  - id: a\n    title: t\n    severity: low\n    match:\n      unit: 1\n     function: 3\n",
			[]string{`2:1: did not find expected key (in the mapping that starts on this line`}},
		{"scanner error keeps its line", "rules:\n  - id: a\n    title: t: x\n",
			[]string{`3:1: mapping values are not allowed in this context`}},
		{"missing fields", "rules:\n  - id: a\n",
			[]string{`2:5: rule "a" has no title`, `2:5: rule "a" has no severity`}},
		{"bad severity and duration", "rules:\n  - id: a\n    title: t\n    severity: urgent\n    threshold: {count: 5, window: soon}\n",
			[]string{`4:15: severity "urgent": want info, low, medium, high or critical`, `5:35: window: "soon" is not a duration`}},
		{"two stateful forms", "rules:\n  - id: a\n    title: t\n    severity: low\n    threshold: {count: 5, window: 1s}\n    change: any\n",
			[]string{`2:5: rule "a": use one of threshold, for, change and baseline`}},
		{"for without when", "rules:\n  - id: a\n    title: t\n    severity: low\n    for: 30s\n",
			[]string{`5:10: for needs a when condition`}},
		{"unknown list", "rules:\n  - id: a\n    title: t\n    severity: low\n    match: {client: [\"!$hmis\"]}\n",
			[]string{`5:22: no list named "hmis"`}},
		{"bad window", "rules:\n  - id: a\n    title: t\n    severity: low\n    schedule: {mute: [\"weekdays 8:00-17:00\"]}\n",
			[]string{`5:23: window "weekdays 8:00-17:00": "weekdays" is not a day`}},
		// yaml.v3 reports the line where the broken block starts.
		{"yaml syntax", "rules:\n  - id: a\n    title: [t\n",
			[]string{`3:1: did not find expected ',' or ']'`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRules(t, map[string]string{"r.yaml": tc.text})
			_, err := Load(dir)
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("want problems, got %v", err)
			}
			if len(probs) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%v", len(probs), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(probs) {
					break
				}
				got := strings.TrimPrefix(probs[i].String(), filepath.Join(dir, "r.yaml")+":")
				if !strings.HasPrefix(got, w) {
					t.Errorf("problem %d:\n got  %s\n want %s...", i, got, w)
				}
			}
		})
	}
}

func TestLoadFoldersGlobsAndLists(t *testing.T) {
	dir := writeRules(t, map[string]string{
		"lists.yaml": "lists:\n  hmi: [10.0.0.5]\n",
		"a.yaml":     "rules:" + okRule + "  - id: b\n    title: t\n    severity: high\n    match: {client: [\"!$hmi\"], op: write}\n",
		"c.yml":      "- id: c\n  title: a bare list of rules\n  severity: info\n  enabled: false\n",
		"notes.txt":  "not a rule file",
	})
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 3 || len(set.Enabled()) != 2 || set.Lookup("c").Enabled {
		t.Fatalf("rules %d, enabled %d", len(set.Rules), len(set.Enabled()))
	}
	b := set.Lookup("b")
	if len(b.match.clientsNot) != 1 || b.match.clientsNot[0].String() != "10.0.0.5/32" {
		t.Errorf("list not expanded: %v", b.match.clientsNot)
	}
	set2, err := Load(filepath.Join(dir, "*.yaml"))
	if err != nil || len(set2.Rules) != 2 {
		t.Fatalf("glob: %v rules, %v", len(set2.Rules), err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml:1:1: cannot read") {
		t.Errorf("missing file: %v", err)
	}
}

func TestRegister(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"40001", "holding 0-0"}, {"40101", "holding 100-100"}, {"400001", "holding 0-0"}, {"465536", "holding 65535-65535"},
		{"00001", "coil 0-0"}, {"10010", "discrete 9-9"}, {"30001-30010", "input 0-9"}, {"49999", "holding 9998-9998"},
	} {
		r, err := register(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := r.table.String() + " " + strconv.Itoa(int(r.lo)) + "-" + strconv.Itoa(int(r.hi)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"40000", "50001", "4001", "400000", "40010-30020", "40010-40001", "4000a"} {
		if _, err := register(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestScheduleWindows(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tests := []struct {
		window string
		at     string // Berlin local time
		want   bool
	}{
		{"mon-fri 08:00-17:00", "2026-03-02 08:00", true}, // Monday
		{"mon-fri 08:00-17:00", "2026-03-02 17:00", false},
		{"mon-fri 08:00-17:00", "2026-03-07 10:00", false}, // Saturday
		{"sat,sun 00:00-24:00", "2026-03-08 23:59", true},
		{"fri-mon 12:00-13:00", "2026-03-02 12:30", true}, // wraps through the weekend
		{"fri-mon 12:00-13:00", "2026-03-04 12:30", false},
		{"daily 22:00-06:00", "2026-03-03 05:59", true},
		{"daily 22:00-06:00", "2026-03-03 06:00", false},
		{"sun 22:00-02:00", "2026-03-02 01:00", true}, // Monday early hours belong to Sunday's window
		{"sun 22:00-02:00", "2026-03-03 01:00", false},
		{"2026-12-24..2026-12-26 00:00-24:00", "2026-12-26 23:00", true},
		{"2026-12-24..2026-12-26 00:00-24:00", "2026-12-27 00:30", false},
		{"2026-03-29 01:00-04:00", "2026-03-29 03:30", true}, // the night DST starts
	}
	for _, tc := range tests {
		w, err := parseWindow(tc.window)
		if err != nil {
			t.Fatalf("%s: %v", tc.window, err)
		}
		at, _ := time.ParseInLocation("2006-01-02 15:04", tc.at, berlin)
		if got := w.contains(at); got != tc.want {
			t.Errorf("%q at %s: %v, want %v", tc.window, tc.at, got, tc.want)
		}
	}
}

func TestBaselineSurvivesRestart(t *testing.T) {
	dir := writeRules(t, map[string]string{"r.yaml": `
rules:
  - id: new-writer
    title: New writer
    severity: high
    match: {op: write}
    baseline: {learn: 1h}
    fold: 0s
`})
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "baseline.json")
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	write := func(client string, at time.Duration) plcwatch.Event {
		ev := plcwatch.Event{Time: t0.Add(at), Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpWrite,
			Function: 6, Unit: 1, Table: plcwatch.TableHolding}
		ev.Client = netip.MustParseAddrPort(client + ":40000")
		ev.Server = netip.MustParseAddrPort("10.0.1.1:502")
		return ev
	}
	run := func(events ...plcwatch.Event) []string {
		b, err := LoadBaseline(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		e := NewEngine(set, Options{Baseline: b}, func(a *plcwatch.Alert) { got = append(got, a.Event.Client.Addr().String()) })
		for i := range events {
			e.Process(&events[i])
		}
		e.Close()
		if err := b.Save(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	// First run: learn 10.0.0.5 during the hour, then see it again after.
	if got := run(write("10.0.0.5", 0), write("10.0.0.5", 30*time.Minute), write("10.0.0.5", 70*time.Minute)); len(got) != 0 {
		t.Fatalf("first run alerted on a learned tuple: %v", got)
	}
	// Restart: the learning hour is over and remembered. The known writer
	// stays quiet; a new one alerts (a re-learning agent would stay quiet).
	got := run(write("10.0.0.5", 80*time.Minute), write("10.0.0.66", 81*time.Minute))
	if len(got) != 1 || got[0] != "10.0.0.66" {
		t.Fatalf("after restart: alerts %v, want one for 10.0.0.66", got)
	}
	// A third run knows 10.0.0.66 now.
	if got := run(write("10.0.0.66", 90*time.Minute)); len(got) != 0 {
		t.Fatalf("the tuple alerted on is not remembered: %v", got)
	}
	b, _ := LoadBaseline(path)
	var sb strings.Builder
	if err := b.Write(&sb, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rule new-writer: 2 tuples", "learned (alerting on new tuples)", "client=10.0.0.5 server=10.0.1.1:502 unit=1 function=6", "client=10.0.0.66"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("baseline show lacks %q:\n%s", want, sb.String())
		}
	}
}

// TestStateBounds sweeps clients past the fold and baseline bounds: memory
// stays bounded, every alert still goes out and the overflow is counted.
func TestStateBounds(t *testing.T) {
	dir := writeRules(t, map[string]string{"r.yaml": `
rules:
  - id: folded
    title: Any write
    severity: low
    match: {op: write}
    fold: 1h
  - id: new-writer
    title: New writer
    severity: high
    match: {op: write}
    baseline: {learn: 1s}
    fold: 0s
`})
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	const bound, sweep = 50, 200
	alerts := map[string]int{}
	e := NewEngine(set, Options{MaxGroups: bound, MaxBaselineKeys: bound}, func(a *plcwatch.Alert) { alerts[a.Rule.ID] += a.Count })
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	write := func(at time.Time, i int) {
		ev := plcwatch.Event{Time: at, Source: plcwatch.Wire,
			Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpWrite, Function: 6, Unit: 1, Table: plcwatch.TableHolding,
			Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 40000),
			Server: netip.MustParseAddrPort("10.0.1.1:502")}
		e.Process(&ev)
	}
	// The one writer seen while learning: the rest come after.
	write(t0, 0xffff)
	for i := range sweep {
		write(t0.Add(time.Minute+time.Duration(i)*time.Millisecond), i)
	}
	if n := len(e.states[0].folds); n != bound {
		t.Errorf("folds: %d open, want the bound %d", n, bound)
	}
	if lr := e.baseline.Rules["new-writer"]; len(lr.Keys) != bound {
		t.Errorf("baseline: %d tuples kept, want the bound %d", len(lr.Keys), bound)
	}
	// Every write is a distinct fold key and a tuple first seen after
	// learning: each one alerts, bound or not.
	if alerts["folded"] != sweep+1 || alerts["new-writer"] != sweep {
		t.Errorf("alerts %v, want %d folded and %d new-writer", alerts, sweep+1, sweep)
	}
	// Folds: the learning-time write took one slot. Baseline: it took one
	// tuple, and the sweep filled the rest.
	want := map[string]uint64{"folded": sweep + 1 - bound, "new-writer": sweep - (bound - 1)}
	for _, h := range e.Hits() {
		if h.Overflow != want[h.ID] {
			t.Errorf("%s: overflow %d, want %d", h.ID, h.Overflow, want[h.ID])
		}
	}
}
