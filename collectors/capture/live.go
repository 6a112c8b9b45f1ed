package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/plcwatch/plcwatch"
)

// pollTimeout bounds each wait for a packet, so that a worker notices
// cancellation (Run returns within about this long) and timeouts fire on a
// quiet wire.
const pollTimeout = 100 * time.Millisecond

// blockTimeout is TPACKET_V3's block retire timeout: the kernel hands a
// block that is not full to the reader after this long, so it bounds how
// long a packet on a quiet wire waits in the ring (an alert on a lone
// request must leave within milliseconds, issue 9 §4). At high rates blocks
// fill long before it.
const blockTimeout = time.Millisecond

// InterfaceStats are one interface's counters, summed over its fanout
// workers: what the engines saw and what the kernel says it received and
// dropped.
type InterfaceStats struct {
	Interface     string
	Workers       int // fanout workers (ring, socket and engine each)
	Stats         Stats
	KernelPackets uint64 // packets the filter accepted
	KernelDrops   uint64 // packets the kernel dropped: the ring was full
	KernelFreezes uint64 // times the ring was full (TPACKET_V3 queue freezes)
	// Up is false while the interface's rings are closed: it went down or
	// disappeared, and capture reopens it (with backoff) when it returns.
	Up      bool
	Reopens uint64 // times the rings were reopened after a failure
	Error   string // why it is down, when it is
}

// Live captures on network interfaces through AF_PACKET sockets with a
// memory-mapped TPACKET_V3 ring each (gopacket/afpacket: no libpcap, no
// cgo). Each interface has capture.fanout workers: with more than one, the
// kernel spreads packets over their sockets by flow hash (PACKET_FANOUT_HASH,
// symmetric: both directions of a TCP connection reach the same worker), and
// each worker has its own Engine.
type Live struct {
	cfg     Config
	log     *slog.Logger
	workers []*liveWorker

	filters [][]bpf.RawInstruction // per interface

	mu      sync.Mutex
	stats   []InterfaceStats // per interface
	down    []string         // per interface: why it is down, "" when up
	reopens []uint64         // per interface
}

type liveWorker struct {
	iface string
	index int               // of the interface in cfg.Interfaces
	k     int               // of the worker among all: connection ids carry it
	tp    *afpacket.TPacket // nil while closed after a failure

	// Written by the worker's goroutine about once a second, under Live.mu.
	stats                   Stats
	kPackets, kDrops, kFrzs uint64
	// The kernel's counters of the rings closed before tp: a reopened
	// socket counts from zero.
	kBasePackets, kBaseDrops, kBaseFrzs uint64
	down                                string // why this worker's ring is closed
}

var _ plcwatch.Source = (*Live)(nil)

// NewLive checks cfg (after applying defaults) and returns a live capture
// that has not opened anything yet.
func NewLive(cfg Config, log *slog.Logger) (*Live, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("live capture: no interfaces configured")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Live{cfg: cfg, log: log}, nil
}

// Open opens and configures the rings of every interface, so that a
// missing interface or privilege fails at start, not later. Run opens them
// itself if Open was not called.
func (l *Live) Open() error {
	if l.workers != nil {
		return nil
	}
	filter, err := Filter(l.cfg.Ports(), l.cfg.Snaplen)
	if err != nil {
		return err
	}
	l.filters = make([][]bpf.RawInstruction, len(l.cfg.Interfaces))
	for i, name := range l.cfg.Interfaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			l.Close()
			return fmt.Errorf("interface %q: %w", name, err)
		}
		l.filters[i] = filter
		if ifi.Flags&net.FlagLoopback != 0 {
			// On loopback every packet passes twice: sent
			// (PACKET_OUTGOING) and received. Keep one copy.
			l.filters[i] = dropOutgoing(filter)
		}
		for w := 0; w < l.cfg.Fanout; w++ {
			tp, err := openRing(name, l.cfg, l.filters[i], FanoutGroup(ifi.Index))
			if err != nil {
				l.Close()
				return err
			}
			l.workers = append(l.workers, &liveWorker{iface: name, index: i, k: len(l.workers), tp: tp})
		}
	}
	l.stats = make([]InterfaceStats, len(l.cfg.Interfaces))
	l.down = make([]string, len(l.cfg.Interfaces))
	l.reopens = make([]uint64, len(l.cfg.Interfaces))
	for i := range l.stats {
		l.sumLocked(i)
	}
	return nil
}

