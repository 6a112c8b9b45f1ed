package inventory

import (
	"context"
	"io"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// ReadCapture builds the inventory of a pcap or pcapng stream, decoded
// with cfg (its ports; defaults filled in). name, when not nil, names the
// servers' wire events (a configured device's name); skipped, when not
// nil, is told of each damaged stretch skipped (capture.ReadOptions). The
// error is capture.ReadWith's: with errors.Is(err,
// capture.ErrTruncatedFile) the inventory is of everything before the cut.
func ReadCapture(ctx context.Context, r io.Reader, cfg capture.Config, name func(*plcwatch.Event), skipped func(*capture.FileError)) (*Inventory, capture.Stats, error) {
	cfg.Defaults()
	cfg.EarlyRequests = false
	if err := cfg.Validate(); err != nil {
		return nil, capture.Stats{}, err
	}
	inv := New()
	e := capture.NewEngine(cfg, func(ev *plcwatch.Event) {
		if name != nil {
			name(ev)
		}
		inv.Observe(ev, nil)
	})
	err := capture.ReadWith(ctx, r, e, capture.ReadOptions{Skipped: skipped})
	return inv, e.Stats(), err
}
