package agent

import (
	"fmt"
	"slices"

	"github.com/plcwatch/plcwatch/rules"
)

// correlatedDevices names the polled devices whose traffic the capture
// also sees: a network address (not a serial line or a host name) whose
// port is one of the capture's ports, with an interface to capture on.
// The process image joins only those (docs/correlation.md).
func (c *Config) correlatedDevices() []string {
	if len(c.Capture.Interfaces) == 0 {
		return nil
	}
	ports := c.Capture.Ports()
	var out []string
	for i := range c.Modbus.Devices {
		for _, a := range c.Modbus.Devices[i].Assets() {
			if slices.Contains(ports, a.Addr.Port()) && !slices.Contains(out, a.Name) {
				out = append(out, a.Name)
			}
		}
	}
	return out
}

// CorrelationWarnings are the rules of set that name a field of the
// process image (written, polled, ...) when no device is both polled and
// on a captured link: they can never fire. One line per rule, as
// file:line: message.
func (c *Config) CorrelationWarnings(set *rules.Set) []string {
	if set == nil || len(c.correlatedDevices()) > 0 {
		return nil
	}
	var out []string
	for _, r := range set.Enabled() {
		if r.Correlates() {
			out = append(out, fmt.Sprintf("%s:%d: rule %s compares polled and wire values, but no polled device is on a captured link (a modbus device whose port is in capture.modbus_ports, with capture.interfaces): it will never fire", r.File, r.Line, r.ID))
		}
	}
	return out
}

// warnCorrelation adds CorrelationWarnings to the configuration's
// warnings.
func (c *Config) warnCorrelation(set *rules.Set) {
	for _, w := range c.CorrelationWarnings(set) {
		c.warn("rules.paths", "%s", w)
	}
}
