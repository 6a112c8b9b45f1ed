package eventlog

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
)

func ev(src plcwatch.SourceKind, proto plcwatch.Protocol, op plcwatch.Op, stage plcwatch.Stage, addr uint16) plcwatch.Event {
	// The client's port tells the events apart in the log.
	return plcwatch.Event{Time: time.Unix(1700000000, 0), Source: src, Protocol: proto, Op: op, Stage: stage,
		Client: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.9"), 40000+addr), Server: netip.MustParseAddrPort("10.0.0.3:502"), Function: 6}
}

func lines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// The filters, and one line per request: a request's StageRequest event
// is not logged, its StageResponse (or StageWhole) event is.
func TestFilterAndStages(t *testing.T) {
	all := []plcwatch.Event{
		ev(plcwatch.Wire, plcwatch.ProtoModbus, plcwatch.OpWrite, plcwatch.StageRequest, 1),  // request stage: never
		ev(plcwatch.Wire, plcwatch.ProtoModbus, plcwatch.OpWrite, plcwatch.StageResponse, 1), // the same request, answered
		ev(plcwatch.Wire, plcwatch.ProtoModbus, plcwatch.OpRead, plcwatch.StageWhole, 2),
		ev(plcwatch.Poll, plcwatch.ProtoModbus, plcwatch.OpRead, plcwatch.StageWhole, 3),
		ev(plcwatch.Wire, plcwatch.ProtoOPCUA, plcwatch.OpWrite, plcwatch.StageWhole, 4),
		ev(plcwatch.Poll, plcwatch.ProtoModbus, plcwatch.OpStatus, plcwatch.StageWhole, 5),
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []float64 // events logged, by the last digit of their client port
	}{
		{"everything", Config{}, []float64{1, 2, 3, 4, 5}},
		{"writes", Config{Ops: []string{"write"}}, []float64{1, 4}},
		{"modbus writes", Config{Ops: []string{"write"}, Protocols: []string{"modbus"}}, []float64{1}},
		{"wire", Config{Sources: []string{"wire"}}, []float64{1, 2, 4}},
		{"poll status and reads", Config{Sources: []string{"poll"}, Ops: []string{"status", "read"}}, []float64{3, 5}},
		{"opcua", Config{Protocols: []string{"opcua"}}, []float64{4}},
		{"an op that matches nothing", Config{Ops: []string{"nonsense"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Path = filepath.Join(t.TempDir(), "events.jsonl")
			tc.cfg.MaxBytes = 1 << 20
			l, err := Open(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range all {
				l.Offer(&all[i])
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			var got []float64
			for _, m := range lines(t, tc.cfg.Path) {
				if _, ok := m["schema"]; ok {
					t.Errorf("an alert in the event log: %v", m)
				}
				ap, err := netip.ParseAddrPort(m["client"].(string))
				if err != nil {
					t.Fatalf("client %v", m["client"])
				}
				got = append(got, float64(ap.Port()-40000))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("logged %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("logged %v, want %v", got, tc.want)
				}
			}
			if st := l.Stats(); st.Written != uint64(len(tc.want)) || st.Dropped != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// A writer that is behind never holds up the caller: events beyond the
// queue are dropped and counted.
func TestFullQueueDropsAndCounts(t *testing.T) {
	// A Log whose writer has not started: the queue fills.
	l := &Log{ch: make(chan plcwatch.Event, 3), log: slog.New(slog.DiscardHandler), done: make(chan struct{})}
	e := ev(plcwatch.Wire, plcwatch.ProtoModbus, plcwatch.OpWrite, plcwatch.StageWhole, 1)
	for range 10 {
		l.Offer(&e) // never blocks
	}
	if st := l.Stats(); st.Dropped != 7 || len(l.ch) != 3 {
		t.Errorf("stats %+v, queue %d", st, len(l.ch))
	}
}

// The log rotates by size and keeps keep old files.
func TestRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	l, err := Open(Config{Path: path, MaxBytes: 2000, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	e := ev(plcwatch.Wire, plcwatch.ProtoModbus, plcwatch.OpWrite, plcwatch.StageWhole, 1)
	for range 100 {
		l.Offer(&e)
		time.Sleep(time.Millisecond) // let the writer keep up: this test is about rotation
	}
	l.Close()
	files, _ := filepath.Glob(path + "*")
	if len(files) != 3 {
		t.Fatalf("files %v, want the log and 2 old ones", files)
	}
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Size() > 2000 {
			t.Errorf("%s is %d bytes, beyond max_bytes", f, fi.Size())
		}
		lines(t, f) // every line whole
	}
}
