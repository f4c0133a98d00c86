// Package dbustest runs a private session bus for tests of the D-Bus API and
// its clients, and a fake ipc.Backend. It is for tests only: nothing outside
// _test.go files may import it.
//
// The bus (dbus-daemon) is a child process of the test, killed and reaped in
// t.Cleanup. It admits every UID (so tests can call it as another user with
// setpriv) and its socket directory is world-searchable. When dbus-daemon is
// missing the test is skipped, or failed when the CI environment variable is
// set.
package dbustest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/ipc"
)

// Bus is a private session bus.
type Bus struct {
	Addr string
	Dir  string // the socket directory (0755)
	t    testing.TB
}

// Require skips tb (or fails it under CI) unless dbus-daemon is installed.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err == nil {
		return
	}
	msg := "D-Bus tests need dbus-daemon (Debian: dbus-daemon)"
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg + " (skipped; set CI=1 to fail instead)")
}

// NewBus starts a private session bus that any UID may connect to.
func NewBus(tb testing.TB) *Bus {
	tb.Helper()
	Require(tb)
	// sun_path is at most 108 bytes and t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "authd-dbus")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	// Other UIDs (setpriv tests) must reach the socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=`+dir+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o644); err != nil {
		tb.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start dbus-daemon: %v", err)
	}
	w.Close()
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	addrc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		r.Close()
		addrc <- strings.TrimSpace(line)
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
	}
	if addr == "" {
		tb.Fatalf("dbus-daemon printed no address; stderr: %s", stderr.String())
	}
	return &Bus{Addr: addr, Dir: dir, t: tb}
}

// Connect opens a connection to the bus, closed in Cleanup.
func (b *Bus) Connect() *dbus.Conn {
	b.t.Helper()
	conn, err := dbus.Connect(b.Addr)
	if err != nil {
		b.t.Fatalf("connect to %s: %v", b.Addr, err)
	}
	b.t.Cleanup(func() { conn.Close() })
	return conn
}

// Backend is a fake ipc.Backend. Long calls (MakeCredential, GetAssertion,
// SetPIN, ChangePIN, Reset) block until Release is closed (when set) or
// their context ends; every call is recorded.
type Backend struct {
	mu    sync.Mutex
	Creds []ipc.CredentialInfo
	Caps  map[string]bool
	St    map[string]any
	Err   map[string]error // method name → error to return
	// Release, when non-nil, holds long calls until closed.
	Release chan struct{}
	// Started receives the method name when a long call starts (if non-nil;
	// sends do not block).
	Started chan string
	// Ended receives the context's error when a long call ends.
	Ended chan error

	calls []string
	peers []ipc.Peer
	hints []ipc.Hints
	pin   bool
}

// SetErr makes method (a Backend method name) fail with err from now on
// (nil: succeed again). Safe while the backend serves.
func (f *Backend) SetErr(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err == nil {
		f.Err = map[string]error{}
	}
	f.Err[method] = err
}

// Calls returns the methods called so far, with their main argument
// ("DeleteCredential <base64url id>", "SetProtected <id> true", ...).
func (f *Backend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Peers returns the peers of the calls that carry one.
func (f *Backend) Peers() []ipc.Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ipc.Peer(nil), f.peers...)
}

// Hints returns the hints received.
func (f *Backend) Hints() []ipc.Hints {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ipc.Hints(nil), f.hints...)
}

func (f *Backend) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	name, _, _ := strings.Cut(s, " ")
	return f.Err[name]
}

