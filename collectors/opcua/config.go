// Package opcua monitors OPC UA servers as a client (github.com/gopcua/opcua
// v0.8.0): tags by subscription (monitored items) or read every interval,
// over None or signed and encrypted secure channels, with the certificate
// folders OPC UA tools share, and reconnects on its own after a server
// restart, a network cut or a lost session (see Collector.Run).
//
// It is read-only by construction: the only services it sends are
// discovery (GetEndpoints), secure channel and session services, Read,
// Browse and BrowseNext (plcwatch opcua browse), and the subscription and
// monitored item services. Nothing in the package builds a Write, Call,
// HistoryUpdate or node management request (readonly_test.go checks the
// wire).
package opcua

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/hostport"
	"github.com/plcwatch/plcwatch/secret"
)

// Config is the opcua: section of the agent's configuration.
type Config struct {
	PKI     PKIConfig `yaml:"pki"`
	Devices []Device  `yaml:"devices"`
}

// PKIConfig is where the client's certificate and the trust lists live, in
// the folder layout OPC UA tools share (UaExpert, node-opcua, open62541):
//
//	<dir>/own/certs/plcwatch.der        the client certificate (made once when absent)
//	<dir>/own/private/plcwatch.pem      its key (0600)
//	<dir>/trusted/certs/                server certificates trusted (DER or PEM)
//	<dir>/rejected/certs/               server certificates refused, to move to trusted/certs
type PKIConfig struct {
	Dir string `yaml:"dir"` // default /var/lib/plcwatch/pki
	// CertFile and KeyFile are a client certificate (DER or PEM) and key
	// (PEM) of the operator's own, instead of the one made in own/.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ApplicationURI is the client's application URI, which must be in its
	// certificate's subject alternative name; default urn:<host name>:plcwatch.
	ApplicationURI string `yaml:"application_uri"`
}

// Device is one OPC UA server as the configuration file describes it.
type Device struct {
	Name     string   `yaml:"name"`
	Endpoint string   `yaml:"endpoint"` // opc.tcp://host:port/path
	Security Security `yaml:"security"`
	Auth     Auth     `yaml:"auth"`
	// Interval: read tags are read, and monitored tags published, once per
	// interval; default 10s.
	Interval       time.Duration `yaml:"interval"`
	Timeout        time.Duration `yaml:"timeout"`         // per request, default 5s
	ConnectTimeout time.Duration `yaml:"connect_timeout"` // endpoints, secure channel and session, default 10s
	SessionTimeout time.Duration `yaml:"session_timeout"` // asked of the server, default 1m
	Backoff        time.Duration `yaml:"backoff"`         // first wait before reconnecting, jittered ±50%, doubling; default 500ms
	MaxBackoff     time.Duration `yaml:"max_backoff"`     // longest wait, default 5s (values are back within seconds of the server)
	// TrustOnFirstUse trusts the server certificate the endpoint presents
	// when trusted/certs holds none for it yet (it is copied there);
	// without it an unknown certificate is refused and copied to rejected/.
	TrustOnFirstUse bool  `yaml:"trust_on_first_use"`
	Tags            []Tag `yaml:"tags"`
}

// Security is the endpoint's security policy and mode.
type Security struct {
	// Policy: auto (default: the strongest the server offers that gopcua
	// supports), None, Basic256Sha256, Aes128_Sha256_RsaOaep,
	// Aes256_Sha256_RsaPss (and the deprecated Basic128Rsa15, Basic256).
	Policy string `yaml:"policy"`
	// Mode: auto (default), None, Sign, SignAndEncrypt.
	Mode string `yaml:"mode"`
}

// Auth is the user identity of the session: anonymous when empty, a user
// name and password (from a file or an environment variable, never from
// the configuration file), or an X.509 user certificate and key.
type Auth struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
}

// Tag is one variable's Value attribute.
type Tag struct {
	Name string `yaml:"name"`
	// Node is the node id: ns=2;s=Tank.Level, i=2258, ns=3;g=<GUID>,
	// ns=1;b=<base64>, or nsu=<namespace URI>;s=... (the index is looked up
	// in the server's NamespaceArray after every connect).
	Node string `yaml:"node"`
	// Mode: subscribe (default: a monitored item) or read (read every
	// interval).
	Mode             string         `yaml:"mode"`
	SamplingInterval *time.Duration `yaml:"sampling_interval"` // subscribe: default the device's interval; 0 the server's fastest
	QueueSize        int            `yaml:"queue_size"`        // subscribe: default 1
	DiscardOldest    *bool          `yaml:"discard_oldest"`    // subscribe: default true
	Deadband         string         `yaml:"deadband"`          // subscribe: none (default), absolute, percent
	DeadbandValue    float64        `yaml:"deadband_value"`    // absolute: in the value's units; percent: of its EURange, 0-100; ignored with none
	Scale            *float64       `yaml:"scale"`             // engineering value = raw × scale + offset; default 1
	Offset           float64        `yaml:"offset"`
	UOM              string         `yaml:"uom"` // unit of measure, for telemetry
}

