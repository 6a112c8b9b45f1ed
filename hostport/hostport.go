// Package hostport checks the host:port addresses a configuration gives,
// before anything dials or listens on them: a port out of 1-65535 (like
// opc.tcp://10.0.1.20:99999 or :0) would otherwise pass config check and
// have run retry forever with "invalid port" (issue 10).
package hostport

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Dial checks an address to connect to: host:port with a host (a name or
// an IP address, IPv6 in brackets) and a port of 1-65535. Errors say what
// is wrong without repeating s.
func Dial(s string) error {
	host, port, err := split(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host: want host:port")
	}
	return checkPort(port, 1)
}

// Listen checks an address to listen on: host:port with an optional host
// (empty: every interface) and a port of 0-65535 (0: any free port).
func Listen(s string) error {
	_, port, err := split(s)
	if err != nil {
		return err
	}
	return checkPort(port, 0)
}

// Port checks a port written in a URL (url.URL.Port): "" (the scheme's
// default) or 1-65535.
func Port(port string) error {
	if port == "" {
		return nil
	}
	return checkPort(port, 1)
}

func split(s string) (string, string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", "", errors.New(ae.Err + ": want host:port")
		}
		return "", "", fmt.Errorf("%v: want host:port", err)
	}
	return host, port, nil
}

func checkPort(port string, lowest uint64) error {
	p, err := strconv.ParseUint(port, 10, 64)
	if err != nil || p < lowest || p > 65535 {
		return fmt.Errorf("port %q: want %d-65535", port, lowest)
	}
	return nil
}