// FanoutGroup is the PACKET_FANOUT group id this process's capture on the
// interface with index ifindex joins. A group id is per network namespace:
// it is derived from the process and the interface, so that two plcwatch
// processes (or two interfaces) do not share one group. An interface
// deleted and created again has a new index: its reopened workers all
// join the new group.
func FanoutGroup(ifindex int) uint16 { return uint16(os.Getpid()*31 + ifindex) }

// ProbeInterface says whether a live capture could open the interface
// name: that it exists and that this process may open a packet socket on
// it (CAP_NET_RAW). It opens a plain AF_PACKET socket bound to the
// interface, with protocol 0 so that it receives nothing, and closes it:
// unlike Open, it allocates no ring ("config check" with a ring
// configuration of gigabytes must not take them, nor the time to map them).
func ProbeInterface(name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("interface %q: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("interface %q: %v: live capture needs CAP_NET_RAW (run as root, or grant it: setcap cap_net_raw,cap_net_admin+ep plcwatch)", name, err)
		}
		return fmt.Errorf("interface %q: packet socket: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("interface %q: bind a packet socket: %w", name, err)
	}
	return nil
}

// Close releases the rings and sockets. Run must have returned.
func (l *Live) Close() {
	for _, w := range l.workers {
		if w.tp != nil {
			w.tp.Close()
		}
	}
	l.workers = nil
}

// dropOutgoing prefixes a filter with "drop what this host sent": the
// packet type is an ancillary load (SKF_AD_PKTTYPE), 4 is PACKET_OUTGOING.
// Classic BPF jumps are relative, so the filter after it is unchanged.
func dropOutgoing(filter []bpf.RawInstruction) []bpf.RawInstruction {
	prefix, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 0, SkipFalse: 1},
		bpf.RetConstant{Val: 0},
	})
	if err != nil { // constant instructions: cannot fail
		panic(err)
	}
	return append(prefix, filter...)
}

func openRing(name string, cfg Config, filter []bpf.RawInstruction, group uint16) (*afpacket.TPacket, error) {
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(name),
		afpacket.TPacketVersion3,
		afpacket.OptBlockSize(cfg.RingBlockSize),
		afpacket.OptNumBlocks(cfg.RingBlocks),
		afpacket.OptFrameSize(ringFrameSize),
		afpacket.OptBlockTimeout(blockTimeout),
		afpacket.OptPollTimeout(pollTimeout),
	)
	if err != nil {
		if errors.Is(err, unix.EPERM) || strings.Contains(err.Error(), "operation not permitted") {
			return nil, fmt.Errorf("interface %q: %v: live capture needs CAP_NET_RAW (run as root, or grant it: setcap cap_net_raw+ep plcwatch; promiscuous mode needs nothing more)", name, err)
		}
		if errors.Is(err, unix.ENOMEM) {
			return nil, fmt.Errorf("interface %q: the kernel could not allocate a ring of %d blocks of %d bytes: lower capture.ring_blocks or capture.ring_block_size: %w", name, cfg.RingBlocks, cfg.RingBlockSize, err)
		}
		return nil, fmt.Errorf("interface %q: %w", name, err)
	}
	fail := func(what string, err error) (*afpacket.TPacket, error) {
		tp.Close()
		return nil, fmt.Errorf("interface %q: %s: %w", name, what, err)
	}
	if err := tp.SetBPF(filter); err != nil {
		return fail("attach BPF filter", err)
	}
	if cfg.Promiscuous {
		if err := tp.SetPromiscuous(true); err != nil {
			return fail("promiscuous mode", err)
		}
	}
	if cfg.Fanout > 1 {
		if err := tp.SetFanout(afpacket.FanoutHash, group); err != nil {
			return fail(fmt.Sprintf("join fanout group %d", group), err)
		}
	}
	// Packets taken before the filter was attached are not ours to count.
	_, _, _ = tp.SocketStats()
	return tp, nil
}