// FieldError is a problem with one field, named as in YAML
// ("tags[3].node"): plcwatch.FieldError, shared by every collector.
type FieldError = plcwatch.FieldError

// Defaults fills what the device left out.
func (d *Device) Defaults() {
	if d.Security.Policy == "" {
		d.Security.Policy = "auto"
	}
	if d.Security.Mode == "" {
		d.Security.Mode = "auto"
	}
	if d.Interval == 0 {
		d.Interval = 10 * time.Second
	}
	if d.Timeout == 0 {
		d.Timeout = 5 * time.Second
	}
	if d.ConnectTimeout == 0 {
		d.ConnectTimeout = 10 * time.Second
	}
	if d.SessionTimeout == 0 {
		d.SessionTimeout = time.Minute
	}
	if d.Backoff == 0 {
		d.Backoff = 500 * time.Millisecond
	}
	if d.MaxBackoff == 0 {
		d.MaxBackoff = 5 * time.Second
	}
	d.MaxBackoff = max(d.MaxBackoff, d.Backoff)
	for i := range d.Tags {
		t := &d.Tags[i]
		if t.Mode == "" {
			t.Mode = "subscribe"
		}
		if t.Deadband == "" {
			t.Deadband = "none"
		}
		if t.QueueSize == 0 {
			t.QueueSize = 1
		}
	}
}

// Defaults fills the PKI settings left out.
func (p *PKIConfig) Defaults() {
	if p.Dir == "" {
		p.Dir = "/var/lib/plcwatch/pki"
	}
	if p.ApplicationURI == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "localhost"
		}
		p.ApplicationURI = "urn:" + host + ":plcwatch"
	}
}

// Validate checks the PKI settings; problems are *FieldError.
func (p *PKIConfig) Validate() []error {
	var errs []error
	if (p.CertFile == "") != (p.KeyFile == "") {
		errs = append(errs, &FieldError{Field: "cert_file", Msg: "cert_file and key_file go together"})
	}
	if u, err := url.Parse(p.ApplicationURI); err != nil || u.Scheme == "" {
		errs = append(errs, &FieldError{Field: "application_uri", Msg: fmt.Sprintf("%q: want a URI, like urn:gateway-1:plcwatch", p.ApplicationURI)})
	}
	return errs
}

// policies are the security policies by their short names.
var policies = map[string]string{
	"None":                  ua.SecurityPolicyURINone,
	"Basic128Rsa15":         ua.SecurityPolicyURIBasic128Rsa15,
	"Basic256":              ua.SecurityPolicyURIBasic256,
	"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
	"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
	"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
}

var modes = map[string]ua.MessageSecurityMode{
	"None": ua.MessageSecurityModeNone, "Sign": ua.MessageSecurityModeSign,
	"SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
}

