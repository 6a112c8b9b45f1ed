package rules

import (
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/plcwatch/plcwatch"
)

// DefaultMaxImage bounds the polled tags and nodes the process image
// follows (a gateway polling 100 devices of 1,000 tags needs 100,000).
const DefaultMaxImage = 100000

// maxImageRegs is how many registers (or bits) of one tag the image
// compares: every numeric type fits (64-bit types are 4 registers); the
// first 8 registers of a longer string tag stand for it.
const maxImageRegs = 8

// Decoder turns a tag's registers, as on the wire (big-endian, 2 bytes
// each; bits one byte each, 0 or 1), into its engineering value, as the
// poller decodes them. ok is false when they do not make a value.
type Decoder func(wire []byte) (value float64, ok bool)

// image is the process image (issue 13): for every polled tag — per
// (server, unit, table, address) for Modbus, per (server, node) for OPC
// UA — the value plcwatch polled and when, the last write seen on the wire
// to it (value, writer, time, status) and the last read response seen on
// the wire of it (value, reader, time). It lives in the engine's goroutine
// and fills the correlation fields of the events that pass (Event.Written
// ... Event.Cycle).
//
// Only polled tags have entries: a wire event to a server that plcwatch
// does not poll costs one map lookup, and an engine that polls nothing
// skips the image altogether. Entries are made by polls, at most max of
// them; a poll of a tag beyond that is counted in overflow and not
// correlated (plcwatch_process_image_full_total).
type image struct {
	servers  map[uint64]*server         // IPv4 servers, by address and port in one word: it hashes fastest
	servers6 map[netip.AddrPort]*server // IPv6 servers
	nodes    map[nodeKey]*imageEntry
	n        int
	max      int
	decoder  func(device, tag string) Decoder
	overflow atomic.Uint64
	scratch  [2 * maxImageRegs]byte
}

// server is a polled server: its tables, and whether the capture sees it.
type server struct {
	blocks []*block // few: one per polled unit and table
	// wire: a wire event of this server was seen, so the capture sees
	// its link and a change without a write means something.
	wire bool
}

type nodeKey struct {
	server netip.AddrPort
	node   string
}

// block holds the polled tags of one table, sorted by address, so that a
// wire read or write finds those it covers by binary search.
type block struct {
	unit    uint8
	table   plcwatch.Table
	entries []*imageEntry
}

// imageEntry is one polled tag.
type imageEntry struct {
	tag, device string
	address     uint16
	count       uint16 // registers or bits the tag spans
	n           uint8  // of them compared: min(count, maxImageRegs)
	bits        bool
	decode      Decoder
	srv         *server
	stable      int  // polls in a row that found the value unchanged
	byWrite     bool // the polled value is one an accepted write seen on the wire set (it took)

	// Polled.
	polled      [maxImageRegs]uint16
	polledValue float64
	prevValue   float64 // the value of the poll before (NaN: none)
	polledAt    int64   // 0: never polled with a value
	prevAt      int64   // the poll before polledAt
	cycle       int64
	pending     bool  // the value changed at the last poll without a write to explain it yet
	pendingRef  int64 // writes after this time explain the pending change

	// Last wire write.
	writer      netip.Addr
	writeAt     int64
	written     [maxImageRegs]uint16
	writeMask   uint8 // registers of the tag the write covered (bit i: register i)
	writeExc    uint8 // its exception (0 accepted)
	writeOpen   bool  // not taken yet
	writeCycles uint16
	writeSeen   bool // a write since the previous poll
	okWriteAt   int64
	writtenF    float64 // an OPC UA node's written value

	// Last wire read response, and the connection whose view differs.
	reader       netip.Addr
	viewAt       int64
	view         [maxImageRegs]uint16
	differsSince int64          // 0: the view agrees with the polled value
	diffConn     netip.AddrPort // the client connection shown a differing value since differsSince
	diffView     [maxImageRegs]uint16
	diffValue    float64 // an OPC UA node's differing value
}

