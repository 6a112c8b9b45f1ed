// Package agent is the plcwatch daemon and the offline replay: it wires
// collectors to rules to outputs.
package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/inventory"
	"github.com/plcwatch/plcwatch/rules"
)

// ReplayOptions say what a replay prints.
type ReplayOptions struct {
	Capture  capture.Config
	Events   bool       // print every decoded event as a JSON line
	Rules    *rules.Set // evaluate these and print alerts as JSON lines
	Baseline *rules.Baseline
	Site     string
	Gateway  string

	names *deviceNames // from a configuration (Config.ReplayOptions): wire events carry device names
}

// ReplaySummary is what a replay counted.
type ReplaySummary struct {
	Packets   uint64
	Bytes     uint64
	PDUs      uint64 // protocol messages framed (requests and responses)
	Events    uint64
	Malformed uint64
	NotModbus uint64 // connections on a Modbus port that showed they are not Modbus/TCP
	Flows     uint64
	Alerts    uint64
	Drops     uint64 // events lost between decoding and output (a replay never drops)
	Elapsed   time.Duration
	Truncated bool // the file ended in the middle of a packet
	// TruncatedAt is the byte offset of the packet (pcapng: block) the
	// file ends inside, when Truncated.
	TruncatedAt int64
	// Skipped counts the damaged stretches of a pcapng file that were
	// skipped, reading going on after each; Problems says what the first
	// maxProblems were, with their byte offsets.
	Skipped  uint64
	Problems []string
	Hits     []rules.RuleHits // per rule, when rules were given

	// UnknownLink counts packets of a link type plcwatch does not decode
	// (docs/inputs.md), UnknownLinkTypes says which (at most 8);
	// Undecodable counts packets whose link, IP or TCP header could not be
	// decoded (cut short, or not what it claims).
	UnknownLink      uint64
	UnknownLinkTypes []capture.LinkType
	Undecodable      uint64

	// OtherTCP are the (at most 3) ports with the most TCP packets on no
	// configured port, most first; ModbusPorts and OPCUAPorts are the
	// ports the replay decoded. A capture with no PDUs but TCP traffic
	// elsewhere was most likely read with the wrong ports.
	OtherTCP    []capture.PortCount
	ModbusPorts []uint16
	OPCUAPorts  []uint16
}

// PacketsPerSecond is the replay's throughput.
func (s ReplaySummary) PacketsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

// String is the summary line replay prints on stderr: key=value pairs that
// are easy to read and to grep.
func (s ReplaySummary) String() string {
	line := fmt.Sprintf("replay: packets=%d bytes=%d pdus=%d events=%d malformed=%d flows=%d alerts=%d drops=%d elapsed=%s packets/s=%.0f",
		s.Packets, s.Bytes, s.PDUs, s.Events, s.Malformed, s.Flows, s.Alerts, s.Drops,
		s.Elapsed.Round(time.Microsecond), s.PacketsPerSecond())
	if s.NotModbus > 0 {
		line += fmt.Sprintf(" not_modbus=%d", s.NotModbus)
	}
	if s.UnknownLink > 0 {
		line += fmt.Sprintf(" unknown_link=%d", s.UnknownLink)
	}
	if s.Undecodable > 0 {
		line += fmt.Sprintf(" undecodable=%d", s.Undecodable)
	}
	if s.Skipped > 0 {
		line += fmt.Sprintf(" skipped=%d", s.Skipped)
	}
	if s.Truncated {
		line += " truncated=true"
	}
	return line
}

// WriteHits prints the per-rule table: every enabled rule, hit or not, so
// that a rule that never fires is as visible as one that fires too often.
func WriteHits(w io.Writer, hits []rules.RuleHits) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "rule\tmatched\talerts\tfolded\terrors\toverflow\t")
	for _, h := range hits {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", h.ID, h.Matched, h.Alerts, h.Folded, h.Errors, h.Overflow)
	}
	tw.Flush()
}

// pipeline is the offline path from events to output: print the event,
// evaluate it, print the alerts.
type pipeline struct {
	opts   ReplayOptions
	w      *bufio.Writer
	buf    []byte
	err    error
	engine *rules.Engine
	inv    *inventory.Inventory // with rules: its op asset events go through them
	found  plcwatch.Emit        // p.engine.Process, bound once: a method value made per event is an allocation
	alerts uint64
}

func newPipeline(opts ReplayOptions, out io.Writer) *pipeline {
	p := &pipeline{opts: opts, w: bufio.NewWriterSize(out, 256<<10)}
	if opts.Rules != nil {
		p.engine = rules.NewEngine(opts.Rules, rules.Options{Site: opts.Site, Gateway: opts.Gateway, Baseline: opts.Baseline}, p.alert)
		if opts.Rules.WantsAssets() {
			p.inv, p.found = inventory.NewForAssets(), p.engine.Process
		}
	}
	return p
}

func (p *pipeline) write() {
	if p.err == nil {
		p.buf = append(p.buf, '\n')
		_, p.err = p.w.Write(p.buf)
	}
}

func (p *pipeline) event(ev *plcwatch.Event) {
	p.opts.names.Name(ev)
	// One event per request in what a user reads: the request's early
	// copy (StageRequest) is for the rules only (issue 9 §4).
	if p.opts.Events && ev.Stage != plcwatch.StageRequest {
		p.buf = ev.AppendJSON(p.buf[:0])
		p.write()
	}
	if p.engine != nil {
		if p.inv != nil && ev.Source == plcwatch.Wire {
			p.inv.Observe(ev, p.found)
		}
		p.engine.Process(ev)
	}
}

