// Package scenario is the file format of plcwatch sim --scenario: simulated
// plants (Modbus/TCP PLCs with their registers, coils and process
// dynamics), actors that talk to them on a schedule from their own loopback
// addresses (a legitimate HMI and attackers), and the alerts the scenario
// expects plcwatch to raise (docs/sim.md). Load decodes a file strictly:
// every problem as file:line:col, as the agent's configuration.
package scenario

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/plcwatch/plcwatch/agent"
)

// Scenario is one scenario file.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Duration is how long the scenario runs (after which actors stop and
	// plants close); default 60s.
	Duration time.Duration `yaml:"duration"`
	// Tick is the step of the process dynamics; default 100ms.
	Tick time.Duration `yaml:"tick"`
	// Seed makes random walks repeatable; default 1.
	Seed   uint64   `yaml:"seed"`
	Plants []Plant  `yaml:"plants"`
	Actors []Actor  `yaml:"actors"`
	Expect []Expect `yaml:"expect"`

	file string
}

// File is the path the scenario was loaded from.
func (s *Scenario) File() string { return s.file }

// Plant is a simulated device.
type Plant struct {
	Name string `yaml:"name"`
	// Protocol is modbus (the default) or opcua.
	Protocol string `yaml:"protocol"`
	// Listen is the address (host:port, a loopback address such as
	// 127.0.0.10:5020) the device serves on.
	Listen string  `yaml:"listen"`
	Points []Point `yaml:"points"`
	// Methods (opcua) are methods ns=1;s=<name> on the Objects folder; a
	// call sets a point.
	Methods []Method `yaml:"methods"`
	// Users (opcua) are the user names and passwords the server accepts;
	// anonymous sessions are accepted too.
	Users map[string]string `yaml:"users"`
}

// Method is an OPC UA method: calling it sets Point to Value.
type Method struct {
	Name  string  `yaml:"name"`
	Point string  `yaml:"point"`
	Value float64 `yaml:"value"`
}

// Method returns the method named name, or nil.
func (p *Plant) Method(name string) *Method {
	for i := range p.Methods {
		if p.Methods[i].Name == name {
			return &p.Methods[i]
		}
	}
	return nil
}

// Point is one register, coil or input of a plant, with its initial value
// and, at most one, a process dynamic that moves it.
type Point struct {
	Name string `yaml:"name"`
	// Table (modbus): coil, discrete, input or holding.
	Table string `yaml:"table"`
	// Type (opcua): the variable's type, Double (the default), Boolean or
	// Int32; the node id is ns=1;s=<name>.
	Type string `yaml:"type"`
	// Address is the 0-based protocol address (as on the wire).
	Address int `yaml:"address"`
	// Scale: register = round(value / scale); default 1. Dynamics and
	// actors speak engineering values.
	Scale float64 `yaml:"scale"`
	// Value is the initial engineering value (0/1 for coils).
	Value float64 `yaml:"value"`

	Constant *float64 `yaml:"constant"`
	Ramp     *Ramp    `yaml:"ramp"`
	Sine     *Sine    `yaml:"sine"`
	Walk     *Walk    `yaml:"walk"`
	Tank     *Tank    `yaml:"tank"`
	Lag      *Lag     `yaml:"lag"`
	Alarm    *Alarm   `yaml:"alarm"`
}

// Ramp goes from From to To in Over, then stays (or starts again, Repeat).
type Ramp struct {
	From   float64       `yaml:"from"`
	To     float64       `yaml:"to"`
	Over   time.Duration `yaml:"over"`
	Repeat bool          `yaml:"repeat"`
}

// Sine is Mean + Amplitude·sin(2π t / Period).
type Sine struct {
	Mean      float64       `yaml:"mean"`
	Amplitude float64       `yaml:"amplitude"`
	Period    time.Duration `yaml:"period"`
}

// Walk is a random walk from Start, each tick by up to ±Step, kept within
// Min..Max.
type Walk struct {
	Start float64 `yaml:"start"`
	Step  float64 `yaml:"step"`
	Min   float64 `yaml:"min"`
	Max   float64 `yaml:"max"`
}

