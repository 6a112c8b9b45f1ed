package inventory

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// SaveJSON of the JSON a caller made to publish writes the very file Save
// writes (indented, final newline), without a second snapshot.
func TestSaveJSONIsSave(t *testing.T) {
	inv := New()
	ev := wire("10.0.0.9:4000", "10.0.1.1:502", 16, 100, 2)
	inv.Observe(&ev, nil)
	dir := t.TempDir()
	viaSave, viaJSON := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	if err := inv.Save(viaSave); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveJSON(viaJSON, b); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(viaSave)
	c, _ := os.ReadFile(viaJSON)
	want, _ := json.MarshalIndent(inv.Snapshot(), "", "  ")
	if !bytes.Equal(a, append(want, '\n')) {
		t.Errorf("Save wrote\n%s\nwant (as before)\n%s", a, want)
	}
	if !bytes.Equal(a, c) {
		t.Errorf("SaveJSON wrote\n%s\nSave\n%s", c, a)
	}
	if err := SaveJSON(filepath.Join(dir, "bad.json"), []byte("{")); err == nil {
		t.Error("SaveJSON of broken JSON did not fail")
	}
}
