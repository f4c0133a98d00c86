package uv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/notify/notifytest"
)

// realNotify returns a NotifyPresence on a private bus with a mock
// notification server that has the capabilities caps (nil: with actions).
func realNotify(t *testing.T, caps []string) (NotifyPresence, *notifytest.Server, *syncBuffer) {
	t.Helper()
	s := notifytest.Start(t, caps)
	n, err := notify.New(s.Bus.Conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	log, buf := testLogger()
	return NotifyPresence{Notifier: n, Logger: log}, s, buf
}

// confirmAsync runs ConfirmPresence in the background.
func confirmAsync(ctx context.Context, p Presence, op, rp, user string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.ConfirmPresence(ctx, op, rp, user) }()
	return ch
}

func notifyResult(t *testing.T, ctx context.Context, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		t.Fatal("ConfirmPresence did not return")
		return nil
	}
}

func TestNotifyPresenceAllow(t *testing.T) {
	ctx := testCtx(t)
	p, s, buf := realNotify(t, nil)
	rctx := WithRequester(ctx, "firefox <pid 42>\x1b[31m")
	ch := confirmAsync(rctx, p, OpGetAssertion, "evil.example<b>", "a&b\u202e")
	n := s.WaitNotify(ctx)
	want := `Sign in to evil.example&lt;b&gt; as "a&amp;b"?` + "\nRequested by: firefox &lt;pid 42&gt;[31m"
	if n.Body != want {
		t.Errorf("body = %q, want %q", n.Body, want)
	}
	if n.Summary != "Passkey request (authd)" {
		t.Errorf("summary = %q", n.Summary)
	}
	s.Invoke(n.ID, notify.ActionAllow)
	if err := notifyResult(t, ctx, ch); err != nil {
		t.Fatalf("ConfirmPresence = %v, want nil", err)
	}
	if !strings.Contains(buf.String(), "presence confirmed") {
		t.Errorf("log: %s", buf)
	}
}

func TestNotifyPresenceDeny(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, nil)
	ch := confirmAsync(ctx, p, OpMakeCredential, "example.com", "alice")
	n := s.WaitNotify(ctx)
	s.Invoke(n.ID, notify.ActionDeny)
	if err := notifyResult(t, ctx, ch); !errors.Is(err, ErrDeclined) {
		t.Fatalf("ConfirmPresence = %v, want ErrDeclined", err)
	}
}

func TestNotifyPresenceClosed(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, nil)
	ch := confirmAsync(ctx, p, OpMakeCredential, "example.com", "alice")
	n := s.WaitNotify(ctx)
	s.EmitClosed(n.ID, notify.ReasonDismissed)
	err := notifyResult(t, ctx, ch)
	if !errors.Is(err, ErrDeclined) || !strings.Contains(err.Error(), "dismissed") {
		t.Fatalf("ConfirmPresence = %v, want ErrDeclined (dismissed)", err)
	}
}

func TestNotifyPresenceTimeout(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, nil)
	p.Timeout = 500 * time.Millisecond
	err := notifyResult(t, ctx, confirmAsync(ctx, p, OpGetAssertion, "example.com", ""))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDeclined) {
		t.Fatalf("ConfirmPresence = %v, want DeadlineExceeded", err)
	}
	n := s.WaitNotify(ctx)
	if ids := s.Closed(); len(ids) != 1 || ids[0] != n.ID {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, n.ID)
	}
}

func TestNotifyPresenceCancel(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, nil)
	cctx, cancel := context.WithCancel(ctx)
	ch := confirmAsync(cctx, p, OpGetAssertion, "example.com", "")
	n := s.WaitNotify(ctx)
	cancel()
	if err := notifyResult(t, ctx, ch); err != context.Canceled {
		t.Fatalf("ConfirmPresence = %v, want context.Canceled", err)
	}
	if ids := s.Closed(); len(ids) != 1 || ids[0] != n.ID {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, n.ID)
	}
}