// Tank is a level (in % by default) that rises by Inflow per second while
// the Pump coil is on and falls by Outflow per second, kept within
// Min..Max (default 0..100). With Setpoint (a point's name), the plant's
// own logic runs the pump: on below setpoint − Band, off above setpoint +
// Band — so a setpoint write moves the level.
type Tank struct {
	Level    float64 `yaml:"level"`
	Pump     string  `yaml:"pump"`
	Inflow   float64 `yaml:"inflow"`
	Outflow  float64 `yaml:"outflow"`
	Setpoint string  `yaml:"setpoint"`
	Band     float64 `yaml:"band"`
	Min      float64 `yaml:"min"`
	Max      float64 `yaml:"max"`
}

// Lag is a value (a temperature) that follows its Setpoint point with a
// first-order lag of time constant Tau, from Start.
type Lag struct {
	Setpoint string        `yaml:"setpoint"`
	Start    float64       `yaml:"start"`
	Tau      time.Duration `yaml:"tau"`
}

// Alarm is 1 while the point Of is above Above (or below Below), else 0.
type Alarm struct {
	Of    string   `yaml:"of"`
	Above *float64 `yaml:"above"`
	Below *float64 `yaml:"below"`
}

// Actor kinds (Actor.Do).
const (
	DoHMI          = "hmi"           // reads Reads, writes Values to Point in turn: the legitimate operator
	DoWrite        = "write"         // writes Values to Point (an unauthorised or out-of-range write; a new client)
	DoBruteForce   = "brute_force"   // toggles the coil Point Count times, as fast as answered
	DoDiagnostic   = "diagnostic"    // FC 8 with Subfunction (4 force listen only, 1 restart communications)
	DoIdentify     = "identify"      // FC 43/14 read device identification
	DoUnitScan     = "unit_scan"     // reads holding 0 from Count unit ids from Unit on
	DoFunctionScan = "function_scan" // sends each of Functions with no data
	DoFunction     = "function"      // sends Function with Data (a user-defined code such as UMAS 90)

	DoOPCUARead     = "opcua_read"      // a session reads Reads (an OPC UA HMI or historian)
	DoOPCUAWrite    = "opcua_write"     // an anonymous (or User's) session writes Values to Point
	DoOPCUACall     = "opcua_call"      // an anonymous (or User's) session calls Method
	DoOPCUABrowse   = "opcua_browse"    // browses Count nodes, one Browse request each
	DoOPCUAAddNodes = "opcua_add_nodes" // asks to add a variable (AddNodes)
	DoOPCUALogin    = "opcua_login"     // Count sessions as User with wrong passwords
)

var kinds = []string{DoHMI, DoWrite, DoBruteForce, DoDiagnostic, DoIdentify, DoUnitScan, DoFunctionScan, DoFunction,
	DoOPCUARead, DoOPCUAWrite, DoOPCUACall, DoOPCUABrowse, DoOPCUAAddNodes, DoOPCUALogin}

// IsOPCUA says whether an action is one of an OPC UA client.
func IsOPCUA(do string) bool { return strings.HasPrefix(do, "opcua_") }

// Actor is a client of a plant, on a schedule: first At after the start,
// then Every (0: once) for For (0: until the scenario ends).
type Actor struct {
	Name string `yaml:"name"`
	// From is the actor's own loopback source address (127.0.0.x), so that
	// alerts can be attributed to it.
	From   string `yaml:"from"`
	Target string `yaml:"target"` // a plant's name
	Do     string `yaml:"do"`

	At    time.Duration `yaml:"at"`
	Every time.Duration `yaml:"every"`
	For   time.Duration `yaml:"for"`

	Unit        int       `yaml:"unit"`   // default 1
	Point       string    `yaml:"point"`  // write, hmi, brute_force
	Values      []float64 `yaml:"values"` // write, hmi: written in turn
	Reads       []string  `yaml:"reads"`  // hmi: points read each time
	Count       int       `yaml:"count"`  // brute_force toggles, unit_scan units
	Subfunction int       `yaml:"subfunction"`
	Functions   []int     `yaml:"functions"`
	Function    int       `yaml:"function"`
	Method      string    `yaml:"method"` // opcua_call
	User        string    `yaml:"user"`   // opcua: the session's user name (none: anonymous)
	Password    string    `yaml:"password"`
	// Data is the function's payload after the function code, in hex.
	Data string `yaml:"data"`
}

