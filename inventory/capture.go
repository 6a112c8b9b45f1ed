package inventory

import (
	"context"
	"io"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture"
)

// ReadCapture builds the inventory of a pcap or pcapng stream, decoded
// with cfg (its ports; defaults filled in). name, when not nil, names the
// servers' wire events (a configured device's name).
func ReadCapture(ctx context.Context, r io.Reader, cfg capture.Config, name func(*plcwatch.Event)) (*Inventory, capture.Stats, error) {
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
	err := capture.Read(ctx, r, e)
	return inv, e.Stats(), err
}