// Validate checks the device after Defaults, without I/O; problems are
// *FieldError.
func (d *Device) Validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case d.Name == "":
		bad("name", "every device needs a name")
	case strings.ContainsAny(d.Name, "/+#\x00"):
		bad("name", "%q: no / + # (device names are part of MQTT topics)", d.Name)
	}
	if _, err := parseEndpoint(d.Endpoint); err != nil {
		bad("endpoint", "%v", err)
	}
	if _, ok := policies[d.Security.Policy]; !ok && d.Security.Policy != "auto" {
		bad("security.policy", "%q: want auto, None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss (or Basic128Rsa15, Basic256)", d.Security.Policy)
	}
	if _, ok := modes[d.Security.Mode]; !ok && d.Security.Mode != "auto" {
		bad("security.mode", "%q: want auto, None, Sign or SignAndEncrypt", d.Security.Mode)
	}
	if (d.Security.Policy == "None") != (d.Security.Mode == "None") && d.Security.Policy != "auto" && d.Security.Mode != "auto" {
		bad("security", "policy %s with mode %s: None goes with None", d.Security.Policy, d.Security.Mode)
	}
	a := d.Auth
	switch {
	case a.Username != "" && a.PasswordFile == "" && a.PasswordEnv == "":
		bad("auth", "username %q needs password_file or password_env", a.Username)
	case a.Username == "" && (a.PasswordFile != "" || a.PasswordEnv != ""):
		bad("auth.username", "a password without a username")
	case a.PasswordFile != "" && a.PasswordEnv != "":
		bad("auth", "password_file or password_env, not both")
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		bad("auth", "cert_file and key_file go together")
	}
	if a.CertFile != "" && a.Username != "" {
		bad("auth", "a user name or a user certificate, not both")
	}
	if len(d.Tags) == 0 {
		bad("tags", "a device needs at least one tag")
	}
	names := map[string]int{}
	for i := range d.Tags {
		t := &d.Tags[i]
		at := fmt.Sprintf("tags[%d]", i)
		if t.Name == "" {
			bad(at+".name", "every tag needs a name")
		} else if j, dup := names[t.Name]; dup {
			bad(at+".name", "%q: tags[%d] has this name too", t.Name, j)
		}
		names[t.Name] = i
		if _, err := ParseNodeID(t.Node); err != nil {
			bad(at+".node", "%v", err)
		}
		switch t.Mode {
		case "subscribe":
		case "read":
			if t.SamplingInterval != nil || t.QueueSize != 1 || t.DiscardOldest != nil || t.Deadband != "none" {
				bad(at+".mode", "sampling_interval, queue_size, discard_oldest and deadband are for mode subscribe")
			}
		default:
			bad(at+".mode", "%q: want subscribe or read", t.Mode)
		}
		switch t.Deadband {
		case "none", "absolute":
		case "percent":
			if t.DeadbandValue > 100 {
				bad(at+".deadband_value", "%v: a percent is 0-100", t.DeadbandValue)
			}
		default:
			bad(at+".deadband", "%q: want none, absolute or percent", t.Deadband)
		}
		if t.Scale != nil && (*t.Scale == 0 || math.IsNaN(*t.Scale)) {
			bad(at+".scale", "must not be 0")
		}
	}
	return errs
}

// parseEndpoint checks an opc.tcp URL and returns its host:port (port 4840
// when left out).
func parseEndpoint(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("every device needs an endpoint, like opc.tcp://10.0.1.20:4840")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
		return "", fmt.Errorf("%q: want opc.tcp://host:port/path", s)
	}
	if u.User != nil {
		return "", fmt.Errorf("credentials in the endpoint URL: use auth")
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("%q: no host: want opc.tcp://host:port/path", s)
	}
	if err := hostport.Port(u.Port()); err != nil {
		return "", fmt.Errorf("%q: %v", s, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4840")
	}
	return host, nil
}

// serverAddr is the endpoint's address when its host is an IP address.
func (d *Device) serverAddr() netip.AddrPort {
	hp, err := parseEndpoint(d.Endpoint)
	if err != nil {
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

var _ plcwatch.AssetLister = (*Device)(nil)

// Assets names the server at its endpoint's address, so that wire events
// to it carry the device's name. A host name names nothing (no address on
// the wire to match).
func (d *Device) Assets() []plcwatch.Asset {
	addr := d.serverAddr()
	if !addr.IsValid() || d.Name == "" {
		return nil
	}
	return []plcwatch.Asset{{Name: d.Name, Addr: addr, Unit: plcwatch.AnyUnit}}
}

// password reads the user's password from its file or variable. Errors
// are *secret.Error naming auth.password_file or auth.password_env, never
// the value written there nor the content.
func (a *Auth) password() (string, error) {
	return secret.FileOrEnv("auth", a.PasswordFile, a.PasswordEnv)
}

// CheckFiles reads what the device names (the password, the user
// certificate): for config check. Errors never hold a password.
func (d *Device) CheckFiles() []error {
	var errs []error
	if _, err := d.Auth.password(); err != nil {
		var se *secret.Error
		if errors.As(err, &se) {
			errs = append(errs, &FieldError{Field: se.Key, Msg: se.Msg})
		} else {
			errs = append(errs, &FieldError{Field: "auth", Msg: err.Error()})
		}
	}
	if d.Auth.CertFile != "" {
		if _, _, err := loadKeyPair(d.Auth.CertFile, d.Auth.KeyFile); err != nil {
			errs = append(errs, &FieldError{Field: "auth.cert_file", Msg: err.Error()})
		}
	}
	return errs
}

// CheckFiles reads the client certificate and key the PKI names, for
// config check.
func (p *PKIConfig) CheckFiles() []error {
	if p.CertFile == "" || p.KeyFile == "" {
		return nil
	}
	if _, _, err := loadKeyPair(p.CertFile, p.KeyFile); err != nil {
		return []error{&FieldError{Field: "cert_file", Msg: err.Error()}}
	}
	return nil
}
