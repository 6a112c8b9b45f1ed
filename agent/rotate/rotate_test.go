package rotate

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		files  int // the file and the rotated ones
		latest int // lines in the current file
	}{
		{"keep 2", Options{MaxBytes: 100, Keep: 2}, 3, 2},
		{"keep 0", Options{MaxBytes: 100}, 1, 2},
		{"buffered", Options{MaxBytes: 100, Keep: 1, Buffer: 4096}, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "log.jsonl")
			f, err := Open(path, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			line := []byte(`{"n":"0123456789012345678901234"}`) // 33 bytes and a newline: two lines a file
			for range 12 {
				if err := f.WriteLine(line); err != nil {
					t.Fatal(err)
				}
			}
			if tc.opts.Buffer > 0 {
				if b, _ := os.ReadFile(path); len(b) != 0 {
					t.Errorf("buffered lines reached the file before Flush: %d bytes", len(b))
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(path + "*")
			if len(files) != tc.files {
				t.Errorf("files %v", files)
			}
			for _, p := range files {
				b, _ := os.ReadFile(p)
				if len(b) > 100 || !bytes.HasSuffix(b, []byte("}\n")) {
					t.Errorf("%s: %d bytes %q", p, len(b), b)
				}
			}
			b, _ := os.ReadFile(path)
			if n := strings.Count(string(b), "\n"); n != tc.latest {
				t.Errorf("%d lines in the current file, want %d", n, tc.latest)
			}
			// Opening again appends.
			f, _ = Open(path, tc.opts)
			f.WriteLine([]byte("x"))
			f.Close()
			if b2, _ := os.ReadFile(path); !bytes.HasPrefix(b2, b) && len(b)+len("x\n") <= 100 {
				t.Error("reopening did not append")
			}
			if err := f.WriteLine(line); err == nil {
				t.Error("a write after Close")
			}
		})
	}
}