func newImage(max int, decoder func(device, tag string) Decoder) *image {
	if max <= 0 {
		max = DefaultMaxImage
	}
	return &image{servers: map[uint64]*server{}, servers6: map[netip.AddrPort]*server{}, nodes: map[nodeKey]*imageEntry{}, max: max, decoder: decoder}
}

// observe updates the image with ev and fills ev's correlation fields. A
// request's early copy (StageRequest) is skipped: the image takes a wire
// request once, answered, with its status.
func (im *image) observe(ev *plcwatch.Event, now int64) {
	switch {
	case ev.Stage == plcwatch.StageRequest:
	case ev.Source == plcwatch.Poll:
		im.poll(ev, now)
	case ev.Source == plcwatch.Wire && im.n > 0:
		im.wire(ev, now)
	}
}

// key normalises a server address: an IPv4 address in its IPv6-mapped
// form is the same server.
func serverKey(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// poll takes a polled tag's value.
func (im *image) poll(ev *plcwatch.Event, now int64) {
	if ev.Op != plcwatch.OpRead || ev.Tag == "" || !ev.Server.IsValid() {
		return
	}
	var ent *imageEntry
	switch ev.Protocol {
	case plcwatch.ProtoModbus:
		if ev.Table == plcwatch.TableNone || ev.Table == plcwatch.TableFile || ev.Count == 0 {
			return
		}
		ent = im.modbusEntry(ev)
	case plcwatch.ProtoOPCUA:
		if ev.Node == "" {
			return
		}
		ent = im.nodeEntry(ev)
	}
	if ent == nil || !polledRegisters(ev) {
		return
	}
	var regs [maxImageRegs]uint16
	n := ent.regs(ev, &regs)
	if n == 0 && ev.Protocol == plcwatch.ProtoModbus {
		return
	}
	if ent.polledAt != 0 {
		if d := now - ent.polledAt; d > 0 {
			ent.cycle = d
		}
	}
	ev.Cycle = time.Duration(ent.cycle)
	// Registers that differ but decode to the same value are no change:
	// a bit tag (type bit, bool) shares its register with other bits.
	changed := ent.polledAt != 0 && !ent.same(&regs, ev.Value) && !(ent.decode != nil && ev.Value == ent.polledValue)
	// A change seen at the previous cycle that no accepted write since
	// the cycle before it explains: decided one cycle late, so that a
	// write the capture hands over after the poll still counts.
	if ent.pending {
		if ent.okWriteAt <= ent.pendingRef {
			ev.Unwritten = true
		}
		ent.pending = false
	}
	// Writes after ref explain the change: after the cycle before the
	// change; for a value a seen write set (it took at the last poll),
	// after that poll, since that write is already spent on it.
	ref := ent.prevAt
	if ent.byWrite {
		ref = ent.polledAt
	}
	if changed && (ent.stable >= stableCycles || ent.byWrite) && ent.srv.wire && (ent.okWriteAt <= ref || ent.okWriteAt == 0) {
		ent.pending, ent.pendingRef = true, ref
	}
	if changed {
		ent.byWrite = false
	}
	switch {
	case changed:
		ent.stable = 0
	case ent.polledAt != 0:
		ent.stable++
	}
	if ent.writeSeen {
		ev.Written = true
		ent.writeSeen = false
	}
	if ent.writer.IsValid() {
		ev.Writer = ent.writer
		ev.WrittenValue = ent.writtenValue(&regs, im)
	}
	if ent.writeOpen && now > ent.writeAt {
		if ent.takes(&regs, im) {
			ent.writeOpen, ent.writeCycles = false, 0
			// The value is now one a seen write set: a setting by
			// definition, so undoing it by a hidden path counts
			// at once, without 3 stable polls first.
			ent.byWrite = true
		} else if ent.writeCycles < math.MaxUint16 {
			ent.writeCycles++
		}
		ev.WriteCycles = ent.writeCycles
	}
	ent.prevValue = plcwatch.NoValue
	if ent.polledAt != 0 {
		ent.prevValue = ent.polledValue
	}
	ent.prevAt, ent.polledAt, ent.polled, ent.polledValue = ent.polledAt, now, regs, ev.Value
	if ent.polledAt == 0 { // a time of 0 is a time too: never "not polled"
		ent.polledAt = 1
	}
	// The device now holds what the differing view showed: the process
	// moved, the view was early, not false.
	if ent.differsSince != 0 && ent.same(&ent.diffView, ent.diffValue) {
		ent.differsSince = 0
	}
}

// polledRegisters reports whether a poll event has what the image
// compares: for Modbus, the registers (bits) read, good — a string tag has
// no engineering value (Value is NoValue, Text holds it) but has them; for
// OPC UA, a value.
func polledRegisters(ev *plcwatch.Event) bool {
	if ev.Protocol == plcwatch.ProtoModbus {
		return ev.Quality != "bad" && ev.Response.Len() > 0
	}
	return hasValue(ev)
}

// regs copies the compared registers of a polled or wire value into out.
func (ent *imageEntry) regs(ev *plcwatch.Event, out *[maxImageRegs]uint16) int {
	v := &ev.Response
	n := min(v.Len(), int(ent.n))
	for i := 0; i < n; i++ {
		out[i] = v.At(i)
	}
	return n
}

// same reports whether regs (or, for a node, the value v) equal the
// polled value.
func (ent *imageEntry) same(regs *[maxImageRegs]uint16, v float64) bool {
	if ent.n == 0 { // an OPC UA node: its value
		return v == ent.polledValue || (v != v && ent.polledValue != ent.polledValue)
	}
	return slices.Equal(regs[:ent.n], ent.polled[:ent.n])
}

// within reports whether v, a value a client was shown between polls, is
// one the process could have held then: inside the span of the last two
// polled values widened by that span on each side (a value moving as it
// did over the last cycle, either way) and by the tolerance of
// configs/rules/correlation.yaml (1%, at least 0.01). A tank filling or a
// temperature following its setpoint is read by an HMI between plcwatch's
// polls at values plcwatch never saw; only a view outside what the
// process did can be a false one. NaN (no engineering value: the tag has
// no decoder, or a poll had no value) is never within: registers are then
// compared exactly.
func (ent *imageEntry) within(v float64) bool {
	p, q := ent.polledValue, ent.prevValue
	if v != v || p != p {
		return false
	}
	if q != q {
		q = p
	}
	lo, hi := min(p, q), max(p, q)
	span := hi - lo
	tol := max(0.01, 0.01*math.Abs(p))
	return v >= lo-span-tol && v <= hi+span+tol
}

// takes reports whether the polled registers hold what the open write
// wrote, on the registers it wrote.
// A bit tag took the write when its value is the written one, whatever
// the register's other bits hold.
func (ent *imageEntry) takes(regs *[maxImageRegs]uint16, im *image) bool {
	if ent.n == 0 {
		return ent.polledValue == ent.writtenF
	}
	for i := 0; i < int(ent.n); i++ {
		if ent.writeMask&(1<<i) != 0 && regs[i] != ent.written[i] {
			if ent.decode == nil {
				return false
			}
			w, v := ent.writtenValue(regs, im), ent.value(regs, im)
			return w == v // NaN (not decodable) is never equal
		}
	}
	return true
}

// writtenValue is the last write as an engineering value: the written
// registers over the polled ones.
func (ent *imageEntry) writtenValue(polled *[maxImageRegs]uint16, im *image) float64 {
	if ent.n == 0 {
		return ent.writtenF
	}
	if ent.decode == nil {
		return plcwatch.NoValue
	}
	var regs [maxImageRegs]uint16
	for i := 0; i < int(ent.n); i++ {
		regs[i] = polled[i]
		if ent.writeMask&(1<<i) != 0 {
			regs[i] = ent.written[i]
		}
	}
	return ent.value(&regs, im)
}

// value decodes registers with the tag's decoder.
func (ent *imageEntry) value(regs *[maxImageRegs]uint16, im *image) float64 {
	if ent.decode == nil {
		return plcwatch.NoValue
	}
	b := im.scratch[:0]
	for i := 0; i < int(ent.n); i++ {
		if ent.bits {
			b = append(b, byte(regs[i]))
		} else {
			b = append(b, byte(regs[i]>>8), byte(regs[i]))
		}
	}
	v, ok := ent.decode(b)
	if !ok {
		return plcwatch.NoValue
	}
	return v
}

// stableCycles is how many polls in a row must find a tag unchanged
// before a change of it without a write counts (Event.Unwritten): a
// setpoint holds still, a measurement that moves every few cycles is not
// one.
const stableCycles = 3

// server returns the state of a polled server; nil when it is not polled
// (make: make it).
func (im *image) server(ap netip.AddrPort, make bool) *server {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		v := a.Unmap().As4()
		k := uint64(binary.BigEndian.Uint32(v[:]))<<16 | uint64(ap.Port())
		s := im.servers[k]
		if s == nil && make {
			s = &server{}
			im.servers[k] = s
		}
		return s
	}
	s := im.servers6[ap]
	if s == nil && make {
		s = &server{}
		im.servers6[ap] = s
	}
	return s
}

