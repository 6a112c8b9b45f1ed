package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"time"
)

// OPCUACert is a self-signed RSA application instance certificate as OPC UA
// Part 6 §6.2.2 wants it: RSA (the security policies sign and encrypt with
// RSA, not ECDSA), the application URI in the subject alternative name next
// to the host names and addresses, and usages for both ends of a secure
// channel.
type OPCUACert struct {
	DER []byte          // the certificate, DER
	Key *rsa.PrivateKey // its private key
}

// NewOPCUACert makes a self-signed certificate with common name cn for the
// application URI appURI (e.g. "urn:plcwatch:sim") and hosts (names or IP
// addresses), valid from an hour ago for the given duration (a year when 0).
// bits is the RSA key size (2048 when 0).
func NewOPCUACert(cn, appURI string, hosts []string, bits int, valid time.Duration) (*OPCUACert, error) {
	if bits == 0 {
		bits = 2048
	}
	if valid == 0 {
		valid = 365 * 24 * time.Hour
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("pki: rsa key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	uri, err := url.Parse(appURI)
	if err != nil {
		return nil, fmt.Errorf("pki: application URI %q: %w", appURI, err)
	}
	pub := x509.MarshalPKCS1PublicKey(&key.PublicKey)
	ski := sha1.Sum(pub)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"plcwatch"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(valid),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment |
			x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
		SubjectKeyId:          ski[:],
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	return &OPCUACert{DER: der, Key: key}, nil
}

// WriteFiles writes the certificate as DER (the form OPC UA stores keep in
// certs/ folders) to certPath and the key as PKCS#1 PEM to keyPath (0600).
func (c *OPCUACert) WriteFiles(certPath, keyPath string) error {
	if err := os.WriteFile(certPath, c.DER, 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(c.Key)})
	if err := os.WriteFile(keyPath, pemKey, 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
