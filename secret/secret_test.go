package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorsDoNotRepeatTheName: a password written where its file's or
// variable's name belongs is not in the error, which names the key.
func TestErrorsDoNotRepeatTheName(t *testing.T) {
	const planted = "S3cr3t-PW-xyz"
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600)
	t.Setenv("PLCWATCH_SECRET_EMPTY", "")
	for _, tc := range []struct{ name, file, env, key, want string }{
		{"missing file", filepath.Join(dir, planted), "", "auth.password_file", "cannot be read"},
		{"bare name", planted, "", "auth.password_file", "cannot be read"},
		{"empty file", filepath.Join(dir, "empty"), "", "auth.password_file", "is empty"},
		{"unset variable", "", planted, "auth.password_env", "no variable of that name"},
		{"empty variable", "", "PLCWATCH_SECRET_EMPTY", "auth.password_env", "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FileOrEnv("auth", tc.file, tc.env)
			var se *Error
			if !errors.As(err, &se) || se.Key != tc.key || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), planted) {
				t.Errorf("%v", err)
			}
		})
	}
	os.WriteFile(filepath.Join(dir, "pw"), []byte("hunter2\r\nsecond line\n"), 0o600)
	t.Setenv("PLCWATCH_SECRET_SET", "hunter3")
	if pw, err := FileOrEnv("auth", filepath.Join(dir, "pw"), ""); pw != "hunter2" || err != nil {
		t.Errorf("file: %q, %v", pw, err)
	}
	if pw, err := FileOrEnv("auth", "", "PLCWATCH_SECRET_SET"); pw != "hunter3" || err != nil {
		t.Errorf("env: %q, %v", pw, err)
	}
	if pw, err := FileOrEnv("auth", "", ""); pw != "" || err != nil {
		t.Errorf("neither: %q, %v", pw, err)
	}
}
