// Package inventory is plcwatch's passive asset inventory (issue 13): from
// the wire events alone, the servers (Modbus and OPC UA), their units and
// identity, the clients, and for each client→server pair the function
// codes or services used with counts, the address ranges read and written
// per table, the nodes read and written, and when each was first and last
// seen. docs/inventory.md documents its JSON.
//
// An Inventory is not safe for concurrent use: the daemon keeps it in the
// rules goroutine, and hands out copies (Snapshot) to the HTTP server and
// the publisher.
package inventory

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plcwatch/plcwatch"
)

// Bounds: a sweep over addresses, or spoofed clients, must not grow the
// inventory without end. A new server, client or pair always gets in: when
// its table is full, the entry that was never answered and least recently
// seen (else the least recently seen) makes room (Evicted counts them), so
// that a full table never hides a new writer and a one-way flood of forged
// requests churns only its own entries. Ranges, nodes and names that do
// not fit are counted in Overflow.
const (
	DefaultMaxServers = 4096
	DefaultMaxClients = 4096
	DefaultMaxPairs   = 16384
	maxSpans          = 64  // address ranges per table and direction of a pair
	maxNodes          = 256 // nodes per direction of a pair
	maxEndpoints      = 16  // endpoint URLs, policies and modes per server
)

// Inventory is what the wire showed. The zero value is not usable: New.
type Inventory struct {
	Servers  []*Server `json:"servers"`
	Clients  []*Client `json:"clients"`
	Pairs    []*Pair   `json:"pairs"`
	Overflow uint64    `json:"overflow,omitempty"` // ranges, nodes and names not kept because a bound was hit
	Evicted  uint64    `json:"evicted,omitempty"`  // servers, clients and pairs dropped to make room for new ones

	maxServers, maxClients, maxPairs int

	servers map[netip.AddrPort]*Server
	clients map[netip.Addr]*Client
	pairs   map[pairKey]*Pair
	changed bool
	seen    bool // counts or last-seen times moved since the last Seen
	// byConn caches the server, client and pair of recent TCP connections
	// (direct-mapped by Event.Conn): most events skip the three map
	// lookups.
	byConn *[connCache]connEntry
	// assetsOnly: keep only what op asset events need (NewForAssets).
	assetsOnly bool
}

const connCache = 1024

type connEntry struct {
	conn uint64
	srv  *Server
	cli  *Client
	pair *Pair
	unit uint8 // of the last event: names and units change only with it
}

type pairKey struct {
	client netip.Addr
	server netip.AddrPort
}

// Server is a device that answered, or was asked, as a server.
type Server struct {
	Address   string    `json:"address"` // ip:port
	Protocol  string    `json:"protocol"`
	Device    string    `json:"device,omitempty"` // its configured or listed name
	Units     Units     `json:"units,omitempty"`  // Modbus unit ids addressed, sorted
	Vendor    string    `json:"vendor,omitempty"` // FC 43/14 VendorName
	Product   string    `json:"product,omitempty"`
	Revision  string    `json:"revision,omitempty"`
	Model     string    `json:"model,omitempty"`
	AppURI    string    `json:"application_uri,omitempty"` // OPC UA: the server's ApplicationUri (ReverseHello)
	Endpoints []string  `json:"endpoints,omitempty"`       // OPC UA endpoint URLs clients asked for
	Policies  []string  `json:"security_policies,omitempty"`
	Modes     []string  `json:"security_modes,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`

	// Unanswered: no request to it was answered yet (a one-way flood
	// of forged requests never is): evicted first.
	Unanswered bool `json:"unanswered,omitempty"`

	addr netip.AddrPort
	last int64 // LastSeen in Unix nanoseconds, kept without time.Time's cost; LastSeen in a snapshot
}

// Client is an address that sent requests.
type Client struct {
	Address   string    `json:"address"`
	AppURIs   []string  `json:"application_uris,omitempty"` // OPC UA: its ApplicationUri (CreateSession)
	Users     []string  `json:"users,omitempty"`            // OPC UA user names it activated sessions with
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Unanswered: none of its requests was answered yet: evicted first.
	Unanswered bool `json:"unanswered,omitempty"`

	addr netip.Addr
	last int64
}

