// Package pki makes a throwaway certificate authority with a server and a
// client certificate, for simulated devices and brokers that speak TLS and
// for the tests that talk to them.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is a CA and two leaf certificates it signed, valid for a day, for
// localhost and 127.0.0.1.
type PKI struct {
	CA             *x509.Certificate
	CAPool         *x509.CertPool
	Server, Client tls.Certificate
}

// New makes a PKI.
func New() (*PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plcwatch test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leaf := func(cn string, usage x509.ExtKeyUsage, serial int64) (tls.Certificate, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return tls.Certificate{}, err
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
	}
	p := &PKI{CA: ca, CAPool: x509.NewCertPool()}
	p.CAPool.AddCert(ca)
	if p.Server, err = leaf("server", x509.ExtKeyUsageServerAuth, 2); err != nil {
		return nil, err
	}
	if p.Client, err = leaf("gateway", x509.ExtKeyUsageClientAuth, 3); err != nil {
		return nil, err
	}
	return p, nil
}

// Files are the PEM files WriteFiles writes.
type Files struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// WriteFiles writes the CA and both key pairs as PEM into dir.
func (p *PKI) WriteFiles(dir string) (Files, error) {
	f := Files{CA: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey: filepath.Join(dir, "server-key.pem"), ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey: filepath.Join(dir, "client-key.pem")}
	write := func(path, typ string, der []byte) error {
		return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	key := func(c tls.Certificate) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(c.PrivateKey) }
	sk, err := key(p.Server)
	if err != nil {
		return f, err
	}
	ck, err := key(p.Client)
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path, typ string
		der       []byte
	}{{f.CA, "CERTIFICATE", p.CA.Raw}, {f.ServerCert, "CERTIFICATE", p.Server.Certificate[0]}, {f.ServerKey, "PRIVATE KEY", sk},
		{f.ClientCert, "CERTIFICATE", p.Client.Certificate[0]}, {f.ClientKey, "PRIVATE KEY", ck}} {
		if err := write(w.path, w.typ, w.der); err != nil {
			return f, fmt.Errorf("pki: %w", err)
		}
	}
	return f, nil
}
