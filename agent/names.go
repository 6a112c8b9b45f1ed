package agent

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/plcwatch/plcwatch"
)

// deviceNames gives wire events the name of the configured device or asset
// at their server's address (issue 9: a PLC polled as plc-1 at
// 127.0.0.1:5020 and written to by an HMI gave wire events with
// device "127.0.0.1:5020", and "match: {device: plc-1}" never fired).
//
// The most specific name wins: for the server's address and port and the
// event's Modbus unit, then for its address and port, then for its address
// (every port) and unit, then for its address. An event whose server has
// no name keeps what its dissector gave (ip:port).
//
// Name runs for every wire event: one map lookup and a scan of the few
// names of one address, no allocation.
type deviceNames struct {
	byAddr map[[16]byte][]nameEntry    // by IP address (IPv4 as IPv4-mapped IPv6), most specific first
	tags   map[string][]plcwatch.Label // by device name, for alerts
}

type nameEntry struct {
	port uint16 // 0: every port
	unit int    // plcwatch.AnyUnit: every unit
	weak bool
	name string
	from string // the configuration path that gave it, for messages
}

// specificity orders entries: port and unit, port, unit, neither.
func (e nameEntry) specificity() int {
	s := 0
	if e.port != 0 {
		s += 2
	}
	if e.unit != plcwatch.AnyUnit {
		s++
	}
	return s
}

// Name sets ev.Device to the name of its server, when it has one.
func (n *deviceNames) Name(ev *plcwatch.Event) {
	if n == nil || len(n.byAddr) == 0 || ev.Source != plcwatch.Wire || !ev.Server.IsValid() {
		return
	}
	for _, e := range n.byAddr[ev.Server.Addr().As16()] {
		if (e.port == 0 || e.port == ev.Server.Port()) &&
			(e.unit == plcwatch.AnyUnit || (ev.Protocol == plcwatch.ProtoModbus && e.unit == int(ev.Unit))) {
			ev.Device = e.name
			return
		}
	}
}

// Tags are the labels of a named device (assets' tags), nil when none.
func (n *deviceNames) Tags(device string) []plcwatch.Label {
	if n == nil {
		return nil
	}
	return n.tags[device]
}

// nameConflict is two names for one address and unit.
type nameConflict struct{ path, msg string }

// deviceNames builds the names from the polled devices (every type whose
// configuration is a plcwatch.AssetLister) and the assets. Two names given
// for the same address and unit, where one is an asset, are a conflict; two
// polled devices on the same address and unit (the same device polled twice
// under two names) name it neither, with a warning.
func (c *Config) deviceNames() (*deviceNames, []nameConflict) {
	type given struct {
		a    plcwatch.Asset
		from string
	}
	var all []given
	listers := func(path string, n int, at func(int) plcwatch.AssetLister) {
		for i := range n {
			for _, a := range at(i).Assets() {
				all = append(all, given{a, fmt.Sprintf("%s[%d]", path, i)})
			}
		}
	}
	listers("modbus.devices", len(c.Modbus.Devices), func(i int) plcwatch.AssetLister { return &c.Modbus.Devices[i] })
	listers("opcua.devices", len(c.OPCUA.Devices), func(i int) plcwatch.AssetLister { return &c.OPCUA.Devices[i] })
	for i := range c.Assets {
		a := &c.Assets[i]
		addr, err := parseAssetAddr(a.Address)
		if err != nil {
			continue
		}
		asset := plcwatch.Asset{Name: a.Name, Addr: addr, Unit: plcwatch.AnyUnit}
		if a.Unit != nil {
			asset.Unit = *a.Unit
		}
		for k, v := range a.Tags {
			asset.Tags = append(asset.Tags, plcwatch.Label{Key: k, Value: v})
		}
		slices.SortFunc(asset.Tags, func(x, y plcwatch.Label) int { return cmp.Compare(x.Key, y.Key) })
		all = append(all, given{asset, fmt.Sprintf("assets[%d]", i)})
	}
	n := &deviceNames{byAddr: map[[16]byte][]nameEntry{}, tags: map[string][]plcwatch.Label{}}
	var conflicts []nameConflict
	type key struct {
		addr [16]byte
		port uint16
		unit int
	}
	at := map[key]int{} // index into byAddr[addr]
	for _, g := range all {
		a := g.a
		if len(a.Tags) > 0 {
			n.tags[a.Name] = a.Tags
		}
		k := key{a.Addr.Addr().As16(), a.Addr.Port(), a.Unit}
		e := nameEntry{port: k.port, unit: k.unit, weak: a.Weak, name: a.Name, from: g.from}
		i, seen := at[k]
		if !seen {
			at[k] = len(n.byAddr[k.addr])
			n.byAddr[k.addr] = append(n.byAddr[k.addr], e)
			continue
		}
		old := &n.byAddr[k.addr][i]
		asset := strings.HasPrefix(e.from, "assets")
		switch {
		case old.name == "": // left ambiguous by polled devices: an asset settles it
			if asset {
				*old = e
			}
		case old.name == e.name:
			old.weak = old.weak && e.weak
		case e.weak:
			if old.weak { // two derived names: ambiguous, neither
				old.name = ""
			}
		case old.weak:
			*old = e
		case !asset && !strings.HasPrefix(old.from, "assets"):
			c.warn(e.from+".address", "%s is polled as %q too: its wire events are named after neither (list it under assets to name it)", describeKey(a), old.name)
			old.name = ""
		default:
			conflicts = append(conflicts, nameConflict{e.from + ".address",
				fmt.Sprintf("%s is already named %q (%s)", describeKey(a), old.name, old.from)})
		}
	}
	for addr, es := range n.byAddr {
		es = slices.DeleteFunc(es, func(e nameEntry) bool { return e.name == "" })
		slices.SortStableFunc(es, func(x, y nameEntry) int { return y.specificity() - x.specificity() })
		if len(es) == 0 {
			delete(n.byAddr, addr)
			continue
		}
		n.byAddr[addr] = es
	}
	return n, conflicts
}

