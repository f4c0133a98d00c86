package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// python is the Debian interpreter that has python3-fido2; a python3 earlier
// on PATH (pyenv) usually does not.
const python = "/usr/bin/python3"

// resetWindow is how long after start authd accepts authenticatorReset.
const resetWindow = 10 * time.Second

var (
	workDir string // removed after all tests; holds the built binaries

	authdOnce sync.Once
	authdBin  string
	authdErr  error

	sockdevOnce sync.Once
	sockdevBin  string
	sockdevErr  error

	pyOnce sync.Once
	pyErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "authd-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// missing skips the test, or fails it when CI is set: CI machines must run
// every interop test, and scripts/test.sh installs the tools.
func missing(t *testing.T, tool string, err error) {
	t.Helper()
	msg := fmt.Sprintf("missing tool %s; run scripts/test.sh which installs it (%v)", tool, err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("interop tests start the daemon and external clients; skipped with -short")
	}
}

func requirePython(t *testing.T) {
	t.Helper()
	skipShort(t)
	pyOnce.Do(func() {
		out, err := exec.Command(python, "-c", "import fido2; print(fido2.__version__)").CombinedOutput()
		if err != nil {
			pyErr = fmt.Errorf("%s -c 'import fido2': %v: %s", python, err, bytes.TrimSpace(out))
		}
	})
	if pyErr != nil {
		missing(t, "python3-fido2", pyErr)
	}
}

func requireSockdev(t *testing.T) string {
	t.Helper()
	skipShort(t)
	sockdevOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			sockdevErr = fmt.Errorf("gcc: %w", err)
			return
		}
		flags, err := exec.Command("pkg-config", "--cflags", "--libs", "libfido2").Output()
		if err != nil {
			sockdevErr = fmt.Errorf("pkg-config --cflags --libs libfido2: %w", err)
			return
		}
		src, err := filepath.Abs("fido2_sockdev.c")
		if err != nil {
			sockdevErr = err
			return
		}
		out := filepath.Join(workDir, "fido2_sockdev")
		args := append([]string{"-Wall", "-Werror", "-o", out, src}, strings.Fields(string(flags))...)
		if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			// A compile error is a bug in this package, not a missing tool.
			sockdevErr = fmt.Errorf("compile: gcc %s: %v\n%s", strings.Join(args, " "), err, b)
			return
		}
		sockdevBin = out
	})
	if sockdevErr != nil {
		if strings.HasPrefix(sockdevErr.Error(), "compile:") {
			t.Fatal(sockdevErr)
		}
		missing(t, "libfido2-dev, pkg-config and gcc", sockdevErr)
	}
	return sockdevBin
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// buildAuthd builds ./cmd/authd once per test binary (with -race when the
// tests themselves run with -race).
func buildAuthd(t *testing.T) string {
	t.Helper()
	authdOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			authdErr = err
			return
		}
		gobin := "go"
		if p, err := exec.LookPath("go"); err == nil {
			gobin = p
		}
		out := filepath.Join(workDir, "authd")
		args := []string{"build", "-o", out}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/authd")
		cmd := exec.Command(gobin, args...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			authdErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
			return
		}
		authdBin = out
	})
	if authdErr != nil {
		t.Fatal(authdErr)
	}
	return authdBin
}

// syncBuffer collects the daemon's stderr across restarts.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// daemon is one authd state directory and socket, started and stopped
// (possibly several times) by a test.
type daemon struct {
	bin      string
	stateDir string
	sock     string
	presence string
	tpm      string // --tpm value; "" means none
	stderr   syncBuffer
	runs     int

	cmd    *exec.Cmd
	ready  time.Time // when the socket first accepted a connection
	exited chan struct{}
	err    error // Wait result, valid after exited is closed
}

func newDaemon(t *testing.T, presence string) *daemon {
	t.Helper()
	skipShort(t)
	bin := buildAuthd(t)
	// sun_path is limited to 108 bytes; t.TempDir() paths can be long.
	sockDir, err := os.MkdirTemp("", "authd-sock-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		bin:      bin,
		stateDir: filepath.Join(t.TempDir(), "state"), // authd creates it 0700
		sock:     filepath.Join(sockDir, "ctaphid.sock"),
		presence: presence,
	}
	t.Cleanup(func() {
		if d.cmd != nil && !d.isExited() {
			d.cmd.Process.Kill()
			<-d.exited
		}
		os.RemoveAll(sockDir)
		if t.Failed() {
			t.Logf("authd stderr (%d run(s)):\n%s", d.runs, d.stderr.String())
		}
	})
	return d
}

func (d *daemon) isExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

