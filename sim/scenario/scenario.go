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
	"io"
	"math"
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

	file    string
	written map[string]bool // top-level keys written with a zero value (tick: 0s)
	rulePos [][2]int        // line, column of each expect[].rule, for RuleProblems
}

// MaxFileBytes bounds a scenario file: the largest sensible one (4,096
// points on each of a dozen plants) is well under it; beyond it, decoding
// would take memory out of proportion (issue 12: 13 MB took 660 MB).
const MaxFileBytes = 4 << 20

// File is the path the scenario was loaded from.
func (s *Scenario) File() string { return s.file }

// Plant is a simulated device.
type Plant struct {
	Name string `yaml:"name"`
	// Protocol is modbus (the default) or opcua.
	Protocol string `yaml:"protocol"`
	// Listen is the address (host:port, a loopback address such as
	// 127.0.0.10:5020) the device serves on.
	Listen string `yaml:"listen"`
	// AllowNetwork lets Listen be an address other than loopback: a
	// simulated PLC that accepts anyone's writes, served on a network.
	AllowNetwork bool    `yaml:"allow_network"`
	Points       []Point `yaml:"points"`
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
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxFileBytes {
		return nil, agent.ConfigError{{File: file, Msg: fmt.Sprintf("larger than %d MiB: not a scenario this tool runs", MaxFileBytes>>20)}}
	}
	return Parse(file, src)
}