// ringFrameSize is TPACKET_V3's tp_frame_size. Version 3 packs packets of
// any size into a block, so it only has to divide the block size.
const ringFrameSize = 4096

// Run captures until ctx is cancelled, emitting events from every
// interface. An interface that goes down or disappears does not end it:
// its workers close their rings and reopen them with backoff when it is
// back (InterfaceStats.Up, Reopens); only an Open failure is returned. emit is called from one goroutine per fanout worker (per
// interface without fanout); one TCP connection's events all come from
// one goroutine, in order.
func (l *Live) Run(ctx context.Context, emit plcwatch.Emit) error {
	if err := l.Open(); err != nil {
		return err
	}
	defer l.Close()
	errs := make([]error, len(l.workers))
	var wg sync.WaitGroup
	for i, w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.capture(ctx, w, emit)
		}()
	}
	for _, name := range l.cfg.Interfaces {
		l.log.Info("capturing", "interface", name, "workers", l.cfg.Fanout, "ring_bytes", int64(l.cfg.RingBlockSize)*int64(l.cfg.RingBlocks),
			"modbus_ports", l.cfg.ModbusPorts, "opcua_ports", l.cfg.OPCUAPorts, "promiscuous", l.cfg.Promiscuous)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Live) capture(ctx context.Context, w *liveWorker, emit plcwatch.Emit) error {
	e := NewEngine(l.cfg, emit)
	e.connBase = uint64(w.k+1) << 48 // connection ids stay unique across workers
	defer e.Finish(plcwatch.UnansweredStopped)
	publishAt := time.Now()
	publish := func(now time.Time, force bool) {
		if !force && now.Before(publishAt) {
			return
		}
		publishAt = now.Add(time.Second)
		l.mu.Lock()
		if w.tp != nil {
			if _, st, err := w.tp.SocketStats(); err == nil {
				drops := w.kBaseDrops + uint64(st.Drops())
				if d := drops - w.kDrops; d > 0 {
					l.log.Warn("kernel dropped packets: the capture ring was full", "interface", w.iface, "drops", d, "total", drops)
				}
				w.kPackets, w.kDrops, w.kFrzs = w.kBasePackets+uint64(st.Packets()), drops, w.kBaseFrzs+uint64(st.QueueFreezes())
			}
		}
		w.stats = e.Stats()
		l.sumLocked(w.index)
		l.mu.Unlock()
	}
	defer func() { publish(time.Now(), true) }()
	for ctx.Err() == nil {
		if w.tp == nil {
			l.reopen(ctx, w, func(now time.Time) {
				e.Advance(now)
				publish(now, false)
			})
			continue
		}
		data, ci, err := w.tp.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, afpacket.ErrTimeout) || errors.Is(err, unix.EINTR) {
				now := time.Now()
				e.Advance(now)
				publish(now, false)
				continue
			}
			if ctx.Err() != nil {
				break
			}
			// The interface went down or disappeared (ErrPoll: the
			// kernel set ENETDOWN on the socket). That is this
			// interface's problem: close its ring and reopen it when
			// it returns; the other sources go on.
			publish(time.Now(), true)
			l.failed(w, err)
			continue
		}
		e.Packet(data, ci.Timestamp, LinkEthernet)
		publish(ci.Timestamp, false)
	}
	return nil
}

// Reopen backoff after a capture interface failed: doubled from
// reopenMin up to reopenMax, each wait jittered by ±20% so that many
// workers (or gateways) do not retry in step.
const (
	reopenMin = 250 * time.Millisecond
	reopenMax = 5 * time.Second
)

