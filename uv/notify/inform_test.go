package notify_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/notify/notifytest"
)

// TestInform: a notice without actions (also on a server that cannot show
// actions), critical, transient, never expiring, its body escaped; withdraw
// closes it once.
func TestInform(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, []string{"body", "body-markup"})
	n := newNotifier(t, s.Bus.Conn)
	withdraw, err := n.Inform(ctx, "Verify it's you", "Touch the reader for <a> & b\nby \xff")
	if err != nil {
		t.Fatalf("Inform: %v", err)
	}
	got := s.WaitNotify(ctx)
	if len(got.Actions) != 0 {
		t.Errorf("actions = %q, want none", got.Actions)
	}
	if u, ok := got.Hints["urgency"].Value().(byte); !ok || u != 2 {
		t.Errorf("urgency hint = %v, want byte 2 (critical)", got.Hints["urgency"])
	}
	if tr, ok := got.Hints["transient"].Value().(bool); !ok || !tr {
		t.Errorf("transient hint = %v, want true", got.Hints["transient"])
	}
	if want := "Touch the reader for &lt;a&gt; &amp; b\nby \uFFFD"; got.Body != want {
		t.Errorf("body = %q, want %q", got.Body, want)
	}
	if got.Summary != "Verify it's you" || got.AppName != "authd" || got.Timeout != 0 {
		t.Errorf("summary %q, app %q, timeout %d", got.Summary, got.AppName, got.Timeout)
	}
	if ids := s.Closed(); len(ids) != 0 {
		t.Fatalf("closed before withdraw: %v", ids)
	}
	withdraw()
	withdraw()
	if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
	}
}

// TestInformCtxWithdraws: the notice goes when ctx ends, without a
// withdraw call; a later withdraw does not close it again.
func TestInformCtxWithdraws(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	cctx, cancel := context.WithCancel(ctx)
	withdraw, err := n.Inform(cctx, "t", "b")
	if err != nil {
		t.Fatalf("Inform: %v", err)
	}
	got := s.WaitNotify(ctx)
	cancel()
	for len(s.Closed()) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("not withdrawn after ctx ended")
		case <-time.After(5 * time.Millisecond):
		}
	}
	withdraw()
	if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
	}
}

func TestInformNoServer(t *testing.T) {
	ctx := testCtx(t)
	b := notifytest.NewBus(t)
	n := newNotifier(t, b.Conn)
	if w, err := n.Inform(ctx, "t", "b"); w != nil || !errors.Is(err, notify.ErrNoServer) {
		t.Errorf("Inform = %v, %v; want no withdraw, ErrNoServer", w != nil, err)
	}
	s := b.StartServer(nil)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if w, err := n.Inform(cctx, "t", "b"); w != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Inform with a cancelled ctx = %v, %v; want no withdraw, Canceled", w != nil, err)
	}
	if calls := s.Calls("Notify"); len(calls) != 0 {
		t.Errorf("Notify called with a cancelled context: %v", calls)
	}
}