// block returns the block of a unit and table of s; nil when none.
func (s *server) block(unit uint8, table plcwatch.Table) *block {
	for _, b := range s.blocks {
		if b.unit == unit && b.table == table {
			return b
		}
	}
	return nil
}

// modbusEntry returns the entry of a polled Modbus tag, making it.
func (im *image) modbusEntry(ev *plcwatch.Event) *imageEntry {
	srv := im.server(ev.Server, true)
	b := srv.block(ev.Unit, ev.Table)
	if b == nil {
		b = &block{unit: ev.Unit, table: ev.Table}
		srv.blocks = append(srv.blocks, b)
	}
	i, found := slices.BinarySearchFunc(b.entries, ev.Address, func(e *imageEntry, a uint16) int { return int(e.address) - int(a) })
	for j := i; found && j < len(b.entries) && b.entries[j].address == ev.Address; j++ {
		if e := b.entries[j]; e.tag == ev.Tag && e.device == ev.Device {
			return e
		}
	}
	if im.n >= im.max {
		im.overflow.Add(1)
		return nil
	}
	ent := &imageEntry{tag: ev.Tag, device: ev.Device, address: ev.Address, count: ev.Count, srv: srv,
		n: uint8(min(int(ev.Count), maxImageRegs)), bits: ev.Table == plcwatch.TableCoil || ev.Table == plcwatch.TableDiscrete,
		polledValue: plcwatch.NoValue}
	if im.decoder != nil {
		ent.decode = im.decoder(ev.Device, ev.Tag)
	}
	b.entries = slices.Insert(b.entries, i, ent)
	im.n++
	return ent
}

