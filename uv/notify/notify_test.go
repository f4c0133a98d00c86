package notify_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/notify/notifytest"
)

type answer struct {
	allowed bool
	err     error
}

// testCtx bounds waits by the test's deadline.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

func newNotifier(t *testing.T, conn *dbus.Conn) *notify.Notifier {
	t.Helper()
	n, err := notify.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// ask runs Ask in the background.
func ask(ctx context.Context, n *notify.Notifier, title, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		ok, err := n.Ask(ctx, title, body)
		ch <- answer{ok, err}
	}()
	return ch
}

func wait(t *testing.T, ctx context.Context, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-ctx.Done():
		t.Fatal("Ask did not return")
		return answer{}
	}
}

func TestAllow(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	if !n.SupportsActions(ctx) {
		t.Fatal("SupportsActions = false with an actions-capable server")
	}
	ch := ask(ctx, n, "Passkey request", "Sign in to <b>evil</b> & co?\nby \xff")
	got := s.WaitNotify(ctx)
	if want := []string{"allow", "Allow", "deny", "Deny"}; !slices.Equal(got.Actions, want) {
		t.Errorf("actions = %q, want %q", got.Actions, want)
	}
	if u, ok := got.Hints["urgency"].Value().(byte); !ok || u != 2 {
		t.Errorf("urgency hint = %v, want byte 2 (critical)", got.Hints["urgency"])
	}
	if want := "Sign in to &lt;b&gt;evil&lt;/b&gt; &amp; co?\nby \uFFFD"; got.Body != want {
		t.Errorf("body = %q, want %q", got.Body, want)
	}
	if got.Summary != "Passkey request" || got.AppName != "authd" || got.Timeout != 0 {
		t.Errorf("summary %q, app %q, timeout %d", got.Summary, got.AppName, got.Timeout)
	}
	s.Invoke(got.ID, "allow")
	if a := wait(t, ctx, ch); !a.allowed || a.err != nil {
		t.Fatalf("Ask = %v, %v; want true, nil", a.allowed, a.err)
	}
}

func TestDeny(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	ch := ask(ctx, n, "t", "b")
	got := s.WaitNotify(ctx)
	s.Invoke(got.ID, "deny")
	if a := wait(t, ctx, ch); a.allowed || a.err != nil {
		t.Fatalf("Ask = %v, %v; want false, nil", a.allowed, a.err)
	}
}

func TestUnofferedActionDeclines(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	ch := ask(ctx, n, "t", "b")
	got := s.WaitNotify(ctx)
	s.Invoke(got.ID, "default") // a click on the notification body
	if a := wait(t, ctx, ch); a.allowed || a.err != nil {
		t.Fatalf("Ask = %v, %v; want false, nil", a.allowed, a.err)
	}
	if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
	}
}

func TestClosedByUser(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	ch := ask(ctx, n, "t", "b")
	got := s.WaitNotify(ctx)
	s.EmitClosed(got.ID, notify.ReasonDismissed)
	a := wait(t, ctx, ch)
	if a.allowed || !errors.Is(a.err, notify.ErrClosed) {
		t.Fatalf("Ask = %v, %v; want false, ErrClosed", a.allowed, a.err)
	}
	t.Log(a.err)
}

func TestTimeoutWithdraws(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	if !n.SupportsActions(ctx) { // warm up: python's first replies are slow
		t.Fatal("no actions")
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	a := wait(t, ctx, ask(short, n, "t", "b"))
	if a.allowed || !errors.Is(a.err, context.DeadlineExceeded) {
		t.Fatalf("Ask = %v, %v; want false, DeadlineExceeded", a.allowed, a.err)
	}
	got := s.WaitNotify(ctx)
	if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
	}
}

func TestCancelWithdraws(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	cctx, cancel := context.WithCancel(ctx)
	ch := ask(cctx, n, "t", "b")
	got := s.WaitNotify(ctx)
	if ids := s.Closed(); len(ids) != 0 {
		t.Fatalf("CloseNotification before cancel: %v", ids)
	}
	cancel()
	a := wait(t, ctx, ch)
	if a.allowed || !errors.Is(a.err, context.Canceled) {
		t.Fatalf("Ask = %v, %v; want false, Canceled", a.allowed, a.err)
	}
	if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
	}
}

