package modbus

import (
	"slices"

	"github.com/plcwatch/plcwatch"
)

var _ plcwatch.AssetLister = (*Device)(nil)

// Assets names the device at its network address, so that wire events to
// it carry its name (issue 9): for each unit it polls, and weakly (see
// plcwatch.Asset) for the address's other units — a Modbus/TCP device
// often answers any unit id. A device on a serial line, or given by host
// name, has no address on the wire and names nothing. Call after Defaults.
func (d *Device) Assets() []plcwatch.Asset {
	addr := d.serverAddr()
	if !addr.IsValid() || d.Name == "" {
		return nil
	}
	units := []int{d.unitID()}
	for i := range d.Tags {
		if u := d.Tags[i].Unit; u != nil && !slices.Contains(units, *u) {
			units = append(units, *u)
		}
	}
	slices.Sort(units)
	out := []plcwatch.Asset{{Name: d.Name, Addr: addr, Unit: plcwatch.AnyUnit, Weak: true}}
	for _, u := range units {
		out = append(out, plcwatch.Asset{Name: d.Name, Addr: addr, Unit: u})
	}
	return out
}
