package uv

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/notify/notifytest"
)

func TestVerifyText(t *testing.T) {
	bg := context.Background()
	for _, c := range []struct {
		ctx      context.Context
		op, rp   string
		wantBody string
	}{
		{bg, OpGetAssertion, "github.com", "Touch the fingerprint reader to sign in to github.com"},
		{bg, OpMakeCredential, "github.com", "Touch the fingerprint reader to create a passkey on github.com"},
		{bg, "", "github.com", "Touch the fingerprint reader to continue with github.com"},
		{bg, "", "", "Touch the fingerprint reader to continue"},
		{bg, OpGetAssertion, "", "Touch the fingerprint reader to sign in"},
		{bg, OpMakeCredential, "\x1b[2J", "Touch the fingerprint reader to create a passkey on [2J"},
		{WithRequester(bg, "firefox\u202e (pid 7)"), OpGetAssertion, "a.example",
			"Touch the fingerprint reader to sign in to a.example\nRequested by: firefox (pid 7)"},
		{WithRequesterFunc(bg, func() string { return strings.Repeat("p", 100) }), "", "",
			"Touch the fingerprint reader to continue\nRequested by: " + strings.Repeat("p", maxProgramRunes) + "…"},
	} {
		title, body := VerifyText(c.ctx, c.op, c.rp)
		if title != "Verify it's you (authd)" || body != c.wantBody {
			t.Errorf("VerifyText(%q, %q) = %q, %q; want the title and %q", c.op, c.rp, title, body, c.wantBody)
		}
	}
}

// informAsync runs Inform in the background, so that a test can fail
// instead of hanging if it blocks.
func informAsync(ctx context.Context, in Informer, title, body string) <-chan func() {
	ch := make(chan func(), 1)
	go func() { ch <- in.Inform(ctx, title, body) }()
	return ch
}

func informed(t *testing.T, ctx context.Context, ch <-chan func()) func() {
	t.Helper()
	select {
	case done := <-ch:
		if done == nil {
			t.Fatal("Inform returned a nil done func")
		}
		return done
	case <-ctx.Done():
		t.Fatal("Inform did not return")
		return nil
	}
}

// TestNotifyInform: the notice names the RP and the program (asked for
// when shown, WithRequesterFunc), has no actions, and done closes it.
func TestNotifyInform(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n, err := notify.New(s.Bus.Conn)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger()
	p := NotifyPresence{Notifier: n, Logger: log}
	rctx := WithRequesterFunc(ctx, func() string { return "firefox\x1b]0;x" })
	title, body := VerifyText(rctx, OpGetAssertion, "github.com")
	done := informed(t, ctx, informAsync(rctx, p, title, body))
	got := s.WaitNotify(ctx)
	if got.Summary != "Verify it's you (authd)" {
		t.Errorf("summary = %q", got.Summary)
	}
	if want := "Touch the fingerprint reader to sign in to github.com\nRequested by: firefox]0;x"; got.Body != want {
		t.Errorf("body = %q, want %q", got.Body, want)
	}
	if len(got.Actions) != 0 {
		t.Errorf("actions = %q, want none", got.Actions)
	}
	if ids := s.Closed(); len(ids) != 0 {
		t.Fatalf("closed before done: %v", ids)
	}
	done()
	if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
	}
}

// askOnly is a Notifier that cannot show a notice.
type askOnly struct{}

func (askOnly) Ask(context.Context, string, string) (bool, error) { return false, nil }

// TestNotifyInformNothing: without a server, or with a Notifier that cannot
// show a notice, Inform shows nothing, says why at debug level and returns
// a done func that does nothing.
func TestNotifyInformNothing(t *testing.T) {
	ctx := testCtx(t)
	b := notifytest.NewBus(t)
	n, err := notify.New(b.Conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		notifier Notifier
		why      string
	}{{n, "notification failed"}, {askOnly{}, "cannot show a notice"}} {
		log, logs := testLogger()
		informed(t, ctx, informAsync(ctx, NotifyPresence{Notifier: c.notifier, Logger: log}, "t", "b"))()
		if l := logs.String(); !strings.Contains(l, "level=DEBUG") || !strings.Contains(l, c.why) {
			t.Errorf("%T: log does not say %q at debug level:\n%s", c.notifier, c.why, l)
		}
	}
}

// TestAutoInform: with a notification server on the session bus the
// notice is a notification; with none yet Inform neither waits nor shows
// anything, or writes a line when there is a terminal.
func TestAutoInform(t *testing.T) {
	notifytest.Require(t)
	ctx := testCtx(t)
	rctx := WithRequester(ctx, "fido2-assert")
	title, body := VerifyText(rctx, OpMakeCredential, "example.com")

	t.Run("NoSession", func(t *testing.T) {
		noSession(t)
		a, logs := newAuto(t)
		informed(t, ctx, informAsync(rctx, a, title, body))()
		if l := logs.String(); !strings.Contains(l, "nothing shown: nobody to tell") || !strings.Contains(l, "no session bus") {
			t.Errorf("log does not say why nothing was shown:\n%s", l)
		}

		out := &syncBuffer{}
		a.Terminal = &TerminalPresence{In: strings.NewReader(""), Out: out}
		informed(t, ctx, informAsync(rctx, a, title, body))()
		if want := "\nauthd: Touch the fingerprint reader to create a passkey on example.com\nauthd: Requested by: fido2-assert\n"; out.String() != want {
			t.Errorf("terminal output %q, want %q", out, want)
		}
	})

	t.Run("Pinentry", func(t *testing.T) {
		noSession(t)
		t.Setenv("DISPLAY", ":0")
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		a, logs := newAuto(t)
		a.Pinentry = exe // found, never run
		informed(t, ctx, informAsync(rctx, a, title, body))()
		if l := logs.String(); !strings.Contains(l, "nothing shown: pinentry cannot show a notice") {
			t.Errorf("log does not say pinentry shows nothing:\n%s", l)
		}
	})

	t.Run("Notification", func(t *testing.T) {
		noSession(t)
		b := notifytest.NewBus(t)
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", b.Addr)
		s := b.StartServer(nil)
		a, _ := newAuto(t)
		done := informed(t, ctx, informAsync(rctx, a, title, body))
		got := s.WaitNotify(ctx)
		if got.Summary != title || got.Body != body || len(got.Actions) != 0 {
			t.Errorf("notification %q / %q / actions %q; want %q / %q / none", got.Summary, got.Body, got.Actions, title, body)
		}
		done()
		if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
			t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
		}
	})
}
