package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The man pages: one per command, from the help text, dated by
// SOURCE_DATE_EPOCH so that two package builds are byte-identical; the
// hidden man command has none.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000") // Nov 2023
	gen := func() string {
		dir := t.TempDir()
		var out, errb bytes.Buffer
		if c := run(context.Background(), []string{"man", "--dir", dir}, &out, &errb); c != exitOK {
			t.Fatalf("exit %d: %s", c, errb.String())
		}
		return dir
	}
	a, b := gen(), gen()
	for _, name := range []string{"plcwatch.1", "plcwatch-run.1", "plcwatch-config-check.1", "plcwatch-replay.1", "plcwatch-version.1"} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", name)
		}
		if !strings.Contains(string(x), "Nov 2023") || strings.Contains(string(x), "Auto generated") {
			t.Errorf("%s: want the date of SOURCE_DATE_EPOCH and no generator tag:\n%.400s", name, x)
		}
	}
	if _, err := os.Stat(filepath.Join(a, "plcwatch-man.1")); err == nil {
		t.Error("the hidden man command has a page")
	}
	run1, _ := os.ReadFile(filepath.Join(a, "plcwatch-run.1"))
	if !strings.Contains(string(run1), "config") {
		t.Errorf("plcwatch-run.1 lacks its flags:\n%s", run1)
	}
	var out, errb bytes.Buffer
	if c := run(context.Background(), []string{"man"}, &out, &errb); c != exitUsage {
		t.Errorf("man without --dir: exit %d, want 2", c)
	}
}
