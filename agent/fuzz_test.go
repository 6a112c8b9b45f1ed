package agent

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParseConfig: no configuration file makes the reader panic, and every
// problem it reports points into the file and speaks the user's terms, not
// the YAML library's Go types.
func FuzzParseConfig(f *testing.F) {
	for _, p := range []string{"../configs/plcwatch.yaml", "../configs/demo/plcwatch.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("rules: {paths: [r]}\nmodbus: {devices: [{name: a, address: 10.0.0.1, interval: 5, tags: {x: 1}}]}\n"))
	f.Add([]byte("rules:\n  paths: [r\nsite: \"x\n"))
	f.Add([]byte("a: &x {b: *x}\n<<: *x\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		_, err := ParseConfig("fuzz.yaml", src)
		if err == nil {
			return
		}
		var ce ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("not a ConfigError: %v", err)
		}
		lines := strings.Count(string(src), "\n") + 2
		for _, p := range ce {
			if p.Line < 0 || p.Line > lines || p.Col < 0 {
				t.Errorf("problem outside the file (%d lines): %s", lines, p.Error())
			}
			if strings.Contains(p.Msg, "cannot unmarshal") {
				t.Errorf("a problem in Go's terms: %s", p.Error())
			}
		}
	})
}
