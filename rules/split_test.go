package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A rule file read in pieces must load exactly as it does parsed whole.

var splitCases = map[string]string{
	"plain":                    "rules:\n  - id: a\n    title: t\n    severity: low\n  - id: b\n    title: t\n    severity: low\n",
	"items at column 0":        "lists:\n  x: [1, 2]\nrules:\n- id: a\n  title: t\n  severity: low\n  match: {unit: $x}\n- id: b\n  title: t\n  severity: low\n",
	"a list of rules":          "- id: a\n  title: t\n  severity: low\n# a comment at column 0\n- id: b\n  title: t\n  severity: low\n",
	"comments and blank lines": "# head\nrules:\n\n  # one\n  - id: a   # trailing\n    title: t\n\n# col 0 in the list\n    severity: low\n  - id: b\n    title: t\n    severity: low\n# tail\n",
	"block scalars":            "rules:\n  - id: a\n    title: t\n    severity: low\n    description: |\n      line one\n\n      line three\n    when: >-\n      unit == 1\n      and function == 3\n",
	"multi-line flow":          "rules:\n  - id: a\n    title: t\n    severity: low\n    match: {unit: 1,\n      function: 3}\n",
	"flow list of rules":       "rules: [{id: a, title: t, severity: low}, {id: b, title: t, severity: low}]\n",
	"anchors":                  "rules:\n  - &r\n    id: a\n    title: t\n    severity: low\n  - id: b\n    title: t\n    severity: low\n    match: &m {unit: 1}\n  - id: c\n    title: t\n    severity: low\n    match: *m\n",
	"document marker":          "---\nrules:\n  - id: a\n    title: t\n    severity: low\n",
	"rules twice":              "rules:\n  - id: a\n    title: t\n    severity: low\nrules:\n  - id: b\n    title: t\n    severity: low\n",
	"empty rules":              "rules:\nlists:\n  x: [1]\n",
	"unknown top key":          "rulez:\n  - id: a\nrules:\n  - id: b\n    title: t\n    severity: low\n",
	"syntax error in one":      "rules:\n  - id: a\n    title: t\n    severity: low\n  - id: b\n    title: [t\n    severity: low\n  - id: c\n    title: t\n    severity: low\n",
	"tab indent":               "rules:\n\t- id: a\n",
	"indented less":            "rules:\n    - id: a\n      title: t\n      severity: low\n  - id: b\n",
	"only comments":            "# nothing here\n\n",
	"scalar root":              "hello\n",
	"quoted key":               "\"rules\":\n  - id: a\n    title: t\n    severity: low\n",
	"expression with &&":       "rules:\n  - id: a\n    title: t\n    severity: low\n    when: unit == 1 && function == 3\n",
	"bad rule in a list":       "rules:\n  - id: a\n    title: t\n    severity: low\n    treshold: 1\n  - id: a\n    title: t\n    severity: low\n",
	"no newline at the end":    "rules:\n  - id: a\n    title: t\n    severity: low",
}

// loadBoth loads text in pieces and whole and describes both outcomes.
func loadBoth(t testing.TB, text string) (pieces, whole string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	describe := func() string {
		set, err := Load(path)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) {
				return "error: " + err.Error()
			}
			return "problems"
		}
		var out []string
		for _, r := range set.Rules {
			out = append(out, fmt.Sprintf("%s@%d:%x", r.ID, r.Line, r.digest))
		}
		return strings.Join(out, " ")
	}
	pieces = describe()
	wholeOnly = true
	defer func() { wholeOnly = false }()
	return pieces, describe()
}

func TestPiecesLoadLikeWhole(t *testing.T) {
	for name, text := range splitCases {
		t.Run(name, func(t *testing.T) {
			p, w := loadBoth(t, text)
			if p != w {
				t.Errorf("in pieces: %s\nwhole:     %s", p, w)
			}
		})
	}
	files, _ := filepath.Glob("../configs/rules/*.yaml")
	more, _ := filepath.Glob("testdata/*/rules.yaml")
	for _, f := range append(files, more...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(f, func(t *testing.T) {
			if p, w := loadBoth(t, string(b)); p != w {
				t.Errorf("in pieces: %s\nwhole:     %s", p, w)
			}
		})
	}
}

// TestPiecesAreUsed checks that the default set is read in pieces (the
// memory bound of issue 8 §4 depends on it) and that syntax errors point
// where they are.
func TestPiecesAreUsed(t *testing.T) {
	files, _ := filepath.Glob("../configs/rules/*.yaml")
	for _, f := range files {
		d, p := openFile(f)
		if p != nil {
			t.Fatal(p)
		}
		if strings.Contains(f, "site-lists") {
			continue
		}
		if d.pieces == nil {
			t.Errorf("%s: parsed whole", f)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	os.WriteFile(path, []byte(splitCases["syntax error in one"]), 0o644)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "r.yaml:") {
		t.Fatalf("got %v", err)
	}
}

func FuzzLoadPieces(f *testing.F) {
	for _, text := range splitCases {
		f.Add(text)
	}
	files, _ := filepath.Glob("../configs/rules/*.yaml")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, w := loadBoth(t, text)
		if p != w {
			t.Errorf("in pieces: %s\nwhole:     %s", p, w)
		}
	})
}
