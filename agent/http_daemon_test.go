package agent_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"testing"

	"github.com/plcwatch/plcwatch/agent/mqtttest"
	"github.com/plcwatch/plcwatch/sim/pki"
)

// TestHTTPOverTLSWithClientCertificates: http.tls with client_ca_file
// serves /metrics only to clients with a certificate of that CA — how the
// HTTP listener may face the network without allow_insecure (issue 8).
func TestHTTPOverTLSWithClientCertificates(t *testing.T) {
	p, err := pki.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := p.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeRules(t, dir, fmt.Sprintf(writeRule, "w"))
	addr := mqtttest.FreeAddr(t)
	startDaemon(t, dir, fmt.Sprintf(`rules: {paths: [rules]}
mqtt: {embedded: {listen: %q}}
spool: {dir: spool}
http:
  listen: %q
  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
`, mqtttest.FreeAddr(t), addr, files.ServerCert, files.ServerKey, files.CA))
	get := func(certs []tls.Certificate) (int, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.CAPool, Certificates: certs}}}
		resp, err := c.Get("https://" + addr + "/metrics")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get([]tls.Certificate{p.Client}); code != 200 {
		t.Errorf("with a client certificate: %d, %v", code, err)
	}
	if _, err := get(nil); err == nil {
		t.Error("without a client certificate: answered")
	}
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered")
		}
	}
}
