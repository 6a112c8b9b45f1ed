package agent

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorrelationWarning: config check warns about a rule that compares
// polled and wire values when no polled device is on a captured link, and
// not when one is.
func TestCorrelationWarning(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "rules"), 0o755)
	os.WriteFile(filepath.Join(dir, "rules", "c.yaml"), []byte(`rules:
  - {id: unwritten, title: t, severity: high, match: {source: poll}, when: unwritten}
`), 0o644)
	free := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}
	base := "site: s\ngateway: g\nspool: {dir: spool}\nrules: {paths: [rules]}\nhttp: {listen: \"" + free() + "\"}\nmqtt: {embedded: {listen: \"" + free() + "\"}}\n" +
		"modbus: {devices: [{name: plc, address: \"127.0.0.1:5020\", tags: [{name: sp, table: holding, address: 0}]}]}\n"
	for _, c := range []struct {
		name, capture string
		warn          bool
	}{
		{"no capture", "", true},
		{"the device's port not captured", "capture: {interfaces: [lo], modbus_ports: [502]}\n", true},
		{"polled and captured", "capture: {interfaces: [lo], modbus_ports: [502, 5020]}\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "plcwatch.yaml")
			os.WriteFile(path, []byte(base+c.capture), 0o644)
			cfg, err := Check(path, CheckOptions{Offline: true})
			if err != nil {
				t.Fatal(err)
			}
			warned := false
			for _, w := range cfg.Warnings() {
				warned = warned || strings.Contains(w.Msg, "rule unwritten compares polled and wire values")
			}
			if warned != c.warn {
				t.Errorf("warned %v, want %v: %+v", warned, c.warn, cfg.Warnings())
			}
		})
	}
}
