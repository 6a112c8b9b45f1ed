package opcua

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch/sim/pki"
)

// TestPKI: the folder layout is made, the client certificate is made once
// and kept, an unknown server certificate is refused with its thumbprint
// and copied to rejected/, taken once moved to trusted/ (DER or PEM), and
// trust on first use takes the first certificate of an application only.
func TestPKI(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPKI(PKIConfig{Dir: dir, ApplicationURI: "urn:gw-1:plcwatch"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"own/certs", "own/private", "trusted/certs", "rejected/certs"} {
		if st, err := os.Stat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if p.ApplicationURI() != "urn:gw-1:plcwatch" {
		t.Errorf("application URI %q", p.ApplicationURI())
	}
	first, _ := os.ReadFile(filepath.Join(dir, "own", "certs", "plcwatch.der"))
	if st, _ := os.Stat(filepath.Join(dir, "own", "private", "plcwatch.pem")); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode())
	}
	if _, err := OpenPKI(PKIConfig{Dir: dir, ApplicationURI: "urn:other:plcwatch"}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "own", "certs", "plcwatch.der")); !bytes.Equal(first, again) {
		t.Fatal("the client certificate was made again")
	}
	srv, _ := pki.NewOPCUACert("PLC 3", "urn:acme:plc3", []string{"127.0.0.1"}, 2048, 0)
	err = p.Check(srv.DER, false)
	var ue *UntrustedError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUntrusted) || ue.Thumbprint != Thumbprint(srv.DER) || !strings.Contains(err.Error(), "CN=PLC 3") {
		t.Fatalf("unknown certificate: %v", err)
	}
	if b, _ := os.ReadFile(ue.Rejected); !bytes.Equal(b, srv.DER) || !strings.Contains(ue.Rejected, Thumbprint(srv.DER)) {
		t.Fatalf("rejected copy %s", ue.Rejected)
	}
	// The message's command trusts it as pasted into a shell that takes
	// the file's [thumbprint] for a glob (zsh; bash with failglob) and
	// splits its name at the space of "PLC 3": the paths are quoted.
	if cmd := ue.TrustCommand(); !strings.Contains(err.Error(), "to trust it: "+cmd) {
		t.Errorf("message %q lacks %q", err, cmd)
	}
	if out, err := exec.Command("bash", "-O", "failglob", "-c", ue.TrustCommand()).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", ue.TrustCommand(), err, out)
	}
	if err := p.Check(srv.DER, false); err != nil {
		t.Fatalf("moved to trusted: %v", err)
	}
	// Trust on first use: the first certificate of urn:acme:plc9 is
	// taken; a second one for the same application is not.
	a, _ := pki.NewOPCUACert("PLC 9", "urn:acme:plc9", nil, 2048, 0)
	b, _ := pki.NewOPCUACert("PLC 9", "urn:acme:plc9", nil, 2048, 0)
	if err := p.Check(a.DER, true); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := p.Check(a.DER, false); err != nil {
		t.Fatalf("after first use: %v", err)
	}
	if err := p.Check(b.DER, true); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("a second certificate of the same application: %v", err)
	}
}

// TestShellQuote: the quoted path is the path again after a shell reads it.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"/var/lib/plcwatch/pki/rejected/certs/PLC-3[3c5fe1].der", "/tmp/it's here/a b*[x].der", ""} {
		out, err := exec.Command("bash", "-O", "failglob", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("%q: %q, %v", s, out, err)
		}
	}
}
