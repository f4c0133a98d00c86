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
		{[]string{"--presence", "maybe", "--state-dir", t.TempDir()}, 1, "auto, notify, pinentry[:PATH], terminal, command:PATH, allow or deny"},
		{[]string{"--presence", "command:relative/path", "--state-dir", t.TempDir()}, 1, "absolute"},
		{[]string{"--tpm", "tpm2"}, 2, "want auto, none, required"},
		{[]string{"--tpm", "swtpm:"}, 2, "--tpm"},
		{[]string{"--presence", "deny", "--tpm", "swtpm:/nonexistent/swtpm.sock", "--state-dir", t.TempDir()}, 1, "no usable TPM"},
		{[]string{"--presence", "deny", "--tpm", "/nonexistent/tpmrm0", "--state-dir", t.TempDir()}, 1, "no usable TPM"},
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

// TestTPMRequired: without a usable /dev/tpmrm0, --tpm required refuses to
// start and says why.
func TestTPMRequired(t *testing.T) {
	if _, err := os.Stat("/dev/tpmrm0"); err == nil {
		t.Skip("this machine has /dev/tpmrm0")
	}
	var stderr bytes.Buffer
	code := run([]string{"--presence", "deny", "--tpm", "required", "--state-dir", t.TempDir()}, os.Stdin, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "/dev/tpmrm0") || !strings.Contains(stderr.String(), "no usable TPM") {
		t.Fatalf("--tpm required without a TPM: exit %d, stderr %q", code, stderr.String())
	}
}
