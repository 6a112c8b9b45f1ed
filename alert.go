package plcwatch

import (
	"context"
	"math/bits"
	"net/netip"
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
	Count   int    // events this alert stands for: 1, or how many were folded into it
	Message string // why, for stateful rules: the threshold met, the value change, the new tuple
	// Activity is what the folded events touched, for an alert that
	// closes a fold (issue 9 §10: one activity, one alert); zero (and
	// left out of the JSON) for an alert raised at once.
	Activity Activity
	// Truncated names the fields cut to keep the alert one bounded
	// message ("event.values", "event.response", ...); empty when whole.
	Truncated []string
	// DeviceTags are the configured labels of the event's device (an
	// asset's tags: zone, line, ...), sorted by key; JSON "device_tags",
	// an object, present only when there are some.
	DeviceTags []Label
}

// MaxActivityNames is how many distinct nodes, services, clients or tags
// an Activity lists; beyond it the list says there were more.
const MaxActivityNames = 8

// Activity summarises the events folded into one alert: from the alert that
// opened the fold (First) to the last event folded (Last), every function
// code, unit, table and address they touched. It is a fixed-size value: the
// engine fills one per fold without allocating.
type Activity struct {
	First, Last time.Time
	Events      int     // events seen, the one that opened the fold included
	Functions   ByteSet // Modbus function codes
	Units       ByteSet // Modbus unit ids
	Tables      uint8   // bit per Table
	AddrLo      uint16  // lowest address touched (of events with a table)
	AddrHi      uint16  // highest address touched, a write's whole range included
	HasAddr     bool
	Nodes       NameSet // OPC UA node ids
	Services    NameSet // OPC UA services
	Clients     AddrSet // client addresses (they vary when a rule folds by server)
	Tags        NameSet // polled tags
}

// Note adds ev to the activity.
func (a *Activity) Note(ev *Event) {
	if a.Events == 0 || ev.Time.Before(a.First) {
		a.First = ev.Time
	}
	if a.Events == 0 || ev.Time.After(a.Last) {
		a.Last = ev.Time
	}
	a.Events++
	if ev.Protocol == ProtoModbus {
		if ev.Op != OpStatus {
			a.Functions.Add(ev.Function)
		}
		a.Units.Add(ev.Unit) // a status event's unit is the unit that went down or up
	}
	if ev.Table != TableNone && !(ev.Orphan && ev.Op == OpRead) {
		lo := ev.Address
		hi := lo
		if ev.Count > 1 {
			hi = uint16(min(int(lo)+int(ev.Count)-1, 0xffff))
		}
		a.Tables |= 1 << ev.Table
		if !a.HasAddr || lo < a.AddrLo {
			a.AddrLo = lo
		}
		if !a.HasAddr || hi > a.AddrHi {
			a.AddrHi = hi
		}
		a.HasAddr = true
	}
	a.Nodes.Add(ev.Node)
	a.Services.Add(ev.Service)
	if ev.Client.IsValid() {
		a.Clients.Add(ev.Client.Addr())
	}
	a.Tags.Add(ev.Tag)
}

// ByteSet is a set of byte values.
type ByteSet [4]uint64

// Add puts v in the set.
func (s *ByteSet) Add(v uint8) { s[v>>6] |= 1 << (v & 63) }

// Has reports whether v is in the set.
func (s *ByteSet) Has(v uint8) bool { return s[v>>6]&(1<<(v&63)) != 0 }