func TestAlreadyCancelled(t *testing.T) {
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ok, err := n.Ask(cctx, "t", "b"); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("Ask = %v, %v; want false, Canceled", ok, err)
	}
	if calls := s.Calls("Notify"); len(calls) != 0 {
		t.Errorf("Notify called with a cancelled context: %v", calls)
	}
}

// TestOnlyOurAnswer: answers for other notifications, and look-alike signals
// from programs other than the server, are ignored, even when the
// connection receives them (here through a broad match rule of its own).
func TestOnlyOurAnswer(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	conn := s.Bus.Conn
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(notify.Interface)); err != nil {
		t.Fatal(err)
	}
	n := newNotifier(t, conn)
	ch := ask(ctx, n, "t", "b")
	got := s.WaitNotify(ctx)
	s.Invoke(got.ID+1, "allow")
	s.EmitClosed(got.ID+1, notify.ReasonDismissed)
	s.Spoof(got.ID, "allow")
	select {
	case a := <-ch:
		t.Fatalf("Ask returned %v, %v on a foreign signal", a.allowed, a.err)
	case <-time.After(200 * time.Millisecond):
	}
	s.Invoke(got.ID, "deny")
	if a := wait(t, ctx, ch); a.allowed || a.err != nil {
		t.Fatalf("Ask = %v, %v; want false, nil", a.allowed, a.err)
	}
}

func TestConcurrentAsks(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	ch1 := ask(ctx, n, "one", "b")
	n1 := s.WaitNotify(ctx)
	ch2 := ask(ctx, n, "two", "b")
	n2 := s.WaitNotify(ctx)
	if n1.ID == n2.ID {
		t.Fatalf("same id %d", n1.ID)
	}
	chs := map[string]<-chan answer{"one": ch1, "two": ch2}
	s.Invoke(n2.ID, "allow")
	s.Invoke(n1.ID, "deny")
	if a := wait(t, ctx, chs[n2.Summary]); !a.allowed || a.err != nil {
		t.Errorf("%s: Ask = %v, %v; want true", n2.Summary, a.allowed, a.err)
	}
	if a := wait(t, ctx, chs[n1.Summary]); a.allowed || a.err != nil {
		t.Errorf("%s: Ask = %v, %v; want false", n1.Summary, a.allowed, a.err)
	}
}

func TestNoActions(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, []string{"body", "body-markup"})
	n := newNotifier(t, s.Bus.Conn)
	if n.SupportsActions(ctx) {
		t.Error("SupportsActions = true for a server without the actions capability")
	}
	if ok, err := n.Ask(ctx, "t", "b"); ok || !errors.Is(err, notify.ErrNoActions) {
		t.Errorf("Ask = %v, %v; want false, ErrNoActions", ok, err)
	}
	if calls := s.Calls("Notify"); len(calls) != 0 {
		t.Errorf("Notify called without actions support: %v", calls)
	}
}

func TestNoServer(t *testing.T) {
	ctx := testCtx(t)
	b := notifytest.NewBus(t)
	n := newNotifier(t, b.Conn)
	if n.SupportsActions(ctx) {
		t.Error("SupportsActions = true without a server")
	}
	if ok, err := n.Ask(ctx, "t", "b"); ok || !errors.Is(err, notify.ErrNoServer) {
		t.Errorf("Ask = %v, %v; want false, ErrNoServer", ok, err)
	}
}

func TestReasonString(t *testing.T) {
	for r, want := range map[uint32]string{1: "expired", 2: "dismissed by the user", 3: "closed by a CloseNotification call", 4: "closed, reason undefined", 9: "closed, unknown reason 9"} {
		if got := notify.ReasonString(r); got != want {
			t.Errorf("ReasonString(%d) = %q, want %q", r, got, want)
		}
	}
}
