package opcua

import "testing"

func TestParseNodeID(t *testing.T) {
	ns := []string{"http://opcfoundation.org/UA/", "urn:plcwatch:sim", "urn:acme:line3"}
	for _, tc := range []struct {
		in, want string // want "" for an error
	}{
		{"i=2258", "i=2258"},
		{"ns=2;s=Tank.Level", "ns=2;s=Tank.Level"},
		{"ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", "ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63"},
		{"ns=1;b=3q2+7w==", "ns=1;b=3q2+7w=="},
		{"nsu=urn:acme:line3;s=Tank.Level", "ns=2;s=Tank.Level"},
		{"nsu=urn:plcwatch:sim;i=5001", "ns=1;i=5001"},
		{"nsu=urn:not:there;s=x", ""},
		{"ns=2;x=1", ""},
		{"Tank.Level", ""},
		{"nsu=urn:x", ""},
		{"", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ref, err := ParseNodeID(tc.in)
			if err == nil {
				id, rerr := ref.Resolve(ns)
				if rerr == nil {
					if tc.want == "" {
						t.Fatalf("took %q as %s", tc.in, id)
					}
					if id.String() != tc.want {
						t.Fatalf("%s, want %s", id, tc.want)
					}
					return
				}
				err = rerr
			}
			if tc.want != "" {
				t.Fatalf("%v", err)
			}
		})
	}
}

// FuzzParseNodeID: any text is a node id or an error, never a panic; a
// node id taken resolves, and its text form is taken again as the same id.
func FuzzParseNodeID(f *testing.F) {
	for _, s := range []string{"i=2258", "ns=2;s=Tank.Level", "ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", "ns=1;b=3q2+7w==",
		"nsu=urn:acme:line3;s=Tank.Level", "nsu=urn:x;i=1", "ns=65535;i=4294967295", "ns=2;x=1", "s=", "nsu=;s=a"} {
		f.Add(s)
	}
	ns := []string{"http://opcfoundation.org/UA/", "urn:plcwatch:sim", "urn:acme:line3"}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseNodeID(s)
		if err != nil {
			return
		}
		id, err := ref.Resolve(ns)
		if err != nil {
			return
		}
		again, err := ParseNodeID(id.String())
		if err != nil {
			t.Fatalf("%q parsed to %s, which does not parse: %v", s, id, err)
		}
		if got, _ := again.Resolve(ns); got.String() != id.String() {
			t.Fatalf("%q: %s then %s", s, id, got)
		}
	})
}