// nodeEntry returns the entry of a polled OPC UA node, making it.
func (im *image) nodeEntry(ev *plcwatch.Event) *imageEntry {
	k := nodeKey{serverKey(ev.Server), ev.Node}
	if e := im.nodes[k]; e != nil {
		return e
	}
	if im.n >= im.max {
		im.overflow.Add(1)
		return nil
	}
	ent := &imageEntry{tag: ev.Tag, device: ev.Device, polledValue: plcwatch.NoValue, srv: im.server(ev.Server, true)}
	im.nodes[k] = ent
	im.n++
	return ent
}

// wire takes a wire read response or write.
func (im *image) wire(ev *plcwatch.Event, now int64) {
	srv := im.server(ev.Server, false)
	if srv == nil {
		return
	}
	srv.wire = true
	switch ev.Protocol {
	case plcwatch.ProtoModbus:
		im.modbusWire(srv, ev, now)
	case plcwatch.ProtoOPCUA:
		im.nodeWire(ev, now)
	}
}

// modbusWire takes a Modbus write (FC 5, 6, 15, 16, 22, and 23's write
// half) or read response (FC 1-4, 23's read half).
func (im *image) modbusWire(srv *server, ev *plcwatch.Event, now int64) {
	if ev.Orphan || ev.Table == plcwatch.TableNone || ev.Malformed != "" {
		return
	}
	switch ev.Op {
	case plcwatch.OpWrite:
		b := srv.block(ev.Unit, ev.Table)
		if b == nil {
			return
		}
		im.write(b, ev, now)
		if ev.Function == 23 && ev.Exception == 0 && ev.Response.Kind() != plcwatch.NoValues {
			im.read(b, ev, ev.ReadAddress, ev.ReadCount, now)
		}
	case plcwatch.OpRead:
		if ev.Exception != 0 || ev.Response.Kind() == plcwatch.NoValues {
			return
		}
		b := srv.block(ev.Unit, ev.Table)
		if b == nil {
			return
		}
		im.read(b, ev, ev.Address, ev.Count, now)
	}
}