// Expect is an alert the scenario must (or must not) raise: of Rule (a
// rule id; * matches any run of characters), attributed to Actor (the
// alert's client is the actor's From address; empty: any, or a poll alert),
// at least AtLeast (default 1 unless AtMost is given) and at most AtMost
// times.
//
// Poll marks an expectation on a poll rule (source: poll), which only the
// daemon polling the plants can raise: sim check judges it live, and
// skips it when it can only replay the recording.
type Expect struct {
	Rule    string `yaml:"rule"`
	Actor   string `yaml:"actor"`
	AtLeast *int   `yaml:"at_least"`
	AtMost  *int   `yaml:"at_most"`
	Poll    bool   `yaml:"poll"`
}

// Min is the least count the expectation accepts.
func (e Expect) Min() int {
	switch {
	case e.AtLeast != nil:
		return *e.AtLeast
	case e.AtMost != nil:
		return 0
	}
	return 1
}

// Max is the most the expectation accepts; -1 for no limit.
func (e Expect) Max() int {
	if e.AtMost != nil {
		return *e.AtMost
	}
	return -1
}

// String is the expectation in words: "modbus-force-listen-only from
// attacker: at least 1".
func (e Expect) String() string {
	who := "any client"
	if e.Actor != "" {
		who = e.Actor
	}
	n := fmt.Sprintf("at least %d", e.Min())
	if m := e.Max(); m >= 0 {
		if e.Min() > 0 {
			n += fmt.Sprintf(", at most %d", m)
		} else {
			n = fmt.Sprintf("at most %d", m)
		}
	}
	return fmt.Sprintf("%s from %s: %s", e.Rule, who, n)
}

// Matches says whether rule id matches the expectation's Rule pattern.
func (e Expect) Matches(rule string) bool {
	ok, err := path.Match(e.Rule, rule)
	return err == nil && ok
}

// Load reads, decodes strictly and validates a scenario file.
func Load(file string) (*Scenario, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, src)
}

// Parse is Load for a file already read. Its error is an agent.ConfigError:
// every problem at file:line:col.
func Parse(file string, src []byte) (*Scenario, error) {
	s := &Scenario{file: file}
	pos, err := agent.DecodeStrict(file, src, s)
	var probs agent.ConfigError
	if !errors.As(err, &probs) && err != nil || pos == nil {
		return nil, err
	}
	s.defaults()
	probs = append(probs, s.validate(file, pos)...)
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b agent.Problem) int { return (a.Line-b.Line)*1000 + a.Col - b.Col })
		return nil, probs
	}
	return s, nil
}

