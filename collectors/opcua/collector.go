package opcua

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"

	"github.com/plcwatch/plcwatch"
)

// Options configure a Collector beyond its device.
type Options struct {
	Logger *slog.Logger
	// Telemetry, when set, is handed the values of each interval as one
	// JSON document (docs/config.md). The bytes are valid only during the
	// call.
	Telemetry func(device string, payload []byte)
	// Site and Gateway name the agent in telemetry.
	Site, Gateway string
	// PKI is the client certificate and trust lists; without it only
	// security None endpoints can be used.
	PKI *PKI
}

// tag is a configured tag in the form monitoring uses.
type tag struct {
	Tag
	ref   NodeRef
	scale float64
	id    *ua.NodeID // resolved for the current session; nil when it could not be
	// most is the most tags the tag's Read may carry (0: the server's
	// limit): halved for each tag of a Read whose response was too large
	// (bisection). Kept across sessions.
	most int
	// tooLarge is why the tag alone made its Read's response too large; it
	// is no longer read (each read would cost the session) until the agent
	// restarts.
	tooLarge string
}

// Collector monitors one OPC UA server: it is a plcwatch.Source and a
// plcwatch.Poller.
type Collector struct {
	dev      Device
	tags     []tag
	reads    []int // indexes of read tags
	subs     []int // indexes of monitored tags
	log      *slog.Logger
	opts     Options
	password string
	userCert []byte
	userKey  *rsa.PrivateKey

	server   netip.AddrPort // the endpoint's address, resolved at each connect
	policy   string         // security policy and mode of the current session
	mode     string
	state    int8 // 0 unknown, 1 up, -1 down
	lastErr  string
	subsMade bool // a subscription was made before: one made again is a gap
	// suspect is the last Read whose response lost the connection, and
	// suspectN how many sessions in a row it did (see cycle).
	suspect  []int
	suspectN int

	ev      plcwatch.Event
	tele    []byte
	teleOut []byte

	ready     chan struct{}
	readyOnce sync.Once

	mu    sync.Mutex
	stats plcwatch.DeviceStats
}

var (
	_ plcwatch.Source = (*Collector)(nil)
	_ plcwatch.Poller = (*Collector)(nil)
)

// New returns a collector for d, which must have passed Defaults and
// Validate. It reads the password and the user certificate but opens no
// connection: a server that is down at start is retried, never fatal.
func New(d Device, opts Options) (*Collector, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{dev: d, opts: opts, log: opts.Logger.With("device", d.Name), ready: make(chan struct{}),
		server: d.serverAddr()}
	var err error
	if c.password, err = d.Auth.password(); err != nil {
		return nil, fmt.Errorf("opcua %s: %w", d.Name, err)
	}
	if d.Auth.CertFile != "" {
		if c.userCert, c.userKey, err = loadKeyPair(d.Auth.CertFile, d.Auth.KeyFile); err != nil {
			return nil, fmt.Errorf("opcua %s: user certificate: %w", d.Name, err)
		}
	}
	for i, t := range d.Tags {
		ref, err := ParseNodeID(t.Node)
		if err != nil {
			return nil, fmt.Errorf("opcua %s: tags[%d]: %w", d.Name, i, err)
		}
		s := 1.0
		if t.Scale != nil {
			s = *t.Scale
		}
		c.tags = append(c.tags, tag{Tag: t, ref: ref, scale: s})
		if t.Mode == "read" {
			c.reads = append(c.reads, i)
		} else {
			c.subs = append(c.subs, i)
		}
	}
	c.dev.Tags = nil // c.tags has them
	c.stats.Device, c.stats.Protocol = d.Name, plcwatch.ProtoOPCUA
	c.stats.PlannedReads = plannedReads(len(c.reads), 0) // until the server's MaxNodesPerRead is known (prepare)
	return c, nil
}

// Stats returns the counters.
func (c *Collector) Stats() plcwatch.DeviceStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Ready is closed when the first connection attempt has ended, in
// success or not.
func (c *Collector) Ready() <-chan struct{} { return c.ready }

