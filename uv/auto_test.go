package uv

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/notify/notifytest"
)

// noSession makes the environment that of a daemon started before the
// graphical session: no display, no session bus yet. It returns the
// runtime directory where the session bus socket ("bus") would appear.
func noSession(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", dir)
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	return dir
}

// newAuto returns the AutoPresence ParsePresence("auto") builds for a
// daemon without a terminal, and its log.
func newAuto(t *testing.T) (*AutoPresence, *syncBuffer) {
	t.Helper()
	log, buf := testLogger()
	p, err := ParsePresence("auto", nil, log)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := p.(*AutoPresence)
	if !ok {
		t.Fatalf("ParsePresence(auto) = %T, want *AutoPresence", p)
	}
	t.Cleanup(func() { a.Close() })
	return a, buf
}

// stillWaiting fails the test if the prompt behind ch returns within a few
// polls: nobody can be asked yet, so it must wait.
func stillWaiting[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("returned %v while nobody could be asked", v)
	case <-time.After(2 * autoPoll):
	}
}

// sessionBusAppears creates a session bus and makes it appear where
// SessionBusAddress looks ($XDG_RUNTIME_DIR/bus), as at login.
func sessionBusAppears(t *testing.T, runtimeDir string) *notifytest.Bus {
	t.Helper()
	b := notifytest.NewBus(t)
	path, _, _ := strings.Cut(strings.TrimPrefix(b.Addr, "unix:path="), ",")
	if !strings.HasPrefix(b.Addr, "unix:path=") {
		t.Fatalf("bus address %q is not a unix:path= address", b.Addr)
	}
	if err := os.Symlink(path, filepath.Join(runtimeDir, "bus")); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAutoWaitsForSessionBus: started with no session bus at all, a prompt
// waits; the bus and then a notification server appear; the prompt is
// shown there and answered.
func TestAutoWaitsForSessionBus(t *testing.T) {
	notifytest.Require(t)
	ctx := testCtx(t)
	dir := noSession(t)
	a, logs := newAuto(t)
	if l := logs.String(); !strings.Contains(l, "nobody can be asked yet") || !strings.Contains(l, "no session bus") ||
		!strings.Contains(l, "checked again at every request") {
		t.Errorf("start-up log does not say what is missing and that it is checked again:\n%s", l)
	}

	ch := confirmAsync(WithRequester(ctx, "firefox"), a, OpGetAssertion, "example.com", "alice")
	stillWaiting(t, ch)
	b := sessionBusAppears(t, dir)
	stillWaiting(t, ch) // a bus without a notification server is not enough
	s := b.StartServer(nil)
	n := s.WaitNotify(ctx)
	if want := "Sign in to example.com as \"alice\"?\nRequested by: firefox"; n.Body != want {
		t.Errorf("body = %q, want %q", n.Body, want)
	}
	s.Invoke(n.ID, notify.ActionAllow)
	if err := notifyResult(t, ctx, ch); err != nil {
		t.Fatalf("ConfirmPresence = %v, want nil", err)
	}
	if c := strings.Count(logs.String(), "desktop notifications are now available"); c != 1 {
		t.Errorf("the new method was logged %d times, want once:\n%s", c, logs)
	}
}

// TestAutoServerRestarts: the notification server goes away between two
// prompts and comes back while the second one waits; the second prompt is
// shown by the new server. The Chooser path goes the same way.
func TestAutoServerRestarts(t *testing.T) {
	notifytest.Require(t)
	ctx := testCtx(t)
	noSession(t)
	b := notifytest.NewBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", b.Addr)
	s := b.StartServer(nil)
	a, logs := newAuto(t)
	if !strings.Contains(logs.String(), "desktop notifications are available now") {
		t.Errorf("start-up log does not say notifications are available:\n%s", logs)
	}

	ch := confirmAsync(ctx, a, OpMakeCredential, "example.com", "alice")
	n := s.WaitNotify(ctx)
	s.Invoke(n.ID, notify.ActionAllow)
	if err := notifyResult(t, ctx, ch); err != nil {
		t.Fatalf("first ConfirmPresence = %v, want nil", err)
	}

	s.Stop()
	ch = confirmAsync(ctx, a, OpGetAssertion, "example.com", "alice")
	stillWaiting(t, ch)
	s = b.StartServer(nil)
	n = s.WaitNotify(ctx)
	s.Invoke(n.ID, notify.ActionDeny)
	if err := notifyResult(t, ctx, ch); !errors.Is(err, ErrDeclined) {
		t.Fatalf("second ConfirmPresence = %v, want ErrDeclined from the new server", err)
	}

	s.Stop()
	cch := chooseAsync(ctx, a, "Choose an account", "Two passkeys match.", []string{"alice", "bob"})
	stillWaiting(t, cch)
	s = b.StartServer(nil)
	n = s.WaitNotify(ctx)
	s.Invoke(n.ID, "1")
	if c := chooseResult(t, ctx, cch); c.i != 1 || c.err != nil {
		t.Fatalf("Choose = %d, %v; want 1, nil", c.i, c.err)
	}

	// Each change is logged once, however many polls the waits took.
	l := logs.String()
	if c := strings.Count(l, "no session yet: waiting for a notification server"); c != 2 {
		t.Errorf("the waits were logged %d times, want 2:\n%s", c, l)
	}
	if c := strings.Count(l, "desktop notifications are now available"); c != 2 {
		t.Errorf("the server's return was logged %d times, want 2:\n%s", c, l)
	}
}

// TestAutoNobodyAppears: when nobody can be asked before the timeout the
// prompt returns a timeout that says what was missing, at every prompt; a
// cancelled request returns ctx.Err() as is.
func TestAutoNobodyAppears(t *testing.T) {
	ctx := testCtx(t)
	noSession(t)
	a, logs := newAuto(t)
	p := WithTimeout(a, 2*time.Second)
	for i := range 2 {
		err := p.ConfirmPresence(ctx, OpGetAssertion, "example.com", "alice")
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDeclined) {
			t.Fatalf("prompt %d = %v, want a timeout", i, err)
		}
		for _, want := range []string{"uv: nobody could be asked", "no session bus", "no display for pinentry", "stdin is not a terminal"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("prompt %d: %q does not say %q", i, err, want)
			}
		}
	}
	l := logs.String()
	if c := strings.Count(l, "configure user presence with --presence notify|pinentry|terminal|command:PATH|allow"); c != 2 {
		t.Errorf("%d timeouts logged with the configuration hint, want 2:\n%s", c, l)
	}
	if strings.Contains(l, "no session yet") {
		t.Errorf("the wait was logged again although the start-up log said so:\n%s", l)
	}

	a.Timeout = time.Minute
	cctx, cancel := context.WithCancel(ctx)
	ch := confirmAsync(cctx, a, OpGetAssertion, "example.com", "alice")
	stillWaiting(t, ch)
	cancel()
	if err := notifyResult(t, ctx, ch); err != context.Canceled {
		t.Fatalf("cancelled wait = %v, want context.Canceled", err)
	}
}