func (s *Scenario) defaults() {
	if s.Duration == 0 {
		s.Duration = time.Minute
	}
	if s.Tick == 0 {
		s.Tick = 100 * time.Millisecond
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	for i := range s.Plants {
		p := &s.Plants[i]
		if p.Protocol == "" {
			p.Protocol = "modbus"
		}
		for j := range p.Points {
			pt := &p.Points[j]
			if pt.Scale == 0 {
				pt.Scale = 1
			}
			if p.Protocol == "opcua" && pt.Type == "" {
				pt.Type = "Double"
			}
			if t := pt.Tank; t != nil && t.Min == 0 && t.Max == 0 {
				t.Max = 100
			}
		}
	}
	for i := range s.Actors {
		if s.Actors[i].Unit == 0 {
			s.Actors[i].Unit = 1
		}
	}
}

// Plant returns the plant named name, or nil.
func (s *Scenario) Plant(name string) *Plant {
	for i := range s.Plants {
		if s.Plants[i].Name == name {
			return &s.Plants[i]
		}
	}
	return nil
}

// Point returns the point named name, or nil.
func (p *Plant) Point(name string) *Point {
	for i := range p.Points {
		if p.Points[i].Name == name {
			return &p.Points[i]
		}
	}
	return nil
}

// Actor returns the actor named name, or nil.
func (s *Scenario) Actor(name string) *Actor {
	for i := range s.Actors {
		if s.Actors[i].Name == name {
			return &s.Actors[i]
		}
	}
	return nil
}

// IsCoil says whether a point is a bit (coil or discrete input).
func (p *Point) IsCoil() bool {
	return p.Table == "coil" || p.Table == "discrete" || p.Type == "Boolean"
}

// Dynamic is the name of the point's dynamic ("" when it has none).
func (p *Point) Dynamic() string {
	var names []string
	for name, set := range map[string]bool{"constant": p.Constant != nil, "ramp": p.Ramp != nil, "sine": p.Sine != nil,
		"walk": p.Walk != nil, "tank": p.Tank != nil, "lag": p.Lag != nil, "alarm": p.Alarm != nil} {
		if set {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func (s *Scenario) validate(file string, pos func(string) (int, int)) agent.ConfigError {
	var probs agent.ConfigError
	at := func(field, format string, a ...any) {
		l, c := pos(field)
		for up := field; l == 0 && strings.Contains(up, "."); { // the key is absent: point at its parent
			up = up[:strings.LastIndex(up, ".")]
			l, c = pos(up)
		}
		probs = append(probs, agent.Problem{File: file, Line: l, Col: c, Path: field, Msg: field + ": " + fmt.Sprintf(format, a...)})
	}
	positive := func(field string, d time.Duration) {
		if d < 0 {
			at(field, "%s: want a positive duration", d)
		}
	}
	positive("duration", s.Duration)
	if s.Tick < time.Millisecond || s.Tick > 10*time.Second {
		at("tick", "%s: want 1ms-10s", s.Tick)
	}
	if len(s.Plants) == 0 {
		at("plants", "a scenario needs at least one plant")
	}
	listens := map[string]string{}
	plantNames := map[string]bool{}
	for i, p := range s.Plants {
		f := fmt.Sprintf("plants[%d]", i)
		if p.Name == "" {
			at(f+".name", "every plant needs a name")
		} else if plantNames[p.Name] {
			at(f+".name", "%q: two plants have this name", p.Name)
		}
		plantNames[p.Name] = true
		if p.Protocol != "modbus" && p.Protocol != "opcua" {
			at(f+".protocol", "%q: want modbus or opcua", p.Protocol)
		}
		opc := p.Protocol == "opcua"
		if !opc && (len(p.Methods) > 0 || len(p.Users) > 0) {
			at(f+".protocol", "methods and users are for opcua plants")
		}
		ap, err := netip.ParseAddrPort(p.Listen)
		switch {
		case err != nil:
			at(f+".listen", "%q: want an address and port, like 127.0.0.10:5020", p.Listen)
		case ap.Port() == 0:
			at(f+".listen", "%q: want a port (not 0)", p.Listen)
		case listens[p.Listen] != "":
			at(f+".listen", "%s: plant %q listens there too", p.Listen, listens[p.Listen])
		}
		listens[p.Listen] = p.Name
		names := map[string]bool{}
		used := map[[2]any]string{}
		for j, pt := range p.Points {
			g := fmt.Sprintf("%s.points[%d]", f, j)
			if pt.Name == "" {
				at(g+".name", "every point needs a name")
			} else if names[pt.Name] {
				at(g+".name", "%q: two points of plant %q have this name", pt.Name, p.Name)
			}
			names[pt.Name] = true
			switch {
			case opc && pt.Table != "":
				at(g+".table", "an OPC UA variable has a type (Double, Boolean, Int32), not a table")
			case opc && !slices.Contains([]string{"Double", "Boolean", "Int32"}, pt.Type):
				at(g+".type", "%q: want Double, Boolean or Int32", pt.Type)
			case !opc && pt.Type != "":
				at(g+".type", "a Modbus point has a table, not a type")
			case !opc && !slices.Contains([]string{"coil", "discrete", "input", "holding"}, pt.Table):
				at(g+".table", "%q: want coil, discrete, input or holding", pt.Table)
			}
			if pt.Address < 0 || pt.Address > 4095 {
				at(g+".address", "%d: want 0-4095", pt.Address)
			}
			if k := [2]any{pt.Table, pt.Address}; !opc && used[k] != "" {
				at(g+".address", "%s %d is point %q already", pt.Table, pt.Address, used[k])
			} else {
				used[k] = pt.Name
			}
			if pt.Scale <= 0 {
				at(g+".scale", "%g: want a positive number", pt.Scale)
			}
			if d := pt.Dynamic(); strings.Contains(d, ",") {
				at(g, "%s: a point has at most one dynamic", d)
			}
		}
		for j, m := range p.Methods {
			g := fmt.Sprintf("%s.methods[%d]", f, j)
			if m.Name == "" || names[m.Name] {
				at(g+".name", "%q: want a name of its own", m.Name)
			}
			if p.Point(m.Point) == nil {
				at(g+".point", "%q: plant %q has no such point", m.Point, p.Name)
			}
		}
		for j, pt := range p.Points {
			g := fmt.Sprintf("%s.points[%d]", f, j)
			ref := func(key, name, table string) {
				q := p.Point(name)
				switch {
				case name == "":
					at(g+"."+key, "want the name of a point of plant %q", p.Name)
				case q == nil:
					at(g+"."+key, "%q: plant %q has no such point", name, p.Name)
				case table == "coil" && !q.IsCoil():
					at(g+"."+key, "%q: want a coil, not a %s register", name, q.Table)
				}
			}
			if r := pt.Ramp; r != nil && r.Over <= 0 {
				at(g+".ramp.over", "want a positive duration, like 30s")
			}
			if sn := pt.Sine; sn != nil && sn.Period <= 0 {
				at(g+".sine.period", "want a positive duration, like 60s")
			}
			if w := pt.Walk; w != nil && w.Min >= w.Max {
				at(g+".walk", "min %g must be below max %g", w.Min, w.Max)
			}
			if t := pt.Tank; t != nil {
				ref("tank.pump", t.Pump, "coil")
				if t.Setpoint != "" {
					ref("tank.setpoint", t.Setpoint, "")
				}
				if t.Min >= t.Max {
					at(g+".tank", "min %g must be below max %g", t.Min, t.Max)
				}
			}
			if l := pt.Lag; l != nil {
				ref("lag.setpoint", l.Setpoint, "")
				if l.Tau <= 0 {
					at(g+".lag.tau", "want a positive duration, like 30s")
				}
			}
			if a := pt.Alarm; a != nil {
				ref("alarm.of", a.Of, "")
				if (a.Above == nil) == (a.Below == nil) {
					at(g+".alarm", "want one of above or below")
				}
			}
		}
	}
	actorNames := map[string]bool{}
	for i, a := range s.Actors {
		f := fmt.Sprintf("actors[%d]", i)
		if a.Name == "" {
			at(f+".name", "every actor needs a name")
		} else if actorNames[a.Name] {
			at(f+".name", "%q: two actors have this name", a.Name)
		}
		actorNames[a.Name] = true
		if ip, err := netip.ParseAddr(a.From); err != nil || !ip.Is4() || !ip.IsLoopback() {
			at(f+".from", "%q: want a loopback address of its own, like 127.0.0.20", a.From)
		}
		p := s.Plant(a.Target)
		if p == nil {
			at(f+".target", "%q: no plant has this name", a.Target)
		}
		if !slices.Contains(kinds, a.Do) {
			at(f+".do", "%q: want one of %s", a.Do, strings.Join(kinds, ", "))
		} else if p != nil && IsOPCUA(a.Do) != (p.Protocol == "opcua") {
			at(f+".do", "%s: not for a %s plant", a.Do, p.Protocol)
		}
		positive(f+".at", a.At)
		positive(f+".every", a.Every)
		positive(f+".for", a.For)
		if a.Unit < 0 || a.Unit > 255 {
			at(f+".unit", "%d: want 0-255", a.Unit)
		}
		point := func() *Point {
			if p == nil {
				return nil
			}
			q := p.Point(a.Point)
			if q == nil {
				at(f+".point", "%q: plant %q has no such point", a.Point, a.Target)
			} else if q.Table == "input" || q.Table == "discrete" { // OPC UA variables are all writable (the server says no)
				at(f+".point", "%q: a %s cannot be written", a.Point, q.Table)
			}
			return q
		}
		switch a.Do {
		case DoHMI, DoWrite:
			if a.Do == DoWrite || a.Point != "" {
				point()
			}
			if len(a.Values) == 0 && (a.Do == DoWrite || a.Point != "") {
				at(f+".values", "want the values to write, like [45, 55]")
			}
			if p != nil {
				for j, r := range a.Reads {
					if p.Point(r) == nil {
						at(fmt.Sprintf("%s.reads[%d]", f, j), "%q: plant %q has no such point", r, a.Target)
					}
				}
			}
		case DoBruteForce:
			if q := point(); q != nil && q.Table != "coil" {
				at(f+".point", "%q: want a coil", a.Point)
			}
			if a.Count < 1 || a.Count > 10000 {
				at(f+".count", "%d: want 1-10000 toggles", a.Count)
			}
		case DoUnitScan:
			if a.Count < 1 || a.Unit+a.Count > 256 {
				at(f+".count", "%d: want 1 or more units, up to 255", a.Count)
			}
		case DoDiagnostic:
			if a.Subfunction < 0 || a.Subfunction > 0xffff {
				at(f+".subfunction", "%d: want 0-65535", a.Subfunction)
			}
		case DoFunctionScan:
			if len(a.Functions) == 0 {
				at(f+".functions", "want the function codes to try, like [41, 42, 44]")
			}
			for j, fc := range a.Functions {
				if fc < 1 || fc > 127 {
					at(fmt.Sprintf("%s.functions[%d]", f, j), "%d: want 1-127", fc)
				}
			}
		case DoOPCUARead:
			if len(a.Reads) == 0 {
				at(f+".reads", "want the points to read, like [Temperature, Speed]")
			}
			if p != nil {
				for j, r := range a.Reads {
					if p.Point(r) == nil {
						at(fmt.Sprintf("%s.reads[%d]", f, j), "%q: plant %q has no such point", r, a.Target)
					}
				}
			}
		case DoOPCUAWrite:
			point()
			if len(a.Values) == 0 {
				at(f+".values", "want the values to write, like [45, 55]")
			}
		case DoOPCUACall:
			if p != nil && p.Method(a.Method) == nil {
				at(f+".method", "%q: plant %q has no such method", a.Method, a.Target)
			}
		case DoOPCUABrowse:
			if a.Count < 1 || a.Count > 10000 {
				at(f+".count", "%d: want 1-10000 nodes", a.Count)
			}
		case DoOPCUALogin:
			if a.User == "" {
				at(f+".user", "want the user name to guess passwords of")
			}
			if a.Count < 1 || a.Count > 1000 {
				at(f+".count", "%d: want 1-1000 attempts", a.Count)
			}
		case DoFunction:
			if a.Function < 1 || a.Function > 127 {
				at(f+".function", "%d: want 1-127", a.Function)
			}
			if _, err := a.Payload(); err != nil {
				at(f+".data", "%q: want hex bytes, like 0002", a.Data)
			}
		}
	}
	for i, e := range s.Expect {
		f := fmt.Sprintf("expect[%d]", i)
		if e.Rule == "" {
			at(f+".rule", "want a rule id (or a pattern like modbus-*)")
		} else if _, err := path.Match(e.Rule, ""); err != nil {
			at(f+".rule", "%q: %v", e.Rule, err)
		}
		if e.Poll && e.Actor != "" {
			at(f+".actor", "a poll alert has no client: no actor raises it")
		}
		if e.Actor != "" && !actorNames[e.Actor] {
			at(f+".actor", "%q: no actor has this name", e.Actor)
		}
		if e.AtLeast != nil && *e.AtLeast < 0 {
			at(f+".at_least", "%d: want 0 or more", *e.AtLeast)
		}
		if e.AtMost != nil && (*e.AtMost < 0 || *e.AtMost < e.Min()) {
			at(f+".at_most", "%d: want at least at_least", *e.AtMost)
		}
	}
	return probs
}

// Payload is Data decoded.
func (a *Actor) Payload() ([]byte, error) {
	d := strings.ReplaceAll(a.Data, " ", "")
	if len(d)%2 != 0 {
		return nil, errors.New("odd number of hex digits")
	}
	b := make([]byte, len(d)/2)
	for i := range b {
		if _, err := fmt.Sscanf(d[2*i:2*i+2], "%02x", &b[i]); err != nil {
			return nil, err
		}
	}
	return b, nil
}