// Run monitors the server until ctx ends. Each connection is new from the
// ground up — endpoints, secure channel, session, namespace array,
// operation limits, subscription and monitored items — because gopcua
// v0.8.0's own reconnect path does not bring subscriptions back reliably
// (gopcua#813; #876, fixed after v0.8.0 by #877; #898: after a server
// restart the publish loop stays paused or the client stays "connected"
// with no subscription). A connection that
// fails or is lost is retried after a jittered wait (±50%) that starts at
// backoff and doubles up to max_backoff; a connection that was up for
// stableAfter (or one interval, when longer) retries after backoff again;
// one that fails sooner, for example on its first Read, keeps doubling: no
// flapping.
func (c *Collector) Run(ctx context.Context, emit plcwatch.Emit) error {
	defer c.readyOnce.Do(func() { close(c.ready) })
	wait := c.dev.Backoff
	for {
		upFor, err := c.session(ctx, emit)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("session ended")
		}
		c.setState(emit, -1, err.Error())
		c.readyOnce.Do(func() { close(c.ready) })
		wait = c.retryWait(wait, upFor)
		d := time.Duration(float64(wait) * (0.5 + rand.Float64()))
		if !sleep(ctx, d) {
			return nil
		}
		wait = min(2*wait, c.dev.MaxBackoff)
	}
}

// retryWait is the wait (before jitter) after a session that was
// monitoring for upFor, wait being the current one: backoff again after a
// stable session, else wait (doubled after the sleep).
func (c *Collector) retryWait(wait, upFor time.Duration) time.Duration {
	if upFor >= max(c.dev.Interval, stableAfter) {
		return c.dev.Backoff
	}
	return wait
}

// stableAfter is how long a session must have been monitoring (or one
// interval, when longer) for its loss to restart the backoff.
const stableAfter = 30 * time.Second

// session connects, sets everything up and monitors until the connection
// fails or ctx ends. upFor is how long it was monitoring (0: never).
func (c *Collector) session(ctx context.Context, emit plcwatch.Emit) (upFor time.Duration, err error) {
	client, err := c.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		client.Close(cctx)
		cancel()
	}()
	limits, err := c.prepare(ctx, client, emit)
	if err != nil {
		return 0, err
	}
	notes := make(chan *opcua.PublishNotificationData, 64)
	if len(c.subs) > 0 {
		if err := c.probeSubscribed(ctx, client, limits, emit); err != nil {
			return 0, err
		}
		if err := c.subscribe(ctx, client, limits, notes, emit); err != nil {
			return 0, err
		}
	}
	c.setState(emit, 1, "")
	c.readyOnce.Do(func() { close(c.ready) })
	up := time.Now()
	defer func() { upFor = time.Since(up) }()
	next := time.Now().Truncate(c.dev.Interval).Add(c.dev.Interval)
	timer := time.NewTimer(0) // the read tags at once, then on the interval's grid
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, nil
		case n := <-notes:
			if n.Error != nil {
				return 0, fmt.Errorf("subscription: %w", n.Error)
			}
			if err := c.notification(n.Value, emit); err != nil {
				return 0, err
			}
		case <-timer.C:
			if st := client.State(); st != opcua.Connected {
				return 0, fmt.Errorf("connection lost (%s)", st)
			}
			if err := c.cycle(ctx, client, limits, emit); err != nil {
				return 0, err
			}
			next = next.Add(c.dev.Interval)
			if now := time.Now(); next.Before(now) {
				missed := now.Sub(next)/c.dev.Interval + 1
				next = next.Add(missed * c.dev.Interval)
				c.count(func(s *plcwatch.DeviceStats) { s.Overruns += uint64(missed) })
			}
			timer.Reset(time.Until(next))
		}
	}
}

