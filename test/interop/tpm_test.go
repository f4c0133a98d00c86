package interop

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/swtpmtest"
)

// The tests in this file run the interop suites against authd with its keys
// in a TPM (swtpm, started by each test as a child process on a temporary
// state directory; see internal/swtpmtest) and check what only a separate
// authd process shows: refusing to start with another TPM or none, a store
// made without a TPM migrating to it, and swtpm restarting under a running
// authd.

// useTPM makes d run authd with --tpm spec.
func useTPM(t *testing.T, d *daemon, spec string) {
	t.Helper()
	d.tpm = spec
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// startTPM starts swtpm for an interop test, with dictionary-attack
// parameters loose enough for the suites' few wrong PINs (swtpm's defaults,
// 3 failures and 1000 s per forgiven failure, would lock PIN checks for the
// rest of the test; TestTPMPINLockout in ../ covers lockout).
func startTPM(t *testing.T) *swtpmtest.TPM {
	t.Helper()
	skipShort(t)
	sw := swtpmtest.Start(t)
	sw.SetDA(32, 10, 10)
	return sw
}

// backends returns the last "credentials by key backend" counts authd
// logged.
func backends(t *testing.T, d *daemon) (tpm, software int, dataKey string) {
	t.Helper()
	re := regexp.MustCompile(`credentials by key backend" tpm=(\d+) software=(\d+) data_key_sealed_by=(\w+)`)
	m := re.FindAllStringSubmatch(d.stderr.String(), -1)
	if m == nil {
		t.Fatal("authd did not log its key backends")
	}
	last := m[len(m)-1]
	tpm, _ = strconv.Atoi(last[1])
	software, _ = strconv.Atoi(last[2])
	return tpm, software, last[3]
}

// TestTPMPythonFido2 runs TestPythonFido2's python-fido2 phases against
// authd --tpm swtpm:…, then the 3-wrong-PINs block, and restarts.
func TestTPMPythonFido2(t *testing.T) {
	t.Parallel()
	requirePython(t)
	sw := startTPM(t)
	d := newDaemon(t, "allow")
	useTPM(t, d, sw.Spec())
	pythonPhases(t, d)
	const pin = pythonPIN
	if tpm, _, dataKey := backends(t, d); tpm == 0 || dataKey != "tpm" {
		t.Errorf("after the suite: %d TPM credentials, data key sealed by %s", tpm, dataKey)
	}

	// Three wrong PINs in a row block until a reboot; a daemon restart
	// does not clear that; Reset right after a start does.
	out := py(t, d, "block", "--protocol", "2", "--pin", pin)
	m := regexp.MustCompile(`(?m)^RETRIES (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("block phase did not report RETRIES")
	}
	d.restart(t)
	py(t, d, "blocked", "--protocol", "2", "--pin", pin, "--expect-retries", m[1])
	d.restart(t)
	py(t, d, "reset")
	mustPy(t, d, "set-pin", "--protocol", "2", "--pin", pin)
	py(t, d, "pin", "--protocol", "2", "--pin", pin)
	d.stop(t)
	if n := sw.DA().Counter; n == 0 || n >= 32 {
		t.Errorf("TPM DA counter after the suite = %d; want the wrong PINs counted, and no lockout", n)
	}
	assertNoKeyFiles(t, d)
}

// assertNoKeyFiles: with a TPM the state directory holds no master key.
func assertNoKeyFiles(t *testing.T, d *daemon) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(d.stateDir, "master.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("master.key in a TPM state directory: %v", err)
	}
}

// TestTPMLibfido2 runs TestLibfido2's libfido2 sequence against authd
// --tpm swtpm:….
func TestTPMLibfido2(t *testing.T) {
	t.Parallel()
	bin := requireSockdev(t)
	sw := startTPM(t)
	d := newDaemon(t, "allow")
	useTPM(t, d, sw.Spec())
	libfido2Sequence(t, bin, d, func() {
		if tpm, software, _ := backends(t, d); tpm != 2 || software != 1 {
			t.Errorf("backends after the restart: tpm=%d software=%d, want 2 and 1", tpm, software)
		}
	})
	assertNoKeyFiles(t, d)
}

// runAuthd runs authd until it exits by itself (it is expected to refuse to
// start) and returns its exit code and output.
func runAuthd(t *testing.T, d *daemon, spec string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildAuthd(t), "--state-dir", d.stateDir, "--ctaphid-socket", d.sock,
		"--presence", "allow", "--tpm", spec, "--dbus", "none")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("authd --tpm %s: %v (want it to refuse to start)\n%s", spec, err, out)
	}
	return ee.ExitCode(), string(out)
}

// TestTPMProcess: a store made by authd --tpm none migrates to the TPM
// (old credentials keep signing, new ES256 ones are TPM keys, master.key
// goes); swtpm restarting under the running authd costs one failed
// operation; the state directory then refuses another TPM and no TPM with a
// clear error, and works again with its own TPM.
func TestTPMProcess(t *testing.T) {
	t.Parallel()
	bin := requireSockdev(t)
	sw := startTPM(t)
	other := startTPM(t)
	d := newDaemon(t, "allow")
	dir := t.TempDir()
	f := func(name string) string { return filepath.Join(dir, name) }
	c := func(want []string, args ...string) string { return sockdev(t, bin, d, want, args...) }

	// Software mode.
	useTPM(t, d, "none")
	d.start(t)
	c([]string{"make-cred: ok type=es256 rk=1"}, "make-cred", "--rk", "--alg", "es256", "--user", "old-es", "--cred", f("old-es"))
	c([]string{"make-cred: ok type=eddsa"}, "make-cred", "--alg", "eddsa", "--cred", f("old-ed"))
	d.stop(t)
	if _, err := os.Stat(filepath.Join(d.stateDir, "master.key")); err != nil {
		t.Fatalf("software mode: %v", err)
	}

	// The same state directory with the TPM.
	useTPM(t, d, sw.Spec())
	d.start(t)
	c([]string{"verify=FIDO_ERR_SUCCESS type=es256"}, "get-assert", "--cred", f("old-es"))
	c([]string{"verify=FIDO_ERR_SUCCESS type=eddsa"}, "get-assert", "--cred", f("old-ed"))
	c([]string{"make-cred: ok type=es256"}, "make-cred", "--alg", "es256", "--cred", f("new-es"))
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("new-es"))
	if tpm, software, dataKey := backends(t, d); tpm != 0 || software != 2 || dataKey != "tpm" {
		t.Errorf("after migration: tpm=%d software=%d data key %s; want 0, 2, tpm", tpm, software, dataKey)
	}
	for _, want := range []string{"data key rotated and sealed by the new sealer", "removed the software master key"} {
		if !strings.Contains(d.stderr.String(), want) {
			t.Errorf("authd did not log %q", want)
		}
	}
	assertNoKeyFiles(t, d)

	// swtpm restarts under the running authd: the next TPM operation fails
	// with a CTAP error (CTAP1_ERR_OTHER), the one after works.
	sw.Restart()
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_ERR_OTHER"},
		"get-assert", "--cred", f("new-es"), "--expect", "FIDO_ERR_ERR_OTHER")
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("new-es"))
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("old-es"))

	d.restart(t)
	if tpm, software, _ := backends(t, d); tpm != 1 || software != 2 {
		t.Errorf("after restart: tpm=%d software=%d; want 1 and 2", tpm, software)
	}
	d.stop(t)

	// Another TPM, or none: authd refuses to start and says why.
	for _, c := range []struct{ spec, want string }{
		{other.Spec(), "sealed by another TPM"},
		{"none", "sealed by a TPM, but authd runs without one"},
	} {
		code, out := runAuthd(t, d, c.spec)
		if code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("authd --tpm %s on a TPM-bound state: exit %d, want 1 and %q in:\n%s", c.spec, code, c.want, out)
		}
	}
	assertNoKeyFiles(t, d)

	// Its own TPM, restarted: everything works.
	sw.Restart()
	useTPM(t, d, sw.Spec())
	d.start(t)
	for _, name := range []string{"old-es", "old-ed", "new-es"} {
		c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f(name))
	}
	d.stop(t)
}
