package inventory

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the inventory for people: servers, clients, then one
// block per client→server pair.
func (inv *Inventory) WriteTable(w io.Writer) error {
	s := inv.Snapshot()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SERVERS (%d)\n", len(s.Servers))
	fmt.Fprintln(tw, "  address\tprotocol\tdevice\tunits\tidentity\tfirst seen\tlast seen")
	for _, sv := range s.Servers {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", sv.Address, sv.Protocol, dash(sv.Device), dash(units(sv.Units)),
			dash(identity(sv)), stamp(sv.FirstSeen), stamp(sv.LastSeen))
	}
	fmt.Fprintf(tw, "\nCLIENTS (%d)\n", len(s.Clients))
	fmt.Fprintln(tw, "  address\tfirst seen\tlast seen\topc ua")
	for _, c := range s.Clients {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Address, stamp(c.FirstSeen), stamp(c.LastSeen), dash(clientIdentity(c)))
	}
	fmt.Fprintf(tw, "\nPAIRS (%d)\n", len(s.Pairs))
	for _, p := range s.Pairs {
		fmt.Fprintf(tw, "  %s -> %s\t%s\t%d requests, %d writes\t%s - %s\n", p.Client, p.Server, p.Protocol, p.Requests, p.Writes,
			stamp(p.FirstSeen), stamp(p.LastSeen))
		if len(p.Functions) > 0 {
			fmt.Fprintf(tw, "    functions\t%s\n", counts(p.Functions, true))
		}
		if len(p.Services) > 0 {
			fmt.Fprintf(tw, "    services\t%s\n", counts(p.Services, false))
		}
		for _, t := range slices.Sorted(maps.Keys(p.Read)) {
			fmt.Fprintf(tw, "    read %s\t%s\n", t, p.Read[t])
		}
		for _, t := range slices.Sorted(maps.Keys(p.Written)) {
			fmt.Fprintf(tw, "    written %s\t%s\n", t, p.Written[t])
		}
		if len(p.NodesRead) > 0 {
			fmt.Fprintf(tw, "    nodes read\t%s\n", strings.Join(p.NodesRead, " "))
		}
		if len(p.NodesWrit) > 0 {
			fmt.Fprintf(tw, "    nodes written\t%s\n", strings.Join(p.NodesWrit, " "))
		}
	}
	if s.Overflow > 0 {
		fmt.Fprintf(tw, "\n%d things not kept: a bound was hit (docs/inventory.md)\n", s.Overflow)
	}
	if s.Evicted > 0 {
		fmt.Fprintf(tw, "\n%d servers, clients or pairs evicted to make room for new ones (docs/inventory.md)\n", s.Evicted)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func units(u []uint8) string {
	parts := make([]string, len(u))
	for i, v := range u {
		parts[i] = strconv.Itoa(int(v))
	}
	return strings.Join(parts, ",")
}

func identity(s *Server) string {
	var parts []string
	for _, p := range []string{s.Vendor, s.Product, s.Revision, s.Model, s.AppURI} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(s.Endpoints) > 0 {
		parts = append(parts, strings.Join(s.Endpoints, ","))
	}
	if len(s.Policies) > 0 {
		parts = append(parts, "policies "+strings.Join(s.Policies, ","))
	}
	if len(s.Modes) > 0 {
		parts = append(parts, "modes "+strings.Join(s.Modes, ","))
	}
	return strings.Join(parts, " / ")
}

// clientIdentity is what OPC UA told of a client: its application URIs
// and the users it activated sessions with.
func clientIdentity(c *Client) string {
	var parts []string
	if len(c.AppURIs) > 0 {
		parts = append(parts, strings.Join(c.AppURIs, ","))
	}
	if len(c.Users) > 0 {
		parts = append(parts, "users "+strings.Join(c.Users, ","))
	}
	return strings.Join(parts, " / ")
}

// counts prints "1:1519 2:1574", keys in numeric (functions) or text order.
func counts(m map[string]uint64, numeric bool) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if numeric {
			x, _ := strconv.Atoi(a)
			y, _ := strconv.Atoi(b)
			return x - y
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