// connect finds the endpoint, checks the server's certificate, and opens
// the secure channel and the session.
func (c *Collector) connect(ctx context.Context) (*opcua.Client, error) {
	cctx, cancel := context.WithTimeout(ctx, c.dev.ConnectTimeout)
	defer cancel()
	hostport, _ := parseEndpoint(c.dev.Endpoint)
	if ap, err := net.ResolveTCPAddr("tcp", hostport); err == nil {
		c.server = netip.AddrPortFrom(ap.AddrPort().Addr().Unmap(), ap.AddrPort().Port())
	}
	// Each gopcua connection (GetEndpoints, then the session's) follows a
	// handshake of our own: see preflight.
	if err := preflight(cctx, hostport, c.dev.Endpoint); err != nil {
		return nil, fmt.Errorf("GetEndpoints %s: %w", c.dev.Endpoint, err)
	}
	// gopcua's UACP handshake honours a deadline but not a cancel: run in a
	// goroutine so that a stop returns at once (systemd's TimeoutStopSec),
	// not after connect_timeout; the goroutine ends by the deadline.
	eps, err := detached(ctx, func() ([]*ua.EndpointDescription, error) {
		return opcua.GetEndpoints(cctx, c.dev.Endpoint, opcua.DialTimeout(c.dev.ConnectTimeout))
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("GetEndpoints %s: %w", c.dev.Endpoint, err)
	}
	ep, err := selectEndpoint(eps, c.dev.Security, c.opts.PKI != nil)
	if err != nil {
		return nil, err
	}
	c.policy = policyName(ep.SecurityPolicyURI)
	c.mode = modeName(ep.SecurityMode)
	tokType := ua.UserTokenTypeAnonymous
	switch {
	case c.dev.Auth.Username != "":
		tokType = ua.UserTokenTypeUserName
	case c.userCert != nil:
		tokType = ua.UserTokenTypeCertificate
	}
	if !offers(ep, tokType) {
		return nil, fmt.Errorf("endpoint %s %s offers no %s user token (it offers %s)", c.policy, c.mode, tokenName(tokType), tokenNames(ep))
	}
	opts := []opcua.Option{
		opcua.AutoReconnect(false), // see Run
		opcua.SecurityFromEndpoint(ep, tokType),
		opcua.ApplicationName("plcwatch"),
		opcua.SessionName("plcwatch " + c.dev.Name),
		opcua.SessionTimeout(c.dev.SessionTimeout),
		opcua.RequestTimeout(c.dev.Timeout),
		opcua.DialTimeout(c.dev.ConnectTimeout),
	}
	if p := c.opts.PKI; p != nil {
		cert, key := p.Certificate()
		opts = append(opts, opcua.Certificate(cert), opcua.PrivateKey(key), opcua.ApplicationURI(p.ApplicationURI()))
	}
	if ep.SecurityPolicyURI != ua.SecurityPolicyURINone {
		if err := c.opts.PKI.Check(ep.ServerCertificate, c.dev.TrustOnFirstUse); err != nil {
			var ue *UntrustedError
			if errors.As(err, &ue) && c.lastErr != err.Error() {
				// One clear line per certificate, not one per retry.
				c.log.Error("opcua server certificate refused", "endpoint", c.dev.Endpoint, "thumbprint", ue.Thumbprint,
					"subject", ue.Subject, "rejected", ue.Rejected, "trust", ue.TrustCommand())
			}
			return nil, err
		}
	}
	switch tokType {
	case ua.UserTokenTypeUserName:
		opts = append(opts, opcua.AuthUsername(c.dev.Auth.Username, c.password))
	case ua.UserTokenTypeCertificate:
		opts = append(opts, opcua.AuthCertificate(c.userCert), opcua.AuthPrivateKey(c.userKey))
	default:
		opts = append(opts, opcua.AuthAnonymous())
	}
	// The options again after the auth ones: SecurityFromEndpoint sets the
	// token's policy id on the token the auth option made.
	opts = append(opts, opcua.SecurityFromEndpoint(ep, tokType))
	client, err := opcua.NewClient(c.dev.Endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.count(func(s *plcwatch.DeviceStats) { s.Reconnects++ })
	if err := preflight(cctx, hostport, c.dev.Endpoint); err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.dev.Endpoint, err)
	}
	_, err = detached(ctx, func() (struct{}, error) { return struct{}{}, client.Connect(cctx) }, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		client.Close(cctx)
		cancel()
	})
	if errors.Is(err, errAbandoned) {
		return nil, err // abandon closes the client
	}
	if err != nil {
		client.Close(context.WithoutCancel(cctx))
		return nil, fmt.Errorf("connect %s (%s, %s): %w", c.dev.Endpoint, c.policy, c.mode, err)
	}
	return client, nil
}

// detached runs f on its own goroutine and returns its result, or ctx's
// error at once when ctx ends first; then the goroutine, when f returns,
// runs abandon (if any) to release what f made.
func detached[T any](ctx context.Context, f func() (T, error), abandon func()) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		if abandon != nil {
			go func() {
				<-done
				abandon()
			}()
		}
		var zero T
		return zero, fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
	}
}

// errAbandoned is detached's error when ctx ended first.
var errAbandoned = errors.New("stopped while connecting")

// limits are the server's operation limits; 0 is no limit.
type limits struct {
	maxRead, maxMonitor int
}

