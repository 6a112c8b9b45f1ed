package scenario_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch/sim/scenario"
)

// TestLoadShipped loads every scenario of configs/scenarios: they must stay
// valid as the format grows.
func TestLoadShipped(t *testing.T) {
	files, _ := filepath.Glob("../../configs/scenarios/*.yaml")
	if len(files) == 0 {
		t.Fatal("no scenarios in configs/scenarios")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := scenario.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Actors) == 0 || len(s.Expect) == 0 {
				t.Errorf("%s: want actors and expectations", f)
			}
		})
	}
}

// TestLoadProblems: every problem at its file:line:col, all at once, in
// the user's terms.
func TestLoadProblems(t *testing.T) {
	_, err := scenario.Load("testdata/bad.yaml")
	if err == nil {
		t.Fatal("bad.yaml loaded")
	}
	for _, want := range []string{
		`testdata/bad.yaml:6:64: plants[0].points[0].tank.pump: "pumpp": plant "tank" has no such point`,
		`testdata/bad.yaml:8:27: plants[0].points[2].table: "holdin": want coil, discrete, input or holding`,
		`testdata/bad.yaml:11:11: actors[0].from: "10.0.0.1": want a loopback address of its own`,
		`testdata/bad.yaml:14:12: actors[0].every: 2: want a duration with a unit`,
		`testdata/bad.yaml:15:5: unknown key "pointt" in actors[0] (did you mean "point"?)`,
		`testdata/bad.yaml:10:5: actors[0].point: "": plant "tank" has no such point`,
		`testdata/bad.yaml:17:29: expect[0].actor: "nobody": no actor has this name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestExpect(t *testing.T) {
	one, zero := 1, 0
	for _, c := range []struct {
		e        scenario.Expect
		min, max int
		text     string
	}{
		{scenario.Expect{Rule: "r", Actor: "a"}, 1, -1, "r from a: at least 1"},
		{scenario.Expect{Rule: "r", AtMost: &zero}, 0, 0, "r from any client: at most 0"},
		{scenario.Expect{Rule: "r", AtLeast: &one, AtMost: &one}, 1, 1, "r from any client: at least 1, at most 1"},
	} {
		if c.e.Min() != c.min || c.e.Max() != c.max || c.e.String() != c.text {
			t.Errorf("%+v: %d %d %q", c.e, c.e.Min(), c.e.Max(), c.e.String())
		}
	}
	if !(scenario.Expect{Rule: "modbus-*"}).Matches("modbus-write-burst") || (scenario.Expect{Rule: "modbus-*"}).Matches("poll-device-down") {
		t.Error("patterns")
	}
}

// FuzzParse: no scenario file, however broken, panics the loader, and a
// file it accepts is valid (its references resolve).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../configs/scenarios/*.yaml")
	for _, p := range append(files, "testdata/bad.yaml") {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := scenario.Parse("fuzz.yaml", src)
		if err != nil {
			return
		}
		for _, a := range s.Actors {
			if s.Plant(a.Target) == nil {
				t.Fatalf("actor %q: target %q accepted but absent", a.Name, a.Target)
			}
		}
	})
}
