// Package agent is the plcwatch daemon and the offline replay: it wires
// collectors to rules to outputs.
package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// ReplayOptions say what a replay prints.
type ReplayOptions struct {
	Capture capture.Config
	Events  bool // print every decoded event as a JSON line
}

// ReplaySummary is what a replay counted.
type ReplaySummary struct {
	Packets   uint64
	Bytes     uint64
	PDUs      uint64 // protocol messages framed (requests and responses)
	Events    uint64
	Malformed uint64
	Flows     uint64
	Alerts    uint64
	Drops     uint64 // events lost between decoding and output (a replay never drops)
	Elapsed   time.Duration
	Truncated bool // the file ended in the middle of a packet
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
	if s.Truncated {
		line += " truncated=true"
	}
	return line
}

// Replay decodes a capture file as fast as the machine allows and writes
// what opts asks for to out as JSON lines.
func Replay(ctx context.Context, path string, opts ReplayOptions, out io.Writer) (ReplaySummary, error) {
	cfg := opts.Capture
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return ReplaySummary{}, fmt.Errorf("capture config: %w", err)
	}
	w := bufio.NewWriterSize(out, 256<<10)
	var buf []byte
	var werr error
	emit := func(ev *plcwatch.Event) {
		if !opts.Events || werr != nil {
			return
		}
		buf = ev.AppendJSON(buf[:0])
		buf = append(buf, '\n')
		_, werr = w.Write(buf)
	}
	e := capture.NewEngine(cfg, emit)
	start := time.Now()
	err := capture.ReadFile(ctx, path, e)
	elapsed := time.Since(start)
	st := e.Stats()
	sum := ReplaySummary{
		Packets:   st.Packets,
		Bytes:     st.Bytes,
		PDUs:      st.Modbus.Requests + st.Modbus.Responses,
		Events:    st.Modbus.Events,
		Malformed: st.Modbus.Malformed,
		Flows:     st.Flows,
		Elapsed:   elapsed,
	}
	if errors.Is(err, capture.ErrTruncatedFile) {
		sum.Truncated = true
		err = nil
	}
	if ferr := w.Flush(); werr == nil {
		werr = ferr
	}
	if err == nil && werr != nil {
		err = fmt.Errorf("write events: %w", werr)
	}
	return sum, err
}
