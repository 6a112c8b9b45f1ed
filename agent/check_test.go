package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/plcwatch/plcwatch/collectors/capture"
	"github.com/plcwatch/plcwatch/rules"
)

// checkDir is a folder with a valid rule file (rules/r.yaml), a password
// file, and whatever files writes.
func checkDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["rules/r.yaml"] = "rules:\n  - {id: w, title: writes, severity: low, match: {op: write}}\n"
	files["pw"] = "secret\n"
	for name, text := range files {
		path := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCheckFindsWhatRunRefuses: Check reads what the configuration names
// and looks at the machine, so that "config check" refuses whatever "run"
// would (issue 9).
func TestCheckFindsWhatRunRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}
	base := "site: s\ngateway: g\nspool: {dir: spool}\nhttp: {listen: \"" + free() + "\"}\nmqtt: {embedded: {listen: \"" + free() + "\"}}\n"
	tests := []struct {
		name   string
		files  map[string]string
		config string
		want   []string // "line:col: message" prefixes, or "FILE:line:col: ..." for other files
	}{
		{"valid", nil, base + "rules: {paths: [rules]}\n", nil},
		{"rules matching nothing", map[string]string{"empty/README": "x"},
			base + "rules: {paths: [rules, nowhere, empty, \"rules/*.yml\"]}\n", []string{
				"6:24: rules.paths[1]: DIR/nowhere: no such file or directory",
				"6:33: rules.paths[2]: DIR/empty has no rule files (.yaml, .yml) in it",
				`6:40: rules.paths[3]: DIR/rules/*.yml matches no rule file`}},
		{"rule problems", map[string]string{"more/bad.yaml": "rules:\n  - {id: x, title: t, severity: loud, match: {op: write}}\n"},
			base + "rules: {paths: [rules, more]}\n", []string{`DIR/more/bad.yaml:2:33: severity "loud"`}},
		{"password and certificates", nil,
			strings.Replace(base, "mqtt: {embedded", "mqtt: {password_file: nope, tls: {ca_file: ca.pem}, brokers: [\"tcp://b:1883\"], embedded", 1) +
				"rules: {paths: [rules]}\n", []string{
				"5:23: mqtt.password_file: the file it names cannot be read: no such file or directory",
				"5:34: mqtt.tls: ca_file: open DIR/ca.pem: no such file or directory"}},
		{"interfaces", nil, base + "rules: {paths: [rules]}\ncapture: {interfaces: [lo, nosuch0]}\n",
			[]string{`7:28: capture.interfaces[1]: "nosuch0": no such network interface (this machine has: `}},
		{"ports in use", nil,
			"site: s\nspool: {dir: spool}\nhttp: {listen: \"" + busy.Addr().String() + "\"}\nmqtt: {embedded: {listen: \"" + busy.Addr().String() + "\"}}\nrules: {paths: [rules]}\n",
			// A hand-run check on a gateway where plcwatch runs: said so,
			// with the way to check the file alone (issue 14).
			[]string{"3:16: http.listen: " + busy.Addr().String() + ": address already in use (another program, or a running plcwatch, listens there? set http.listen to another address, or off; on a gateway running plcwatch, check with --offline)",
				"4:27: mqtt.embedded.listen: " + busy.Addr().String() + ": address already in use: the embedded broker cannot listen there (another broker, or a running plcwatch's own, there?"}},
		{"folders", map[string]string{"file": "x"}, strings.Replace(base, "spool: {dir: spool}", "spool: {dir: file/spool}\nalert_log: {path: file/a/alerts.jsonl}", 1) +
			"rules: {paths: [rules]}\n", []string{"3:14: spool.dir: DIR/file/spool: DIR/file is not a folder",
			"4:19: alert_log.path: DIR/file/a/alerts.jsonl: DIR/file is not a folder"}},
		{"paths run writes", map[string]string{"logs/x": "x"}, strings.Replace(base, "spool: {dir: spool}",
			"spool: {dir: /proc/nope}\nalert_log: {path: logs}\nevent_log: {path: /proc/nope/events.jsonl}\nrules: {paths: [rules], baseline_file: /proc/nope/b.json}", 1), []string{
			"3:14: spool.dir: /proc/nope: cannot be made: cannot make a folder in /proc:",
			"4:19: alert_log.path: DIR/logs: is a folder, not a file",
			"5:19: event_log.path: /proc/nope/events.jsonl: cannot be made: cannot make a folder in /proc:"}},
		{"names in MQTT topics", nil, strings.Replace(base, "site: s\ngateway: g\n", "site: \"a/b\"\ngateway: \"gw#\"\n", 1) +
			"rules: {paths: [rules]}\n", []string{
			`1:7: site: "a/b": no / (it is one level of the MQTT topics)`,
			`2:10: gateway: "gw#": no + or # (MQTT wildcards; it is part of the MQTT topics)`}},
		{"topic prefix levels", nil, strings.Replace(base, "mqtt: {", "mqtt: {topic_prefix: \"plant//gw\", ", 1) + "rules: {paths: [rules]}\n", []string{
			`5:22: mqtt.topic_prefix: "plant//gw": level 2: an empty level (no leading, trailing or double /)`}},
		{"embedded broker files", nil, strings.Replace(base, "mqtt: {embedded: {", "mqtt: {embedded: {users: [{username: u, password_env: PLCWATCH_NO_SUCH_VAR}], tls: {cert_file: c.pem, key_file: k.pem}, ", 1) +
			"rules: {paths: [rules]}\n", []string{
			"5:55: mqtt.embedded.users[0].password_env: the environment has no variable of that name",
			"5:84: mqtt.embedded.tls: certificate: open DIR/c.pem: no such file or directory"}},
	}
	if os.Geteuid() != 0 {
		// Capturing on lo needs the privilege this user lacks: Check says
		// so, as run would (as root, cmd/plcwatch's test drops it).
		for i := range tests {
			if tests[i].name == "interfaces" {
				tests[i].want = append([]string{`7:24: capture.interfaces[0]: interface "lo": `}, tests[i].want...)
			}
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.files == nil {
				tc.files = map[string]string{}
			}
			dir := checkDir(t, tc.files)
			path := filepath.Join(dir, "plcwatch.yaml")
			os.WriteFile(path, []byte(tc.config), 0o600)
			cfg, err := Check(path, CheckOptions{})
			var got []string
			var ce ConfigError
			if errors.As(err, &ce) {
				for _, p := range ce {
					s := strings.ReplaceAll(p.Error(), dir, "DIR")
					got = append(got, strings.TrimPrefix(s, "DIR/plcwatch.yaml:"))
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d:\n got  %s\n want %s...", i, got[i], w)
				}
			}
			if tc.want == nil && (cfg == nil || cfg.ruleSet == nil) {
				t.Errorf("a valid configuration without its rules: %v", cfg)
			}
			if tc.name == "ports in use" {
				// Offline, the machine is not looked at.
				if _, err := Check(path, CheckOptions{Offline: true}); err != nil {
					t.Errorf("offline: %v", err)
				}
			}
		})
	}
}

