package modbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Options configure a Poller beyond its device.
type Options struct {
	Logger *slog.Logger
	// Telemetry, when set, is handed every cycle's values as one JSON
	// document (docs/config.md). The bytes are valid only during the call.
	Telemetry func(device string, payload []byte)
	// Site and Gateway name the agent in telemetry.
	Site, Gateway string
}

// Stats are a device's counters (plcwatch.DeviceStats: the agent reads
// every polled device's alike).
type Stats = plcwatch.DeviceStats

// UnitStats is the state of one unit id the device's tags are read from.
type UnitStats = plcwatch.UnitStats

var _ plcwatch.Poller = (*Poller)(nil)

// Poller polls one device on its interval.
type Poller struct {
	dev     Device
	specs   []spec
	reqs    []request
	units   []unitState
	order   []int // this cycle's order of p.reqs
	server  netip.AddrPort
	log     *slog.Logger
	opts    Options
	tlsConf *tls.Config
	dial    func(ctx context.Context) (link, error)

	conn         *client
	stopConn     func() bool // ends the conn's cancellation hook
	connAnswered bool        // conn answered a request this cycle

	ev      plcwatch.Event // the event being emitted
	tele    []byte         // the cycle's tags, for telemetry
	teleOut []byte

	ready     chan struct{} // closed when the first cycle has ended
	readyOnce sync.Once

	mu    sync.Mutex
	stats Stats
}

// unitState is a unit's state across cycles and within the current one.
type unitState struct {
	id       uint8
	state    int8 // 0 unknown, 1 up, -1 down
	err      string
	answered bool // this cycle: some request of the unit got an answer
	skip     bool // this cycle: the unit is down, its other requests are not sent
}

// New returns a poller for d, which must have passed Defaults and
// Validate. It loads TLS files but opens no connection: a device that is
// down at start is retried every interval, never fatal.
func New(d Device, opts Options) (*Poller, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch d.Transport {
	case "tcp", "tcp+tls", "rtu-over-tcp", "rtu":
	default:
		return nil, fmt.Errorf("modbus %s: unknown transport %q", d.Name, d.Transport)
	}
	specs := d.specs()
	p := &Poller{
		dev: d, specs: specs, server: d.serverAddr(), opts: opts,
		log:   opts.Logger.With("device", d.Name),
		ready: make(chan struct{}),
		reqs: plan(specs, limits{maxRegisters: d.MaxRegisters, maxBits: d.MaxBits, maxGap: d.MaxGap,
			onePerTag: d.Workaround.OneRequestPerTag}),
	}
	if d.Transport == "tcp+tls" {
		conf, err := d.tlsConfig()
		if err != nil {
			return nil, err
		}
		p.tlsConf = conf
	}
	for i := range p.reqs {
		r := &p.reqs[i]
		r.ui = slices.IndexFunc(p.units, func(u unitState) bool { return u.id == r.unit })
		if r.ui < 0 {
			r.ui = len(p.units)
			p.units = append(p.units, unitState{id: r.unit})
		}
	}
	p.dial = func(ctx context.Context) (link, error) { return dialLink(ctx, &p.dev, p.tlsConf) }
	p.dev.Tags = nil // specs has them, in the form polling uses
	p.stats.Device, p.stats.Protocol = d.Name, plcwatch.ProtoModbus
	p.stats.PlannedReads = len(p.reqs)
	return p, nil
}

// tlsConfig is Modbus/TCP Security's client side: TLS 1.2 or later (MBAPS
// R-01) with the client's certificate (R-08, R-19: mutual authentication).
func (d *Device) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(d.TLS.CertFile, d.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("modbus %s: client certificate: %w", d.Name, err)
	}
	pem, err := os.ReadFile(d.TLS.CAFile)
	if err != nil {
		return nil, fmt.Errorf("modbus %s: %w", d.Name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("modbus %s: %s holds no PEM certificate", d.Name, d.TLS.CAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Reads returns the requests one cycle sends, as planned.
func (p *Poller) Reads() int { return len(p.reqs) }

// Stats returns the counters.
func (p *Poller) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	st.Units = slices.Clone(p.stats.Units)
	return st
}

// Ready is closed when the poller's first cycle has ended (or Run has
// returned before it could): from then on Stats().Known is true and Up says
// whether the device answers. An agent that reports how many devices are
// up waits for it, so that its first report does not count devices whose
// first answer is still on its way as down.
func (p *Poller) Ready() <-chan struct{} { return p.ready }

// Run polls until ctx ends: a first cycle at once, so that the device's
// state is known, then on the wall clock's grid of the interval (every
// whole second for 1s, :00 :10 :20 for 10s), as Telegraf's round_interval
// does: values of every device share their timestamps, and the agent wakes
// once per interval rather than once per device. A cycle that runs past
// its slot makes the next ones skip (counted as overruns) rather than pile
// up.
func (p *Poller) Run(ctx context.Context, emit plcwatch.Emit) error {
	defer p.readyOnce.Do(func() { close(p.ready) })
	defer p.disconnect()
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		p.cycle(ctx, emit)
		next = next.Truncate(p.dev.Interval).Add(p.dev.Interval)
		if now := time.Now(); next.Before(now) {
			missed := now.Sub(next)/p.dev.Interval + 1
			next = next.Add(missed * p.dev.Interval)
			p.mu.Lock()
			p.stats.Overruns += uint64(missed)
			p.mu.Unlock()
		}
		timer.Reset(time.Until(next))
	}
}

// dialError is a connection that could not be opened: no unit behind the
// address can be reached.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isDialError(err error) bool {
	var de *dialError
	return errors.As(err, &de)
}