// prepare reads the namespace array and the operation limits, one node
// per Read (a server with MaxNodesPerRead 1 refuses a Read of three with
// BadTooManyOperations, and gopcua v0.8.0 takes that ServiceFault for a
// lost connection: no larger request before the limit is known), and
// resolves the tags' node ids. A tag that cannot be resolved is reported
// bad and left out of this session.
func (c *Collector) prepare(ctx context.Context, client *opcua.Client, emit plcwatch.Emit) (limits, error) {
	var lim limits
	one := func(what string, node uint32) (*ua.DataValue, error) {
		rctx, cancel := context.WithTimeout(ctx, c.dev.Timeout)
		defer cancel()
		res, err := client.Read(rctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither, NodesToRead: []*ua.ReadValueID{
			{NodeID: ua.NewNumericNodeID(0, node), AttributeID: ua.AttributeIDValue}}})
		c.count(func(s *plcwatch.DeviceStats) { s.Requests++ })
		if err == nil && res.ResponseHeader != nil && res.ResponseHeader.ServiceResult != ua.StatusOK {
			err = res.ResponseHeader.ServiceResult
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		if len(res.Results) != 1 || res.Results[0].Status != ua.StatusOK {
			return nil, nil
		}
		return res.Results[0], nil
	}
	dv, err := one("NamespaceArray", id.Server_NamespaceArray)
	if err != nil {
		return lim, err
	}
	var namespaces []string
	if dv != nil && dv.Value != nil {
		namespaces, _ = dv.Value.Value().([]string)
	}
	for _, l := range []struct {
		name string
		node uint32
		to   *int
	}{
		{"MaxNodesPerRead", id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead, &lim.maxRead},
		{"MaxMonitoredItemsPerCall", id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall, &lim.maxMonitor},
	} {
		dv, err := one(l.name, l.node)
		if err != nil {
			return lim, err
		}
		if dv != nil && dv.Value != nil {
			if n, ok := number(dv.Value.Value()); ok && n >= 0 && n < 1<<31 {
				*l.to = int(n)
			}
		}
	}
	now := time.Now()
	for i := range c.tags {
		t := &c.tags[i]
		t.id = nil
		nid, err := t.ref.Resolve(namespaces)
		if err != nil {
			c.emitBad(emit, t, now, "", err.Error())
			continue
		}
		t.id = nid
	}
	n := 0
	for _, i := range c.reads {
		if c.tags[i].id != nil {
			n++
		}
	}
	c.count(func(s *plcwatch.DeviceStats) { s.PlannedReads = plannedReads(n, lim.maxRead) })
	return lim, nil
}

// plannedReads is the number of Read requests a cycle sends for n
// resolved read tags with the server's MaxNodesPerRead (0: no limit):
// one per chunk, as cycle sends them, and one (the server's CurrentTime,
// the connection's check) when there are no read tags.
func plannedReads(n, maxRead int) int {
	if n == 0 || maxRead <= 0 {
		return 1
	}
	return (n + maxRead - 1) / maxRead
}