func describeKey(a plcwatch.Asset) string {
	s := a.Addr.String()
	if a.Addr.Port() == 0 {
		s = a.Addr.Addr().String() + " (every port)"
	}
	if a.Unit != plcwatch.AnyUnit {
		s += " unit " + strconv.Itoa(a.Unit)
	}
	return s
}

// parseAssetAddr reads an asset's address: ip:port, or an IP address
// alone for every port of it. Names are not resolved: events carry
// addresses, and a name that resolves differently later would name the
// wrong device.
func parseAssetAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return ap, fmt.Errorf("%q: port 0 is not a port (leave the port out for every port)", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), 0), nil
	}
	if host, _, err := net.SplitHostPort(s); err == nil && host != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: want an IP address (ip:port, or ip for every port), not a host name", s)
	}
	if s == "" {
		return netip.AddrPort{}, fmt.Errorf("every asset needs an address (ip:port, or ip for every port)")
	}
	return netip.AddrPort{}, fmt.Errorf("%q: want ip:port, or an IP address for every port", s)
}

// topicLevel says what keeps name from being one level of an MQTT topic,
// "" when nothing does: a / makes two levels (an alert published under
// plcwatch/site/gw/bad/alerts never matches plcwatch/+/+/alerts/#), + and
// # are wildcards a publisher may not use, an empty level matches no +
// the docs show, and NUL is not allowed in a topic (MQTT 3.1.1 §4.7.3).
func topicLevel(name string) string {
	switch {
	case name == "":
		return "empty"
	case strings.Contains(name, "/"):
		return "no / (it is one level of the MQTT topics)"
	case strings.ContainsAny(name, "+#"):
		return "no + or # (MQTT wildcards; it is part of the MQTT topics)"
	case strings.ContainsRune(name, 0):
		return "no NUL (it is part of the MQTT topics)"
	}
	return ""
}

// validateTopicNames checks every name the configuration puts into MQTT
// topics: site and gateway (the default topic prefix is
// plcwatch/<site>/<gateway>) and each level of a topic_prefix given. Device
// names are checked with the devices.
func (c *Config) validateTopicNames(ps *problems) {
	for _, f := range []struct{ key, name string }{{"site", c.Site}, {"gateway", c.Gateway}} {
		if why := topicLevel(f.name); why != "" {
			if f.name == "" && f.key == "gateway" {
				why += ": this machine has no host name to take; set gateway"
			}
			ps.add(f.key, "%q: %s", f.name, why)
		}
	}
	if c.nodes["mqtt.topic_prefix"] == nil {
		return // made of site and gateway
	}
	p := c.MQTT.TopicPrefix
	if strings.HasPrefix(p, "$") {
		ps.add("mqtt.topic_prefix", "%q: not starting with $ (topics for the broker's own use)", p)
		return
	}
	for i, level := range strings.Split(p, "/") {
		if why := topicLevel(level); why != "" {
			if level == "" {
				why = "an empty level (no leading, trailing or double /)"
			}
			ps.add("mqtt.topic_prefix", "%q: level %d: %s", p, i+1, strings.Replace(why, "it is one level of the MQTT topics", "levels are separated by /", 1))
			return
		}
	}
}
