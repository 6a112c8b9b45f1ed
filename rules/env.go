package rules

import (
	"time"

	"github.com/plcwatch/plcwatch"
)

// Env is what a rule's when expression sees of an event: the fields of
// docs/events.md under the same names, with client and server split into
// address and port. The engine fills one Env per event, and only when a
// rule with an expression is a candidate.
type Env struct {
	Time        time.Time `expr:"time"`
	Source      string    `expr:"source"`
	Protocol    string    `expr:"protocol"`
	Op          string    `expr:"op"`
	Device      string    `expr:"device"`
	Client      string    `expr:"client"` // address only
	ClientPort  int       `expr:"client_port"`
	Server      string    `expr:"server"` // address only
	ServerPort  int       `expr:"server_port"`
	TID         int       `expr:"tid"`
	Unit        int       `expr:"unit"`
	Function    int       `expr:"function"`
	SubFunction int       `expr:"subfunction"`
	Table       string    `expr:"table"`
	Address     int       `expr:"address"`
	Count       int       `expr:"count"`
	ReadAddress int       `expr:"read_address"`
	ReadCount   int       `expr:"read_count"`
	AndMask     int       `expr:"and_mask"`
	OrMask      int       `expr:"or_mask"`
	Values      []int     `expr:"values"`
	Response    []int     `expr:"response"`
	Exception   int       `expr:"exception"`
	Malformed   string    `expr:"malformed"`
	Unanswered  string    `expr:"unanswered"`
	Orphan      bool      `expr:"orphan"`
	RTTMillis   float64   `expr:"rtt_ms"`
	Tag         string    `expr:"tag"`
	Value       float64   `expr:"value"`
	Raw         float64   `expr:"raw"`
	Text        string    `expr:"text"`
	Quality     string    `expr:"quality"`
	Error       string    `expr:"error"`
	Service     string    `expr:"service"`
	Node        string    `expr:"node"`
	Status      int       `expr:"status"`
}

// fill sets env from ev, reusing env's slices.
func (env *Env) fill(ev *plcwatch.Event) {
	values, response := env.Values[:0], env.Response[:0]
	*env = Env{
		Time: ev.Time, Source: ev.Source.String(), Protocol: ev.Protocol.String(), Op: ev.Op.String(),
		Device: ev.Device, ClientPort: int(ev.Client.Port()), ServerPort: int(ev.Server.Port()),
		TID: int(ev.TID), Unit: int(ev.Unit), Function: int(ev.Function), SubFunction: int(ev.SubFunction),
		Table: ev.Table.String(), Address: int(ev.Address), Count: int(ev.Count),
		ReadAddress: int(ev.ReadAddress), ReadCount: int(ev.ReadCount), AndMask: int(ev.AndMask), OrMask: int(ev.OrMask),
		Values: ev.Values.Ints(values), Response: ev.Response.Ints(response),
		Exception: int(ev.Exception), Malformed: ev.Malformed, Unanswered: ev.Unanswered, Orphan: ev.Orphan,
		RTTMillis: float64(ev.RTT) / float64(time.Millisecond),
		Tag:       ev.Tag, Value: ev.Value, Raw: ev.Raw, Text: ev.Text, Quality: ev.Quality, Error: ev.Error, Service: ev.Service, Node: ev.Node, Status: int(ev.Status),
	}
	if ev.Client.IsValid() {
		env.Client = ev.Client.Addr().String()
	}
	if ev.Server.IsValid() {
		env.Server = ev.Server.Addr().String()
	}
}