// countFailure counts a request that got no answer.
func countFailure(st *Stats, err error) {
	var te *TimeoutError
	var tide *TIDError
	if errors.As(err, &te) {
		st.Timeouts++
	}
	if errors.As(err, &tide) {
		st.Timeouts++
		st.Discarded += uint64(tide.Count)
	}
}

// cycle reads every planned request once. Up, down and timeouts belong to
// each unit: a unit that does not answer its first request of the cycle is
// down and its other requests wait for the next cycle, while the other
// units behind the same address keep being read (influxdata/telegraf#11785).
// Requests of units that were down, and requests that failed last time,
// go last, so that a silent unit delays nothing that answers.
func (p *Poller) cycle(ctx context.Context, emit plcwatch.Emit) {
	start := time.Now()
	p.tele = p.tele[:0]
	p.connAnswered = false
	for i := range p.units {
		p.units[i].answered, p.units[i].skip = false, false
	}
	p.schedule()
	var connErr error
	failed := false
	var splits []splitRead
	for k, i := range p.order {
		if ctx.Err() != nil {
			return
		}
		r := &p.reqs[i]
		u := &p.units[r.ui]
		if u.skip || connErr != nil {
			failed = true
			continue
		}
		if k > 0 && p.dev.Workaround.PauseBetweenRequests > 0 && !sleep(ctx, p.dev.Workaround.PauseBetweenRequests) {
			return
		}
		ans, rtt, err := p.read(ctx, r.unit, r.table, r.address, r.count)
		if ctx.Err() != nil {
			return // stopping: what failed is the stop, not the device
		}
		switch {
		case err == nil:
			r.failed = false
			p.setUnit(emit, u, 1, "")
			if ans.exception && (ans.code == 2 || ans.code == 3) && len(r.tags) > 1 && !r.noSplit {
				parts := p.split(ctx, emit, r, ans.code)
				if ctx.Err() != nil {
					return
				}
				splits = append(splits, splitRead{at: i, parts: parts})
				continue
			}
			p.emitRequest(emit, r, &ans, "", rtt)
		case isDialError(err):
			connErr, failed = err, true
		default:
			r.failed, failed = true, true
			why := fmt.Sprintf("read %s %d+%d (unit %d): %v", r.table, r.address, r.count, r.unit, err)
			if u.answered {
				// The unit answers, this request does not (a device that
				// drops reads of addresses it lacks): its tags are bad.
				p.emitRequest(emit, r, nil, why, rtt)
			} else {
				u.skip = true
				p.setUnit(emit, u, -1, why)
			}
		}
	}
	if connErr != nil {
		for i := range p.units {
			if !p.units[i].answered {
				p.setUnit(emit, &p.units[i], -1, connErr.Error())
			}
		}
	}
	if len(splits) > 0 {
		p.applySplits(splits)
	}
	if p.dev.Workaround.CloseAfterPoll {
		p.disconnect()
	}
	d := time.Since(start)
	p.mu.Lock()
	p.stats.Cycles++
	if failed {
		p.stats.FailedCycles++
	}
	p.stats.CycleTime += d
	p.stats.LastCycle = d
	p.stats.Known = true
	p.stats.Up = slices.ContainsFunc(p.units, func(u unitState) bool { return u.state > 0 })
	p.mu.Unlock()
	p.readyOnce.Do(func() { close(p.ready) })
	if p.opts.Telemetry != nil {
		p.opts.Telemetry(p.dev.Name, p.telemetry(start))
	}
}

