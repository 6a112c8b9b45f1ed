package plcwatch

import "time"

// Poller is a Source that polls devices (a Modbus poller, an OPC UA
// collector): the agent runs every one the same way and reads the same
// counters from each for its metrics, heartbeat and readiness.
type Poller interface {
	Source
	// Stats returns the device's counters; safe to call while Run runs.
	Stats() DeviceStats
	// Ready is closed when the first cycle (or connection attempt) has
	// ended: from then on Stats().Known is true.
	Ready() <-chan struct{}
}

// DeviceStats are a polled device's counters, the same for every
// protocol; a field that a protocol does not have stays 0.
type DeviceStats struct {
	Device       string
	Protocol     Protocol
	Up           bool // the device answered its last request (Modbus: at least one of its units)
	Known        bool // the first cycle has ended: Up means something
	Cycles       uint64
	FailedCycles uint64 // cycles in which a request got no answer
	Overruns     uint64 // cycles skipped because the previous one ran past its slot
	Requests     uint64 // requests sent (Modbus: reads, retries included; OPC UA: Read, CreateSubscription, CreateMonitoredItems)
	Exceptions   uint64 // Modbus exception responses; OPC UA service faults and bad service results
	Timeouts     uint64 // requests that got no answer in time (each attempt)
	Discarded    uint64 // responses set aside: late answers, other transaction ids or units; OPC UA notifications for no tag
	Reconnects   uint64 // connections opened (OPC UA: sessions)
	CycleTime    time.Duration
	LastCycle    time.Duration
	PlannedReads int // read requests per cycle, as planned: Modbus requests after merging; OPC UA Reads (one per MaxNodesPerRead chunk of the read tags, 1 without read tags)
	Units        []UnitStats

	// OPC UA subscriptions.
	Notifications uint64 // monitored item values received
	Gaps          uint64 // subscriptions lost and made again after a reconnect: values that changed in between were not seen
}

// UnitStats is the state of one Modbus unit id a device's tags are read
// from: one for most devices, several behind a gateway.
type UnitStats struct {
	Unit  uint8
	Known bool   // a request to it has been answered or has failed
	Up    bool   // it answered in its last cycle
	Error string // why it is down
}

// FieldError is a problem with one field of a device's configuration,
// named as in YAML ("tags[3].type", "tags[0].node"): the agent puts it at
// that field's file:line:col. Every collector's Validate returns these.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
