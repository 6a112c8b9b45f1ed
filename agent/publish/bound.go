package publish

import (
	"slices"
	"unicode/utf8"

	"github.com/plcwatch/plcwatch"
)

// What an alert carries is bounded (issue 8 §8): an alert is one MQTT
// message, brokers bound those (Mosquitto's max_packet_size, 128 KiB on
// some clouds), and one oversized alert must not be refused while the ones
// behind it wait. Cut fields are named in the alert's "truncated" list
// (docs/alerts.md); the event's count still says how many values there
// were.
const (
	MaxAlertValues  = 32   // values and response: the first 32
	MaxAlertObjects = 8    // device identification objects: the first 8
	MaxAlertString  = 256  // bytes of a free-text event field (text, error, node, ...) and of each activity name
	MaxAlertMessage = 1024 // bytes of the alert's message
)

// Bound returns al when it is within the bounds, else a copy of it with
// the long fields cut and Truncated naming them. al itself never changes
// (the rules engine may keep it).
func Bound(al *plcwatch.Alert) *plcwatch.Alert {
	if !oversized(al) {
		return al
	}
	c := *al
	e := &c.Event
	var cut []string
	if e.Values.Len() > MaxAlertValues {
		e.Values = firstValues(&e.Values, MaxAlertValues)
		cut = append(cut, "event.values")
	}
	if e.Response.Len() > MaxAlertValues {
		e.Response = firstValues(&e.Response, MaxAlertValues)
		cut = append(cut, "event.response")
	}
	if len(e.Objects) > MaxAlertObjects || objectsLong(e.Objects) {
		objs := e.Objects[:min(len(e.Objects), MaxAlertObjects)]
		e.Objects = make([]plcwatch.DeviceObject, len(objs))
		for i, o := range objs {
			e.Objects[i] = plcwatch.DeviceObject{ID: o.ID, Value: cutString(o.Value, MaxAlertString)}
		}
		cut = append(cut, "event.objects")
	}
	for _, f := range eventStrings(e) {
		if len(*f.s) > MaxAlertString {
			*f.s = cutString(*f.s, MaxAlertString)
			cut = append(cut, "event."+f.name)
		}
	}
	if len(c.Message) > MaxAlertMessage {
		c.Message = cutString(c.Message, MaxAlertMessage)
		cut = append(cut, "message")
	}
	for _, ns := range activityNames(&c.Activity) {
		for i := 0; i < ns.set.N; i++ {
			if len(ns.set.Names[i]) > MaxAlertString {
				ns.set.Names[i] = cutString(ns.set.Names[i], MaxAlertString)
				if !slices.Contains(cut, "activity."+ns.name) {
					cut = append(cut, "activity."+ns.name)
				}
			}
		}
	}
	c.Truncated = append(append([]string(nil), al.Truncated...), cut...)
	return &c
}

func oversized(al *plcwatch.Alert) bool {
	e := &al.Event
	if e.Values.Len() > MaxAlertValues || e.Response.Len() > MaxAlertValues || len(e.Objects) > MaxAlertObjects ||
		objectsLong(e.Objects) || len(al.Message) > MaxAlertMessage {
		return true
	}
	for _, f := range eventStrings(e) {
		if len(*f.s) > MaxAlertString {
			return true
		}
	}
	for _, ns := range activityNames(&al.Activity) {
		for i := 0; i < ns.set.N; i++ {
			if len(ns.set.Names[i]) > MaxAlertString {
				return true
			}
		}
	}
	return false
}

type nameSet struct {
	name string
	set  *plcwatch.NameSet
}

// activityNames are the lists of names a folded alert's activity carries
// (up to plcwatch.MaxActivityNames each, of free length).
func activityNames(a *plcwatch.Activity) [3]nameSet {
	return [...]nameSet{{"nodes", &a.Nodes}, {"services", &a.Services}, {"tags", &a.Tags}}
}

func objectsLong(objs []plcwatch.DeviceObject) bool {
	for _, o := range objs {
		if len(o.Value) > MaxAlertString {
			return true
		}
	}
	return false
}

type field struct {
	name string
	s    *string
}

// eventStrings are the event's fields of free length: from the wire, from
// devices, or from errors that quote them.
func eventStrings(e *plcwatch.Event) [10]field {
	return [...]field{{"text", &e.Text}, {"error", &e.Error}, {"malformed", &e.Malformed}, {"node", &e.Node},
		{"index_range", &e.IndexRange}, {"session_name", &e.SessionName}, {"user", &e.User}, {"endpoint", &e.Endpoint},
		{"value_type", &e.ValueType}, {"service", &e.Service}}
}

// cutString cuts s to at most n bytes, on a character boundary.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// firstValues returns the first n of v, of the same kind.
func firstValues(v *plcwatch.Values, n int) plcwatch.Values {
	var out plcwatch.Values
	switch v.Kind() {
	case plcwatch.Words:
		for i := range n {
			out.AppendWord(v.At(i))
		}
	case plcwatch.Bits:
		packed := make([]byte, (n+7)/8)
		for i := range n {
			packed[i/8] |= byte(v.At(i)) << (i % 8)
		}
		out.SetBits(packed, n)
	case plcwatch.Floats:
		f := make([]float64, n)
		for i := range f {
			f[i] = v.Float(i)
		}
		out.SetFloats(f)
	default:
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(v.At(i))
		}
		out.SetBytes(b)
	}
	return out
}
