package inventory

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParse: a saved inventory (inventory.file: a file on the gateway's
// disk, possibly damaged) either fails to parse or parses into an
// inventory that writes and reads back the same.
func FuzzParse(f *testing.F) {
	inv := New()
	ev := wire("10.0.0.9:4000", "10.0.1.1:502", 16, 100, 2)
	inv.Observe(&ev, nil)
	ev = wire("[fe80::1]:4000", "[fe80::2]:502", 3, 0, 125)
	inv.Observe(&ev, nil)
	saved, _ := json.Marshal(inv)
	f.Add(saved)
	f.Add([]byte(`{"servers":[{"address":"1.2.3.4:502"}],"pairs":[{"client":"1.2.3.5","server":"1.2.3.4:502","read":{"holding":"0-9,20"},"functions":{"3":7}}]}`))
	f.Add([]byte(`{"pairs":[{"client":"x","server":"y"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse(data)
		if err != nil {
			return
		}
		a, err := json.Marshal(inv)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(a)
		if err != nil {
			t.Fatalf("what it wrote does not parse: %v\n%s", err, a)
		}
		b, _ := json.Marshal(back)
		if !bytes.Equal(a, b) {
			t.Fatalf("round trip:\n%s\n%s", a, b)
		}
	})
}