// failed closes w's ring after err; the first worker of an interface to
// fail logs it, once.
func (l *Live) failed(w *liveWorker, err error) {
	why := err.Error()
	if errors.Is(err, afpacket.ErrPoll) {
		why = "the interface is down or gone (packet poll failed)"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w.kBasePackets, w.kBaseDrops, w.kBaseFrzs = w.kPackets, w.kDrops, w.kFrzs
	w.tp.Close()
	w.tp = nil
	w.down = why
	if l.down[w.index] == "" {
		l.down[w.index] = why
		l.log.Error("capture interface failed: capture on it stops until it returns; everything else goes on",
			"interface", w.iface, "err", why, "retry_max", reopenMax)
	}
	l.sumLocked(w.index)
}

// reopen waits with backoff until w's interface exists and is up, then
// opens its ring again. tick runs about every pollTimeout meanwhile (the
// engine's timeouts still fire). It returns when the ring is open or ctx
// ends.
func (l *Live) reopen(ctx context.Context, w *liveWorker, tick func(time.Time)) {
	wait := reopenMin
	for {
		// Jitter in [0.8, 1.2) of wait, from the clock's nanoseconds: no
		// global random source needed for this.
		d := wait * time.Duration(800+time.Now().UnixNano()%400) / 1000
		for end := time.Now().Add(d); ; {
			left := time.Until(end)
			if left <= 0 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(left, pollTimeout)):
			}
			tick(time.Now())
		}
		wait = min(2*wait, reopenMax)
		ifi, err := net.InterfaceByName(w.iface)
		if err != nil {
			l.stillDown(w, fmt.Sprintf("the interface is gone: %v", err))
			continue
		}
		if ifi.Flags&net.FlagUp == 0 {
			l.stillDown(w, "the interface is down")
			continue
		}
		tp, err := openRing(w.iface, l.cfg, l.filters[w.index], FanoutGroup(ifi.Index))
		if err != nil {
			l.stillDown(w, err.Error())
			continue
		}
		l.mu.Lock()
		w.tp = tp
		w.down = ""
		up := true
		for _, o := range l.workers {
			if o.index == w.index && o.down != "" {
				up = false
			}
		}
		if up && l.down[w.index] != "" {
			l.down[w.index] = ""
			l.reopens[w.index]++
			l.log.Info("capture interface back: capturing again", "interface", w.iface, "reopens", l.reopens[w.index])
		}
		l.sumLocked(w.index)
		l.mu.Unlock()
		return
	}
}

// stillDown records why a reopen failed, without logging it again.
func (l *Live) stillDown(w *liveWorker, why string) {
	l.mu.Lock()
	w.down = why
	l.down[w.index] = why
	l.sumLocked(w.index)
	l.mu.Unlock()
}

// sumLocked adds up the workers of interface i into l.stats[i].
func (l *Live) sumLocked(i int) {
	s := InterfaceStats{Interface: l.cfg.Interfaces[i]}
	for _, w := range l.workers {
		if w.index != i {
			continue
		}
		s.Workers++
		addCounters(reflect.ValueOf(&s.Stats).Elem(), reflect.ValueOf(&w.stats).Elem())
		s.KernelPackets += w.kPackets
		s.KernelDrops += w.kDrops
		s.KernelFreezes += w.kFrzs
	}
	s.Up = l.down[i] == ""
	s.Error = l.down[i]
	s.Reopens = l.reopens[i]
	l.stats[i] = s
}

// addCounters adds every uint64 of src to dst's, through nested structs:
// Stats is counters all the way down (BufferedPeak, a peak, becomes the
// sum of the workers' peaks: a bound on the interface's).
func addCounters(dst, src reflect.Value) {
	for i := range dst.NumField() {
		switch f := dst.Field(i); f.Kind() {
		case reflect.Uint64:
			f.SetUint(f.Uint() + src.Field(i).Uint())
		case reflect.Struct:
			addCounters(f, src.Field(i))
		}
	}
}

// Stats returns a snapshot per interface, refreshed about once a second.
func (l *Live) Stats() []InterfaceStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]InterfaceStats(nil), l.stats...)
}
