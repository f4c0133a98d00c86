// Package fprinttest runs a real fprintd for tests: a private dbus-daemon
// playing the system bus, python-dbusmock's polkitd template (allowing every
// action), and fprintd with libfprint's virtual fingerprint device
// (FP_VIRTUAL_DEVICE) listening on a socket in a temporary directory.
//
// The recipe and its pitfalls are in ../shared/reference/test-recipes.md §6:
//
//   - libfprint creates the virtual device's socket when the device is opened,
//     i.e. on fprintd's Claim, and removes it when the device is closed
//     (Release). Send therefore retries until the socket accepts a connection.
//   - One command per connection: the driver reads once and closes, so Send
//     waits for EOF before it returns.
//   - SCAN, RETRY, ERROR... are queued and consumed by the running or the next
//     enroll/verify; a SCAN queued after Claim but before VerifyStart is used.
//   - Claims belong to the D-Bus connection that made them.
//
// Every daemon is a child process of the test binary; t.Cleanup kills each by
// its PID and reaps it. When a tool is missing the test is skipped, unless the
// CI environment variable is set, in which case it fails.
package fprinttest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// Bus names of the daemons the harness starts.
const (
	FprintName = "net.reactivated.Fprint"
	PolkitName = "org.freedesktop.PolicyKit1"
)

// startTimeout bounds the start of each daemon.
const startTimeout = 20 * time.Second

// Env is a running fprintd on a private system bus.
type Env struct {
	// Addr is the D-Bus address of the private system bus.
	Addr string
	// Dir is the temporary directory holding the bus socket, the virtual
	// device socket, fprintd's print store (STATE_DIRECTORY) and the logs.
	Dir string
	// Socket is the virtual device's socket (FP_VIRTUAL_DEVICE).
	Socket string
	// StateDir is fprintd's print store.
	StateDir string

	t       testing.TB
	logs    []*procLog
	fprintd *proc
}

// Options change what Start starts.
type Options struct {
	// NoFprintd starts only the bus and the polkit mock (to test "no
	// fprintd").
	NoFprintd bool
	// Env is added to fprintd's environment.
	Env []string
}

type procLog struct {
	name string
	path string
}

// Start starts dbus-daemon, the polkitd mock and fprintd, and returns when
// fprintd owns net.reactivated.Fprint. Everything is stopped in t.Cleanup.
func Start(t testing.TB) *Env {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opt Options) *Env {
	t.Helper()
	tools := need(t)

	// A short directory: unix socket paths are limited to 108 bytes and
	// t.TempDir() embeds the test name.
	dir, err := os.MkdirTemp("", "fpt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	e := &Env{
		Dir:      dir,
		Socket:   filepath.Join(dir, "fp.sock"),
		StateDir: filepath.Join(dir, "state"),
		t:        t,
	}
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpLogs()
		}
	})
	if err := os.Mkdir(e.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}

	e.startBus(tools.dbusDaemon)

	conn, err := dbus.Connect(e.Addr)
	if err != nil {
		t.Fatalf("fprinttest: connect to private bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })

	env := append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+e.Addr)
	polkit := e.spawn("polkitd-mock", env, tools.python, "-m", "dbusmock", "--system", "--template", "polkitd")
	e.waitName(conn, PolkitName, polkit)
	if err := conn.Object(PolkitName, "/org/freedesktop/PolicyKit1/Authority").
		Call("org.freedesktop.DBus.Mock.AllowUnknown", 0, true).Err; err != nil {
		t.Fatalf("fprinttest: polkit mock AllowUnknown: %v", err)
	}

	if opt.NoFprintd {
		return e
	}
	fenv := append(env,
		"FP_VIRTUAL_DEVICE="+e.Socket,
		"STATE_DIRECTORY="+e.StateDir,
		"G_MESSAGES_DEBUG=all",
	)
	fenv = append(fenv, opt.Env...)
	e.fprintd = e.spawn("fprintd", fenv, tools.fprintd, "--no-timeout")
	e.waitName(conn, FprintName, e.fprintd)
	return e
}

// KillFprintd kills fprintd (SIGKILL, by PID) and waits for it to exit, to
// test a daemon that goes away mid-operation.
func (e *Env) KillFprintd() {
	if e.fprintd == nil {
		return
	}
	_ = e.fprintd.cmd.Process.Kill()
	<-e.fprintd.exited
}

