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
	"strconv"
	"sync"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/plcwatch/plcwatch"
)

// reader is all of the Modbus client the poller holds: opening, closing,
// choosing the unit, and the four reads. Nothing that writes is reachable
// from here, so the poller is read-only by construction (and a test that
// records every function code on the wire checks it).
type reader interface {
	Open() error
	Close() error
	SetUnitId(id uint8) error
	ReadCoils(addr, quantity uint16) ([]bool, error)
	ReadDiscreteInputs(addr, quantity uint16) ([]bool, error)
	ReadRawBytes(addr, quantity uint16, regType modbus.RegType) ([]byte, error)
}

// Options configure a Poller beyond its device.
type Options struct {
	Logger *slog.Logger
	// Telemetry, when set, is handed every cycle's values as one JSON
	// document (docs/config.md). The bytes are valid only during the call.
	Telemetry func(device string, payload []byte)
	// Site and Gateway name the agent in telemetry.
	Site, Gateway string
}

// Stats are a device's counters.
type Stats struct {
	Device       string
	Up           bool
	Known        bool // Up means something: at least one cycle ran
	Cycles       uint64
	FailedCycles uint64 // the device was unreachable or stopped answering
	Overruns     uint64 // cycles skipped because the previous one ran past its slot
	Requests     uint64 // read requests sent (retries included)
	Exceptions   uint64 // exception responses
	Timeouts     uint64
	Reconnects   uint64 // connections opened
	CycleTime    time.Duration
	LastCycle    time.Duration
	PlannedReads int // requests per cycle, as planned
}

// Poller polls one device on its interval.
type Poller struct {
	dev    Device
	specs  []spec
	reqs   []request
	server netip.AddrPort
	log    *slog.Logger
	opts   Options
	dial   func() (reader, error)

	client  reader
	state   int8           // 0 unknown, 1 up, -1 down
	ev      plcwatch.Event // the event being emitted
	tele    []byte         // the cycle's tags, for telemetry
	teleOut []byte

	mu    sync.Mutex
	stats Stats
}

