package rules_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/rules"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

// BenchmarkDefaultRulesPoll is the cost per event of the shipped rule set on
// polling traffic (3% writes): what replay --rules adds to decoding.
func BenchmarkDefaultRulesPoll(b *testing.B) {
	set, err := rules.Load("../configs/rules")
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := pcapgen.NewWriter(&buf, pcapgen.Options{})
	o := pcapgen.DefaultPoll
	o.Packets = 200000
	pcapgen.Poll(w, o)
	w.Flush()
	var evs []plcwatch.Event
	var cfg capture.Config
	cfg.Defaults()
	if err := capture.Read(context.Background(), &buf, capture.NewEngine(cfg, func(ev *plcwatch.Event) { evs = append(evs, *ev) })); err != nil {
		b.Fatal(err)
	}
	eng := rules.NewEngine(set, rules.Options{}, func(*plcwatch.Alert) {})
	for i := range evs {
		eng.Process(&evs[i]) // warm up: every group exists
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		eng.Process(&evs[i%len(evs)])
	}
}
