package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, ""},
		{[]string{"--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"--log-level", "loud"}, 2, "--log-level"},
		{[]string{"--presence", "maybe", "--state-dir", t.TempDir()}, 1, "auto, terminal, command:PATH, allow or deny"},
		{[]string{"--presence", "command:relative/path", "--state-dir", t.TempDir()}, 1, "absolute"},
	} {
		var stderr bytes.Buffer
		if code := run(c.args, os.Stdin, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("authd %v: exit %d, stderr %q; want exit %d containing %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	if v := parseVersion("1.2.3"); v != [3]byte{1, 2, 3} {
		t.Fatal(v)
	}
}