// TestLogErrorOnePerLine: several problems are several log records, not
// one with "\n" escapes in it (issue 9).
func TestLogErrorOnePerLine(t *testing.T) {
	var out strings.Builder
	log := slog.New(slog.NewTextHandler(&out, nil))
	LogError(log, "rule reload refused", rules.Problems{{File: "a.yaml", Line: 1, Col: 2, Msg: "x"}, {File: "b.yaml", Line: 3, Col: 4, Msg: "y"}})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || strings.Contains(out.String(), `\n`) || !strings.Contains(lines[1], `problem="a.yaml:1:2: x"`) || !strings.Contains(lines[2], `problem="b.yaml:3:4: y"`) {
		t.Errorf("log:\n%s", out.String())
	}
	out.Reset()
	LogError(log, "cannot start", errors.New("one thing"))
	if strings.Count(out.String(), "\n") != 1 || !strings.Contains(out.String(), `err="one thing"`) {
		t.Errorf("log:\n%s", out.String())
	}
}

// TestCheckOpensNoRing: Check tries the capture interfaces without mapping
// the ring run would (issue: "config check" of a configuration with
// 64 MiB × 4096 × fanout 64 rings brought the OOM killer, and one of
// 256 × 4 × 1 MiB took 1 GiB for a check). No memory figure is asserted:
// a fanout group of another mode is taken on lo first, so that opening a
// ring and joining its group fails — and Check must still pass.
func TestCheckOpensNoRing(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a packet socket on lo needs root (CAP_NET_RAW), and CI runs as root")
		}
		t.Skip("a packet socket on lo needs root (CAP_NET_RAW); CI runs as root")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
		t.Fatal(err)
	}
	group := int(capture.FanoutGroup(lo.Index)) | unix.PACKET_FANOUT_LB<<16
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, group); err != nil {
		t.Fatal(err)
	}
	ring := "capture: {interfaces: [lo], fanout: 2, snaplen: 1500, ring_block_size: 64KiB, ring_blocks: 2}\n"
	dir := checkDir(t, map[string]string{})
	path := filepath.Join(dir, "plcwatch.yaml")
	os.WriteFile(path, []byte("spool: {dir: spool}\nhttp: {listen: \"off\"}\nmqtt: {brokers: [\"tcp://127.0.0.1:1\"]}\nrules: {paths: [rules]}\n"+ring), 0o600)

	// The trap works: a capture that opens its rings fails on it.
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	live, err := capture.NewLive(cfg.Capture.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Open(); err == nil || !strings.Contains(err.Error(), "join fanout group") {
		live.Close()
		t.Fatalf("opening the rings: %v, want a refused fanout group", err)
	}
	if _, err := Check(path, CheckOptions{}); err != nil {
		t.Errorf("Check opened a ring: %v", err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestRingMemoryBound: the rings together have a bound (capture.MaxRingMemory)
// that Check refuses beyond, with the file's other problems, and a warning
// past a quarter of the machine's memory.
func TestRingMemoryBound(t *testing.T) {
	for _, tc := range []struct {
		name, capture string
		want          []string
	}{
		{"the issue's", "{ring_block_size: 64MiB, ring_blocks: 4096, fanout: 64}", []string{
			"3:28: capture.ring_block_size: 64MiB: want 64KiB-16MiB",
			"3:48: capture.ring_blocks: 4096: want 2-1024"}},
		{"each in range, too much together", "{interfaces: [lo, lo2], ring_block_size: 16MiB, ring_blocks: 1024, fanout: 2}", []string{
			"3:71: capture.ring_blocks: the capture rings would take 65536 MiB (ring_block_size 16777216 × ring_blocks 1024 × fanout 2 × 2 interfaces), more than 4096 MiB: lower them"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := checkDir(t, map[string]string{})
			path := filepath.Join(dir, "plcwatch.yaml")
			os.WriteFile(path, []byte("queue: 1\nrules: {paths: [rules]}\ncapture: "+tc.capture+"\n"), 0o600)
			_, err := Check(path, CheckOptions{Offline: true})
			got := Problems(err)
			want := append([]string{"1:8: queue: 1: want 64-262144"}, tc.want...)
			if len(got) != len(want) {
				t.Fatalf("problems:\n%s", strings.Join(got, "\n"))
			}
			for i := range want {
				if g := strings.TrimPrefix(got[i], path+":"); g != want[i] {
					t.Errorf("problem %d:\n got  %s\n want %s", i, g, want[i])
				}
			}
		})
	}
	cfg := &Config{nodes: map[string]*yaml.Node{}}
	cfg.Capture.Defaults() // 32 MiB
	cfg.checkRingMemory(1 << 30)
	if len(cfg.warnings) != 0 {
		t.Errorf("32 MiB of 1 GiB: %v", cfg.warnings)
	}
	cfg.checkRingMemory(100 << 20)
	if len(cfg.warnings) != 1 || !strings.Contains(cfg.warnings[0].Msg, "take 32 MiB (ring_block_size × ring_blocks × fanout × interfaces), more than a quarter of this machine's 100 MiB") {
		t.Errorf("32 MiB of 100 MiB: %v", cfg.warnings)
	}
}

// TestCheckWarnsOfFilesItCannotSave: the baseline and the inventory are
// saved as the daemon runs; a place they cannot be written is a warning
// (the agent works, but forgets on restart), never silence.
func TestCheckWarnsOfFilesItCannotSave(t *testing.T) {
	free := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}
	dir := checkDir(t, map[string]string{})
	path := filepath.Join(dir, "plcwatch.yaml")
	os.WriteFile(path, []byte("site: s\ngateway: g\nspool: {dir: spool}\nhttp: {listen: \""+free()+"\"}\nmqtt: {embedded: {listen: \""+free()+"\"}}\n"+
		"rules: {paths: [rules], baseline_file: /proc/nope/b.json}\ninventory: {file: /proc/nope/inventory.json}\n"), 0o600)
	cfg, err := Check(path, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings() {
		got = append(got, fmt.Sprintf("%d: %s", w.Line, w.Msg))
	}
	if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "6: rules.baseline_file: /proc/nope/b.json: ") }) ||
		!slices.ContainsFunc(got, func(s string) bool {
			return strings.HasPrefix(s, "7: inventory.file: /proc/nope/inventory.json: ") && strings.HasSuffix(s, "the passive inventory will not be saved")
		}) {
		t.Errorf("warnings:\n%s", strings.Join(got, "\n"))
	}
}
