package plcwatch

import (
	"context"
	"strconv"
	"time"
)

// AlertSchema names the version of the alert document; consumers check it.
const AlertSchema = "plcwatch.alert/v1"

// Alert is raised when a rule matches. Its JSON (docs/alerts.md) is what
// SOC dashboards consume: fields may be added, never renamed.
type Alert struct {
	ID      string    // unique, and the same on every (re)delivery of this alert
	Time    time.Time // when the triggering event happened
	Site    string
	Gateway string
	Rule    AlertRule
	Event   Event  // the event that triggered the alert (the last one, for a folded alert)
	Count   int    // events this alert stands for: 1, or how many identical ones were folded
	Message string // why, for stateful rules: the threshold met, the value change, the new tuple
}

// AlertRule is what an alert says of its rule.
type AlertRule struct {
	ID       string
	Title    string
	Severity string
	Attack   []string // MITRE ATT&CK for ICS technique ids
	Tags     []string
}

// Sink receives alerts: the MQTT publisher, a log file.
type Sink interface {
	Publish(ctx context.Context, a *Alert) error
}

// MarshalJSON encodes the alert as docs/alerts.md documents it.
func (a *Alert) MarshalJSON() ([]byte, error) { return a.AppendJSON(make([]byte, 0, 1024)), nil }

// AppendJSON appends the alert's JSON object to b.
func (a *Alert) AppendJSON(b []byte) []byte {
	b = append(b, `{"schema":"`+AlertSchema+`","id":`...)
	b = AppendJSONString(b, a.ID)
	b = append(b, `,"time":"`...)
	b = a.Time.UTC().AppendFormat(b, TimeFormat)
	b = append(b, `","site":`...)
	b = AppendJSONString(b, a.Site)
	b = append(b, `,"gateway":`...)
	b = AppendJSONString(b, a.Gateway)
	b = append(b, `,"rule":{"id":`...)
	b = AppendJSONString(b, a.Rule.ID)
	b = append(b, `,"title":`...)
	b = AppendJSONString(b, a.Rule.Title)
	b = append(b, `,"severity":`...)
	b = AppendJSONString(b, a.Rule.Severity)
	b = append(b, `,"attack":`...)
	b = appendStrings(b, a.Rule.Attack)
	b = append(b, `,"tags":`...)
	b = appendStrings(b, a.Rule.Tags)
	b = append(b, `},"event":`...)
	b = a.Event.AppendJSON(b)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(a.Count), 10)
	if a.Message != "" {
		b = append(b, `,"message":`...)
		b = AppendJSONString(b, a.Message)
	}
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	return append(b, ']')
}
