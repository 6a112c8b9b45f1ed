package agent

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDeployPathsAreWritable: every /var path the packaged and example
// configurations write to or suggest is in a folder the unit makes
// writable (StateDirectory=, LogsDirectory=): under ProtectSystem=strict
// the rest is read-only (issue 14: the example's /var/log/plcwatch was).
func TestDeployPathsAreWritable(t *testing.T) {
	unit, err := os.ReadFile("../deploy/plcwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	var writable []string
	for _, m := range regexp.MustCompile(`(?m)^(StateDirectory|LogsDirectory|CacheDirectory|ReadWritePaths)=(\S+)`).FindAllStringSubmatch(string(unit), -1) {
		base := map[string]string{"StateDirectory": "/var/lib/", "LogsDirectory": "/var/log/", "CacheDirectory": "/var/cache/", "ReadWritePaths": ""}[m[1]]
		writable = append(writable, base+m[2]+"/")
	}
	if len(writable) < 2 {
		t.Fatalf("the unit makes %v writable: want its state and logs folders", writable)
	}
	paths := regexp.MustCompile(`/var/[A-Za-z0-9/._-]+`)
	for _, file := range []string{"../deploy/package/plcwatch.yaml", "../configs/plcwatch.yaml"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := paths.FindAllString(string(src), -1)
		if len(found) == 0 {
			t.Errorf("%s names no /var path: the test sees nothing", file)
		}
		for _, p := range found {
			ok := false
			for _, w := range writable {
				ok = ok || strings.HasPrefix(p+"/", w)
			}
			if !ok {
				t.Errorf("%s: %s is read-only to deploy/plcwatch.service (writable: %v)", file, p, writable)
			}
		}
	}
}
