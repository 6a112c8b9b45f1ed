package capture_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/plcwatch/plcwatch/collectors/capture"
)

// TestCaptureNeedsOnlyNetRaw: a user with CAP_NET_RAW alone opens a live
// capture in promiscuous mode (PACKET_ADD_MEMBERSHIP needs no
// CAP_NET_ADMIN), and a user without it is told to grant exactly that —
// the error suggested cap_net_raw,cap_net_admin while deploy/ grants
// NET_RAW only (issue 14). The capture runs in a child (this binary
// again) under uid 65534, with and without the ambient capability.
func TestCaptureNeedsOnlyNetRaw(t *testing.T) {
	if os.Getenv("PLCWATCH_CAPTURE_CHILD") != "" {
		l, err := capture.NewLive(capture.Config{Interfaces: []string{"lo"}, Promiscuous: true}, nil)
		if err == nil {
			err = l.Open()
			l.Close()
		}
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run a child as another user with chosen capabilities")
		}
		t.Skip("needs root")
	}
	// The test binary sits in go's 0700 build folder: copy it where the
	// other user can run it.
	dir := t.TempDir()
	bin := filepath.Join(dir, "capture.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	const capNetRaw = 13
	for _, tc := range []struct {
		name string
		caps []uintptr
		want string // "" for success
	}{
		{"CAP_NET_RAW only, promiscuous", []uintptr{capNetRaw}, ""},
		{"no capability", nil, "live capture needs CAP_NET_RAW (run as root, or grant it: setcap cap_net_raw+ep plcwatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestCaptureNeedsOnlyNetRaw$")
			cmd.Env = append(os.Environ(), "PLCWATCH_CAPTURE_CHILD=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, AmbientCaps: tc.caps}
			var errb bytes.Buffer
			cmd.Stderr = &errb
			err := cmd.Run()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("capture with CAP_NET_RAW only: %v: %s", err, errb.String())
			case tc.want != "" && (err == nil || !strings.Contains(errb.String(), tc.want)):
				t.Errorf("got %v: %s\nwant %q", err, errb.String(), tc.want)
			}
		})
	}
}