// schedule orders the cycle's requests: those of units that answered last
// cycle first, then requests that failed last time, then units that were
// down.
func (p *Poller) schedule() {
	p.order = p.order[:0]
	for pass := 0; pass < 4; pass++ {
		for i := range p.reqs {
			r := &p.reqs[i]
			score := 0
			if p.units[r.ui].state < 0 {
				score = 2
			}
			if r.failed {
				score++
			}
			if score == pass {
				p.order = append(p.order, i)
			}
		}
	}
}

// read sends one request, with retries after timeouts, transport errors and
// busy devices (exceptions 5 and 6). It returns the answer, or why there
// was none (a *dialError when no connection could be opened).
func (p *Poller) read(ctx context.Context, unit uint8, table plcwatch.Table, addr, count uint16) (answer, time.Duration, error) {
	backoff := p.dev.Backoff
	for attempt := 0; ; attempt++ {
		var ans answer
		var rtt time.Duration
		var err error
		if p.conn == nil {
			if err = p.connect(ctx); err != nil {
				err = &dialError{err}
			}
		}
		if err == nil {
			t0 := time.Now()
			ans, err = p.conn.read(unit, table, addr, count, t0.Add(p.dev.Timeout), p.dev.Timeout)
			rtt = time.Since(t0)
			p.mu.Lock()
			p.stats.Requests++
			p.stats.Discarded += uint64(ans.discarded)
			if ans.exception {
				p.stats.Exceptions++
			}
			if err != nil {
				countFailure(&p.stats, err)
			}
			p.mu.Unlock()
			if err == nil {
				p.connAnswered = true
				if !ans.exception || ans.code != 5 && ans.code != 6 || attempt >= *p.dev.Retries {
					return ans, rtt, nil
				}
				// Acknowledge or busy: the same request again, on the
				// same connection.
			} else if p.dropAfter(err) {
				p.disconnect()
			}
		}
		if attempt >= *p.dev.Retries || ctx.Err() != nil {
			return ans, rtt, err
		}
		// Jittered ±50% and doubling, so that devices behind one
		// gateway that failed together do not retry together.
		if !sleep(ctx, backoff/2+rand.N(backoff+1)) {
			return answer{}, rtt, ctx.Err()
		}
		backoff *= 2
	}
}

// dropAfter reports whether the connection must be closed after err.
// RTU has no transaction id: after any failure a late answer could be
// taken for the next request's, so the link is reopened. MBAP pairs
// answers by transaction id, so a timeout keeps the connection when it has
// answered other requests this cycle (a silent unit behind a gateway must
// not cost the others a reconnection every cycle); a connection that has
// answered nothing, or that failed in any other way, is reopened (a
// firewall may have forgotten it).
func (p *Poller) dropAfter(err error) bool {
	if p.conn.framing == framingRTU || !p.connAnswered {
		return true
	}
	var te *TimeoutError
	var tide *TIDError
	return !errors.As(err, &te) && !errors.As(err, &tide)
}

