// Package eventlog writes the daemon's event log: every decoded event as a
// JSON line (docs/events.md), filtered by op, protocol and source, rotated
// by size — what Zeek's modbus.log and Suricata's eve.json give their users
// (issue 9 §5).
//
// It never slows the capture path: the rules goroutine hands each event
// over without waiting (Offer copies it into a bounded queue), and a writer
// goroutine of its own encodes and writes it. When the queue is full the
// event is dropped from the log and counted — the rules still see it. A
// request emitted twice (StageRequest, then StageResponse with the
// response: the Stage contract) is logged once, as the response stage.
package eventlog

import (
	"log/slog"
	"sync/atomic"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/agent/rotate"
)

// Config configures the event log.
type Config struct {
	Path      string
	MaxBytes  int64    // the file is rotated beyond this
	Keep      int      // rotated files kept (path.1 ... path.<Keep>)
	Ops       []string // only these ops; empty: every op
	Protocols []string // only these protocols; empty: every protocol
	Sources   []string // only these sources (wire, poll); empty: both
	Queue     int      // events waiting for the writer (default 4096)
	Logger    *slog.Logger
}

// Stats are the log's counters.
type Stats struct {
	Written uint64 // lines written
	Dropped uint64 // events dropped because the writer was behind (queue full)
	Errors  uint64 // lines that could not be written (disk full, ...)
}

// Log is a running event log.
type Log struct {
	ch        chan plcwatch.Event
	f         *rotate.File
	log       *slog.Logger
	ops       uint64 // bit per plcwatch.Op; 0: all
	protocols uint64 // bit per plcwatch.Protocol; 0: all
	sources   uint64 // bit per plcwatch.SourceKind; 0: all
	written   atomic.Uint64
	dropped   atomic.Uint64
	errors    atomic.Uint64
	done      chan struct{}
}

// Open opens the log file and starts the writer. Names in the filters must
// be valid (the configuration checks them); unknown ones match nothing.
func Open(cfg Config) (*Log, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	f, err := rotate.Open(cfg.Path, rotate.Options{MaxBytes: cfg.MaxBytes, Keep: cfg.Keep, Buffer: 64 << 10})
	if err != nil {
		return nil, err
	}
	l := &Log{ch: make(chan plcwatch.Event, cfg.Queue), f: f, log: cfg.Logger, done: make(chan struct{})}
	for _, o := range cfg.Ops {
		if op, ok := plcwatch.ParseOp(o); ok {
			l.ops |= 1 << op
		} else {
			l.ops |= 1 << 63 // a filter that matches nothing is still a filter
		}
	}
	for _, p := range cfg.Protocols {
		l.protocols |= 1 << 63
		for i := plcwatch.Protocol(1); i < 8; i++ {
			if i.String() == p {
				l.protocols |= 1 << i
			}
		}
	}
	for _, s := range cfg.Sources {
		l.sources |= 1 << 63
		for i := plcwatch.SourceKind(1); i < 8; i++ {
			if i.String() == s {
				l.sources |= 1 << i
			}
		}
	}
	go l.write()
	return l, nil
}

// Wants reports whether ev goes to the log.
func (l *Log) Wants(ev *plcwatch.Event) bool {
	return ev.Stage != plcwatch.StageRequest &&
		(l.ops == 0 || l.ops&(1<<ev.Op) != 0) &&
		(l.protocols == 0 || l.protocols&(1<<ev.Protocol) != 0) &&
		(l.sources == 0 || l.sources&(1<<ev.Source) != 0)
}

// Offer hands an event to the log without waiting: it is copied, or, when
// the writer is behind, dropped and counted. Not after Close.
func (l *Log) Offer(ev *plcwatch.Event) {
	if !l.Wants(ev) {
		return
	}
	select {
	case l.ch <- *ev:
	default:
		if n := l.dropped.Add(1); n&(n-1) == 0 { // 1, 2, 4, ...: warn without flooding
			l.log.Warn("event log: the writer is behind, events dropped from the log (the rules saw them)", "dropped_total", n)
		}
	}
}

// write is the writer goroutine: it encodes and writes, and flushes
// whenever it has caught up, so that a reader (tail -f) sees each event
// soon after it happened without a write per event under load.
func (l *Log) write() {
	defer close(l.done)
	buf := make([]byte, 0, 1024)
	for ev := range l.ch {
		buf = ev.AppendJSON(buf[:0])
		if err := l.f.WriteLine(buf); err != nil {
			l.failed(err)
		} else {
			l.written.Add(1)
		}
		if len(l.ch) == 0 {
			if err := l.f.Flush(); err != nil {
				l.failed(err)
			}
		}
	}
}

func (l *Log) failed(err error) {
	if n := l.errors.Add(1); n&(n-1) == 0 {
		l.log.Error("event log: cannot write", "err", err, "errors_total", n)
	}
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{Written: l.written.Load(), Dropped: l.dropped.Load(), Errors: l.errors.Load()}
}

// Close writes what is queued, flushes and closes the file.
func (l *Log) Close() error {
	close(l.ch)
	<-l.done
	return l.f.Close()
}