// Pair is what one client did to one server.
type Pair struct {
	Client    string            `json:"client"`
	Server    string            `json:"server"`
	Protocol  string            `json:"protocol"`
	Requests  uint64            `json:"requests"`
	Functions map[string]uint64 `json:"functions,omitempty"` // Modbus function code (decimal) → requests
	Services  map[string]uint64 `json:"services,omitempty"`  // OPC UA service → requests
	Read      map[string]string `json:"read,omitempty"`      // table → address ranges ("0-9,20")
	Written   map[string]string `json:"written,omitempty"`
	NodesRead []string          `json:"nodes_read,omitempty"`
	NodesWrit []string          `json:"nodes_written,omitempty"`
	Writes    uint64            `json:"writes"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	// Unanswered: none of its requests was answered yet: evicted first.
	Unanswered bool `json:"unanswered,omitempty"`

	read, written [plcwatch.TableFile + 1]spans
	fcs           *[256]uint64 // Modbus requests by function code; Functions in a snapshot
	client        netip.Addr
	server        netip.AddrPort
	last          int64
}

// New returns an empty inventory.
func New() *Inventory {
	return &Inventory{servers: map[netip.AddrPort]*Server{}, clients: map[netip.Addr]*Client{}, pairs: map[pairKey]*Pair{},
		byConn: new([connCache]connEntry), maxServers: DefaultMaxServers, maxClients: DefaultMaxClients, maxPairs: DefaultMaxPairs}
}

// NewForAssets returns an inventory that keeps only what its op asset
// events need — servers, clients, pairs and whether each pair wrote — and
// neither function counts nor ranges nor nodes: replay and rules test run
// one when a rule asks for op asset, and print no inventory.
func NewForAssets() *Inventory {
	inv := New()
	inv.assetsOnly = true
	return inv
}

// Changed reports whether something was added or changed since the last
// call of Changed (last seen times alone do not count).
func (inv *Inventory) Changed() bool {
	c := inv.changed
	inv.changed = false
	return c
}

// Seen reports whether counts or last-seen times moved since the last
// call of Seen: an event was taken, new or not.
func (inv *Inventory) Seen() bool {
	c := inv.seen
	inv.seen = false
	return c
}

// Observe adds a wire event. For a server, a client or a client writing to
// a server seen for the first time it calls found with an OpAsset event
// (Event.Asset says which); found may be nil. Polled events, a request's
// early copy (StageRequest) and framing errors without a function are
// skipped.
func (inv *Inventory) Observe(ev *plcwatch.Event, found plcwatch.Emit) {
	if ev.Source != plcwatch.Wire || ev.Stage == plcwatch.StageRequest || !ev.Server.IsValid() || !ev.Client.IsValid() {
		return
	}
	if ev.Malformed != "" && ev.Protocol == plcwatch.ProtoModbus && strings.Contains(ev.Malformed, "MBAP") {
		// A framing error — every such reason names the MBAP header — or
		// bytes that are not Modbus at all (a scanner on port 502): no
		// request, so no function, unit, server or client from it.
		return
	}
	if ev.Protocol == plcwatch.ProtoUnknown {
		return
	}
	// A message the server sent on its own (a response alone, an OPC UA
	// ERR or ReverseHello) shows who talks to whom, not a request of the
	// client's: it is attributed by its direction.
	fromServer := ev.Orphan || (ev.Protocol == plcwatch.ProtoOPCUA && (ev.Service == "Error" || ev.Service == "ReverseHello"))
	var srv *Server
	var cli *Client
	var p *Pair
	var ce *connEntry
	if ev.Conn != 0 {
		ce = &inv.byConn[ev.Conn%connCache]
		if ce.conn == ev.Conn && inv.assetsOnly {
			// Known server, client and pair: all an asset event can
			// still be is the pair's first write.
			if ev.Op == plcwatch.OpWrite && !fromServer {
				inv.wrote(ce.pair, ev, found)
			}
			return
		}
	}
	t := ev.Time.UnixNano()
	inv.seen = true
	if ce != nil {
		if ce.conn == ev.Conn {
			srv, cli, p = ce.srv, ce.cli, ce.pair
			srv.last, cli.last = max(srv.last, t), max(cli.last, t)
			if ev.Protocol == plcwatch.ProtoModbus && ev.Unit == ce.unit && len(ev.Objects) == 0 {
				srv = nil // known: nothing of the server to learn from this event
			}
			ce.unit = ev.Unit
		}
	}
	if cli == nil {
		srvAddr := netip.AddrPortFrom(ev.Server.Addr().Unmap(), ev.Server.Port())
		cliAddr := ev.Client.Addr().Unmap()
		srv = inv.server(ev, srvAddr, found)
		cli = inv.client(ev, cliAddr, srvAddr, found)
		if !fromServer && srv != nil && cli != nil {
			p = inv.pair(ev, cliAddr, srvAddr)
		}
		if ce != nil && p != nil {
			*ce = connEntry{ev.Conn, srv, cli, p, ev.Unit}
		}
	}
	if ev.Unanswered == "" { // answered (or a response alone): not a one-way forgery
		if ce != nil && ce.conn == ev.Conn {
			ce.srv.Unanswered = false
		}
		if srv != nil {
			srv.Unanswered = false
		}
		if cli != nil {
			cli.Unanswered = false
		}
		if p != nil {
			p.Unanswered = false
		}
	}
	if srv != nil {
		inv.serverFacts(srv, ev)
	}
	if cli != nil {
		inv.clientFacts(cli, ev)
	}
	if fromServer || p == nil {
		return // a response alone: who answered whom, not what was asked
	}
	p.last = max(p.last, t)
	p.Requests++
	switch {
	case inv.assetsOnly:
	case ev.Protocol == plcwatch.ProtoModbus:
		inv.modbusPair(p, ev)
	case ev.Protocol == plcwatch.ProtoOPCUA:
		inv.opcuaPair(p, ev)
	}
	if ev.Op == plcwatch.OpWrite {
		inv.wrote(p, ev, found)
	}
}

// wrote counts a write of pair p: its first is an asset event.
func (inv *Inventory) wrote(p *Pair, ev *plcwatch.Event, found plcwatch.Emit) {
	if p.Writes == 0 {
		inv.changed = true
		if found != nil {
			a := assetEvent(ev, plcwatch.AssetWriter)
			found(&a)
		}
	}
	p.Writes++
}

// assetEvent is the OpAsset event for what ev showed new.
func assetEvent(ev *plcwatch.Event, kind string) plcwatch.Event {
	return plcwatch.Event{Time: ev.Time, Source: plcwatch.Wire, Protocol: ev.Protocol, Op: plcwatch.OpAsset,
		Device: ev.Device, Client: ev.Client, Server: ev.Server, Conn: ev.Conn, Frame: ev.Frame, Unit: ev.Unit,
		Function: ev.Function, Table: ev.Table, Address: ev.Address, Count: ev.Count, Service: ev.Service,
		Node: ev.Node, Asset: kind, Value: plcwatch.NoValue, Raw: plcwatch.NoValue}
}

// lastSeen is a last-seen time as the JSON gives it.
func lastSeen(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func (inv *Inventory) server(ev *plcwatch.Event, addr netip.AddrPort, found plcwatch.Emit) *Server {
	if s := inv.servers[addr]; s != nil {
		s.last = max(s.last, ev.Time.UnixNano())
		return s
	}
	if len(inv.servers) >= inv.maxServers {
		i := victim(inv.Servers, func(s *Server) (bool, int64) { return s.Unanswered, s.last })
		old := inv.Servers[i]
		delete(inv.servers, old.addr)
		inv.Servers = removeAt(inv.Servers, i)
		inv.forget(func(e *connEntry) bool { return e.srv == old })
	}
	s := &Server{Address: addr.String(), Protocol: ev.Protocol.String(), FirstSeen: ev.Time, addr: addr, last: ev.Time.UnixNano(), Unanswered: true}
	inv.servers[addr] = s
	inv.Servers = append(inv.Servers, s)
	inv.changed = true
	if found != nil {
		a := assetEvent(ev, plcwatch.AssetServer)
		found(&a)
	}
	return s
}

func (inv *Inventory) client(ev *plcwatch.Event, addr netip.Addr, srv netip.AddrPort, found plcwatch.Emit) *Client {
	if c := inv.clients[addr]; c != nil {
		c.last = max(c.last, ev.Time.UnixNano())
		return c
	}
	if len(inv.clients) >= inv.maxClients {
		i := victim(inv.Clients, func(c *Client) (bool, int64) { return c.Unanswered, c.last })
		old := inv.Clients[i]
		delete(inv.clients, old.addr)
		inv.Clients = removeAt(inv.Clients, i)
		inv.forget(func(e *connEntry) bool { return e.cli == old })
	}
	c := &Client{Address: addr.String(), FirstSeen: ev.Time, addr: addr, last: ev.Time.UnixNano(), Unanswered: true}
	inv.clients[addr] = c
	inv.Clients = append(inv.Clients, c)
	inv.changed = true
	if found != nil {
		a := assetEvent(ev, plcwatch.AssetClient)
		found(&a)
	}
	return c
}

func (inv *Inventory) pair(ev *plcwatch.Event, cli netip.Addr, srv netip.AddrPort) *Pair {
	k := pairKey{cli, srv}
	if p := inv.pairs[k]; p != nil {
		return p
	}
	if len(inv.pairs) >= inv.maxPairs {
		i := victim(inv.Pairs, func(p *Pair) (bool, int64) { return p.Unanswered, p.last })
		old := inv.Pairs[i]
		delete(inv.pairs, pairKey{old.client, old.server})
		inv.Pairs = removeAt(inv.Pairs, i)
		inv.forget(func(e *connEntry) bool { return e.pair == old })
	}
	p := &Pair{Client: cli.String(), Server: srv.String(), Protocol: ev.Protocol.String(), FirstSeen: ev.Time,
		client: cli, server: srv, last: ev.Time.UnixNano(), Unanswered: true}
	inv.pairs[k] = p
	inv.Pairs = append(inv.Pairs, p)
	inv.changed = true
	return p
}

// victim is the entry of a full table that makes room: the least
// recently seen of those never answered, else the least recently seen.
// It scans the table: only a new entry of a full table pays for it.
func victim[T any](list []*T, key func(*T) (unanswered bool, last int64)) int {
	best, bestU, bestLast := 0, false, int64(0)
	for i, e := range list {
		u, last := key(e)
		if i == 0 || (u && !bestU) || (u == bestU && last < bestLast) {
			best, bestU, bestLast = i, u, last
		}
	}
	return best
}

// removeAt removes list[i], moving the last entry there (the order does
// not matter: Snapshot sorts).
func removeAt[T any](list []*T, i int) []*T {
	last := len(list) - 1
	list[i] = list[last]
	list[last] = nil
	return list[:last]
}

// forget counts an eviction, and drops the connection cache's entries
// that point at what was evicted.
func (inv *Inventory) forget(points func(*connEntry) bool) {
	inv.Evicted++
	inv.changed = true
	for i := range inv.byConn {
		if e := &inv.byConn[i]; e.conn != 0 && points(e) {
			*e = connEntry{}
		}
	}
}

// serverFacts takes what ev tells of its server: its name, unit, identity.
func (inv *Inventory) serverFacts(s *Server, ev *plcwatch.Event) {
	if ev.Device != "" && ev.Device != s.Address && s.Device != ev.Device {
		s.Device, inv.changed = ev.Device, true
	}
	if ev.Protocol == plcwatch.ProtoModbus && !ev.Orphan && !slices.Contains(s.Units, ev.Unit) {
		i, _ := slices.BinarySearch(s.Units, ev.Unit)
		s.Units = slices.Insert(s.Units, i, ev.Unit)
		inv.changed = true
	}
	for _, o := range ev.Objects { // FC 43/14 (Modbus Application Protocol 6.21)
		var dst *string
		switch o.ID {
		case 0:
			dst = &s.Vendor
		case 1:
			dst = &s.Product
		case 2:
			dst = &s.Revision
		case 5:
			dst = &s.Model
		default:
			continue
		}
		if *dst != o.Value {
			*dst, inv.changed = o.Value, true
		}
	}
	if ev.Protocol != plcwatch.ProtoOPCUA {
		return
	}
	if ev.Service == "ReverseHello" && ev.Application != "" && s.AppURI != ev.Application {
		s.AppURI, inv.changed = ev.Application, true
	}
	s.Endpoints = inv.addName(s.Endpoints, ev.Endpoint, maxEndpoints)
	s.Policies = inv.addName(s.Policies, ev.SecurityPolicy, maxEndpoints)
	s.Modes = inv.addName(s.Modes, ev.SecurityMode, maxEndpoints)
}

func (inv *Inventory) clientFacts(c *Client, ev *plcwatch.Event) {
	if ev.Protocol != plcwatch.ProtoOPCUA {
		return
	}
	if ev.Service != "ReverseHello" {
		c.AppURIs = inv.addName(c.AppURIs, ev.Application, maxEndpoints)
	}
	c.Users = inv.addName(c.Users, ev.User, maxEndpoints)
}

// addName adds s to a sorted list of at most max names.
func (inv *Inventory) addName(list []string, s string, max int) []string {
	if s == "" {
		return list
	}
	i, found := slices.BinarySearch(list, s)
	if found {
		return list
	}
	if len(list) >= max {
		inv.Overflow++
		return list
	}
	inv.changed = true
	return slices.Insert(list, i, s)
}

func (inv *Inventory) modbusPair(p *Pair, ev *plcwatch.Event) {
	if p.fcs == nil {
		p.fcs = new([256]uint64)
	}
	if p.fcs[ev.Function] == 0 {
		inv.changed = true
	}
	p.fcs[ev.Function]++
	if ev.Table == plcwatch.TableNone || ev.Malformed != "" {
		return
	}
	lo, n := ev.Address, ev.Count
	switch ev.Function {
	case 22:
		n = 1
	case 23: // the read half
		inv.addRange(&p.read[ev.Table], ev.ReadAddress, ev.ReadCount)
	}
	if ev.Op == plcwatch.OpWrite {
		inv.addRange(&p.written[ev.Table], lo, n)
	} else if ev.Op == plcwatch.OpRead {
		inv.addRange(&p.read[ev.Table], lo, n)
	}
}

func (inv *Inventory) opcuaPair(p *Pair, ev *plcwatch.Event) {
	if p.Services == nil {
		p.Services = map[string]uint64{}
	}
	svc := ev.Service
	switch svc {
	case "":
		svc = ev.Op.String()
	case "OpenSecureChannel":
		// An OPN encrypted asymmetrically (its body unseen) is named
		// by its message type; in clear text, by its service: one
		// request, one name.
		svc = "OpenSecureChannelRequest"
	}
	if p.Services[svc] == 0 {
		inv.changed = true
	}
	p.Services[svc]++
	switch ev.Op {
	case plcwatch.OpRead:
		p.NodesRead = inv.addName(p.NodesRead, ev.Node, maxNodes)
	case plcwatch.OpWrite:
		p.NodesWrit = inv.addName(p.NodesWrit, ev.Node, maxNodes)
	}
}

func (inv *Inventory) addRange(s *spans, lo, n uint16) {
	if n == 0 {
		return
	}
	hi := uint16(min(int(lo)+int(n)-1, 0xffff))
	switch s.add(lo, hi) {
	case spanAdded:
		inv.changed = true
	case spanMerged:
		inv.changed = true
		inv.Overflow++
	}
}

// Snapshot returns a copy for readers outside the inventory's goroutine,
// sorted (servers and clients by address, pairs by client and server),
// with every pair's ranges in text.
func (inv *Inventory) Snapshot() *Inventory {
	// Empty lists are [] in the JSON, not null: jq '.pairs[]' works on
	// an inventory that saw nothing.
	out := &Inventory{Overflow: inv.Overflow, Evicted: inv.Evicted, Servers: []*Server{}, Clients: []*Client{}, Pairs: []*Pair{}}
	for _, s := range inv.Servers {
		c := *s
		c.LastSeen = lastSeen(s.last)
		c.Units, c.Endpoints, c.Policies, c.Modes = slices.Clone(s.Units), slices.Clone(s.Endpoints), slices.Clone(s.Policies), slices.Clone(s.Modes)
		out.Servers = append(out.Servers, &c)
	}
	slices.SortFunc(out.Servers, func(a, b *Server) int { return a.addr.Compare(b.addr) })
	for _, c := range inv.Clients {
		d := *c
		d.LastSeen = lastSeen(c.last)
		d.AppURIs, d.Users = slices.Clone(c.AppURIs), slices.Clone(c.Users)
		out.Clients = append(out.Clients, &d)
	}
	slices.SortFunc(out.Clients, func(a, b *Client) int { return a.addr.Compare(b.addr) })
	for _, p := range inv.Pairs {
		q := *p
		q.LastSeen = lastSeen(p.last)
		q.Functions, q.Services = p.functions(), clone(p.Services)
		if p.fcs != nil {
			q.fcs = new([256]uint64)
			*q.fcs = *p.fcs
		}
		q.NodesRead, q.NodesWrit = slices.Clone(p.NodesRead), slices.Clone(p.NodesWrit)
		q.Read, q.Written = p.ranges(&p.read), p.ranges(&p.written)
		for i := range q.read {
			q.read[i].s, q.written[i].s = slices.Clone(p.read[i].s), slices.Clone(p.written[i].s)
		}
		out.Pairs = append(out.Pairs, &q)
	}
	slices.SortFunc(out.Pairs, func(a, b *Pair) int {
		return cmp.Or(a.client.Compare(b.client), a.server.Compare(b.server))
	})
	return out
}

// functions is the pair's function counts by code, in text.
func (p *Pair) functions() map[string]uint64 {
	if p.fcs == nil {
		return nil
	}
	out := map[string]uint64{}
	for fc, n := range p.fcs {
		if n > 0 {
			out[strconv.Itoa(fc)] = n
		}
	}
	return out
}

func clone(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return nil
	}
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (p *Pair) ranges(t *[plcwatch.TableFile + 1]spans) map[string]string {
	var out map[string]string
	for i := range t {
		if len(t[i].s) == 0 {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[plcwatch.Table(i).String()] = string(t[i].appendText(nil))
	}
	return out
}
