package agent

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/plcwatch/plcwatch/secret"
)

// Secrets (issue 8): a broker password may come from password_file,
// password_env or the broker URL itself (tcp://user:secret@host:1883). It
// must show nowhere: not in config check, logs, /metrics, /readyz, the
// heartbeat or alerts. So a password written in a URL is taken out of it
// when the configuration is read (takeURLCredentials): every URL the agent
// holds afterwards is clean, and what prints one cannot leak it. Messages
// about password_file and password_env never repeat their values either:
// an operator who wrote the password itself there must not see it echoed
// into a log.

// RedactURL hides the password of a URL's userinfo
// (tcp://user:xxxxx@host:1883); a string with an @ that does not parse
// as a URL with userinfo loses everything between the scheme and its last
// @.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && (u.User != nil || !strings.Contains(s, "@")) {
		return u.Redacted()
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		if i := strings.Index(s, "://"); i >= 0 && i < at {
			return s[:i+3] + "xxxxx" + s[at:]
		}
		return "xxxxx" + s[at:]
	}
	return s
}

// takeURLCredentials moves the user and password written in broker URLs
// to the mqtt settings, leaving the URLs clean. One user and one password
// serve every broker (the publisher has one of each), so different ones in
// different URLs are a problem, as is a password both in a URL and in
// password_file or password_env.
//
// A URL that does not parse, or parses with an @ outside its userinfo (a
// password with a bad %-escape, a space, a / or a #), is refused here: it
// returns their indexes. Its redacted form (tcp://xxxxx@host) would parse,
// and run would connect to it with the user "xxxxx" (breaker 1). The
// message shows the redacted URL only: url.Parse's error quotes the input.
func (c *Config) takeURLCredentials(ps *problems) (refused map[int]bool) {
	first := ""
	refused = map[int]bool{}
	for i, b := range c.MQTT.Brokers {
		path := fmt.Sprintf("mqtt.brokers[%d]", i)
		u, err := url.Parse(b)
		if err != nil || (u.User == nil && strings.Contains(b, "@")) {
			c.MQTT.Brokers[i] = RedactURL(b)
			refused[i] = true
			ps.add(path, "%q is not a broker URL (like tcp://broker:1883): it does not parse; a user or password in it must be percent-encoded (%%25 for %%, %%20 for a space, %%2F for /, %%40 for @), or better go to mqtt.username and mqtt.password_file", c.MQTT.Brokers[i])
			continue
		}
		if u.User == nil {
			continue
		}
		user := u.User.Username()
		pw, hasPW := u.User.Password()
		u.User = nil
		c.MQTT.Brokers[i] = u.String()
		if user != "" {
			switch {
			case c.MQTT.Username == "":
				c.MQTT.Username = user
			case c.MQTT.Username != user:
				ps.add(path, "user %q in the URL, but %q elsewhere: one user serves every broker", user, c.MQTT.Username)
			}
		}
		if !hasPW {
			continue
		}
		switch {
		case c.MQTT.PasswordFile != "" || c.MQTT.PasswordEnv != "":
			ps.add(path, "a password in the URL, and password_file or password_env too: give one")
		case first == "":
			first = path
			c.MQTT.urlPassword = pw
			c.warn(path, "a password in the broker URL works and is kept out of every output, but the configuration file is then as secret as a password file: prefer password_file")
		case c.MQTT.urlPassword != pw:
			ps.add(path, "another password than %s's: one password serves every broker", first)
		}
	}
	return refused
}

// password is the broker password: from password_file, password_env or a
// broker URL. Errors are *secret.Error.
func (c *Config) password() (string, error) {
	if c.MQTT.PasswordFile != "" || c.MQTT.PasswordEnv != "" {
		return secret.FileOrEnv("mqtt", c.MQTT.PasswordFile, c.MQTT.PasswordEnv)
	}
	return c.MQTT.urlPassword, nil
}
