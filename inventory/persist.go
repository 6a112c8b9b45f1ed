package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/internal/atomicfile"
)

// Units are Modbus unit ids (0-255), sorted. Their JSON is an array of
// numbers ([1, 2]), not the base64 string encoding/json makes of a
// []uint8; an inventory file of a version that wrote base64 ("AQI=")
// still loads.
type Units []uint8

// MarshalJSON writes the units as an array of numbers.
func (u Units) MarshalJSON() ([]byte, error) {
	if u == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+4*len(u))
	b = append(b, '[')
	for i, v := range u {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return append(b, ']'), nil
}

// UnmarshalJSON reads an array of numbers, or the base64 string of older
// files.
func (u *Units) UnmarshalJSON(data []byte) error {
	var n []uint8
	if len(data) > 0 && data[0] == '"' {
		var b []byte // encoding/json decodes base64 into a []byte
		if err := json.Unmarshal(data, &b); err != nil {
			return fmt.Errorf("units: %w", err)
		}
		*u = b
		return nil
	}
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("units: %w", err)
	}
	*u = n
	return nil
}

// MarshalJSON writes the inventory as docs/inventory.md documents it:
// sorted, ranges in text.
func (inv *Inventory) MarshalJSON() ([]byte, error) {
	type plain Inventory // without this method
	s := inv
	if inv.servers != nil { // a live inventory: its pairs' ranges are not in text yet
		s = inv.Snapshot()
	}
	return json.Marshal((*plain)(s))
}

// Load reads an inventory saved by Save; a missing file is an empty
// inventory.
func Load(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	inv, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	return inv, nil
}

// LoadOrReset reads the inventory at path as Load does; a file that is
// not one (damaged, truncated, empty) or cannot be read does not stop the
// agent: the inventory is a cache of what the wire showed, and the wire
// shows it again. The file is moved aside to path+".bad" (replacing an
// older one), the inventory starts empty, and damaged says why (nil when
// the file loaded or was missing).
func LoadOrReset(path string) (inv *Inventory, damaged error) {
	inv, err := Load(path)
	if err == nil {
		return inv, nil
	}
	if rerr := os.Rename(path, path+".bad"); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = fmt.Errorf("%w (moving it aside: %v)", err, rerr)
	}
	return New(), err
}

// Parse reads an inventory's JSON (what MarshalJSON writes) into a live
// inventory that goes on from there.
func Parse(data []byte) (*Inventory, error) {
	var raw struct {
		Servers  []*Server `json:"servers"`
		Clients  []*Client `json:"clients"`
		Pairs    []*Pair   `json:"pairs"`
		Overflow uint64    `json:"overflow"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	inv := New()
	inv.Overflow = raw.Overflow
	for _, s := range raw.Servers {
		a, err := netip.ParseAddrPort(s.Address)
		if err != nil {
			return nil, fmt.Errorf("server %q: %w", s.Address, err)
		}
		s.addr, s.last = a, s.LastSeen.UnixNano()
		inv.servers[a] = s
		inv.Servers = append(inv.Servers, s)
	}
	for _, c := range raw.Clients {
		a, err := netip.ParseAddr(c.Address)
		if err != nil {
			return nil, fmt.Errorf("client %q: %w", c.Address, err)
		}
		c.addr, c.last = a, c.LastSeen.UnixNano()
		inv.clients[a] = c
		inv.Clients = append(inv.Clients, c)
	}
	for _, p := range raw.Pairs {
		c, err1 := netip.ParseAddr(p.Client)
		s, err2 := netip.ParseAddrPort(p.Server)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("pair %s→%s: %w", p.Client, p.Server, err)
		}
		p.client, p.server, p.last = c, s, p.LastSeen.UnixNano()
		for name, text := range p.Read {
			if err := setSpans(&p.read, name, text); err != nil {
				return nil, fmt.Errorf("pair %s→%s read: %w", p.Client, p.Server, err)
			}
		}
		for name, text := range p.Written {
			if err := setSpans(&p.written, name, text); err != nil {
				return nil, fmt.Errorf("pair %s→%s written: %w", p.Client, p.Server, err)
			}
		}
		p.Read, p.Written = nil, nil
		for fc, n := range p.Functions {
			v, err := strconv.ParseUint(fc, 10, 8)
			if err != nil {
				return nil, fmt.Errorf("pair %s→%s: function %q", p.Client, p.Server, fc)
			}
			if p.fcs == nil {
				p.fcs = new([256]uint64)
			}
			p.fcs[v] = n
		}
		p.Functions = nil
		inv.pairs[pairKey{c, s}] = p
		inv.Pairs = append(inv.Pairs, p)
	}
	return inv, nil
}

func setSpans(t *[plcwatch.TableFile + 1]spans, table, text string) error {
	tb, ok := plcwatch.ParseTable(table)
	if !ok {
		return fmt.Errorf("table %q", table)
	}
	s, err := parseSpans(text)
	if err != nil {
		return err
	}
	t[tb] = s
	return nil
}

// Save writes the inventory to path atomically (a temporary file renamed
// over the old one, both fsynced), as the baseline is saved.
func (inv *Inventory) Save(path string) error {
	data, err := json.Marshal(inv.Snapshot())
	if err != nil {
		return err
	}
	return SaveJSON(path, data)
}

// SaveJSON is Save of JSON already made of the inventory (json.Marshal of
// it, or of its Snapshot): for a caller that has just made it to publish,
// so that the inventory is not snapshotted and marshalled twice. The file
// is the same as Save's: indented, with a final newline.
func SaveJSON(path string, data []byte) error {
	var b bytes.Buffer
	b.Grow(len(data) + len(data)/4)
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	b.WriteByte('\n')
	if err := atomicfile.Write(path, ".inventory-*", b.Bytes()); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}