// New returns a poller for d, which must have passed Defaults and
// Validate. It loads TLS files but opens no connection: a device that is
// down at start is retried every interval, never fatal.
func New(d Device, opts Options) (*Poller, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	conf, err := d.clientConfig(opts.Logger)
	if err != nil {
		return nil, err
	}
	specs := d.specs()
	p := &Poller{
		dev: d, specs: specs, server: d.serverAddr(), opts: opts,
		log: opts.Logger.With("device", d.Name),
		reqs: plan(specs, limits{maxRegisters: d.MaxRegisters, maxBits: d.MaxBits, maxGap: d.MaxGap,
			onePerTag: d.Workaround.OneRequestPerTag}),
	}
	p.dial = func() (reader, error) {
		c, err := modbus.NewClient(conf)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	p.dev.Tags = nil // specs has them, in the form polling uses
	p.stats.Device = d.Name
	p.stats.PlannedReads = len(p.reqs)
	return p, nil
}

// clientConfig is the simonvetter/modbus configuration of d.
func (d *Device) clientConfig(l *slog.Logger) (*modbus.ClientConfiguration, error) {
	conf := &modbus.ClientConfiguration{
		Timeout: d.Timeout,
		// The library logs to stdout unless told otherwise; its warnings
		// (unexpected transaction ids, ...) are debug detail here.
		Logger: slog.NewLogLogger(l.Handler(), slog.LevelDebug),
	}
	switch d.Transport {
	case "tcp":
		conf.URL = "tcp://" + d.Address
	case "tcp+tls":
		conf.URL = "tcp+tls://" + d.Address
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
		conf.TLSClientCert, conf.TLSRootCAs = &cert, pool
	case "rtu-over-tcp", "rtu":
		conf.URL = "rtuovertcp://" + d.Address
		if d.Transport == "rtu" {
			conf.URL = "rtu://" + d.Address
		}
		conf.Speed, conf.DataBits, conf.StopBits = uint(d.Serial.Baud), uint(d.Serial.DataBits), uint(d.Serial.StopBits)
		conf.Parity = map[string]uint{"none": modbus.PARITY_NONE, "even": modbus.PARITY_EVEN, "odd": modbus.PARITY_ODD}[d.Serial.Parity]
	default:
		return nil, fmt.Errorf("modbus %s: unknown transport %q", d.Name, d.Transport)
	}
	return conf, nil
}

// Reads returns the requests one cycle sends, as planned.
func (p *Poller) Reads() int { return len(p.reqs) }

// Stats returns the counters.
func (p *Poller) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Run polls until ctx ends: a first cycle at once, so that the device's
// state is known, then on the wall clock's grid of the interval (every
// whole second for 1s, :00 :10 :20 for 10s), as Telegraf's round_interval
// does: values of every device share their timestamps, and the agent wakes
// once per interval rather than once per device. A cycle that runs past
// its slot makes the next ones skip (counted as overruns) rather than pile
// up.
func (p *Poller) Run(ctx context.Context, emit plcwatch.Emit) error {
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

// cycle reads every planned request once.
func (p *Poller) cycle(ctx context.Context, emit plcwatch.Emit) {
	start := time.Now()
	p.tele = p.tele[:0]
	failed := false
	for i := range p.reqs {
		if ctx.Err() != nil {
			return
		}
		if i > 0 && p.dev.Workaround.PauseBetweenRequests > 0 && !sleep(ctx, p.dev.Workaround.PauseBetweenRequests) {
			return
		}
		r := &p.reqs[i]
		words, bits, rtt, err := p.read(ctx, r)
		if ctx.Err() != nil {
			return // stopping: what failed is the stop, not the device
		}
		code, isException := exceptionCode(err)
		if err != nil && !isException {
			p.setState(emit, -1, fmt.Errorf("read %s %d+%d (unit %d): %w", r.table, r.address, r.count, r.unit, err))
			failed = true
			break
		}
		p.setState(emit, 1, nil)
		now := time.Now()
		for _, ti := range r.tags {
			p.emitTag(emit, r, ti, words, bits, code, err, rtt, now)
		}
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
	p.mu.Unlock()
	if p.opts.Telemetry != nil && len(p.tele) > 0 {
		p.opts.Telemetry(p.dev.Name, p.telemetry(start))
	}
}

// read sends one request, with retries after timeouts, transport errors and
// busy devices. After any failure but an exception the connection is
// closed, so that a late response can never be read as the answer to the
// next request (RTU has no transaction id to tell them apart; a TCP device
// that echoes a wrong one would be no better).
func (p *Poller) read(ctx context.Context, r *request) (words []byte, bits []bool, rtt time.Duration, err error) {
	backoff := p.dev.Backoff
	for attempt := 0; ; attempt++ {
		err = nil
		if p.client == nil {
			err = p.connect(ctx)
		}
		if err == nil {
			t0 := time.Now()
			words, bits, err = p.send(r)
			rtt = time.Since(t0)
			code, isException := exceptionCode(err)
			if err == nil || (isException && code != 5 && code != 6) {
				return words, bits, rtt, err
			}
			if !isException {
				if errors.Is(err, modbus.ErrRequestTimedOut) {
					p.count(func(s *Stats) { s.Timeouts++ })
				}
				p.disconnect()
			}
		}
		if attempt >= *p.dev.Retries || ctx.Err() != nil {
			return nil, nil, rtt, err
		}
		// Jittered ±50% and doubling, so that devices behind one
		// gateway that failed together do not retry together.
		if !sleep(ctx, backoff/2+rand.N(backoff+1)) {
			return nil, nil, rtt, ctx.Err()
		}
		backoff *= 2
	}
}

// send is one request on the open connection.
func (p *Poller) send(r *request) ([]byte, []bool, error) {
	p.count(func(s *Stats) { s.Requests++ })
	if err := p.client.SetUnitId(r.unit); err != nil {
		return nil, nil, err
	}
	switch r.table {
	case plcwatch.TableCoil:
		b, err := p.client.ReadCoils(r.address, r.count)
		return nil, b, err
	case plcwatch.TableDiscrete:
		b, err := p.client.ReadDiscreteInputs(r.address, r.count)
		return nil, b, err
	case plcwatch.TableInput:
		w, err := p.client.ReadRawBytes(r.address, 2*r.count, modbus.INPUT_REGISTER)
		return w, nil, err
	default:
		w, err := p.client.ReadRawBytes(r.address, 2*r.count, modbus.HOLDING_REGISTER)
		return w, nil, err
	}
}

// connect opens the transport, then waits the device's pause, if any.
func (p *Poller) connect(ctx context.Context) error {
	c, err := p.dial()
	if err != nil {
		return err
	}
	if err := c.Open(); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	p.client = c
	p.count(func(s *Stats) { s.Reconnects++ })
	if d := p.dev.Workaround.PauseAfterConnect; d > 0 && !sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

func (p *Poller) disconnect() {
	if p.client != nil {
		p.client.Close()
		p.client = nil
	}
}

func (p *Poller) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// setState emits a status event when the device comes up or goes down.
func (p *Poller) setState(emit plcwatch.Emit, state int8, err error) {
	if state == p.state {
		return
	}
	p.state = state
	p.mu.Lock()
	p.stats.Up, p.stats.Known = state > 0, true
	p.mu.Unlock()
	ev := &p.ev
	*ev = plcwatch.Event{Time: time.Now(), Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpStatus,
		Device: p.dev.Name, Server: p.server, Unit: uint8(p.dev.unitID()), Quality: "up"}
	if state < 0 {
		ev.Quality = "down"
		ev.Error = err.Error()
		p.log.Warn("modbus device down", "address", p.dev.Address, "err", err)
	} else {
		p.log.Info("modbus device up", "address", p.dev.Address)
	}
	emit(ev)
}

// emitTag decodes one tag from its request's response and emits it.
func (p *Poller) emitTag(emit plcwatch.Emit, r *request, ti int, words []byte, bits []bool, code uint8, err error, rtt time.Duration, now time.Time) {
	s := &p.specs[ti]
	ev := &p.ev
	*ev = plcwatch.Event{Time: now, Source: plcwatch.Poll, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpRead,
		Device: p.dev.Name, Server: p.server, Unit: s.unit, Function: functionOf(s.table), Table: s.table,
		Address: s.address, Count: s.count, RTT: rtt, Tag: s.name, Quality: "good"}
	off := int(s.address) - int(r.address)
	switch {
	case err != nil:
		ev.Quality, ev.Exception, ev.Error = "bad", code, err.Error()
		p.count(func(s *Stats) { s.Exceptions++ })
	case bits != nil:
		if off >= len(bits) {
			ev.Quality, ev.Error = "bad", "short response"
			break
		}
		var packed [1]byte
		if bits[off] {
			packed[0] = 1
			ev.Raw = 1
		}
		ev.Response.SetBits(packed[:], 1)
	default:
		w := words[2*off:]
		if len(w) < 2*int(s.count) {
			ev.Quality, ev.Error = "bad", "short response"
			break
		}
		w = w[:2*int(s.count)]
		ev.Response.SetWords(w)
		var scratch [8]byte
		ev.Raw, ev.Text = decodeRegisters(s, w, &scratch)
	}
	if ev.Quality == "good" {
		if math.IsNaN(ev.Raw) || math.IsInf(ev.Raw, 0) {
			ev.Quality, ev.Error = "bad", "not a number"
		} else if s.typ != TypeString {
			ev.Value = ev.Raw*s.scale + s.offset
		}
	}
	if p.opts.Telemetry != nil {
		p.appendTelemetry(ev, s)
	}
	emit(ev)
}

func functionOf(t plcwatch.Table) uint8 {
	switch t {
	case plcwatch.TableCoil:
		return 1
	case plcwatch.TableDiscrete:
		return 2
	case plcwatch.TableHolding:
		return 3
	}
	return 4
}

// exceptionCode maps the library's exception errors back to their codes.
func exceptionCode(err error) (uint8, bool) {
	if err == nil {
		return 0, false
	}
	for _, e := range exceptions {
		if errors.Is(err, e.err) {
			return e.code, true
		}
	}
	return 0, false
}

var exceptions = [...]struct {
	code uint8
	err  error
}{
	{1, modbus.ErrIllegalFunction}, {2, modbus.ErrIllegalDataAddress}, {3, modbus.ErrIllegalDataValue},
	{4, modbus.ErrServerDeviceFailure}, {5, modbus.ErrAcknowledge}, {6, modbus.ErrServerDeviceBusy},
	{8, modbus.ErrMemoryParityError}, {10, modbus.ErrGWPathUnavailable}, {11, modbus.ErrGWTargetFailedToRespond},
}

// appendTelemetry adds a tag to the cycle's telemetry document.
func (p *Poller) appendTelemetry(ev *plcwatch.Event, s *spec) {
	b := p.tele
	if len(b) > 0 {
		b = append(b, ',')
	}
	b = plcwatch.AppendJSONString(b, s.name)
	b = append(b, `:{"value":`...)
	b = appendNumber(b, ev.Value)
	b = append(b, `,"raw":`...)
	b = appendNumber(b, ev.Raw)
	if ev.Text != "" {
		b = append(b, `,"text":`...)
		b = plcwatch.AppendJSONString(b, ev.Text)
	}
	b = append(b, `,"quality":`...)
	b = plcwatch.AppendJSONString(b, ev.Quality)
	if s.uom != "" {
		b = append(b, `,"uom":`...)
		b = plcwatch.AppendJSONString(b, s.uom)
	}
	p.tele = append(b, '}')
}

// telemetry is the cycle's document: docs/config.md documents it.
func (p *Poller) telemetry(t time.Time) []byte {
	b := p.teleOut[:0]
	b = append(b, `{"schema":"plcwatch.telemetry/v1","time":"`...)
	b = t.UTC().AppendFormat(b, plcwatch.TimeFormat)
	b = append(b, `","site":`...)
	b = plcwatch.AppendJSONString(b, p.opts.Site)
	b = append(b, `,"gateway":`...)
	b = plcwatch.AppendJSONString(b, p.opts.Gateway)
	b = append(b, `,"device":`...)
	b = plcwatch.AppendJSONString(b, p.dev.Name)
	b = append(b, `,"tags":{`...)
	b = append(b, p.tele...)
	p.teleOut = append(b, "}}"...)
	return p.teleOut
}

func appendNumber(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
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