// subscribe makes the subscription and its monitored items, as many per
// CreateMonitoredItems as the server takes. Items the server refuses are
// reported bad.
func (c *Collector) subscribe(ctx context.Context, client *opcua.Client, lim limits, notes chan *opcua.PublishNotificationData, emit plcwatch.Emit) error {
	sub, err := client.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: c.dev.Interval}, notes)
	c.count(func(s *plcwatch.DeviceStats) { s.Requests++ })
	if err != nil {
		return fmt.Errorf("CreateSubscription: %w", err)
	}
	if c.subsMade {
		// The values that changed while no subscription was there are
		// lost: the new items report current values only.
		c.count(func(s *plcwatch.DeviceStats) { s.Gaps++ })
	}
	c.subsMade = true
	per := lim.maxMonitor
	if per <= 0 {
		per = 1000
	}
	var reqs []*ua.MonitoredItemCreateRequest
	var idx []int
	flush := func() error {
		if len(reqs) == 0 {
			return nil
		}
		// Sent as is rather than through sub.Monitor, which keeps every
		// request and result for gopcua's own re-creation of the
		// subscription (unused: see Run) — 10,000 items are megabytes.
		var res *ua.CreateMonitoredItemsResponse
		err := client.Send(ctx, &ua.CreateMonitoredItemsRequest{SubscriptionID: sub.SubscriptionID,
			TimestampsToReturn: ua.TimestampsToReturnBoth, ItemsToCreate: reqs}, func(v ua.Response) error {
			r, ok := v.(*ua.CreateMonitoredItemsResponse)
			if !ok {
				return fmt.Errorf("got %T", v)
			}
			res = r
			return nil
		})
		c.count(func(s *plcwatch.DeviceStats) { s.Requests++ })
		if err == nil && res.ResponseHeader != nil && res.ResponseHeader.ServiceResult != ua.StatusOK {
			err = res.ResponseHeader.ServiceResult
		}
		if err != nil {
			return fmt.Errorf("CreateMonitoredItems: %w", err)
		}
		now := time.Now()
		for i, r := range res.Results {
			if i < len(idx) && r.StatusCode != ua.StatusOK {
				c.emitRefused(emit, &c.tags[idx[i]], now, "CreateMonitoredItems", r.StatusCode)
			}
		}
		reqs, idx = nil, idx[:0]
		return nil
	}
	for _, i := range c.subs {
		t := &c.tags[i]
		if t.id == nil || t.tooLarge != "" {
			continue // too large: probeSubscribed reported it
		}
		req := opcua.NewMonitoredItemCreateRequestWithDefaults(t.id, ua.AttributeIDValue, uint32(i))
		p := req.RequestedParameters
		p.SamplingInterval = float64(c.dev.Interval) / float64(time.Millisecond)
		if t.SamplingInterval != nil {
			p.SamplingInterval = float64(*t.SamplingInterval) / float64(time.Millisecond)
		}
		p.QueueSize = uint32(t.QueueSize)
		p.DiscardOldest = t.DiscardOldest == nil || *t.DiscardOldest
		if t.Deadband != "none" {
			kind := uint32(ua.DeadbandTypeAbsolute)
			if t.Deadband == "percent" {
				kind = uint32(ua.DeadbandTypePercent)
			}
			p.Filter = ua.NewExtensionObject(&ua.DataChangeFilter{Trigger: ua.DataChangeTriggerStatusValue,
				DeadbandType: kind, DeadbandValue: t.DeadbandValue})
		}
		reqs, idx = append(reqs, req), append(idx, i)
		if len(reqs) == per {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// notification handles one notification of the subscription.
func (c *Collector) notification(v any, emit plcwatch.Emit) error {
	switch n := v.(type) {
	case *ua.DataChangeNotification:
		now := time.Now()
		for _, item := range n.MonitoredItems {
			i := int(item.ClientHandle)
			if i >= len(c.tags) || c.tags[i].Mode != "subscribe" {
				c.count(func(s *plcwatch.DeviceStats) { s.Discarded++ })
				continue
			}
			c.emitValue(emit, &c.tags[i], item.Value, now, "Publish")
		}
		c.count(func(s *plcwatch.DeviceStats) { s.Notifications += uint64(len(n.MonitoredItems)) })
		c.flushTelemetry(now)
	case *ua.StatusChangeNotification:
		if n.Status != ua.StatusOK && n.Status != ua.StatusGood {
			return fmt.Errorf("subscription status %s", StatusName(n.Status))
		}
	}
	return nil
}

// cycle reads the read tags, one Read per chunk of the server's
// MaxNodesPerRead. With no read tags it reads the server's CurrentTime,
// so that a silent connection (a cut cable sends no FIN) is found within
// an interval and a timeout.
func (c *Collector) cycle(ctx context.Context, client *opcua.Client, lim limits, emit plcwatch.Emit) error {
	start := time.Now()
	defer func() {
		d := time.Since(start)
		c.count(func(s *plcwatch.DeviceStats) { s.Cycles++; s.CycleTime += d; s.LastCycle = d })
	}()
	var ids []int
	for _, i := range c.reads {
		if c.tags[i].id != nil {
			ids = append(ids, i)
		}
	}
	groups := c.groups(ids, lim.maxRead, emit)
	c.count(func(s *plcwatch.DeviceStats) { s.PlannedReads = max(len(groups), 1) })
	if len(groups) == 0 {
		_, err := c.read(ctx, client, []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime), AttributeID: ua.AttributeIDValue}})
		if err != nil {
			c.count(func(s *plcwatch.DeviceStats) { s.FailedCycles++ })
			return fmt.Errorf("read CurrentTime: %w", err)
		}
		return nil
	}
	if err := c.readGroups(ctx, client, groups, emit, false); err != nil {
		return err
	}
	c.flushTelemetry(time.Now())
	return nil
}

// probeSubscribed reads the subscribed tags once, emitting nothing but
// the tags too large, before they are monitored: a notification too large
// for gopcua drops the session as a Read response does, and with no way
// to tell which item it was, so the Read's bisection (cycle) finds the
// tags that are too large, which are then not monitored.
func (c *Collector) probeSubscribed(ctx context.Context, client *opcua.Client, lim limits, emit plcwatch.Emit) error {
	var ids []int
	for _, i := range c.subs {
		if c.tags[i].id != nil {
			ids = append(ids, i)
		}
	}
	if err := c.readGroups(ctx, client, c.groups(ids, lim.maxRead, emit), emit, true); err != nil {
		return fmt.Errorf("probe of the subscribed tags: %w", err)
	}
	return nil
}