// Len is the number of values in the set.
func (s *ByteSet) Len() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// AppendText appends the set as rule files write lists: "1,3,65-72".
func (s *ByteSet) AppendText(b []byte) []byte {
	first := true
	for v := 0; v < 256; v++ {
		if !s.Has(uint8(v)) {
			continue
		}
		end := v
		for end < 255 && s.Has(uint8(end+1)) {
			end++
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendInt(b, int64(v), 10)
		if end > v {
			b = append(b, '-')
			b = strconv.AppendInt(b, int64(end), 10)
		}
		v = end
	}
	return b
}

// NameSet keeps up to MaxActivityNames distinct names and whether there
// were more. The names are the events' own strings: no copy is made.
type NameSet struct {
	Names [MaxActivityNames]string
	N     int
	More  bool
}

// Add puts s in the set; "" is ignored.
func (n *NameSet) Add(s string) {
	if s == "" {
		return
	}
	for i := 0; i < n.N; i++ {
		if n.Names[i] == s {
			return
		}
	}
	if n.N == MaxActivityNames {
		n.More = true
		return
	}
	n.Names[n.N] = s
	n.N++
}

// AddrSet keeps up to MaxActivityNames distinct addresses and whether
// there were more.
type AddrSet struct {
	Addrs [MaxActivityNames]netip.Addr
	N     int
	More  bool
}

// Add puts a in the set.
func (n *AddrSet) Add(a netip.Addr) {
	for i := 0; i < n.N; i++ {
		if n.Addrs[i] == a {
			return
		}
	}
	if n.N == MaxActivityNames {
		n.More = true
		return
	}
	n.Addrs[n.N] = a
	n.N++
}

func (n *AddrSet) appendJSON(b []byte, key string) []byte {
	if n.N == 0 {
		return b
	}
	b = appendKey(b, key)
	b = append(b, '[')
	for i, a := range n.Addrs[:n.N] {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = a.AppendTo(b)
		b = append(b, '"')
	}
	b = append(b, ']')
	if n.More {
		b = appendKey(b, key+"_more")
		b = append(b, "true"...)
	}
	return b
}

func (n *NameSet) appendJSON(b []byte, key string) []byte {
	if n.N == 0 {
		return b
	}
	b = appendKey(b, key)
	b = appendStrings(b, n.Names[:n.N])
	if n.More {
		b = appendKey(b, key+"_more")
		b = append(b, "true"...)
	}
	return b
}

// AppendJSON appends the activity's JSON object (docs/alerts.md).
func (a *Activity) AppendJSON(b []byte) []byte {
	b = append(b, `{"first":"`...)
	b = a.First.UTC().AppendFormat(b, TimeFormat)
	b = append(b, `","last":"`...)
	b = a.Last.UTC().AppendFormat(b, TimeFormat)
	b = append(b, `","events":`...)
	b = strconv.AppendInt(b, int64(a.Events), 10)
	if a.Functions != (ByteSet{}) {
		b = append(b, `,"functions":"`...)
		b = a.Functions.AppendText(b)
		b = append(b, '"')
	}
	if a.Units != (ByteSet{}) {
		b = append(b, `,"units":"`...)
		b = a.Units.AppendText(b)
		b = append(b, '"')
	}
	if a.HasAddr {
		b = append(b, `,"tables":[`...)
		first := true
		for t := TableCoil; t <= TableFile; t++ {
			if a.Tables&(1<<t) != 0 {
				if !first {
					b = append(b, ',')
				}
				first = false
				b = append(b, '"')
				b = append(b, t.String()...)
				b = append(b, '"')
			}
		}
		b = append(b, `],"addresses":"`...)
		b = strconv.AppendUint(b, uint64(a.AddrLo), 10)
		if a.AddrHi != a.AddrLo {
			b = append(b, '-')
			b = strconv.AppendUint(b, uint64(a.AddrHi), 10)
		}
		b = append(b, '"')
	}
	b = a.Nodes.appendJSON(b, "nodes")
	b = a.Services.appendJSON(b, "services")
	b = a.Clients.appendJSON(b, "clients")
	b = a.Tags.appendJSON(b, "tags")
	return append(b, '}')
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
	if a.Activity.Events > 0 {
		b = append(b, `,"activity":`...)
		b = a.Activity.AppendJSON(b)
	}
	if len(a.Truncated) > 0 {
		b = append(b, `,"truncated":`...)
		b = appendStrings(b, a.Truncated)
	}
	if len(a.DeviceTags) > 0 {
		b = append(b, `,"device_tags":{`...)
		for i, l := range a.DeviceTags {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, l.Key)
			b = append(b, ':')
			b = AppendJSONString(b, l.Value)
		}
		b = append(b, '}')
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
