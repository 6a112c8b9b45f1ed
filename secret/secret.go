// Package secret reads passwords from the files and environment variables
// a configuration names (mqtt.password_file, mqtt.embedded.users[].
// password_env, opcua.devices[].auth.password_file, ...), with errors that
// never repeat the name written there: an operator who wrote the password
// itself where its file's or variable's name belongs must not see it echoed
// into config check, a log or a metric (issues 8 and 10).
package secret

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Error is a password_file or password_env that gives no password. Key is
// the configuration key as the caller names it (like
// "opcua.devices[0].auth.password_file", or "auth.password_file" for a
// caller that prefixes it); Msg says what is wrong without the key's value.
type Error struct{ Key, Msg string }

func (e *Error) Error() string { return e.Key + ": " + e.Msg }

// NotRepeated is the reason every message here gives for not naming the
// file or variable.
const NotRepeated = "the name is not repeated here: it might be the password itself"

// File reads the password in the file at path: its first line, without the
// line ending. Errors are *Error for key.
func File(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", &Error{key, fmt.Sprintf("the file it names cannot be read: %v (%s)", err, NotRepeated)}
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimRight(pw, "\r")
	if pw == "" {
		return "", &Error{key, "the file it names is empty"}
	}
	return pw, nil
}

// Env reads the password in the environment variable name. Errors are
// *Error for key.
func Env(key, name string) (string, error) {
	pw, ok := os.LookupEnv(name)
	switch {
	case !ok:
		return "", &Error{key, "the environment has no variable of that name (" + NotRepeated + ")"}
	case pw == "":
		return "", &Error{key, "the variable it names is empty"}
	}
	return pw, nil
}

// FileOrEnv reads the password from file when it is set, else from the
// variable env when it is set; "" and no error when neither is. prefix is
// the configuration path of the mapping holding the two keys, like
// "mqtt" or "auth"; errors name prefix+".password_file" or
// prefix+".password_env".
func FileOrEnv(prefix, file, env string) (string, error) {
	switch {
	case file != "":
		return File(prefix+".password_file", file)
	case env != "":
		return Env(prefix+".password_env", env)
	}
	return "", nil
}