// readGroups sends one Read per group and emits the values (probe: only
// the tags found too large alone).
func (c *Collector) readGroups(ctx context.Context, client *opcua.Client, groups [][]int, emit plcwatch.Emit, probe bool) error {
	var nodes []*ua.ReadValueID
	for _, chunk := range groups {
		nodes = nodes[:0]
		for _, i := range chunk {
			nodes = append(nodes, &ua.ReadValueID{NodeID: c.tags[i].id, AttributeID: ua.AttributeIDValue})
		}
		t0 := time.Now()
		res, err := c.read(ctx, client, nodes)
		rtt := time.Since(t0)
		now := time.Now()
		if err != nil && ctx.Err() != nil {
			return ctx.Err() // a stop: the Read was cut short, the tags are not bad
		}
		tooLarge := err != nil && responseTooLarge(err)
		if err != nil && !tooLarge && errors.Is(err, io.EOF) {
			// gopcua v0.8.0 reports a response it could not decode (too
			// large) to its connection monitor too, which closes the
			// connection: the Read often sees only EOF. The same Read losing
			// the connection in consecutive sessions is taken for one: split
			// after 2, a lone tag too large after 3 (a server restart or a
			// network cut hits whichever Read is in flight, rarely the same
			// one each time).
			if n := c.lostAt(chunk); (len(chunk) > 1 && n >= 2) || n >= 3 {
				tooLarge, c.suspect = true, nil
				err = fmt.Errorf("the Read's response dropped the connection %d times in a row (%w): too large for gopcua (over 65,535 array elements or 2 MB)?", n, err)
			}
		}
		if err == nil && slices.Equal(c.suspect, chunk) {
			c.suspect = nil
		}
		if tooLarge {
			// One value too large for gopcua (an array of more than
			// 65,535 elements, a message over its limit) fails the whole
			// Read, and gopcua v0.8.0 drops the connection with it. Bisect:
			// the tags of this Read go in halves from now on, down to the
			// one that is too large alone, which alone is bad.
			c.count(func(s *plcwatch.DeviceStats) { s.FailedCycles++ })
			if len(chunk) == 1 {
				t := &c.tags[chunk[0]]
				t.tooLarge = tooLargeText(err)
				c.emitBad(emit, t, now, "Read", t.tooLarge)
			} else {
				for _, i := range chunk {
					c.tags[i].most = (len(chunk) + 1) / 2
				}
			}
			c.flushTelemetry(now)
			if !errors.Is(err, io.EOF) && client.State() == opcua.Connected {
				continue
			}
			return fmt.Errorf("read: %w (a Read of %d tags: split for the next session)", err, len(chunk))
		}
		if err != nil {
			c.count(func(s *plcwatch.DeviceStats) { s.FailedCycles++ })
			for _, i := range chunk {
				if !probe {
					c.emitBad(emit, &c.tags[i], now, "Read", err.Error())
				}
			}
			c.flushTelemetry(now)
			return fmt.Errorf("read: %w", err)
		}
		if probe {
			continue
		}
		for k, i := range chunk {
			var dv *ua.DataValue
			if k < len(res.Results) {
				dv = res.Results[k]
			}
			c.ev.RTT = rtt
			c.emitValue(emit, &c.tags[i], dv, now, "Read")
		}
	}
	c.flushTelemetry(time.Now())
	return nil
}

