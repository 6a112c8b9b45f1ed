// Package atomicfile writes a file so that a reader, or the next start
// after a crash or power loss, sees the old content or the new, never a
// mix or an empty file.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to path atomically: a temporary file in path's folder
// (named by pattern, as os.CreateTemp; mode 0600), fsynced, renamed over
// path, then the folder fsynced so that the rename itself is durable.
// Errors are the file system's (*fs.PathError, *os.LinkError), the
// temporary file removed; a folder that cannot be fsynced (some file
// systems refuse) is not an error.
func Write(path, pattern string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails once renamed: nothing left behind
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	SyncDir(dir)
	return nil
}

// SyncDir fsyncs the folder dir, best effort: after a create, rename or
// remove in it, so that the change survives a power loss.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
