// Package rotate writes JSON lines to a file rotated by size, as logrotate's
// "size" and "rotate" do, without an external tool: path, path.1, ...
// path.<keep>, the oldest dropped. The alert log, the event log and the
// spool's dead letters use it.
package rotate

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Options configure a File.
type Options struct {
	// MaxBytes: the file is rotated before a line would take it past this
	// (a single longer line is still written whole). At least 1.
	MaxBytes int64
	// Keep is how many rotated files are kept (path.1 ... path.<Keep>). 0
	// keeps none: the file starts again empty.
	Keep int
	// Buffer, when above 0, buffers writes in memory (that many bytes) until
	// Flush or a full buffer: for writers of many small lines (the event
	// log). 0 writes every line through at once (the alert log).
	Buffer int
	// Mode of new files; 0640 when 0.
	Mode os.FileMode
}

// File is a size-rotated file of lines. Its methods are safe for concurrent
// use.
type File struct {
	mu   sync.Mutex
	path string
	opts Options
	f    *os.File
	bw   *bufio.Writer
	size int64 // bytes in the file, buffered ones included
	shut bool  // Close was called
}

// Open opens (creating, appending) path and its folder.
func Open(path string, opts Options) (*File, error) {
	if opts.MaxBytes < 1 {
		return nil, fmt.Errorf("rotate %s: MaxBytes must be at least 1", path)
	}
	if opts.Mode == 0 {
		opts.Mode = 0o640
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l := &File{path: path, opts: opts}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, l.opts.Mode)
	if err != nil {
		return fmt.Errorf("%s: %w", l.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", l.path, err)
	}
	l.f, l.size = f, st.Size()
	if l.opts.Buffer > 0 {
		if l.bw == nil {
			l.bw = bufio.NewWriterSize(f, l.opts.Buffer)
		} else {
			l.bw.Reset(f)
		}
	}
	return nil
}

// Path is the file's path.
func (l *File) Path() string { return l.path }

// WriteLine appends line and a newline, rotating first when it would not
// fit. line must not contain a newline.
func (l *File) WriteLine(line []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shut {
		return fmt.Errorf("%s: closed", l.path)
	}
	if l.f == nil { // a rotation could not open the new file: try again
		if err := l.open(); err != nil {
			return err
		}
	}
	n := int64(len(line)) + 1
	if l.size > 0 && l.size+n > l.opts.MaxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	var err error
	if l.bw != nil {
		_, err = l.bw.Write(line)
		if err == nil {
			err = l.bw.WriteByte('\n')
		}
	} else {
		// One write: a reader (tail -f) never sees half a line.
		buf := make([]byte, 0, n)
		buf = append(append(buf, line...), '\n')
		_, err = l.f.Write(buf)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", l.path, err)
	}
	l.size += n
	return nil
}

// Flush writes buffered lines to the file.
func (l *File) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flush()
}

func (l *File) flush() error {
	if l.bw == nil || l.f == nil {
		return nil
	}
	if err := l.bw.Flush(); err != nil {
		// A failed flush keeps the bytes in bufio's buffer and makes
		// every later write fail: start with an empty buffer, so that
		// a disk that fills up and empties again costs the lines of
		// that time only.
		l.bw.Reset(l.f)
		return fmt.Errorf("%s: %w", l.path, err)
	}
	return nil
}

func (l *File) rotate() error {
	ferr := l.flush()
	l.f.Close()
	l.f = nil
	for i := l.opts.Keep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1))
	}
	var err error
	if l.opts.Keep > 0 {
		err = os.Rename(l.path, l.path+".1")
	} else {
		err = os.Remove(l.path)
	}
	if oerr := l.open(); oerr != nil {
		return oerr
	}
	if err != nil {
		return fmt.Errorf("%s: rotate: %w", l.path, err)
	}
	return ferr
}

// Close flushes and closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shut = true
	if l.f == nil {
		return nil
	}
	err := l.flush()
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: %w", l.path, cerr)
	}
	l.f = nil
	return err
}