// TestAutoTerminalThenNotify: with a terminal and no session the terminal
// is asked at once; once a notification server appears, it is preferred.
func TestAutoTerminalThenNotify(t *testing.T) {
	notifytest.Require(t)
	ctx := testCtx(t)
	noSession(t)
	master, slave := openPTY(t)
	go io.Copy(io.Discard, master)
	log, logs := testLogger()
	out := &syncBuffer{}
	a := &AutoPresence{Terminal: &TerminalPresence{In: slave, Out: out, Logger: log}, Logger: log}
	t.Cleanup(func() { a.Close() })

	ch := confirmAsync(ctx, a, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 1)
	io.WriteString(master, "y\n")
	if err := notifyResult(t, ctx, ch); err != nil {
		t.Fatalf("terminal prompt = %v, want nil", err)
	}

	b := notifytest.NewBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", b.Addr)
	s := b.StartServer(nil)
	ch = confirmAsync(ctx, a, OpGetAssertion, "example.com", "")
	n := s.WaitNotify(ctx)
	s.Invoke(n.ID, notify.ActionAllow)
	if err := notifyResult(t, ctx, ch); err != nil {
		t.Fatalf("notification prompt = %v, want nil", err)
	}
	if strings.Count(out.String(), promptText) != 1 {
		t.Errorf("the terminal was asked again:\n%s", out)
	}
	l := logs.String()
	if !strings.Contains(l, "the terminal is now the way to ask") || !strings.Contains(l, "desktop notifications are now available") {
		t.Errorf("the changes of method were not logged:\n%s", l)
	}
}

func TestWithTimeoutAuto(t *testing.T) {
	a := &AutoPresence{}
	if p := WithTimeout(a, 5*time.Second); p != Presence(a) || a.Timeout != 5*time.Second {
		t.Fatalf("WithTimeout(auto) = %v, timeout %s", p, a.Timeout)
	}
}