// Parse is Load for a file already read. Its error is an agent.ConfigError:
// every problem at file:line:col.
func Parse(file string, src []byte) (*Scenario, error) {
	if len(src) > MaxFileBytes {
		return nil, agent.ConfigError{{File: file, Msg: fmt.Sprintf("larger than %d MiB: not a scenario this tool runs", MaxFileBytes>>20)}}
	}
	s := &Scenario{file: file}
	pos, err := agent.DecodeStrict(file, src, s)
	var probs agent.ConfigError
	if !errors.As(err, &probs) && err != nil || pos == nil {
		return nil, err
	}
	s.written = map[string]bool{}
	for key, zero := range map[string]bool{"duration": s.Duration == 0, "tick": s.Tick == 0, "seed": s.Seed == 0} {
		if l, _ := pos(key); l > 0 && zero && !slices.ContainsFunc(probs, func(p agent.Problem) bool { return p.Path == key }) {
			s.written[key] = true
		}
	}
	s.defaults()
	for i := range s.Expect {
		l, c := pos(fmt.Sprintf("expect[%d].rule", i))
		s.rulePos = append(s.rulePos, [2]int{l, c})
	}
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

// Range is the engineering values the point holds, and the range said in
// words: 0-1 for bits; for a register 0 to 65535·scale (the register is
// round(value / scale), 16 bits); an Int32 variable its 32 bits; a Double
// within ±1e15.
func (p *Point) Range() (lo, hi float64, want string) {
	switch {
	case p.IsCoil():
		return 0, 1, "0 or 1"
	case p.Type == "Int32":
		return math.MinInt32, math.MaxInt32, "a whole number that fits in Int32"
	case p.Type != "" || p.Table == "":
		return -1e15, 1e15, "a number within ±1e+15"
	}
	hi = 65535 * p.Scale
	return 0, hi, fmt.Sprintf("0-%g (register 0-65535 × scale %g)", hi, p.Scale)
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
	// Every number of the format has a range (docs/sim.md, Ranges),
	// checked here: a value the simulation would clamp, wrap or spin on
	// is refused where it is written (issue 12).
	span := func(field string, d, lo, hi time.Duration, want string) {
		if d < lo || d > hi {
			at(field, "%s: want %s", d, want)
		}
	}
	num := func(field string, v, lo, hi float64, want string) {
		if math.IsNaN(v) || v < lo || v > hi {
			at(field, "%g: want %s", v, want)
		}
	}
	if s.written["duration"] {
		at("duration", "0s: want 100ms-168h (absent: 60s)")
	} else {
		span("duration", s.Duration, 100*time.Millisecond, 168*time.Hour, "100ms-168h")
	}
	if s.written["tick"] {
		at("tick", "0s: want 1ms-10s (absent: 100ms)")
	} else {
		span("tick", s.Tick, time.Millisecond, 10*time.Second, "1ms-10s")
	}
	if s.written["seed"] {
		at("seed", "0: want 1 or more (absent: 1)")
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
		case !ap.Addr().IsLoopback() && !p.AllowNetwork:
			// A simulated PLC accepts anyone's writes: on a site network
			// it is a device an attacker can use (issue 12).
			at(f+".listen", "%q: want a loopback address, like 127.0.0.10:5020 (allow_network: true serves a network, docs/sim.md)", p.Listen)
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
			} else if k := [2]any{pt.Table, pt.Address}; !opc && used[k] != "" {
				at(g+".address", "%s %d is point %q already", pt.Table, pt.Address, used[k])
			} else {
				used[k] = pt.Name
			}
			num(g+".scale", pt.Scale, 1e-6, 1e6, "1e-06-1e+06")
			lo, hi, want := pt.Range()
			value := func(key string, v float64) {
				if pt.Scale >= 1e-6 && pt.Scale <= 1e6 { // else the scale is the problem
					num(g+"."+key, v, lo, hi, want)
				}
			}
			if pt.IsCoil() && pt.Value != 0 && pt.Value != 1 {
				at(g+".value", "%g: want 0 or 1", pt.Value)
			} else {
				value("value", pt.Value)
			}
			if pt.Constant != nil {
				value("constant", *pt.Constant)
			}
			if r := pt.Ramp; r != nil {
				value("ramp.from", r.From)
				value("ramp.to", r.To)
			}
			if sn := pt.Sine; sn != nil {
				num(g+".sine.amplitude", sn.Amplitude, 0, hi-lo, fmt.Sprintf("0-%g", hi-lo))
				value("sine.mean", sn.Mean)
				if sn.Amplitude >= 0 && sn.Amplitude <= hi-lo && (sn.Mean-sn.Amplitude < lo || sn.Mean+sn.Amplitude > hi) {
					at(g+".sine", "mean %g ± amplitude %g: want within %s", sn.Mean, sn.Amplitude, want)
				}
			}
			if w := pt.Walk; w != nil {
				value("walk.start", w.Start)
				value("walk.min", w.Min)
				value("walk.max", w.Max)
				if w.Min < w.Max {
					num(g+".walk.step", w.Step, math.SmallestNonzeroFloat64, w.Max-w.Min, fmt.Sprintf("more than 0, at most max - min (%g)", w.Max-w.Min))
				}
			}
			if t := pt.Tank; t != nil {
				value("tank.level", t.Level)
				value("tank.min", t.Min)
				value("tank.max", t.Max)
				num(g+".tank.inflow", t.Inflow, 0, 1e6, "0-1e+06 per second")
				num(g+".tank.outflow", t.Outflow, 0, 1e6, "0-1e+06 per second")
				if t.Min < t.Max {
					num(g+".tank.band", t.Band, 0, t.Max-t.Min, fmt.Sprintf("0-%g (max - min)", t.Max-t.Min))
				}
			}
			if l := pt.Lag; l != nil {
				value("lag.start", l.Start)
			}
			if a := pt.Alarm; a != nil {
				for key, v := range map[string]*float64{"above": a.Above, "below": a.Below} {
					if v != nil {
						num(g+".alarm."+key, *v, -1e15, 1e15, "a number within ±1e+15")
					}
				}
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
			if q := p.Point(m.Point); q == nil {
				at(g+".point", "%q: plant %q has no such point", m.Point, p.Name)
			} else if lo, hi, want := q.Range(); q.IsCoil() && m.Value != 0 && m.Value != 1 {
				at(g+".value", "%g: want 0 or 1", m.Value)
			} else {
				num(g+".value", m.Value, lo, hi, want)
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
			if r := pt.Ramp; r != nil {
				span(g+".ramp.over", r.Over, time.Millisecond, 168*time.Hour, "1ms-168h, like 30s")
			}
			if sn := pt.Sine; sn != nil {
				span(g+".sine.period", sn.Period, time.Millisecond, 168*time.Hour, "1ms-168h, like 60s")
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
				span(g+".lag.tau", l.Tau, time.Millisecond, 168*time.Hour, "1ms-168h, like 30s")
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
	froms := map[string]string{}
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
		} else if other := froms[ip.String()]; other != "" {
			// Alerts are attributed by address: two actors on one would
			// share their alerts, and "at most 0" of one would lie.
			at(f+".from", "%s: actor %q has this address: want one of its own", a.From, other)
		} else {
			froms[ip.String()] = a.Name
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
		span(f+".at", a.At, 0, 168*time.Hour, "0-168h")
		if a.Every != 0 {
			span(f+".every", a.Every, time.Millisecond, 168*time.Hour, "0 (once) or 1ms-168h")
		}
		span(f+".for", a.For, 0, 168*time.Hour, "0 (until the end) or up to 168h")
		for j, v := range a.Values {
			num(fmt.Sprintf("%s.values[%d]", f, j), v, -1e15, 1e15, "a number within ±1e+15")
		}
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
			if a.Unit >= 0 && a.Unit <= 255 && (a.Count < 1 || a.Unit+a.Count > 256) {
				at(f+".count", "%d: want 1-%d (units %d-255: unit + count may not pass 256)", a.Count, 256-a.Unit, a.Unit)
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
		if e.AtLeast != nil && (*e.AtLeast < 0 || *e.AtLeast > 1000000) {
			at(f+".at_least", "%d: want 0-1000000", *e.AtLeast)
		}
		if e.AtMost != nil && (*e.AtMost < 0 || *e.AtMost > 1000000) {
			at(f+".at_most", "%d: want 0-1000000", *e.AtMost)
		} else if e.AtMost != nil && *e.AtMost < e.Min() {
			at(f+".at_most", "%d: want at least at_least", *e.AtMost)
		}
	}
	return probs
}

// RuleProblems are the expectations whose rule is in no rule set: an id
// no rule has, or a pattern no rule id matches. ids are every rule id of
// the configuration checked against (enabled or not). Without it, a typo
// in an at_most: 0 expectation passes, and in an at_least one fails as a
// plain miss (issue 12).
func (s *Scenario) RuleProblems(ids []string) agent.ConfigError {
	var probs agent.ConfigError
	for i, e := range s.Expect {
		if slices.ContainsFunc(ids, e.Matches) {
			continue
		}
		msg := fmt.Sprintf("expect[%d].rule: %q: no rule has this id", i, e.Rule)
		if strings.ContainsAny(e.Rule, `*?[\`) {
			msg = fmt.Sprintf("expect[%d].rule: %q: no rule id matches this pattern", i, e.Rule)
		}
		var l, c int
		if i < len(s.rulePos) {
			l, c = s.rulePos[i][0], s.rulePos[i][1]
		}
		probs = append(probs, agent.Problem{File: s.file, Line: l, Col: c, Path: fmt.Sprintf("expect[%d].rule", i), Msg: msg})
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