// covered returns the index of the first entry of b that ends after addr.
func (b *block) first(addr uint16) int {
	lo, hi := 0, len(b.entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if e := b.entries[m]; int(e.address)+int(e.count) <= int(addr) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	// Entries are sorted by start, not end: a long tag before may still
	// cover addr. Step back over those (rare: overlapping tags).
	for lo > 0 && int(b.entries[lo-1].address)+int(b.entries[lo-1].count) > int(addr) {
		lo--
	}
	return lo
}

// write records a write on every polled tag it covers.
func (im *image) write(b *block, ev *plcwatch.Event, now int64) {
	start, end := int(ev.Address), int(ev.Address)+int(ev.Count)
	if ev.Function == 22 { // mask write: one register, its value unknown here
		end = start + 1
	}
	for i := b.first(ev.Address); i < len(b.entries); i++ {
		ent := b.entries[i]
		if int(ent.address) >= end {
			break
		}
		if int(ent.address)+int(ent.count) <= start {
			continue
		}
		ent.writer, ent.writeAt, ent.writeExc, ent.writeSeen = ev.Client.Addr(), now, ev.Exception, true
		ent.writeMask = 0
		if ev.Function != 22 {
			for r := 0; r < int(ent.n); r++ {
				a := int(ent.address) + r
				if a >= start && a < end && a-start < ev.Values.Len() {
					ent.written[r] = ev.Values.At(a - start)
					ent.writeMask |= 1 << r
				}
			}
		}
		accepted := ev.Exception == 0 && ev.Unanswered == ""
		if accepted || ev.Exception != 0 {
			ent.writeOpen, ent.writeCycles = ent.writeMask != 0, 0
		}
		if accepted || ev.Unanswered != "" {
			ent.okWriteAt = max(now, 1)
		}
	}
}

// read compares a read response with the polled tags it covers, and fills
// ev's polled fields from the first that differs (else the first).
func (im *image) read(b *block, ev *plcwatch.Event, addr, count uint16, now int64) {
	start, end := int(addr), int(addr)+int(count)
	var pick *imageEntry
	pickDiffers, pickTracked, pickWhole := false, false, false
	for i := b.first(addr); i < len(b.entries); i++ {
		ent := b.entries[i]
		if int(ent.address) >= end {
			break
		}
		if ent.polledAt == 0 {
			continue
		}
		// The compared registers of the tag the read covers, [lo, hi)
		// from the tag's start: a read of part of a tag (the first
		// register of a float32) is compared on the registers it has.
		lo, hi := max(start-int(ent.address), 0), min(end-int(ent.address), int(ent.n))
		if lo >= hi || int(ent.address)+hi-start > ev.Response.Len() {
			continue
		}
		whole := lo == 0 && int(ent.address)+int(ent.count) <= end
		ent.view = ent.polled
		for r := lo; r < hi; r++ {
			ent.view[r] = ev.Response.At(int(ent.address) + r - start)
		}
		ent.reader, ent.viewAt = ev.Client.Addr(), max(now, 1)
		differs := differsFrom(ent, &ent.view, math.NaN())
		// A whole tag has an engineering value that may be one the
		// process held between polls; part of one has none: its
		// registers are compared exactly.
		if differs && whole {
			differs = !ent.within(ent.value(&ent.view, im))
		}
		tracked := ent.viewed(ev.Client, differs, now)
		if pick == nil || (differs && !pickDiffers) {
			pick, pickDiffers, pickTracked, pickWhole = ent, differs, tracked, whole
		}
	}
	if pick == nil {
		return
	}
	ev.PolledTag, ev.Polled, ev.Cycle = pick.tag, pick.polledValue, time.Duration(pick.cycle)
	ev.PolledAge = time.Duration(now - pick.polledAt)
	if pickTracked {
		ev.ViewDiffers = time.Duration(now - pick.differsSince)
	}
	switch {
	case pickDiffers && pickWhole:
		ev.Viewed = pick.value(&pick.view, im)
	case pickDiffers:
		ev.Viewed = plcwatch.NoValue // part of a tag: no engineering value was shown
	default:
		ev.Viewed = pick.polledValue
	}
}

func differsFrom(ent *imageEntry, view *[maxImageRegs]uint16, v float64) bool {
	return !ent.same(view, v)
}

// viewed follows how long one client connection has been shown a value
// that differs from the polled one: other connections that agree (the
// poller's own reads, when the capture sees them; an honest HMI) do not
// clear it, a response on the same connection that agrees does. It
// reports whether conn's view differs now.
func (ent *imageEntry) viewed(conn netip.AddrPort, differs bool, now int64) bool {
	switch {
	case differs && ent.differsSince == 0:
		ent.differsSince, ent.diffConn = max(now, 1), conn
		ent.diffView = ent.view
	case differs && ent.diffConn == conn:
		ent.diffView = ent.view
	case !differs && ent.diffConn == conn:
		ent.differsSince = 0
	}
	return differs && ent.diffConn == conn
}

// nodeWire takes an OPC UA write or read of a polled node: the value
// compared is the event's value (Value, or the first of Values or
// Response).
func (im *image) nodeWire(ev *plcwatch.Event, now int64) {
	if ev.Node == "" || len(im.nodes) == 0 || (ev.Attribute != 0 && ev.Attribute != 13) {
		return
	}
	ent := im.nodes[nodeKey{serverKey(ev.Server), ev.Node}]
	if ent == nil {
		return
	}
	switch ev.Op {
	case plcwatch.OpWrite:
		ent.writer, ent.writeAt, ent.writeSeen = ev.Client.Addr(), now, true
		ent.writtenF = plcwatch.NoValue
		switch {
		case ev.Values.Len() > 0:
			ent.writtenF = ev.Values.Float(0)
		case ev.ValueType != "" && ev.Text == "":
			ent.writtenF = ev.Value
		}
		ent.writeOpen, ent.writeCycles = ent.writtenF == ent.writtenF && ev.Unanswered == "", 0
		if ev.Status == 0 && ev.Unanswered == "" {
			ent.okWriteAt = max(now, 1)
		}
	case plcwatch.OpRead:
		if ev.Status != 0 || ev.Response.Len() == 0 || ent.polledAt == 0 {
			return
		}
		v := ev.Response.Float(0)
		ent.reader, ent.viewAt = ev.Client.Addr(), max(now, 1)
		ent.diffValue = v
		differs := ent.viewed(ev.Client, !ent.same(nil, v) && !ent.within(v), now)
		ev.PolledTag, ev.Polled, ev.Viewed, ev.Cycle = ent.tag, ent.polledValue, v, time.Duration(ent.cycle)
		ev.PolledAge = time.Duration(now - ent.polledAt)
		if differs {
			ev.ViewDiffers = time.Duration(now - ent.differsSince)
		}
	}
}
