package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/plcwatch/plcwatch"
)

// readTimeout bounds each blocking read so that the capture loop notices
// cancellation and keeps timeouts firing on a quiet wire.
const readTimeout = 100 * time.Millisecond

// InterfaceStats are one interface's counters: what the engine saw and what
// the kernel says it received and dropped.
type InterfaceStats struct {
	Interface     string
	Stats         Stats
	KernelPackets uint64 // packets the filter accepted
	KernelDrops   uint64 // packets the kernel dropped: the socket buffer was full
}

// Live captures on network interfaces through AF_PACKET sockets
// (gopacket/pcapgo, no libpcap), one goroutine and one Engine per interface.
type Live struct {
	cfg     Config
	log     *slog.Logger
	handles []*liveHandle

	mu    sync.Mutex
	stats []InterfaceStats
}

type liveHandle struct {
	name string
	h    *pcapgo.EthernetHandle
	file *os.File // h's socket: pcapgo v1.7 reads it through the netpoller, so reads wait for a deadline, not SO_RCVTIMEO
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

// Open opens and configures a socket per interface, so that a missing
// interface or privilege fails at start, not later. Run opens them itself if
// Open was not called.
func (l *Live) Open() error {
	if l.handles != nil {
		return nil
	}
	filter, err := Filter(l.cfg.Ports(), l.cfg.Snaplen)
	if err != nil {
		return err
	}
	for _, name := range l.cfg.Interfaces {
		h, err := openHandle(name, l.cfg, filter)
		if err != nil {
			l.Close()
			return err
		}
		l.handles = append(l.handles, &liveHandle{name: name, h: h, file: handleFile(h)})
	}
	l.stats = make([]InterfaceStats, len(l.handles))
	return nil
}

// Close releases the sockets.
func (l *Live) Close() {
	for _, h := range l.handles {
		h.h.Close()
	}
	l.handles = nil
}

func openHandle(name string, cfg Config, filter []bpf.RawInstruction) (*pcapgo.EthernetHandle, error) {
	h, err := pcapgo.NewEthernetHandle(name)
	if err != nil {
		if os.Geteuid() != 0 && strings.Contains(err.Error(), "operation not permitted") {
			return nil, fmt.Errorf("interface %q: %v: live capture needs CAP_NET_RAW (run as root, or grant it: setcap cap_net_raw,cap_net_admin+ep plcwatch)", name, err)
		}
		return nil, fmt.Errorf("interface %q: %v", name, err)
	}
	fail := func(what string, err error) (*pcapgo.EthernetHandle, error) {
		h.Close()
		return nil, fmt.Errorf("interface %q: %s: %w", name, what, err)
	}
	if err := h.SetCaptureLength(cfg.Snaplen); err != nil {
		return fail("snap length", err)
	}
	if err := h.SetBPF(filter); err != nil {
		return fail("attach BPF filter", err)
	}
	if cfg.Promiscuous {
		if err := h.SetPromiscuous(true); err != nil {
			return fail("promiscuous mode", err)
		}
	}
	fd, err := handleFD(h)
	if err != nil {
		return fail("socket", err)
	}
	tv := unix.NsecToTimeval(readTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("read timeout", err)
	}
	if cfg.SocketBuffer > 0 {
		// RCVBUFFORCE passes the sysctl limit with CAP_NET_ADMIN; without
		// it the kernel caps RCVBUF at net.core.rmem_max.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.SocketBuffer) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.SocketBuffer)
		}
	}
	// Reset the kernel counters: packets taken before the filter was
	// attached are not ours to count.
	_, _ = h.Stats()
	return h, nil
}

// handleFD returns the socket of a pcapgo handle. pcapgo keeps it
// unexported (v1.7 as an *os.File named file), but a read timeout and a
// receive buffer need it: without the timeout a blocked read never sees
// cancellation.
func handleFD(h *pcapgo.EthernetHandle) (int, error) {
	file := handleFile(h)
	if file == nil {
		return -1, errors.New("pcapgo.EthernetHandle has no file field: gopacket changed, update handleFile")
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// handleFile returns the socket of a pcapgo handle as the *os.File pcapgo
// v1.7 keeps unexported; nil if gopacket changed.
func handleFile(h *pcapgo.EthernetHandle) *os.File {
	f := reflect.ValueOf(h).Elem().FieldByName("file")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*os.File)(nil)) {
		return nil
	}
	return (*os.File)(unsafe.Pointer(f.Pointer()))
}

// isRetry tells a read that timed out or was interrupted from a real error;
// pcapgo formats the errno into its message instead of wrapping it.
func isRetry(err error) bool {
	msg := err.Error()
	return strings.HasSuffix(msg, syscall.EAGAIN.Error()) || strings.HasSuffix(msg, syscall.EINTR.Error()) ||
		strings.HasSuffix(msg, os.ErrDeadlineExceeded.Error())
}

// Run captures until ctx is cancelled, emitting events from every interface.
// emit is called from one goroutine per interface.
func (l *Live) Run(ctx context.Context, emit plcwatch.Emit) error {
	if err := l.Open(); err != nil {
		return err
	}
	defer l.Close()
	errs := make([]error, len(l.handles))
	var wg sync.WaitGroup
	for i, h := range l.handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.capture(ctx, i, h, emit)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Live) capture(ctx context.Context, i int, h *liveHandle, emit plcwatch.Emit) error {
	log := l.log.With("interface", h.name)
	e := NewEngine(l.cfg, emit)
	e.connBase = uint64(i+1) << 48 // connection ids stay unique across interfaces
	defer e.Finish(plcwatch.UnansweredStopped)
	var kernel InterfaceStats
	publishAt := time.Now()
	publish := func(now time.Time) {
		if now.Before(publishAt) {
			return
		}
		publishAt = now.Add(time.Second)
		if ks, err := h.h.Stats(); err == nil {
			kernel.KernelPackets += uint64(ks.Packets)
			kernel.KernelDrops += uint64(ks.Drops)
			if ks.Drops > 0 {
				log.Warn("kernel dropped packets: the socket buffer was full", "drops", ks.Drops, "total", kernel.KernelDrops)
			}
		}
		l.mu.Lock()
		l.stats[i] = InterfaceStats{Interface: h.name, Stats: e.Stats(), KernelPackets: kernel.KernelPackets, KernelDrops: kernel.KernelDrops}
		l.mu.Unlock()
	}
	defer func() { publishAt = time.Time{}; publish(time.Now()) }()
	log.Info("capturing", "modbus_ports", l.cfg.ModbusPorts, "opcua_ports", l.cfg.OPCUAPorts, "promiscuous", l.cfg.Promiscuous)
	var deadline time.Time
	for ctx.Err() == nil {
		// A deadline bounds each wait so that the loop sees cancellation and
		// timeouts fire on a quiet wire; moved forward at most every 10 ms.
		if now := time.Now(); h.file != nil && now.Add(readTimeout-10*time.Millisecond).After(deadline) {
			deadline = now.Add(readTimeout)
			_ = h.file.SetReadDeadline(deadline)
		}
		data, ci, err := h.h.ZeroCopyReadPacketData()
		if err != nil {
			if isRetry(err) || errors.Is(err, os.ErrDeadlineExceeded) {
				now := time.Now()
				e.Advance(now)
				publish(now)
				continue
			}
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("interface %q: %w", h.name, err)
		}
		e.Packet(data, ci.Timestamp, LinkEthernet)
		publish(ci.Timestamp)
	}
	return nil
}

// Stats returns a snapshot per interface, refreshed about once a second.
func (l *Live) Stats() []InterfaceStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]InterfaceStats(nil), l.stats...)
}
