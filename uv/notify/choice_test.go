package notify_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/notify/notifytest"
)

type choice struct {
	i   int
	err error
}

func askChoice(ctx context.Context, n *notify.Notifier, labels []string) <-chan choice {
	ch := make(chan choice, 1)
	go func() {
		i, err := n.AskChoice(ctx, "Choose an account", "Which <one>?", labels)
		ch <- choice{i, err}
	}()
	return ch
}

func waitChoice(t *testing.T, ctx context.Context, ch <-chan choice) choice {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-ctx.Done():
		t.Fatal("AskChoice did not return")
		return choice{}
	}
}

func TestChoose(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	ch := askChoice(ctx, n, []string{"alice (Alice)", "bob <b> & co\xff"})
	got := s.WaitNotify(ctx)
	want := []string{"0", "alice (Alice)", "1", "bob <b> & co\uFFFD", "cancel", "Cancel"}
	if !slices.Equal(got.Actions, want) {
		t.Errorf("actions = %q, want %q", got.Actions, want)
	}
	if got.Body != "Which &lt;one&gt;?" || got.Summary != "Choose an account" {
		t.Errorf("summary %q, body %q", got.Summary, got.Body)
	}
	if u, ok := got.Hints["urgency"].Value().(byte); !ok || u != 2 {
		t.Errorf("urgency hint = %v, want byte 2 (critical)", got.Hints["urgency"])
	}
	s.Spoof(got.ID, "0") // not from the server: ignored
	s.Invoke(got.ID+1, "0")
	s.Invoke(got.ID, "1")
	if c := waitChoice(t, ctx, ch); c.i != 1 || c.err != nil {
		t.Fatalf("AskChoice = %d, %v; want 1, nil", c.i, c.err)
	}
}

func TestChooseCancel(t *testing.T) {
	for _, key := range []string{notify.ActionCancel, "default", "2", "01"} {
		t.Run(key, func(t *testing.T) {
			ctx := testCtx(t)
			s := notifytest.Start(t, nil)
			n := newNotifier(t, s.Bus.Conn)
			ch := askChoice(ctx, n, []string{"a", "b"})
			got := s.WaitNotify(ctx)
			s.Invoke(got.ID, key)
			c := waitChoice(t, ctx, ch)
			if c.i != -1 || !errors.Is(c.err, notify.ErrDeclined) {
				t.Fatalf("AskChoice = %d, %v; want -1, ErrDeclined", c.i, c.err)
			}
			if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
				t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
			}
		})
	}
}

func TestChooseClosed(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	ch := askChoice(ctx, n, []string{"a", "b"})
	got := s.WaitNotify(ctx)
	s.EmitClosed(got.ID, notify.ReasonDismissed)
	if c := waitChoice(t, ctx, ch); c.i != -1 || !errors.Is(c.err, notify.ErrClosed) {
		t.Fatalf("AskChoice = %d, %v; want -1, ErrClosed", c.i, c.err)
	}
}

func TestChooseCancelWithdraws(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	cctx, cancel := context.WithCancel(ctx)
	ch := askChoice(cctx, n, []string{"a", "b"})
	got := s.WaitNotify(ctx)
	if ids := s.Closed(); len(ids) != 0 {
		t.Fatalf("CloseNotification before cancel: %v", ids)
	}
	cancel()
	if c := waitChoice(t, ctx, ch); c.i != -1 || !errors.Is(c.err, context.Canceled) {
		t.Fatalf("AskChoice = %d, %v; want -1, Canceled", c.i, c.err)
	}
	if ids := s.Closed(); !slices.Equal(ids, []uint32{got.ID}) {
		t.Errorf("CloseNotification calls %v, want [%d]", ids, got.ID)
	}
}

func TestChooseBadLabels(t *testing.T) {
	s := notifytest.Start(t, nil)
	n := newNotifier(t, s.Bus.Conn)
	for _, labels := range [][]string{nil, make([]string, notify.MaxChoices+1)} {
		if i, err := n.AskChoice(t.Context(), "t", "b", labels); i != -1 || err == nil {
			t.Errorf("%d labels: AskChoice = %d, %v; want an error", len(labels), i, err)
		}
	}
	if calls := s.Calls("Notify"); len(calls) != 0 {
		t.Errorf("Notify called: %v", calls)
	}
}

func TestChooseNoActions(t *testing.T) {
	ctx := testCtx(t)
	s := notifytest.Start(t, []string{"body"})
	n := newNotifier(t, s.Bus.Conn)
	if i, err := n.AskChoice(ctx, "t", "b", []string{"a"}); i != -1 || !errors.Is(err, notify.ErrNoActions) {
		t.Errorf("AskChoice = %d, %v; want ErrNoActions", i, err)
	}
}