// connect opens the link, then waits the device's pause, if any. A
// cancelled ctx ends any read in progress on it.
func (p *Poller) connect(ctx context.Context) error {
	l, err := p.dial(ctx)
	if err != nil {
		return err
	}
	f := framingMBAP
	if p.dev.serialLine() {
		f = framingRTU
		drain(l)
	}
	p.conn = newClient(l, f, p.dev.Serial.Baud)
	p.stopConn = context.AfterFunc(ctx, func() { l.SetDeadline(time.Unix(1, 0)) })
	p.count(func(s *Stats) { s.Reconnects++ })
	if d := p.dev.Workaround.PauseAfterConnect; d > 0 && !sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

func (p *Poller) disconnect() {
	if p.conn != nil {
		p.stopConn()
		p.conn.link.Close()
		p.conn = nil
	}
}

func (p *Poller) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// setUnit records that u answered this cycle (state 1) or is down (-1,
// with why), and emits a status event when its state changes: one event
// per unit, with the unit set.
func (p *Poller) setUnit(emit plcwatch.Emit, u *unitState, state int8, why string) {
	if state > 0 {
		u.answered = true
	}
	if state == u.state && why == u.err {
		return
	}
	changed := state != u.state
	u.state, u.err = state, why
	p.mu.Lock()
	if i := slices.IndexFunc(p.stats.Units, func(s UnitStats) bool { return s.Unit == u.id }); i >= 0 {
		p.stats.Units[i] = UnitStats{Unit: u.id, Known: true, Up: state > 0, Error: why}
	} else {
		p.stats.Units = append(p.stats.Units, UnitStats{Unit: u.id, Known: true, Up: state > 0, Error: why})
	}
	p.mu.Unlock()
	if !changed {
		return
	}
	ev := &p.ev
	*ev = plcwatch.Event{Time: time.Now(), Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpStatus,
		Device: p.dev.Name, Server: p.server, Unit: u.id, Quality: "up", Value: plcwatch.NoValue, Raw: plcwatch.NoValue}
	if state < 0 {
		ev.Quality, ev.Error = "down", why
		p.log.Warn("modbus device down", "address", p.dev.Address, "unit", u.id, "err", why)
	} else {
		p.log.Info("modbus device up", "address", p.dev.Address, "unit", u.id)
	}
	emit(ev)
}

// splitRead is a request read apart, to replace it in the plan.
type splitRead struct {
	at    int
	parts []request
}

// split reads the tags of r, which the device refused as a whole with
// exception 2 or 3 (a register of the merged range does not exist, or the
// device will not read so many at once), in two halves, and each half that
// is refused again in two halves, down to single tags: every tag gets its
// own answer this cycle, and the parts become the device's requests from
// now on (logged once). When every part is refused too, the read stays
// whole: its answer is every tag's.
func (p *Poller) split(ctx context.Context, emit plcwatch.Emit, r *request, code uint8) []request {
	parts, answered := p.bisect(ctx, emit, r, r.tags)
	if ctx.Err() != nil {
		return nil
	}
	if !answered {
		whole := *r
		whole.noSplit = true
		p.log.Info("modbus read refused as a whole and in every part; its tags stay one read",
			"unit", r.unit, "table", r.table.String(), "address", r.address, "count", r.count, "exception", code)
		return []request{whole}
	}
	p.log.Warn("modbus read refused as a whole: reading its tags apart from now on",
		"unit", r.unit, "table", r.table.String(), "address", r.address, "count", r.count, "exception", code,
		"tags", len(r.tags), "reads", len(parts))
	return parts
}

// bisect reads tags (of r, in address order) in two halves; it returns the
// requests that serve them and whether any part answered with values.
func (p *Poller) bisect(ctx context.Context, emit plcwatch.Emit, r *request, tags []int) ([]request, bool) {
	var parts []request
	answered := false
	half := len(tags) / 2
	for _, group := range [2][]int{tags[:half], tags[half:]} {
		part := request{unit: r.unit, table: r.table, ui: r.ui, tags: slices.Clone(group)}
		first, end := int(p.specs[group[0]].address), 0
		for _, ti := range group {
			end = max(end, int(p.specs[ti].address)+int(p.specs[ti].count))
		}
		part.address, part.count = uint16(first), uint16(end-first)
		if pause := p.dev.Workaround.PauseBetweenRequests; pause > 0 && !sleep(ctx, pause) || ctx.Err() != nil {
			return nil, false
		}
		ans, rtt, err := p.read(ctx, part.unit, part.table, part.address, part.count)
		switch {
		case ctx.Err() != nil:
			return nil, false
		case err == nil && ans.exception && (ans.code == 2 || ans.code == 3) && len(group) > 1:
			sub, ok := p.bisect(ctx, emit, r, group)
			parts = append(parts, sub...)
			answered = answered || ok
			continue
		case err == nil:
			answered = answered || !ans.exception
			p.emitRequest(emit, &part, &ans, "", rtt)
		default:
			part.failed = true
			p.emitRequest(emit, &part, nil, fmt.Sprintf("read %s %d+%d (unit %d): %v", part.table, part.address, part.count, part.unit, err), rtt)
		}
		parts = append(parts, part)
	}
	return parts, answered
}

// applySplits replaces split requests by their parts.
func (p *Poller) applySplits(splits []splitRead) {
	slices.SortFunc(splits, func(a, b splitRead) int { return b.at - a.at }) // from the end: indexes stay valid
	for _, s := range splits {
		p.reqs = slices.Replace(p.reqs, s.at, s.at+1, s.parts...)
	}
	p.mu.Lock()
	p.stats.PlannedReads = len(p.reqs)
	p.mu.Unlock()
}

// emitRequest emits the tags of r: from ans, or bad with why when the
// request got no answer.
func (p *Poller) emitRequest(emit plcwatch.Emit, r *request, ans *answer, why string, rtt time.Duration) {
	now := time.Now()
	for _, ti := range r.tags {
		p.emitTag(emit, r, &p.specs[ti], ans, why, rtt, now)
	}
}

// emitTag decodes one tag from its request's answer and emits it. A tag
// without a value (an exception, no answer, a malformed answer, a NaN or
// infinite reading) is bad: Value and Raw are NoValue (JSON null) and
// Error says why, so that nothing plots or compares a false 0.
func (p *Poller) emitTag(emit plcwatch.Emit, r *request, s *spec, ans *answer, why string, rtt time.Duration, now time.Time) {
	ev := &p.ev
	*ev = plcwatch.Event{Time: now, Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpRead,
		Device: p.dev.Name, Server: p.server, Unit: s.unit, Function: functionOf(s.table), Table: s.table,
		Address: s.address, Count: s.count, RTT: rtt, Tag: s.name, Quality: "bad",
		Value: plcwatch.NoValue, Raw: plcwatch.NoValue}
	off := int(s.address) - int(r.address)
	switch {
	case ans == nil:
		ev.Error = why
	case ans.exception:
		ev.Exception, ev.Error = ans.code, exceptionText(ans.code)
		if ans.malformed != "" {
			ev.Error = ans.malformed
		}
	case ans.malformed != "":
		ev.Error = ans.malformed
	case s.table == plcwatch.TableCoil || s.table == plcwatch.TableDiscrete:
		if off/8 >= len(ans.data) {
			ev.Error = "short response"
			break
		}
		bit := ans.data[off/8] >> (off % 8) & 1
		packed := [1]byte{bit}
		ev.Response.SetBits(packed[:], 1)
		ev.Raw, ev.Quality = float64(bit), "good"
	default:
		if len(ans.data) < 2*(off+int(s.count)) {
			ev.Error = "short response"
			break
		}
		w := ans.data[2*off : 2*(off+int(s.count))]
		ev.Response.SetWords(w)
		var scratch [8]byte
		ev.Raw, ev.Text = decodeRegisters(s, w, &scratch)
		ev.Quality = "good"
	}
	if ev.Quality == "good" && s.typ != TypeString {
		// A NaN or infinite reading is no value: bad, with what it was
		// (a float register's "no measurement" or over-range sentinel).
		if v := s.engineering(ev.Raw); !badNumber(ev, ev.Raw) && !badNumber(ev, v) {
			ev.Value = v
		}
	}
	if p.opts.Telemetry != nil {
		p.appendTelemetry(ev, s)
	}
	emit(ev)
}

// badNumber marks ev bad when f is NaN or infinite.
func badNumber(ev *plcwatch.Event, f float64) bool {
	switch {
	case math.IsNaN(f):
		ev.Error = "NaN"
	case math.IsInf(f, 1):
		ev.Error = "+Inf"
	case math.IsInf(f, -1):
		ev.Error = "-Inf"
	default:
		return false
	}
	ev.Quality, ev.Raw = "bad", plcwatch.NoValue
	return true
}

// exceptionText names an exception code (MB 7; 7 is the Negative
// Acknowledge of the Modicon protocol reference, PI-MBUS-300).
func exceptionText(code uint8) string {
	if int(code) < len(exceptionNames) && exceptionNames[code] != "" {
		return exceptionNames[code]
	}
	return exceptionUnknown[code]
}

var exceptionNames = [...]string{
	1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
	5: "acknowledge", 6: "server device busy", 7: "negative acknowledge", 8: "memory parity error",
	10: "gateway path unavailable", 11: "gateway target device failed to respond",
}

// exceptionUnknown holds the text of every code the specification does
// not define, built once so that emitting one does not allocate.
var exceptionUnknown = func() (t [256]string) {
	for i := range t {
		t[i] = fmt.Sprintf("exception %d (not defined by the Modbus specification)", i)
	}
	return t
}()

// appendTelemetry adds a tag to the cycle's telemetry document.
func (p *Poller) appendTelemetry(ev *plcwatch.Event, s *spec) {
	b := p.tele
	if len(b) > 0 {
		b = append(b, ',')
	}
	b = plcwatch.AppendJSONString(b, s.name)
	b = append(b, ':')
	p.tele = ev.AppendTelemetryTag(b, s.uom)
}

// telemetry is the cycle's document: docs/config.md documents it.
func (p *Poller) telemetry(t time.Time) []byte {
	b := p.teleOut[:0]
	b = plcwatch.AppendTelemetryHead(b, t, p.opts.Site, p.opts.Gateway, p.dev.Name)
	b = append(b, `,"units":{`...)
	for i := range p.units {
		u := &p.units[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendUint(b, uint64(u.id), 10)
		b = append(b, `":`...)
		switch {
		case u.state > 0:
			b = append(b, `"up"`...)
		case u.state < 0:
			b = append(b, `"down"`...)
		default:
			b = append(b, `"unknown"`...)
		}
	}
	b = append(b, `},"tags":{`...)
	b = append(b, p.tele...)
	p.teleOut = append(b, "}}"...)
	return p.teleOut
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
