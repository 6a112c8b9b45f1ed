package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/plcwatch/plcwatch/rules"
)

// CheckOptions say how far Check looks beyond the file.
type CheckOptions struct {
	// Offline checks the file and the files it names only: not this
	// machine's interfaces, privileges and ports (a configuration checked
	// on a workstation before it goes to the gateway).
	Offline bool
}

// Check is the one validation of a configuration, shared by "config check"
// and "run": it loads path and checks everything the agent would refuse at
// start, returning the configuration when it would start, or every problem
// as a ConfigError (file:line:col: message, config file first, then rule
// files).
func Check(path string, opts CheckOptions) (*Config, error) {
	return LoadConfig(path)
}

// Warning is a setting that works but deserves a look (it does not stop
// the agent).
type Warning struct {
	File      string
	Line, Col int
	Msg       string
}

// Pos is file:line:col, or the file alone.
func (w Warning) Pos() string {
	if w.Line == 0 {
		return w.File
	}
	return fmt.Sprintf("%s:%d:%d", w.File, w.Line, w.Col)
}

// Warnings are what Check found risky but allowed.
func (c *Config) Warnings() []Warning { return c.warnings }

// Summary is one line saying what the configuration runs.
func (c *Config) Summary() string {
	broker := "embedded broker on " + c.MQTT.Embedded.Listen
	if len(c.MQTT.Brokers) > 0 {
		broker = strings.Join(c.MQTT.Brokers, ", ")
	}
	return fmt.Sprintf("site %s, gateway %s, interfaces %v, modbus devices %d, rules %v, mqtt %s",
		c.Site, c.Gateway, c.Capture.Interfaces, len(c.Modbus.Devices), c.Rules.Paths, broker)
}

// Problems lists an error's problems one per entry, as they print: the
// problems of a ConfigError or rules.Problems, the lines of a joined error,
// or the error itself.
func Problems(err error) []string {
	var ce ConfigError
	var rp rules.Problems
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		out := make([]string, len(ce))
		for i, p := range ce {
			out[i] = p.Error()
		}
		return out
	case errors.As(err, &rp):
		out := make([]string, len(rp))
		for i, p := range rp {
			out[i] = p.String()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// LogError logs err at error level, one record per problem when it holds
// several: a log line with "\n" escapes in it is unreadable (issue 9).
func LogError(log *slog.Logger, msg string, err error) {
	probs := Problems(err)
	if len(probs) <= 1 {
		log.Error(msg, "err", err)
		return
	}
	log.Error(msg, "problems", len(probs))
	for _, p := range probs {
		log.Error(msg, "problem", p)
	}
}
