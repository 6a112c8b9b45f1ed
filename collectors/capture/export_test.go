package capture

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// PacketsOf reads a pcapng file with the reader Read uses and returns each
// packet as its time (RFC 3339) and its bytes.
func PacketsOf(t testing.TB, b []byte) []string {
	t.Helper()
	r := newNgReader(bufio.NewReaderSize(bytes.NewReader(b), 1<<20), func(fe *FileError) { t.Errorf("skipped: %v", fe) })
	var out []string
	for {
		data, ts, _, err := r.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ts.Format(time.RFC3339Nano)+" "+string(data))
	}
}