func TestNotifyPresenceNoActions(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, []string{"body"})
	if p.Notifier.(*notify.Notifier).SupportsActions(ctx) {
		t.Error("SupportsActions = true without the actions capability")
	}
	if err := p.ConfirmPresence(ctx, OpGetAssertion, "example.com", ""); !errors.Is(err, ErrDeclined) {
		t.Fatalf("ConfirmPresence = %v, want ErrDeclined", err)
	}
	if calls := s.Calls("Notify"); len(calls) != 0 {
		t.Errorf("Notify called: %v", calls)
	}
}

// fakeNotifier answers Ask from a function, recording its arguments.
type fakeNotifier struct {
	ask func(ctx context.Context) (bool, error)

	title, body string
	deadline    time.Time
}

func (f *fakeNotifier) Ask(ctx context.Context, title, body string) (bool, error) {
	f.title, f.body = title, body
	f.deadline, _ = ctx.Deadline()
	return f.ask(ctx)
}

func TestNotifyPresenceFake(t *testing.T) {
	ctx := testCtx(t)
	t.Run("default timeout", func(t *testing.T) {
		f := &fakeNotifier{ask: func(context.Context) (bool, error) { return true, nil }}
		start := time.Now()
		if err := (NotifyPresence{Notifier: f}).ConfirmPresence(context.Background(), OpReset, "", ""); err != nil {
			t.Fatal(err)
		}
		if d := f.deadline.Sub(start); d < DefaultNotifyTimeout-time.Second || d > DefaultNotifyTimeout+time.Second {
			t.Errorf("deadline in %s, want about %s", d, DefaultNotifyTimeout)
		}
		if !strings.HasPrefix(f.title, "Erase all passkeys") || !strings.Contains(f.body, "ERASE EVERY PASSKEY") {
			t.Errorf("reset prompt %q / %q", f.title, f.body)
		}
	})
	t.Run("error declines", func(t *testing.T) {
		f := &fakeNotifier{ask: func(context.Context) (bool, error) { return true, errors.New("boom") }}
		err := NotifyPresence{Notifier: f}.ConfirmPresence(ctx, OpGetAssertion, "x", "")
		if !errors.Is(err, ErrDeclined) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("ConfirmPresence = %v", err)
		}
	})
	t.Run("a foreign context error is no timeout", func(t *testing.T) {
		f := &fakeNotifier{ask: func(context.Context) (bool, error) { return false, context.DeadlineExceeded }}
		err := NotifyPresence{Notifier: f}.ConfirmPresence(ctx, OpGetAssertion, "x", "")
		if !errors.Is(err, ErrDeclined) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ConfirmPresence = %v", err)
		}
	})
	t.Run("nil notifier", func(t *testing.T) {
		if err := (NotifyPresence{}).ConfirmPresence(ctx, OpGetAssertion, "x", ""); !errors.Is(err, ErrDeclined) {
			t.Fatalf("ConfirmPresence = %v", err)
		}
	})
	t.Run("done context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		f := &fakeNotifier{ask: func(context.Context) (bool, error) { t.Error("asked"); return true, nil }}
		if err := (NotifyPresence{Notifier: f}).ConfirmPresence(cctx, OpGetAssertion, "x", ""); err != context.Canceled {
			t.Fatalf("ConfirmPresence = %v", err)
		}
	})
	var _ Notifier = (*notify.Notifier)(nil)
}

func TestNotifyText(t *testing.T) {
	title, body := NotifyText(context.Background(), OpMakeCredential, "example.com", "bob")
	if title != "Passkey request (authd)" || body != `Create a passkey for "bob" on example.com?` {
		t.Errorf("NotifyText = %q, %q", title, body)
	}
	_, body = NotifyText(WithRequester(context.Background(), strings.Repeat("p", 100)), OpSelection, "", "")
	if want := "Select authd as your authenticator?\nRequested by: " + strings.Repeat("p", 64) + "…"; body != want {
		t.Errorf("body = %q, want %q", body, want)
	}
}
