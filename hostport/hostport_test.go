package hostport

import "testing"

func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		s            string
		dial, listen bool // valid as such
	}{
		{"127.0.0.1:4840", true, true},
		{"plc-3.site:502", true, true},
		{"[fe80::1]:4840", true, true},
		{"127.0.0.1:65535", true, true},
		{"127.0.0.1:0", false, true},
		{":9108", false, true},
		{"127.0.0.1:65536", false, false},
		{"127.0.0.1:99999", false, false},
		{"127.0.0.1:-1", false, false},
		{"127.0.0.1:http", false, false},
		{"127.0.0.1:", false, false},
		{"127.0.0.1", false, false},
		{"fe80::1:4840", false, false},
	} {
		if err := Dial(tc.s); (err == nil) != tc.dial {
			t.Errorf("Dial(%q): %v", tc.s, err)
		}
		if err := Listen(tc.s); (err == nil) != tc.listen {
			t.Errorf("Listen(%q): %v", tc.s, err)
		}
	}
	for _, tc := range []struct {
		port string
		ok   bool
	}{{"", true}, {"1", true}, {"1883", true}, {"0", false}, {"65536", false}, {"99999", false}} {
		if err := Port(tc.port); (err == nil) != tc.ok {
			t.Errorf("Port(%q): %v", tc.port, err)
		}
	}
}
