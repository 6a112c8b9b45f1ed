package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, want := range []string{"first\n", "second, longer\n", ""} {
		if err := Write(path, ".state-*", []byte(want)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("read %q, want %q", got, want)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Errorf("folder holds %d files after a write, want 1 (no temporary left)", len(ents))
		}
	}
	if err := Write(filepath.Join(dir, "missing", "f"), ".f-*", nil); err == nil {
		t.Error("write into a missing folder did not fail")
	}
}