// groups splits the read tags ids into Reads of at most per tags (the
// server's MaxNodesPerRead; 0: no limit) and of at most each member's
// most. A tag too large to read alone is reported bad, not read.
func (c *Collector) groups(ids []int, per int, emit plcwatch.Emit) [][]int {
	var out [][]int
	var cur []int
	limit := 0
	now := time.Now()
	for _, i := range ids {
		t := &c.tags[i]
		if t.tooLarge != "" {
			c.emitBad(emit, t, now, "Read", t.tooLarge)
			continue
		}
		most := per
		if t.most > 0 && (most <= 0 || t.most < most) {
			most = t.most
		}
		if len(cur) > 0 && most > 0 && len(cur)+1 > most {
			out, cur = append(out, cur), nil
		}
		if len(cur) == 0 {
			limit = most
		} else if most > 0 && (limit <= 0 || most < limit) {
			limit = most
		}
		cur = append(cur, i)
		if limit > 0 && len(cur) >= limit {
			out, cur = append(out, cur), nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// lostAt records that the Read of chunk lost the connection and returns
// how many sessions in a row it did.
func (c *Collector) lostAt(chunk []int) int {
	if slices.Equal(c.suspect, chunk) {
		c.suspectN++
	} else {
		c.suspect, c.suspectN = slices.Clone(chunk), 1
	}
	return c.suspectN
}

// responseTooLarge says whether a Read failed because its response was
// too large for the server or for gopcua: BadEncodingLimitsExceeded
// (gopcua's 65,535-element array limit), BadResponseTooLarge, or gopcua's
// own "message too large" and "too many chunks" (MaxMessageSize,
// MaxChunkCount).
func responseTooLarge(err error) bool {
	if errors.Is(err, ua.StatusBadEncodingLimitsExceeded) || errors.Is(err, ua.StatusBadResponseTooLarge) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "message too large") || strings.Contains(msg, "too many chunks")
}

// tooLargeText is a too-large error as a tag's error: the status name
// when it is one.
func tooLargeText(err error) string {
	var code ua.StatusCode
	if errors.As(err, &code) {
		return statusText(code)
	}
	return err.Error()
}

// read sends one Read with the request timeout.
func (c *Collector) read(ctx context.Context, client *opcua.Client, nodes []*ua.ReadValueID) (*ua.ReadResponse, error) {
	rctx, cancel := context.WithTimeout(ctx, c.dev.Timeout)
	defer cancel()
	res, err := client.Read(rctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: nodes})
	c.count(func(s *plcwatch.DeviceStats) {
		s.Requests++
		switch {
		case errors.Is(err, ua.StatusBadTimeout) || errors.Is(err, context.DeadlineExceeded):
			s.Timeouts++
		case err != nil:
			var code ua.StatusCode
			if errors.As(err, &code) {
				s.Exceptions++
			}
		}
	})
	if err == nil && res.ResponseHeader != nil && res.ResponseHeader.ServiceResult != ua.StatusOK {
		return nil, res.ResponseHeader.ServiceResult
	}
	return res, err
}

// base fills the fields every event of the device has.
func (c *Collector) base(now time.Time, op plcwatch.Op) *plcwatch.Event {
	ev := &c.ev
	rtt := ev.RTT
	*ev = plcwatch.Event{Time: now, Source: plcwatch.Poll, Protocol: plcwatch.ProtoOPCUA, Op: op, Device: c.dev.Name,
		Server: c.server, Endpoint: c.dev.Endpoint, SecurityPolicy: c.policy, SecurityMode: c.mode,
		Value: plcwatch.NoValue, Raw: plcwatch.NoValue}
	if op == plcwatch.OpRead {
		ev.RTT = rtt
	}
	return ev
}

// emitValue emits a tag's value.
func (c *Collector) emitValue(emit plcwatch.Emit, t *tag, dv *ua.DataValue, now time.Time, service string) {
	ev := c.base(now, plcwatch.OpRead)
	ev.Service, ev.Node, ev.Attribute, ev.Tag = service, t.Node, uint32(ua.AttributeIDValue), t.Name
	setValue(ev, dv, t.scale, t.Offset)
	c.emitTag(emit, ev, t)
}

// emitBad emits a tag that has no value, with why.
func (c *Collector) emitBad(emit plcwatch.Emit, t *tag, now time.Time, service, why string) {
	ev := c.base(now, plcwatch.OpRead)
	ev.Service, ev.Node, ev.Attribute, ev.Tag = service, t.Node, uint32(ua.AttributeIDValue), t.Name
	ev.Quality, ev.Error = "bad", why
	ev.Absent |= plcwatch.FieldStatus // no value, no status from the server: not Good
	c.emitTag(emit, ev, t)
}

// emitRefused emits a tag the server refused with a status code.
func (c *Collector) emitRefused(emit plcwatch.Emit, t *tag, now time.Time, service string, code ua.StatusCode) {
	ev := c.base(now, plcwatch.OpRead)
	ev.Service, ev.Node, ev.Attribute, ev.Tag = service, t.Node, uint32(ua.AttributeIDValue), t.Name
	ev.Quality, ev.Status, ev.StatusName, ev.Error = "bad", uint32(code), StatusName(code), StatusName(code)
	c.emitTag(emit, ev, t)
}

func (c *Collector) emitTag(emit plcwatch.Emit, ev *plcwatch.Event, t *tag) {
	if c.opts.Telemetry != nil {
		c.appendTelemetry(ev, t)
	}
	emit(ev)
	c.ev.RTT = 0
}

// setState records up (1) or down (-1, with why) and emits a status event
// when the state changes.
func (c *Collector) setState(emit plcwatch.Emit, state int8, why string) {
	changed := state != c.state
	c.state, c.lastErr = state, why
	c.mu.Lock()
	c.stats.Known, c.stats.Up = true, state > 0
	c.mu.Unlock()
	if !changed {
		return
	}
	ev := c.base(time.Now(), plcwatch.OpStatus)
	ev.Quality = "up"
	if state < 0 {
		ev.Quality, ev.Error = "down", why
		c.log.Warn("opcua server down", "endpoint", c.dev.Endpoint, "err", why)
	} else {
		c.log.Info("opcua server up", "endpoint", c.dev.Endpoint, "security_policy", c.policy, "security_mode", c.mode)
	}
	emit(ev)
}

func (c *Collector) count(f func(*plcwatch.DeviceStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// selectEndpoint picks the endpoint: the policy and mode asked for, or
// with auto the highest security level among the policies gopcua
// implements (a server may offer one it does not). Without a PKI only
// None endpoints can be used.
func selectEndpoint(eps []*ua.EndpointDescription, sec Security, havePKI bool) (*ua.EndpointDescription, error) {
	var best *ua.EndpointDescription
	for _, ep := range eps {
		if !supportedPolicy(ep.SecurityPolicyURI) || ep.SecurityMode == ua.MessageSecurityModeInvalid {
			continue
		}
		if sec.Policy != "auto" && ep.SecurityPolicyURI != policies[sec.Policy] {
			continue
		}
		if sec.Mode != "auto" && ep.SecurityMode != modes[sec.Mode] {
			continue
		}
		if !havePKI && ep.SecurityPolicyURI != ua.SecurityPolicyURINone {
			continue
		}
		if best == nil || level(ep) > level(best) {
			best = ep
		}
	}
	if best == nil {
		var have []string
		for _, ep := range eps {
			have = append(have, policyName(ep.SecurityPolicyURI)+"/"+modeName(ep.SecurityMode))
		}
		return nil, fmt.Errorf("no endpoint with security policy %s and mode %s (the server offers %v)", sec.Policy, sec.Mode, have)
	}
	return best, nil
}

// level orders endpoints: the server's SecurityLevel, then gopcua's own
// ranking of the policy and mode.
func level(ep *ua.EndpointDescription) int {
	return int(ep.SecurityLevel)<<8 | int(uapolicy.SecurityLevel(ep.SecurityPolicyURI, ep.SecurityMode))
}

func supportedPolicy(uri string) bool {
	for _, p := range uapolicy.SupportedPolicies() {
		if p == uri {
			return true
		}
	}
	return false
}

func policyName(uri string) string {
	for n, u := range policies {
		if u == uri {
			return n
		}
	}
	return uri
}

func modeName(m ua.MessageSecurityMode) string {
	for n, v := range modes {
		if v == m {
			return n
		}
	}
	return m.String()
}

func offers(ep *ua.EndpointDescription, t ua.UserTokenType) bool {
	for _, tok := range ep.UserIdentityTokens {
		if tok.TokenType == t {
			return true
		}
	}
	return false
}

func tokenName(t ua.UserTokenType) string {
	switch t {
	case ua.UserTokenTypeAnonymous:
		return "Anonymous"
	case ua.UserTokenTypeUserName:
		return "UserName"
	case ua.UserTokenTypeCertificate:
		return "Certificate"
	}
	return "IssuedToken"
}

func tokenNames(ep *ua.EndpointDescription) []string {
	var out []string
	for _, tok := range ep.UserIdentityTokens {
		out = append(out, tokenName(tok.TokenType))
	}
	return out
}

// appendTelemetry adds a tag to the interval's telemetry document.
func (c *Collector) appendTelemetry(ev *plcwatch.Event, t *tag) {
	b := c.tele
	if len(b) > 0 {
		b = append(b, ',')
	}
	b = plcwatch.AppendJSONString(b, t.Name)
	b = append(b, ':')
	c.tele = ev.AppendTelemetryTag(b, t.UOM)
}

// flushTelemetry hands the values gathered since the last flush to
// Options.Telemetry (docs/config.md): one document per Read cycle and per
// publish of the subscription.
func (c *Collector) flushTelemetry(t time.Time) {
	if c.opts.Telemetry == nil || len(c.tele) == 0 {
		return
	}
	b := c.teleOut[:0]
	b = plcwatch.AppendTelemetryHead(b, t, c.opts.Site, c.opts.Gateway, c.dev.Name)
	b = append(b, `,"protocol":"opcua","tags":{`...)
	b = append(b, c.tele...)
	c.teleOut = append(b, "}}"...)
	c.tele = c.tele[:0]
	c.opts.Telemetry(c.dev.Name, c.teleOut)
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