func (d *daemon) start(t *testing.T) {
	t.Helper()
	d.runs++
	fmt.Fprintf(&d.stderr, "===== authd run %d: --presence %s =====\n", d.runs, d.presence)
	// --tpm none: these suites test the software keystore, and on a machine
	// with a real TPM their wrong-PIN sequences must not count against its
	// dictionary-attack lockout (tpm_test.go covers the TPM on swtpm).
	tpmSpec := d.tpm
	if tpmSpec == "" {
		tpmSpec = "none"
	}
	cmd := exec.Command(d.bin, "--state-dir", d.stateDir, "--ctaphid-socket", d.sock,
		"--presence", d.presence, "--tpm", tpmSpec, "--dbus", "none")
	cmd.Stdout = &d.stderr
	cmd.Stderr = &d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start authd: %v", err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		if d.isExited() {
			t.Fatalf("authd exited before serving: %v (stderr below)", d.err)
		}
		c, err := net.DialTimeout("unix", d.sock, time.Second)
		if err == nil {
			c.Close()
			d.ready = time.Now()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("authd socket %s not accepting after 20s: %v", d.sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires a clean exit (status 0, no race report,
// no panic, socket removed).
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		t.Fatalf("authd did not exit within 15s of SIGTERM")
	}
	if d.err != nil {
		t.Errorf("authd run %d did not exit cleanly after SIGTERM: %v", d.runs, d.err)
	}
	logs := d.stderr.String()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if strings.Contains(logs, bad) {
			t.Errorf("authd stderr contains %q", bad)
		}
	}
	if _, err := os.Stat(d.sock); err == nil {
		t.Errorf("authd left its socket %s behind after SIGTERM", d.sock)
	}
}

func (d *daemon) restart(t *testing.T) {
	t.Helper()
	d.stop(t)
	d.start(t)
}

// run executes a client and logs its output; it reports whether it exited 0.
func run(t *testing.T, name string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	start := time.Now()
	b, err := cmd.CombinedOutput()
	out := string(b)
	t.Logf("$ %s %s  (%.1fs)\n%s", filepath.Base(name), strings.Join(args, " "),
		time.Since(start).Seconds(), out)
	if err != nil {
		return out, false
	}
	return out, true
}

var failLine = regexp.MustCompile(`(?m)^FAIL.*$`)

// py runs one fido2_client.py phase against d; any failed check fails t.
func py(t *testing.T, d *daemon, phase string, args ...string) string {
	t.Helper()
	script, err := filepath.Abs("fido2_client.py")
	if err != nil {
		t.Fatal(err)
	}
	out, ok := run(t, python, append([]string{script, d.sock, phase}, args...)...)
	if !ok || !strings.Contains(out, "RESULT "+phase) {
		fails := failLine.FindAllString(out, -1)
		t.Errorf("python phase %s %v failed:\n%s", phase, args, strings.Join(fails, "\n"))
	}
	return out
}

// mustPy is py for phases later steps depend on.
func mustPy(t *testing.T, d *daemon, phase string, args ...string) string {
	t.Helper()
	out := py(t, d, phase, args...)
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// sockdev runs one fido2_sockdev command against d and checks that every
// expected substring is in its output.
func sockdev(t *testing.T, bin string, d *daemon, want []string, args ...string) string {
	t.Helper()
	out, ok := run(t, bin, append([]string{d.sock}, args...)...)
	if !ok {
		fails := failLine.FindAllString(out, -1)
		t.Errorf("fido2_sockdev %v failed:\n%s", args, strings.Join(fails, "\n"))
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("fido2_sockdev %v: output lacks %q", args, w)
		}
	}
	return out
}

func waitUntil(t *testing.T, when time.Time) {
	t.Helper()
	if d := time.Until(when); d > 0 {
		t.Logf("sleeping %v", d.Round(time.Millisecond))
		time.Sleep(d)
	}
}

// TestPythonFido2 runs the python-fido2 scenario suite for both PIN/UV auth
// protocols, then restarts the daemon and checks that credentials and the
// PIN survived.
func TestPythonFido2(t *testing.T) {
	t.Parallel()
	requirePython(t)
	d := newDaemon(t, "allow")
	pythonPhases(t, d)
	d.stop(t)
}

// pythonPIN is the PIN pythonPhases sets.
const pythonPIN = "31415926"

