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
