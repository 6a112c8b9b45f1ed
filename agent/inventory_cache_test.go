package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/agent/publish"
	"github.com/plcwatch/plcwatch/rules"
)

// TestDamagedCachesDoNotStopTheAgent: a damaged, truncated or empty
// inventory file or baseline file is what the agent learnt, not what it
// was told: config check warns (it said ok before, and run then refused
// to start), run moves the file aside to FILE.bad, warns, and starts
// empty.
func TestDamagedCachesDoNotStopTheAgent(t *testing.T) {
	free := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}
	for _, damage := range []string{"", "\n", `{"servers":[{"address":"10.0.0.1:502","protocol":"modbus","uni`, `{"servers":[{"address":"not-an-addr"}]}`} {
		t.Run(fmt.Sprintf("%q", damage), func(t *testing.T) {
			dir := checkDir(t, map[string]string{"inventory.json": damage, "base.json": damage})
			path := filepath.Join(dir, "plcwatch.yaml")
			os.WriteFile(path, []byte("site: s\ngateway: g\nspool: {dir: spool}\nhttp: {listen: \""+free()+"\"}\nmqtt: {embedded: {listen: \""+free()+"\"}}\n"+
				"rules: {paths: [rules], baseline_file: base.json}\ninventory: {file: inventory.json}\n"), 0o600)
			cfg, err := Check(path, CheckOptions{})
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			var got []string
			for _, w := range cfg.Warnings() {
				got = append(got, fmt.Sprintf("%d: %s", w.Line, w.Msg))
			}
			inv, base := filepath.Join(dir, "inventory.json"), filepath.Join(dir, "base.json")
			if !slices.ContainsFunc(got, func(s string) bool {
				return strings.HasPrefix(s, "7: inventory.file: inventory ") && strings.HasSuffix(s, "run moves it aside to "+inv+".bad and starts an empty inventory")
			}) || (damage != `{"servers":[{"address":"not-an-addr"}]}` && !slices.ContainsFunc(got, func(s string) bool {
				return strings.HasPrefix(s, "6: rules.baseline_file: baseline ") && strings.HasSuffix(s, "run moves it aside to "+base+".bad and baseline rules learn again")
			})) {
				t.Fatalf("warnings:\n%s", strings.Join(got, "\n"))
			}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			k, err := newKeeper(cfg, log)
			if err != nil || len(k.inv.Servers) != 0 {
				t.Fatalf("keeper: %v", err)
			}
			b, err := loadBaseline(base, log)
			if err != nil || b == nil {
				t.Fatalf("baseline: %v", err)
			}
			if saved, _ := os.ReadFile(inv + ".bad"); string(saved) != damage {
				t.Errorf("inventory.json.bad holds %q, want the damaged file", saved)
			}
			if _, err := os.Stat(inv); !os.IsNotExist(err) {
				t.Errorf("the damaged inventory is still in place: %v", err)
			}
			if !strings.Contains(logs.String(), "the saved inventory is damaged") {
				t.Errorf("no warning logged:\n%s", logs.String())
			}
		})
	}
}

// TestInventoryCountsPublished: a site whose traffic brings nothing new
// still has its counts and last-seen times published and saved, at most
// every publish_every, and saved at stop with the final counts.
func TestInventoryCountsPublished(t *testing.T) {
	file := filepath.Join(t.TempDir(), "inventory.json")
	cfg := &Config{}
	cfg.Inventory.File, cfg.Inventory.PublishEvery = file, 10*time.Second
	a := &Agent{cfg: cfg, log: slog.New(slog.DiscardHandler), pub: publish.New(publish.Config{}, nil)}
	k, err := newKeeper(cfg, a.log)
	if err != nil {
		t.Fatal(err)
	}
	engine := rules.NewEngine(&rules.Set{}, rules.Options{}, func(*plcwatch.Alert) {})
	t0 := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	req := func(at time.Time) {
		ev := plcwatch.Event{Time: at, Source: plcwatch.Wire, Protocol: plcwatch.ProtoModbus, Op: plcwatch.OpRead,
			Client: netip.MustParseAddrPort("10.0.0.9:4000"), Server: netip.MustParseAddrPort("10.0.1.1:502"), Conn: 7,
			Unit: 1, Function: 3, Table: plcwatch.TableHolding, Address: 0, Count: 1}
		k.observe(&ev, engine)
	}
	saved := func() (requests uint64, last time.Time) {
		t.Helper()
		var inv struct {
			Pairs []struct {
				Requests uint64    `json:"requests"`
				LastSeen time.Time `json:"last_seen"`
			} `json:"pairs"`
		}
		b, err := os.ReadFile(file)
		if err != nil || json.Unmarshal(b, &inv) != nil || len(inv.Pairs) != 1 {
			t.Fatalf("saved inventory %s: %v", b, err)
		}
		return inv.Pairs[0].Requests, inv.Pairs[0].LastSeen
	}
	req(t0)
	k.tick(t0, a)
	if n, _ := saved(); n != 1 {
		t.Fatalf("requests %d, want 1", n)
	}
	req(t0.Add(time.Second))
	k.tick(t0.Add(time.Second), a) // within publish_every: not yet
	if n, _ := saved(); n != 1 {
		t.Fatalf("saved before publish_every: requests %d", n)
	}
	req(t0.Add(11 * time.Second))
	k.tick(t0.Add(11*time.Second), a)
	if n, last := saved(); n != 3 || !last.Equal(t0.Add(11*time.Second)) {
		t.Fatalf("after publish_every: requests %d last seen %v, want 3 and %v", n, last, t0.Add(11*time.Second))
	}
	req(t0.Add(12 * time.Second))
	k.flush(a) // at stop
	if n, _ := saved(); n != 4 {
		t.Fatalf("at stop: requests %d, want 4", n)
	}
	if !bytes.Contains(*k.json.Load(), []byte(`"requests":4`)) {
		t.Errorf("GET /inventory: %s", *k.json.Load())
	}
}
