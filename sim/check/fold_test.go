package check_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch/sim/check"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// TestFoldedAlertCountsOnce: an alert that went out at once and the alert
// closing its fold ("4 more since ...", with an activity object) are one
// alert with folded duplicates, as docs/sim.md counts them — sim check
// said "raised 2" and failed an at_most: 1.
func TestFoldedAlertCountsOnce(t *testing.T) {
	s, err := scenario.Parse("fold.yaml", []byte(`name: fold
duration: 10s
plants:
  - name: tank-plc
    listen: 127.0.0.10:5020
    points:
      - {name: pump, table: coil, address: 0}
actors:
  - {name: brute-force, from: 127.0.0.70, target: tank-plc, do: brute_force, at: 1s, point: pump, count: 30}
expect:
  - {rule: modbus-output-toggled, actor: brute-force, at_least: 1, at_most: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	const first = `{"schema":"plcwatch.alert/v1","id":"a1","rule":{"id":"modbus-output-toggled","severity":"high"},"event":{"source":"wire","client":"127.0.0.70:40000","server":"127.0.0.10:5020"},"count":1}`
	const followUp = `{"schema":"plcwatch.alert/v1","id":"a2","rule":{"id":"modbus-output-toggled","severity":"high"},"event":{"source":"wire","client":"127.0.0.70:40000","server":"127.0.0.10:5020"},"count":4,"message":"4 more since 2026-11-29T14:00:01Z: functions 5","activity":{"first":"2026-11-29T14:00:01Z","last":"2026-11-29T14:00:02Z","events":5}}`
	alerts, err := check.Attribute(s, strings.NewReader(first+"\n"+followUp+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 2 || alerts[0].FollowUp || !alerts[1].FollowUp || alerts[1].Actor != "brute-force" {
		t.Fatalf("attributed %+v", alerts)
	}
	res := check.Compare(s, alerts)
	if len(res) != 1 || res[0].Got != 1 || !res[0].OK() {
		t.Fatalf("results %+v: want raised 1, ok", res)
	}
	rep := &check.Report{Results: res, Alerts: alerts}
	var out bytes.Buffer
	rep.Write(&out)
	for _, want := range []string{"raised 1", "alerts per rule: modbus-output-toggled 1", "not counted: 1 follow-ups of folded alerts"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}
