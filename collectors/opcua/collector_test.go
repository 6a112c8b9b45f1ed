package opcua

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/sim/opcuasim"
)

// watch runs a collector for d until the test ends and hands its events
// over a channel.
type watch struct {
	t   *testing.T
	c   *Collector
	evs chan plcwatch.Event
}

func start(t *testing.T, d Device, opts Options) *watch {
	t.Helper()
	d.Defaults()
	if errs := d.Validate(); len(errs) > 0 {
		t.Fatalf("device: %v", errs)
	}
	c, err := New(d, opts)
	if err != nil {
		t.Fatal(err)
	}
	w := &watch{t: t, c: c, evs: make(chan plcwatch.Event, 100000)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func(ev *plcwatch.Event) {
			select {
			case w.evs <- *ev:
			default:
				t.Error("test event buffer full")
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// until reads events until ok says it has seen enough, for at most d.
func (w *watch) until(d time.Duration, what string, ok func(ev *plcwatch.Event) bool) {
	w.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case ev := <-w.evs:
			if ok(&ev) {
				return
			}
		case <-deadline.C:
			w.t.Fatalf("no %s within %v (stats %+v)", what, d, w.c.Stats())
		}
	}
}

func simServer(t *testing.T, cfg opcuasim.Config, vars map[string]any) *opcuasim.Server {
	t.Helper()
	s, err := opcuasim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range opcuasim.Builtins() {
		if err := s.Add(b.Name, b.Value); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range vars {
		if err := s.Add(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// want is what an event of builtin b carries: its number, text or array.
func checkBuiltin(t *testing.T, b opcuasim.Builtin, ev *plcwatch.Event) {
	t.Helper()
	wantType := strings.TrimSuffix(b.Name, "Array")
	if ev.ValueType != wantType {
		t.Errorf("%s: value_type %q, want %q", ev.Tag, ev.ValueType, wantType)
	}
	if ev.Quality != "good" || ev.Status != 0 || ev.Error != "" {
		t.Errorf("%s: quality %s status %d error %q", ev.Tag, ev.Quality, ev.Status, ev.Error)
	}
	if ev.SourceTime.IsZero() || ev.ServerTime.IsZero() {
		t.Errorf("%s: timestamps %v %v", ev.Tag, ev.SourceTime, ev.ServerTime)
	}
	// Values written out, not computed with the code under test.
	want := map[string]any{
		"Boolean": 1.0, "SByte": -8.0, "Byte": 200.0, "Int16": -1600.0, "UInt16": 60000.0, "Int32": -320000.0,
		"UInt32": 4e9, "Int64": -6.4e9, "UInt64": 1.28e10, "Float": 3.25, "Double": 6.125,
		"String": "running", "DateTime": "2026-11-29T08:30:00Z", "Guid": "72962B91-FA75-4AE6-8D28-B404DC7DAF63",
		"ByteString": "3q2+7w==", "XmlElement": "<a>1</a>", "NodeId": "ns=1;s=Pump1", "ExpandedNodeId": "i=2253",
		"StatusCode": "BadSensorFailure", "QualifiedName": "1:Pump1", "LocalizedText": "Pump 1",
		"BooleanArray": []float64{1, 0, 1}, "Int16Array": []float64{-1, 0, 1}, "UInt16Array": []float64{1, 2, 3},
		"Int32Array": []float64{-100, 200, -300}, "UInt32Array": []float64{10, 20}, "FloatArray": []float64{1.5, -2.5},
		"DoubleArray": []float64{0.5, 1.5, 2.5, 3.5}, "StringArray": `["a","b"]`,
	}[b.Name]
	switch w := want.(type) {
	case float64:
		if ev.Value != w || ev.Raw != w {
			t.Errorf("%s: value %v raw %v, want %v", ev.Tag, ev.Value, ev.Raw, w)
		}
	case string:
		if !strings.EqualFold(ev.Text, w) || ev.HasValue() {
			t.Errorf("%s: text %q value %v, want text %q", ev.Tag, ev.Text, ev.Value, w)
		}
	case []float64:
		var got []float64
		for i := range ev.Values.Len() {
			got = append(got, ev.Values.Float(i))
		}
		if fmt.Sprint(got) != fmt.Sprint(w) || int(ev.Count) != len(w) {
			t.Errorf("%s: values %v count %d, want %v", ev.Tag, got, ev.Count, w)
		}
	default:
		t.Fatalf("no expectation for %s", b.Name)
	}
}

// TestBuiltinTypes: every built-in scalar type and the arrays arrive
// through a subscription and through reads, with their status codes:
// Uncertain and Bad set on the server show as quality uncertain and bad.
func TestBuiltinTypes(t *testing.T) {
	s := simServer(t, opcuasim.Config{}, map[string]any{"Level": 10.0})
	d := Device{Name: "sim", Endpoint: s.Endpoint(), Interval: 200 * time.Millisecond, Security: Security{Policy: "None", Mode: "None"}}
	two := 2.0
	for _, b := range opcuasim.Builtins() {
		node := fmt.Sprintf("ns=%d;s=%s", s.NamespaceIndex(), b.Name)
		d.Tags = append(d.Tags, Tag{Name: "sub." + b.Name, Node: node}, Tag{Name: "read." + b.Name, Node: node, Mode: "read"})
	}
	d.Tags = append(d.Tags, Tag{Name: "sub.Level", Node: "nsu=urn:plcwatch:sim;s=Level", Scale: &two, Offset: 1},
		Tag{Name: "read.Level", Node: "nsu=urn:plcwatch:sim;s=Level", Mode: "read", Scale: &two, Offset: 1})
	w := start(t, d, Options{})
	byName := map[string]opcuasim.Builtin{}
	for _, b := range opcuasim.Builtins() {
		byName[b.Name] = b
	}
	seen := map[string]bool{}
	w.until(30*time.Second, "every tag by subscription and by read", func(ev *plcwatch.Event) bool {
		if ev.Op != plcwatch.OpRead || seen[ev.Tag] {
			return false
		}
		seen[ev.Tag] = true
		if ev.Protocol != plcwatch.ProtoOPCUA || ev.Source != plcwatch.Poll || ev.Device != "sim" || ev.Endpoint != s.Endpoint() {
			t.Errorf("%s: event %+v", ev.Tag, ev)
		}
		wantService := "Publish"
		if strings.HasPrefix(ev.Tag, "read.") {
			wantService = "Read"
		}
		if ev.Service != wantService {
			t.Errorf("%s: service %q, want %s", ev.Tag, ev.Service, wantService)
		}
		name := ev.Tag[strings.IndexByte(ev.Tag, '.')+1:]
		if name == "Level" {
			if ev.Value != 21 || ev.Raw != 10 {
				t.Errorf("%s: value %v raw %v, want 21 (10 × 2 + 1)", ev.Tag, ev.Value, ev.Raw)
			}
		} else {
			checkBuiltin(t, byName[name], ev)
		}
		return len(seen) == len(d.Tags)
	})
	if err := s.SetStatus("Double", 7.5, ua.StatusUncertainLastUsableValue); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus("Int32", nil, ua.StatusBadSensorFailure); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	w.until(30*time.Second, "Uncertain and Bad by both ways", func(ev *plcwatch.Event) bool {
		switch {
		case strings.HasSuffix(ev.Tag, ".Double") && ev.Quality == "uncertain":
			if ev.Value != 7.5 || ev.Status != uint32(ua.StatusUncertainLastUsableValue) || ev.StatusName != "UncertainLastUsableValue" {
				t.Errorf("%s: %v %x %s", ev.Tag, ev.Value, ev.Status, ev.StatusName)
			}
			got[ev.Tag] = true
		case strings.HasSuffix(ev.Tag, ".Int32") && ev.Quality == "bad":
			if ev.HasValue() || !math.IsNaN(ev.Raw) || ev.Error != "BadSensorFailure" || ev.Status != uint32(ua.StatusBadSensorFailure) {
				t.Errorf("%s: %v %q %x", ev.Tag, ev.Value, ev.Error, ev.Status)
			}
			got[ev.Tag] = true
		}
		return len(got) == 4
	})
	if st := w.c.Stats(); !st.Up || st.Reconnects != 1 || st.Notifications == 0 || st.Protocol != plcwatch.ProtoOPCUA {
		t.Errorf("stats %+v", st)
	}
}

// TestReadChunksAndBadTags: read tags are read in Reads of at most the
// server's MaxNodesPerRead (more would be a ServiceFault, which gopcua
// takes for a lost connection), and a tag whose node does not exist, or
// whose namespace URI the server lacks, is bad alone.
func TestReadChunksAndBadTags(t *testing.T) {
	s := simServer(t, opcuasim.Config{MaxNodesPerRead: 4}, nil)
	p := newProxy(t, fmt.Sprintf("127.0.0.1:%d", s.Port()))
	d := Device{Name: "sim", Endpoint: "opc.tcp://" + p.addr(), Interval: 300 * time.Millisecond, Security: Security{Policy: "None", Mode: "None"}}
	for _, b := range opcuasim.Builtins()[:10] {
		d.Tags = append(d.Tags, Tag{Name: b.Name, Node: "ns=1;s=" + b.Name, Mode: "read"})
	}
	d.Tags = append(d.Tags, Tag{Name: "missing", Node: "ns=1;s=NoSuchVariable", Mode: "read"},
		Tag{Name: "elsewhere", Node: "nsu=urn:not:here;s=x", Mode: "read"},
		Tag{Name: "missing-sub", Node: "ns=1;s=NoSuchVariable"})
	w := start(t, d, Options{})
	good, bad := map[string]int{}, map[string]string{}
	w.until(30*time.Second, "three cycles of every tag", func(ev *plcwatch.Event) bool {
		if ev.Op != plcwatch.OpRead {
			return false
		}
		if ev.Quality == "good" {
			good[ev.Tag]++
		} else {
			bad[ev.Tag] = ev.Error
			// A status the server gave is shown; none is absent, not Good.
			if want := ev.Tag != "elsewhere"; ev.Shows(plcwatch.FieldStatus) != want || (want && ev.Status == 0) {
				t.Errorf("%s: status %d shown %v", ev.Tag, ev.Status, ev.Shows(plcwatch.FieldStatus))
			}
		}
		for _, b := range opcuasim.Builtins()[:10] {
			if good[b.Name] < 3 {
				return false
			}
		}
		return len(bad) == 3
	})
	if bad["missing"] != "BadNodeIdUnknown" || !strings.Contains(bad["elsewhere"], "urn:not:here") || bad["missing-sub"] == "" {
		t.Errorf("bad tags: %q", bad)
	}
	if st := w.c.Stats(); st.Reconnects != 1 || st.Exceptions != 0 {
		t.Errorf("a read over the limit was sent: stats %+v", st)
	}
	// 11 read tags resolved (10 good, 1 unknown) in Reads of at most 4:
	// 3 per cycle, and the first Read of the limits.
	if st, reads := w.c.Stats(), p.seen()["ReadRequest"]; reads < 3*int(st.Cycles) {
		t.Errorf("%d Reads in %d cycles: want 3 per cycle", reads, st.Cycles)
	}
	// plcwatch_poll_planned_requests: the Reads of a cycle, not the tags
	// (issue 10).
	if st := w.c.Stats(); st.PlannedReads != 3 {
		t.Errorf("planned %d Reads per cycle, want 3", st.PlannedReads)
	}
}

// TestPlannedReads: one Read per MaxNodesPerRead chunk of the resolved
// read tags, one without a limit, and one (CurrentTime) without read tags.
func TestPlannedReads(t *testing.T) {
	for _, tc := range []struct{ tags, max, want int }{
		{3, 0, 1}, {3, 1000, 1}, {0, 0, 1}, {0, 4, 1}, {11, 4, 3}, {12, 4, 3}, {13, 4, 4}, {1, 1, 1}, {5, 1, 5},
	} {
		if got := plannedReads(tc.tags, tc.max); got != tc.want {
			t.Errorf("%d tags, MaxNodesPerRead %d: %d Reads, want %d", tc.tags, tc.max, got, tc.want)
		}
	}
}

// TestRecoveryServerRestart: the server stops and starts again; the
// collector reports the device down, then up, and values flow again —
// through a new subscription, counted as a gap — within 10 s of the
// server being back.
func TestRecoveryServerRestart(t *testing.T) {
	s := simServer(t, opcuasim.Config{}, map[string]any{"Level": 1.0, "Count": int32(1)})
	d := Device{Name: "sim", Endpoint: s.Endpoint(), Interval: 200 * time.Millisecond, Timeout: time.Second,
		Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, Security: Security{Policy: "None", Mode: "None"},
		Tags: []Tag{{Name: "level", Node: "ns=1;s=Level"}, {Name: "count", Node: "ns=1;s=Count", Mode: "read"}}}
	w := start(t, d, Options{})
	w.until(20*time.Second, "first values", func(ev *plcwatch.Event) bool { return ev.Tag == "level" && ev.Value == 1 })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	w.until(20*time.Second, "a down event", func(ev *plcwatch.Event) bool {
		return ev.Op == plcwatch.OpStatus && ev.Quality == "down"
	})
	s.Set("Level", 2.0)
	s.Set("Count", int32(2))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	up, level, count := false, false, false
	w.until(10*time.Second, "up and values after the restart", func(ev *plcwatch.Event) bool {
		switch {
		case ev.Op == plcwatch.OpStatus && ev.Quality == "up":
			up = true
		case ev.Tag == "level" && ev.Value == 2:
			level = up
		case ev.Tag == "count" && ev.Value == 2:
			count = up
		}
		return up && level && count
	})
	t.Logf("values back %v after the server", time.Since(back))
	if st := w.c.Stats(); st.Gaps != 1 || st.Reconnects < 2 {
		t.Errorf("stats %+v: want one subscription gap", st)
	}
}

// TestRecoveryNetworkCut: the network between collector and server goes
// silent (no FIN, no RST); the collector notices within its interval and
// timeout, reports down, and is back with values within 10 s of the
// network.
func TestRecoveryNetworkCut(t *testing.T) {
	s := simServer(t, opcuasim.Config{}, map[string]any{"Level": 1.0})
	p := newProxy(t, fmt.Sprintf("127.0.0.1:%d", s.Port()))
	d := Device{Name: "sim", Endpoint: "opc.tcp://" + p.addr(), Interval: 200 * time.Millisecond, Timeout: time.Second,
		ConnectTimeout: 2 * time.Second, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		Security: Security{Policy: "None", Mode: "None"}, Tags: []Tag{{Name: "level", Node: "ns=1;s=Level"}}}
	w := start(t, d, Options{})
	w.until(20*time.Second, "first values", func(ev *plcwatch.Event) bool { return ev.Tag == "level" && ev.Value == 1 })
	p.setCut(true)
	w.until(20*time.Second, "a down event", func(ev *plcwatch.Event) bool {
		return ev.Op == plcwatch.OpStatus && ev.Quality == "down"
	})
	s.Set("Level", 3.0)
	time.Sleep(time.Second) // a few failed attempts while cut
	p.setCut(false)
	up := false
	w.until(10*time.Second, "up and values after the cut", func(ev *plcwatch.Event) bool {
		if ev.Op == plcwatch.OpStatus && ev.Quality == "up" {
			up = true
		}
		return up && ev.Tag == "level" && ev.Value == 3
	})
}

// TestDownAtStart: a server that is not there at start is retried, never
// fatal, and monitored once it comes.
func TestDownAtStart(t *testing.T) {
	s, err := opcuasim.New(opcuasim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Add("Level", 5.0)
	d := Device{Name: "late", Endpoint: s.Endpoint(), Interval: 200 * time.Millisecond, Backoff: 100 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, Security: Security{Policy: "None", Mode: "None"}, Tags: []Tag{{Name: "level", Node: "ns=1;s=Level"}}}
	w := start(t, d, Options{})
	w.until(20*time.Second, "a down event", func(ev *plcwatch.Event) bool {
		return ev.Op == plcwatch.OpStatus && ev.Quality == "down" && strings.Contains(ev.Error, "GetEndpoints")
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w.until(20*time.Second, "the value", func(ev *plcwatch.Event) bool { return ev.Tag == "level" && ev.Value == 5 })
}

// TestTelemetryCarriesArraysAndText: an array's numbers are in its
// telemetry entry's values and its texts in text, as in the event (issue
// 10: the event had "values":[0.5,1.5,2.5] and telemetry only
// "value":null,"raw":null), by read and by subscription.
func TestTelemetryCarriesArraysAndText(t *testing.T) {
	s := simServer(t, opcuasim.Config{}, map[string]any{"Level": 10.0})
	for _, b := range opcuasim.Builtins() {
		if b.Name == "DoubleArray" || b.Name == "StringArray" || b.Name == "String" {
			s.Add(b.Name, b.Value)
		}
	}
	d := Device{Name: "sim", Endpoint: s.Endpoint(), Interval: 200 * time.Millisecond, Security: Security{Policy: "None", Mode: "None"}}
	for _, n := range []string{"DoubleArray", "StringArray", "String", "Level"} {
		node := "nsu=urn:plcwatch:sim;s=" + n
		d.Tags = append(d.Tags, Tag{Name: "read." + n, Node: node, Mode: "read", UOM: "m"}, Tag{Name: "sub." + n, Node: node})
	}
	docs := make(chan []byte, 100)
	start(t, d, Options{Telemetry: func(_ string, p []byte) {
		select {
		case docs <- bytes.Clone(p):
		default:
		}
	}})
	want := map[string]string{
		"DoubleArray": `{"value":null,"raw":null,"values":[0.5,1.5,2.5,3.5],"quality":"good"`,
		"StringArray": `{"value":null,"raw":null,"text":"[\"a\",\"b\"]","quality":"good"`,
		"String":      `{"value":null,"raw":null,"text":"running","quality":"good"`,
		"Level":       `{"value":10,"raw":10,"quality":"good"`,
	}
	found := map[string]bool{}
	deadline := time.After(60 * time.Second)
	for len(found) < 2*len(want) {
		select {
		case doc := <-docs:
			var v struct{ Tags map[string]json.RawMessage }
			if err := json.Unmarshal(doc, &v); err != nil {
				t.Fatalf("%v: %s", err, doc)
			}
			for tag, entry := range v.Tags {
				w := want[tag[strings.IndexByte(tag, '.')+1:]]
				if strings.HasPrefix(tag, "read.") {
					w += `,"uom":"m"`
				}
				if string(entry) != w+"}" {
					t.Errorf("%s: %s, want %s}", tag, entry, w)
				}
				found[tag] = true
			}
		case <-deadline:
			t.Fatalf("telemetry of %v only", found)
		}
	}
}