func (f *Backend) wait(ctx context.Context, method string, peer ipc.Peer) error {
	f.mu.Lock()
	f.peers = append(f.peers, peer)
	rel := f.Release
	f.mu.Unlock()
	if f.Started != nil {
		select {
		case f.Started <- method:
		default:
		}
	}
	var err error
	if rel != nil {
		select {
		case <-rel:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if f.Ended != nil {
		select {
		case f.Ended <- err:
		default:
		}
	}
	if err != nil {
		return ipc.Errorf(ipc.AbortError, "aborted")
	}
	return nil
}

func (f *Backend) MakeCredential(ctx context.Context, peer ipc.Peer, origin string, options []byte, h ipc.Hints) ([]byte, error) {
	if err := f.record("MakeCredential " + origin); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.hints = append(f.hints, h)
	f.mu.Unlock()
	if err := f.wait(ctx, "MakeCredential", peer); err != nil {
		return nil, err
	}
	return append([]byte(`{"type":"public-key","echo":`), append(options, '}')...), nil
}

func (f *Backend) GetAssertion(ctx context.Context, peer ipc.Peer, origin string, options []byte, h ipc.Hints) ([]byte, error) {
	if err := f.record("GetAssertion " + origin); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.hints = append(f.hints, h)
	f.mu.Unlock()
	if err := f.wait(ctx, "GetAssertion", peer); err != nil {
		return nil, err
	}
	return append([]byte(`{"type":"public-key","echo":`), append(options, '}')...), nil
}

func (f *Backend) Capabilities(context.Context) (map[string]bool, error) {
	if err := f.record("Capabilities"); err != nil {
		return nil, err
	}
	return f.Caps, nil
}

func (f *Backend) ListCredentials(_ context.Context, filter string) ([]ipc.CredentialInfo, error) {
	if err := f.record("ListCredentials " + filter); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ipc.CredentialInfo
	lf := strings.ToLower(filter)
	for _, c := range f.Creds {
		if lf == "" || strings.Contains(strings.ToLower(c.RPID+"\x00"+c.RPName+"\x00"+c.UserName+"\x00"+c.UserDisplayName), lf) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *Backend) find(id []byte) int {
	for i, c := range f.Creds {
		if bytes.Equal(c.ID, id) {
			return i
		}
	}
	return -1
}

func (f *Backend) DeleteCredential(_ context.Context, id []byte) error {
	if err := f.record("DeleteCredential " + base64.RawURLEncoding.EncodeToString(id)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(id)
	switch {
	case i < 0:
		return ipc.Errorf(ipc.NotAllowedError, "no passkey with this id")
	case f.Creds[i].Protected:
		return ipc.Errorf(ipc.InvalidStateError, "the passkey for %s (%s) is protected; unprotect it before deleting it", f.Creds[i].RPID, f.Creds[i].UserName)
	}
	f.Creds = append(f.Creds[:i], f.Creds[i+1:]...)
	return nil
}

func (f *Backend) SetProtected(_ context.Context, id []byte, protected bool) error {
	arg := "false"
	if protected {
		arg = "true"
	}
	if err := f.record("SetProtected " + base64.RawURLEncoding.EncodeToString(id) + " " + arg); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(id)
	if i < 0 {
		return ipc.Errorf(ipc.NotAllowedError, "no passkey with this id")
	}
	f.Creds[i].Protected = protected
	return nil
}

func (f *Backend) Status(context.Context) (map[string]any, error) {
	if err := f.record("Status"); err != nil {
		return nil, err
	}
	return f.St, nil
}

func (f *Backend) SetPIN(ctx context.Context, peer ipc.Peer) error {
	if err := f.record("SetPIN"); err != nil {
		return err
	}
	f.mu.Lock()
	if f.pin {
		f.mu.Unlock()
		return ipc.Errorf(ipc.InvalidStateError, "a PIN is already set; use ChangePIN")
	}
	f.mu.Unlock()
	if err := f.wait(ctx, "SetPIN", peer); err != nil {
		return err
	}
	f.mu.Lock()
	f.pin = true
	f.mu.Unlock()
	return nil
}

func (f *Backend) ChangePIN(ctx context.Context, peer ipc.Peer) error {
	if err := f.record("ChangePIN"); err != nil {
		return err
	}
	f.mu.Lock()
	pin := f.pin
	f.mu.Unlock()
	if !pin {
		return ipc.Errorf(ipc.InvalidStateError, "no PIN is set; use SetPIN")
	}
	return f.wait(ctx, "ChangePIN", peer)
}

func (f *Backend) Reset(ctx context.Context, peer ipc.Peer) error {
	if err := f.record("Reset"); err != nil {
		return err
	}
	if err := f.wait(ctx, "Reset", peer); err != nil {
		return err
	}
	f.mu.Lock()
	f.Creds, f.pin = nil, false
	f.mu.Unlock()
	return nil
}

var _ ipc.Backend = (*Backend)(nil)
