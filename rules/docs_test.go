package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsExamplesLoad: every rule file shown in docs/rules.md loads (the
// doc promises its examples are runnable), and every match key, field and
// op the loader knows is documented there: the reference cannot drift.
func TestDocsExamplesLoad(t *testing.T) {
	b, err := os.ReadFile("../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	n := 0
	for i, m := range blocks {
		text := m[1]
		if !strings.HasPrefix(text, "rules:") && !strings.HasPrefix(text, "lists:") {
			continue
		}
		n++
		path := filepath.Join(t.TempDir(), "example.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err != nil {
			t.Errorf("example %d of docs/rules.md does not load:\n%s\n%v", i+1, text, err)
		}
	}
	if n < 10 {
		t.Errorf("only %d rule files found in docs/rules.md", n)
	}
	for _, k := range matchKeys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("match key %q is not in docs/rules.md", k)
		}
	}
	for name := range fieldNames {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("field %q is not in docs/rules.md", name)
		}
	}
	for _, name := range envNames {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("when name %q is not in docs/rules.md", name)
		}
	}
	for _, op := range opNames() {
		if !strings.Contains(doc, "`"+op+"`") {
			t.Errorf("op %q is not in docs/rules.md", op)
		}
	}
}
