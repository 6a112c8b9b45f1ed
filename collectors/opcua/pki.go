package opcua

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/plcwatch/plcwatch/sim/pki"
)

// PKI is the client's certificate and its trust lists on disk (see
// PKIConfig for the layout). It is shared by every device of an agent.
type PKI struct {
	cfg  PKIConfig
	mu   sync.Mutex
	cert []byte // DER
	key  *rsa.PrivateKey
}

// ErrUntrusted is a server certificate that is not in trusted/certs.
var ErrUntrusted = errors.New("server certificate not trusted")

// UntrustedError names the certificate refused and where a copy went.
type UntrustedError struct {
	Thumbprint string // SHA-1, hex
	Subject    string
	Rejected   string // the copy in rejected/certs
	Trusted    string // the folder to move it to
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("server certificate not trusted: thumbprint %s, subject %q; to trust it: %s",
		e.Thumbprint, e.Subject, e.TrustCommand())
}

// TrustCommand is the shell command that trusts the certificate: mv of
// the rejected copy into trusted/certs, both paths single-quoted, since
// the file's name holds [thumbprint], which zsh (and bash with failglob)
// takes for a glob.
func (e *UntrustedError) TrustCommand() string {
	return "mv " + shellQuote(e.Rejected) + " " + shellQuote(e.Trusted)
}

// shellQuote quotes s for a POSIX shell: in single quotes, each single
// quote in s closed, escaped and opened again.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (e *UntrustedError) Is(target error) bool { return target == ErrUntrusted }

// OpenPKI makes the folders and loads the client certificate: the one
// named in cfg, else own/certs/plcwatch.der, which is made once (RSA 2048,
// the application URI in its subject alternative name, valid 10 years)
// when it is absent and never made again: servers that trust it keep
// trusting it across restarts.
func OpenPKI(cfg PKIConfig) (*PKI, error) {
	cfg.Defaults()
	for _, d := range []string{"own/certs", "own/private", "trusted/certs", "rejected/certs", "issuers/certs"} {
		mode := os.FileMode(0o755)
		if d == "own/private" {
			mode = 0o700
		}
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), mode); err != nil {
			return nil, fmt.Errorf("opcua pki: %w", err)
		}
	}
	p := &PKI{cfg: cfg}
	certFile, keyFile := cfg.CertFile, cfg.KeyFile
	if certFile == "" {
		certFile = filepath.Join(cfg.Dir, "own", "certs", "plcwatch.der")
		keyFile = filepath.Join(cfg.Dir, "own", "private", "plcwatch.pem")
		_, errC := os.Stat(certFile)
		_, errK := os.Stat(keyFile)
		if errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist) {
			host, _ := os.Hostname()
			c, err := pki.NewOPCUACert("plcwatch@"+host, cfg.ApplicationURI, []string{host, "localhost"}, 2048, 10*365*24*time.Hour)
			if err != nil {
				return nil, fmt.Errorf("opcua pki: %w", err)
			}
			if err := c.WriteFiles(certFile, keyFile); err != nil {
				return nil, fmt.Errorf("opcua pki: %w", err)
			}
		}
	}
	var err error
	if p.cert, p.key, err = loadKeyPair(certFile, keyFile); err != nil {
		return nil, fmt.Errorf("opcua pki: %w", err)
	}
	return p, nil
}

// ApplicationURI is the client's application URI.
func (p *PKI) ApplicationURI() string {
	if c, err := x509.ParseCertificate(p.cert); err == nil && len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return p.cfg.ApplicationURI
}

// Certificate is the client certificate (DER) and its key.
func (p *PKI) Certificate() ([]byte, *rsa.PrivateKey) { return p.cert, p.key }

// Thumbprint is a certificate's SHA-1 thumbprint in hex, as OPC UA tools
// show it.
func Thumbprint(der []byte) string {
	s := sha1.Sum(der)
	return hex.EncodeToString(s[:])
}

// Check decides whether a server certificate (DER) is trusted: it is when
// trusted/certs holds it (DER or PEM, any file name). When it is not, with
// tofu and no trusted certificate of the same application URI, it is
// written to trusted/certs and trusted; else a copy goes to rejected/certs
// and the error is an *UntrustedError. The folder is read
// on every call: a certificate moved to trusted/ counts at the next
// connect, without a restart.
func (p *PKI) Check(der []byte, tofu bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(der) == 0 {
		return errors.New("the endpoint presents no server certificate")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if now := time.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("server certificate %s (%s) is valid %s to %s only", Thumbprint(der), cert.Subject,
			cert.NotBefore.Format(time.DateOnly), cert.NotAfter.Format(time.DateOnly))
	}
	trusted := filepath.Join(p.cfg.Dir, "trusted", "certs")
	entries, err := os.ReadDir(trusted)
	if err != nil {
		return fmt.Errorf("opcua pki: %w", err)
	}
	sameApp := false // a trusted certificate of the same application (URI) exists
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(trusted, e.Name()))
		if err != nil {
			continue
		}
		if blk, _ := pem.Decode(b); blk != nil {
			b = blk.Bytes
		}
		if bytes.Equal(b, der) {
			return nil
		}
		if tc, err := x509.ParseCertificate(b); err == nil && sameURI(tc, cert) {
			sameApp = true
		}
	}
	name := certFileName(cert, der)
	// Trust on first use: only the first certificate of an application;
	// another one later (a new key, or someone in between) is refused.
	if tofu && !sameApp {
		if err := os.WriteFile(filepath.Join(trusted, name), der, 0o644); err != nil {
			return fmt.Errorf("opcua pki: trust on first use: %w", err)
		}
		return nil
	}
	rejected := filepath.Join(p.cfg.Dir, "rejected", "certs", name)
	if err := os.WriteFile(rejected, der, 0o644); err != nil {
		return fmt.Errorf("opcua pki: %w", err)
	}
	return &UntrustedError{Thumbprint: Thumbprint(der), Subject: cert.Subject.String(), Rejected: rejected, Trusted: trusted + string(filepath.Separator)}
}

// sameURI: both certificates name the same application URI.
func sameURI(a, b *x509.Certificate) bool {
	for _, x := range a.URIs {
		for _, y := range b.URIs {
			if x.String() == y.String() {
				return true
			}
		}
	}
	return false
}

// certFileName is the name UaExpert and node-opcua give certificates:
// the common name and the thumbprint.
func certFileName(c *x509.Certificate, der []byte) string {
	cn := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == ' ' || r == '[' || r == ']' {
			return '_'
		}
		return r
	}, c.Subject.CommonName)
	if cn == "" {
		cn = "server"
	}
	return fmt.Sprintf("%s[%s].der", cn, Thumbprint(der))
}

// loadKeyPair reads a certificate (DER or PEM) and an RSA key (PEM,
// PKCS#1 or PKCS#8).
func loadKeyPair(certFile, keyFile string) ([]byte, *rsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	der := cb
	if blk, _ := pem.Decode(cb); blk != nil {
		der = blk.Bytes
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	pair, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
	}
	key, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s: OPC UA needs an RSA key", keyFile)
	}
	return der, key, nil
}