// pythonPhases starts d and runs the python-fido2 phases shared by the
// software and the TPM suites: info, malformed input, selection, MC/GA
// without a PIN, PIN policy and set-PIN, PIN protocols 1 and 2 (tokens,
// MC/GA, credential management), then a restart after which every
// credential and the PIN survived. d is left running.
func pythonPhases(t *testing.T, d *daemon) {
	t.Helper()
	dir := t.TempDir()
	stNoPin := filepath.Join(dir, "nopin.json")

	d.start(t)
	py(t, d, "info", "--expect-pin", "unset", "--expect-retries", "8")
	py(t, d, "malformed")
	py(t, d, "selection")
	py(t, d, "mc-ga", "--rp", "nopin.example", "--state", stNoPin)
	py(t, d, "pin-policy", "--protocol", "1")
	py(t, d, "pin-policy", "--protocol", "2")
	mustPy(t, d, "set-pin", "--protocol", "1", "--pin", pythonPIN)
	py(t, d, "info", "--expect-pin", "set", "--expect-retries", "8")
	var states []string
	for _, p := range []string{"1", "2"} {
		st := filepath.Join(dir, "p"+p+".json")
		states = append(states, st)
		py(t, d, "pin", "--protocol", p, "--pin", pythonPIN)
		py(t, d, "mc-ga", "--protocol", p, "--pin", pythonPIN, "--rp", "p"+p+".example", "--state", st)
		py(t, d, "credman", "--protocol", p, "--pin", pythonPIN)
	}

	d.restart(t)
	py(t, d, "info", "--expect-pin", "set", "--expect-retries", "8")
	for _, st := range append([]string{stNoPin}, states...) {
		py(t, d, "persist", "--state", st)
	}
	py(t, d, "pin", "--protocol", "2", "--pin", pythonPIN)
}

