package plcwatch

import "net/netip"

// Asset is a device known by name at a network address: a polled device,
// or one listed under assets: that plcwatch only watches. Wire events to
// its address carry its name in Event.Device, so a rule written for
// "device: plc-1" sees the writes an HMI sends to plc-1 as well as plc-1's
// polled values (issue 9).
type Asset struct {
	Name string
	// Addr is the device's IP address and TCP port; port 0 stands for every
	// port of the address (a PLC that speaks Modbus and OPC UA).
	Addr netip.AddrPort
	// Unit is the Modbus unit id the name is for, 0-255, or AnyUnit. A
	// name for a unit wins over a name for the whole address: the units
	// behind one gateway can each have theirs.
	Unit int
	// Weak marks a name derived rather than given: a polled device's name
	// for the units it does not poll. Two weak names for one address cancel
	// out (it is ambiguous); a given one wins over a weak one.
	Weak bool
	// Tags are free labels from the configuration (zone: cell-3), sorted by
	// key, carried in the alerts of the device's events.
	Tags []Label
}

// AnyUnit is Asset.Unit for a name that holds for every unit.
const AnyUnit = -1

// Label is one key: value tag.
type Label struct{ Key, Value string }

// AssetLister is implemented by the configuration of a device type that
// has a network address (a Modbus device, an OPC UA server): the agent
// asks every configured device for its assets and names wire events to
// their addresses after them.
type AssetLister interface {
	Assets() []Asset
}