func (p *pipeline) alert(a *plcwatch.Alert) {
	p.alerts++
	a.DeviceTags = p.opts.names.Tags(a.Event.Device)
	p.buf = a.AppendJSON(p.buf[:0])
	p.write()
}

// finish flushes pending folds, saves the baseline and the output.
func (p *pipeline) finish(sum *ReplaySummary) error {
	var errs []error
	if p.engine != nil {
		p.engine.Close()
		sum.Hits = p.engine.Hits()
		if p.opts.Baseline != nil {
			errs = append(errs, p.opts.Baseline.Save())
		}
	}
	sum.Alerts = p.alerts
	if err := p.w.Flush(); p.err == nil {
		p.err = err
	}
	if p.err != nil {
		errs = append(errs, fmt.Errorf("write output: %w", p.err))
	}
	return errors.Join(errs...)
}

// maxProblems bounds ReplaySummary.Problems: a file damaged all through
// would otherwise make a line per block.
const maxProblems = 20

// Replay decodes a capture file as fast as the machine allows and writes
// events (when asked) and alerts (when rules are given) to out as JSON
// lines. path "-" is standard input, decoded as it arrives: each line is
// written (flushed) the moment it is decoded, not at the end.
func Replay(ctx context.Context, path string, opts ReplayOptions, out io.Writer) (ReplaySummary, error) {
	cfg := opts.Capture
	cfg.Defaults()
	// With rules, requests reach them the moment they are complete on the
	// wire, as in the daemon: live and offline raise the same alerts in
	// the same order (issue 9).
	cfg.EarlyRequests = opts.Rules != nil
	if err := cfg.Validate(); err != nil {
		return ReplaySummary{}, fmt.Errorf("capture config: %w", err)
	}
	p := newPipeline(opts, out)
	e := capture.NewEngine(cfg, p.event)
	start := time.Now()
	var skipped uint64
	var problems []string
	ropts := capture.ReadOptions{Skipped: func(fe *capture.FileError) {
		skipped++
		if len(problems) < maxProblems {
			problems = append(problems, fe.Error())
		}
	}}
	var err error
	if path == "-" {
		// Everything decoded is written out before each read of the
		// pipe, which may wait for the writer: a line waits for no more
		// than the packets already read, and a fast pipe still fills the
		// reader's buffer (1 MiB) per write.
		// ContextReader: Ctrl-C ends a read of a quiet pipe at once.
		in := flushBeforeRead{r: capture.ContextReader(ctx, os.Stdin), flush: func() {
			if p.err == nil {
				p.err = p.w.Flush()
			}
		}}
		if err = capture.ReadWith(ctx, in, e, ropts); err != nil {
			err = fmt.Errorf("standard input: %w", err)
		}
	} else {
		err = capture.ReadFileWith(ctx, path, e, ropts)
	}
	st := e.Stats()
	sum := ReplaySummary{
		Packets:   st.Packets,
		Bytes:     st.Bytes,
		PDUs:      st.Modbus.Requests + st.Modbus.Responses + st.OPCUA.Requests + st.OPCUA.Responses,
		Events:    st.Modbus.Events + st.OPCUA.Events,
		Malformed: st.Modbus.Malformed + st.OPCUA.Malformed,
		NotModbus: st.Modbus.NotModbus,
		Flows:     st.Flows,
		Skipped:   skipped,
		Problems:  problems,

		UnknownLink:      st.UnknownLink,
		UnknownLinkTypes: e.UnknownLinkTypes(),
		Undecodable:      st.Undecodable,

		OtherTCP:    e.OtherPorts(3),
		ModbusPorts: cfg.ModbusPorts,
		OPCUAPorts:  cfg.OPCUAPorts,
	}
	if errors.Is(err, capture.ErrTruncatedFile) {
		sum.Truncated = true
		var fe *capture.FileError
		if errors.As(err, &fe) {
			sum.TruncatedAt = fe.Offset
		}
		err = nil
	}
	ferr := p.finish(&sum)
	sum.Elapsed = time.Since(start)
	return sum, errors.Join(err, ferr)
}

// flushBeforeRead calls flush before each read of r.
type flushBeforeRead struct {
	r     io.Reader
	flush func()
}

func (f flushBeforeRead) Read(b []byte) (int, error) {
	f.flush()
	return f.r.Read(b)
}

// ReplayEvents evaluates events read as JSON lines (what replay --events
// prints) instead of decoding a capture: rules can be tested on polled
// values and hand-written scenarios too.
func ReplayEvents(ctx context.Context, path string, opts ReplayOptions, out io.Writer) (ReplaySummary, error) {
	f, err := os.Open(path)
	if err != nil {
		return ReplaySummary{}, err
	}
	defer f.Close()
	p := newPipeline(opts, out)
	start := time.Now()
	var sum ReplaySummary
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if ctx.Err() != nil {
			err = ctx.Err()
			break
		}
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		var ev plcwatch.Event
		if uerr := json.Unmarshal([]byte(text), &ev); uerr != nil {
			err = fmt.Errorf("%s:%d: %w", path, line, uerr)
			break
		}
		sum.Events++
		if ev.Malformed != "" {
			sum.Malformed++
		}
		p.event(&ev)
	}
	if err == nil {
		err = sc.Err()
	}
	ferr := p.finish(&sum)
	sum.Elapsed = time.Since(start)
	return sum, errors.Join(err, ferr)
}