// Conn opens a new connection to the private system bus, closed in
// t.Cleanup. Each connection holds its own fprintd claim.
func (e *Env) Conn(t testing.TB) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(e.Addr)
	if err != nil {
		t.Fatalf("fprinttest: connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// AllowAll makes the polkit mock allow every action again.
func (e *Env) AllowAll() error {
	c, err := dbus.Connect(e.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Object(PolkitName, "/org/freedesktop/PolicyKit1/Authority").
		Call("org.freedesktop.DBus.Mock.AllowUnknown", 0, true).Err
}

// SetAllowed makes the polkit mock allow exactly the given actions (for
// example "net.reactivated.fprint.device.verify") and deny every other one.
// Start allows everything.
func (e *Env) SetAllowed(actions ...string) error {
	c, err := dbus.Connect(e.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	obj := c.Object(PolkitName, "/org/freedesktop/PolicyKit1/Authority")
	if err := obj.Call("org.freedesktop.DBus.Mock.AllowUnknown", 0, false).Err; err != nil {
		return err
	}
	if actions == nil {
		actions = []string{}
	}
	return obj.Call("org.freedesktop.DBus.Mock.SetAllowed", 0, actions).Err
}

// Send sends one command to the virtual device and waits until the driver
// has read it (EOF). The socket only exists while fprintd has the device
// open (between Claim and Release), so Send retries connecting until ctx
// ends. The reply, if any (LIST), is returned.
func (e *Env) Send(ctx context.Context, cmd string) (string, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", e.Socket)
		if err == nil {
			defer c.Close()
			if dl, ok := ctx.Deadline(); ok {
				c.SetDeadline(dl)
			}
			if _, err := c.Write([]byte(cmd)); err != nil {
				return "", fmt.Errorf("fprinttest: send %q: %w", cmd, err)
			}
			// Half-close is not needed: the driver reads once and closes.
			var buf bytes.Buffer
			_, err := buf.ReadFrom(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				return buf.String(), fmt.Errorf("fprinttest: send %q: waiting for EOF: %w", cmd, err)
			}
			return buf.String(), nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("fprinttest: send %q: %w (last: %v)", cmd, ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// MustSend is Send with a 10 s timeout that fails the test on error.
func (e *Env) MustSend(t testing.TB, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := e.Send(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Scan queues a scan of the print id (same id = same finger).
func (e *Env) Scan(t testing.TB, id string) { t.Helper(); e.MustSend(t, "SCAN "+id) }

// Retry queues a retry result: 0 general, 1 too short, 2 not centred,
// 3 remove and retry.
func (e *Env) Retry(t testing.TB, n int) { t.Helper(); e.MustSend(t, fmt.Sprintf("RETRY %d", n)) }

// Error queues a device error (libfprint's FpDeviceError number).
func (e *Env) Error(t testing.TB, n int) { t.Helper(); e.MustSend(t, fmt.Sprintf("ERROR %d", n)) }

// SetEnrollStages sets the number of enroll stages (default 5). It applies
// to the open device, so send it after Claim.
func (e *Env) SetEnrollStages(t testing.TB, n int) {
	t.Helper()
	e.MustSend(t, fmt.Sprintf("SET_ENROLL_STAGES %d", n))
}

// SetScanType sets "press" or "swipe" (the virtual device's default).
func (e *Env) SetScanType(t testing.TB, typ string) { t.Helper(); e.MustSend(t, "SET_SCAN_TYPE "+typ) }

// WaitSocket waits until the virtual device's socket exists, i.e. until
// some connection has claimed the device.
func (e *Env) WaitSocket(ctx context.Context) error {
	for {
		if _, err := os.Stat(e.Socket); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ---- processes ----

type tools struct {
	dbusDaemon, python, fprintd string
}

// need finds the tools or skips (fails with CI set).
func need(t testing.TB) tools {
	t.Helper()
	var missing []string
	var tl tools
	var err error
	if tl.dbusDaemon, err = exec.LookPath("dbus-daemon"); err != nil {
		missing = append(missing, "dbus-daemon")
	}
	// /usr/bin/python3 first: a python3 earlier on PATH (pyenv) may lack
	// the Debian python3-dbusmock module.
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if lp, err := exec.LookPath(p); err == nil {
			if exec.Command(lp, "-c", "import dbusmock").Run() == nil {
				tl.python = lp
				break
			}
		}
	}
	if tl.python == "" {
		missing = append(missing, "python3-dbusmock")
	}
	cands := []string{"/usr/libexec/fprintd", "/usr/lib/fprintd/fprintd", "/usr/lib/fprintd"}
	if p := os.Getenv("FPRINTD"); p != "" {
		cands = []string{p}
	}
	for _, p := range cands {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			tl.fprintd = p
			break
		}
	}
	if tl.fprintd == "" {
		missing = append(missing, "fprintd")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("fprinttest: missing %s (Debian: apt-get install fprintd python3-dbusmock dbus-daemon)", strings.Join(missing, ", "))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return tl
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// spawn starts a child whose output goes to a log file in e.Dir, and kills
// it by PID in t.Cleanup.
func (e *Env) spawn(name string, env []string, path string, args ...string) *proc {
	t := e.t
	t.Helper()
	logPath := filepath.Join(e.Dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Dir = e.Dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("fprinttest: start %s: %v", name, err)
	}
	lf.Close()
	e.logs = append(e.logs, &procLog{name: name, path: logPath})
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// startBus starts dbus-daemon with a system-bus config and reads its address
// from --print-address on an extra fd.
func (e *Env) startBus(path string) {
	t := e.t
	t.Helper()
	sock := filepath.Join(e.Dir, "system_bus_socket")
	conf := filepath.Join(e.Dir, "system.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(e.Dir, "dbus-daemon.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=3")
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("fprinttest: start dbus-daemon: %v", err)
	}
	w.Close()
	lf.Close()
	e.logs = append(e.logs, &procLog{name: "dbus-daemon", path: logPath})
	p := &proc{name: "dbus-daemon", cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop() })

	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		r.Close()
		ch <- res{strings.TrimSpace(line), err}
	}()
	select {
	case got := <-ch:
		if got.line == "" {
			t.Fatalf("fprinttest: dbus-daemon printed no address (%v); log:\n%s", got.err, readTail(logPath))
		}
		e.Addr = got.line
	case <-time.After(startTimeout):
		t.Fatalf("fprinttest: dbus-daemon did not print its address in %v; log:\n%s", startTimeout, readTail(logPath))
	}
}

// waitName waits until name has an owner on the bus, watching
// NameOwnerChanged (no sleeps), or fails when p exits first.
func (e *Env) waitName(conn *dbus.Conn, name string, p *proc) {
	t := e.t
	t.Helper()
	ch := make(chan *dbus.Signal, 16)
	conn.Signal(ch)
	defer conn.RemoveSignal(ch)
	opts := []dbus.MatchOption{
		dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, name),
	}
	if err := conn.AddMatchSignal(opts...); err != nil {
		t.Fatalf("fprinttest: AddMatch: %v", err)
	}
	defer conn.RemoveMatchSignal(opts...)

	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err != nil {
		t.Fatalf("fprinttest: NameHasOwner: %v", err)
	}
	timeout := time.After(startTimeout)
	for !has {
		select {
		case s := <-ch:
			if s.Name == "org.freedesktop.DBus.NameOwnerChanged" && len(s.Body) == 3 {
				if n, _ := s.Body[0].(string); n == name {
					if owner, _ := s.Body[2].(string); owner != "" {
						has = true
					}
				}
			}
		case <-p.exited:
			t.Fatalf("fprinttest: %s exited before owning %s: %v; log:\n%s", p.name, name, p.err, e.logTail(p.name))
		case <-timeout:
			t.Fatalf("fprinttest: %s did not own %s within %v; log:\n%s", p.name, name, startTimeout, e.logTail(p.name))
		}
	}
}

func (e *Env) logTail(name string) string {
	for _, l := range e.logs {
		if l.name == name {
			return readTail(l.path)
		}
	}
	return ""
}

// Log returns the tail of a child's output ("dbus-daemon", "polkitd-mock",
// "fprintd").
func (e *Env) Log(name string) string { return e.logTail(name) }

var dumpOnce sync.Mutex

func (e *Env) dumpLogs() {
	dumpOnce.Lock()
	defer dumpOnce.Unlock()
	for _, l := range e.logs {
		e.t.Logf("---- %s (%s) ----\n%s", l.name, l.path, readTail(l.path))
	}
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 8000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// busConfig is a private bus playing the system bus (type system, so
// fprintd and polkit clients see a "system" bus) that allows everything.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`