// TestPINAuthBlocked checks that three wrong PINs give PIN_AUTH_BLOCKED and
// that restarting the daemon (same boot) does not clear it; Reset right
// after a start does.
func TestPINAuthBlocked(t *testing.T) {
	t.Parallel()
	requirePython(t)
	d := newDaemon(t, "allow")
	const pin = "271828"

	d.start(t)
	mustPy(t, d, "set-pin", "--protocol", "2", "--pin", pin)
	out := py(t, d, "block", "--protocol", "2", "--pin", pin)
	m := regexp.MustCompile(`(?m)^RETRIES (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("block phase did not report RETRIES")
	}
	retries, _ := strconv.Atoi(m[1])

	d.restart(t)
	py(t, d, "blocked", "--protocol", "1", "--pin", pin, "--expect-retries", strconv.Itoa(retries))
	py(t, d, "blocked", "--protocol", "2", "--pin", pin, "--expect-retries", strconv.Itoa(retries))

	d.restart(t)
	py(t, d, "reset")
	mustPy(t, d, "set-pin", "--protocol", "1", "--pin", pin)
	py(t, d, "pin", "--protocol", "1", "--pin", pin)
	d.stop(t)
}

// TestResetWindow checks that Reset works right after start and is refused
// with NOT_ALLOWED more than 10 s after start. This is the one test that
// sleeps through the window.
func TestResetWindow(t *testing.T) {
	t.Parallel()
	requirePython(t)
	d := newDaemon(t, "allow")
	st := filepath.Join(t.TempDir(), "seed.json")

	d.start(t)
	mustPy(t, d, "seed", "--rp", "seed.example", "--state", st)
	if time.Since(d.ready) > resetWindow-time.Second {
		t.Fatalf("seeding took %v; too slow to test Reset inside the %v window", time.Since(d.ready), resetWindow)
	}
	py(t, d, "reset", "--state", st)

	waitUntil(t, d.ready.Add(resetWindow+time.Second))
	py(t, d, "reset-late")

	d.restart(t)
	mustPy(t, d, "seed", "--rp", "seed.example", "--state", st)
	py(t, d, "reset", "--state", st)
	d.stop(t)
}

// TestPresenceCommand runs the daemon with --presence command:SCRIPT and
// checks what the script was asked and that a refusal is OPERATION_DENIED.
func TestPresenceCommand(t *testing.T) {
	t.Parallel()
	requirePython(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "presence.log")
	script := filepath.Join(dir, "presence.sh")
	body := "#!/bin/sh\n" +
		"printf '%s|%s|%s\\n' \"$AUTHD_OPERATION\" \"$AUTHD_RP_ID\" \"$AUTHD_USER_NAME\" >> " + logPath + "\n" +
		"[ \"$AUTHD_RP_ID\" = deny.example ] && exit 1\n" +
		"exit 0\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, "command:"+script)
	d.start(t)
	py(t, d, "presence")
	d.stop(t)

	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("presence script never ran: %v", err)
	}
	log := string(b)
	t.Logf("presence.log:\n%s", log)
	for _, want := range []string{
		"makeCredential|allow.example|carol\n",
		"makeCredential|deny.example|dave\n",
		"getAssertion|allow.example|",
		"credentialExcluded|allow.example|",
		"selection|",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("presence.log lacks %q", want)
		}
	}
	if n := strings.Count(log, "getAssertion|"); n != 1 {
		t.Errorf("presence asked %d times for getAssertion, want 1 (up=false must not prompt)", n)
	}
}

// TestLibfido2 drives the daemon through libfido2's client logic
// (fido2_sockdev.c) and checks persistence across a restart.
func TestLibfido2(t *testing.T) {
	t.Parallel()
	bin := requireSockdev(t)
	d := newDaemon(t, "allow")
	libfido2Sequence(t, bin, d, nil)
}

// libfido2Sequence drives d (not yet started) through libfido2's client
// logic: make/get with both algorithms, discoverable credentials, excluded
// credentials, PIN set/change/retries, credential management, persistence
// across a restart (afterRestart, if set, checks more there) and Reset right
// after start. The daemon is stopped at the end.
func libfido2Sequence(t *testing.T, bin string, d *daemon, afterRestart func()) {
	dir := t.TempDir()
	f := func(name string) string { return filepath.Join(dir, name) }
	c := func(want []string, args ...string) string { return sockdev(t, bin, d, want, args...) }

	d.start(t)
	c([]string{"info: version FIDO_2_0", "info: option clientPin=false", "info: option rk=true",
		"info: algorithm public-key -8", "info: pin protocol 2"}, "info")
	c([]string{"make-cred: ok type=es256"}, "make-cred", "--alg", "es256", "--cred", f("es256"))
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("es256"))
	c([]string{"make-cred: ok type=eddsa rk=1"}, "make-cred", "--rk", "--alg", "eddsa", "--user", "bob",
		"--cred", f("eddsa-rk"))
	c([]string{"verify=FIDO_ERR_SUCCESS type=eddsa"}, "get-assert", "--cred", f("eddsa-rk"))
	c([]string{"get-assert: ok count=1"}, "get-assert", "--discoverable", "--cred", f("eddsa-rk"))
	c([]string{"expected-error: fido_dev_make_cred FIDO_ERR_UNSUPPORTED_ALGORITHM"},
		"make-cred", "--alg", "rs256", "--expect", "FIDO_ERR_UNSUPPORTED_ALGORITHM")
	c([]string{"expected-error: fido_dev_make_cred FIDO_ERR_CREDENTIAL_EXCLUDED"},
		"make-cred", "--exclude", f("es256"), "--expect", "FIDO_ERR_CREDENTIAL_EXCLUDED")
	c([]string{"retries: 8"}, "retries", "--expect-retries", "8")

	c([]string{"set-pin: ok"}, "set-pin", "--pin", "1234")
	c([]string{"info: option clientPin=true"}, "info")
	c([]string{"expected-error: fido_dev_set_pin FIDO_ERR_PIN_AUTH_INVALID"},
		"set-pin", "--pin", "4321", "--expect", "FIDO_ERR_PIN_AUTH_INVALID")
	const rp = "pin.example.org"
	c([]string{"make-cred: ok type=es256 rk=1"}, "make-cred", "--rk", "--pin", "1234", "--rp", rp,
		"--user", "carol", "--cred", f("carol"))
	c([]string{"make-cred: ok type=eddsa rk=1"}, "make-cred", "--rk", "--pin", "1234", "--alg", "eddsa",
		"--rp", rp, "--user", "dave", "--cred", f("dave"))
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--pin", "1234", "--cred", f("carol"))
	c([]string{"get-assert: ok count=2"}, "get-assert", "--discoverable", "--pin", "1234", "--rp", rp,
		"--cred", f("carol"), "--cred", f("dave"))
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_PIN_INVALID"},
		"get-assert", "--pin", "9999", "--cred", f("carol"), "--expect", "FIDO_ERR_PIN_INVALID")
	c([]string{"retries: 7"}, "retries", "--expect-retries", "7")
	c([]string{"change-pin: ok"}, "change-pin", "--pin", "1234", "--new-pin", "56789")
	c([]string{"retries: 8"}, "retries", "--expect-retries", "8")
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_PIN_INVALID"},
		"get-assert", "--pin", "1234", "--cred", f("carol"), "--expect", "FIDO_ERR_PIN_INVALID")
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--pin", "56789", "--cred", f("carol"))
	c([]string{"credman: metadata existing=3", "credman: rp " + rp, "credman: rk count=2",
		"credman: update ok", "credman: delete ok (count=1)",
		"credman: delete again -> FIDO_ERR_NO_CREDENTIALS"},
		"credman", "--pin", "56789", "--rp", rp, "--cred", f("dave"))
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_NO_CREDENTIALS"},
		"get-assert", "--cred", f("dave"), "--expect", "FIDO_ERR_NO_CREDENTIALS")

	// Restart: everything persists; Reset right after start wipes it.
	d.restart(t)
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("es256"))
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--pin", "56789", "--cred", f("carol"))
	if afterRestart != nil {
		afterRestart()
	}
	c([]string{"reset: ok"}, "reset")
	c([]string{"info: option clientPin=false"}, "info")
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_NO_CREDENTIALS"},
		"get-assert", "--cred", f("es256"), "--expect", "FIDO_ERR_NO_CREDENTIALS")
	d.stop(t)
}
