package uv

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/authd/authd/uv/notify"
)

const choicePrompt = "Choose 1-"

type chosen struct {
	i   int
	err error
}

func chooseAsync(ctx context.Context, c Chooser, title, body string, items []string) <-chan chosen {
	ch := make(chan chosen, 1)
	go func() {
		i, err := c.Choose(ctx, title, body, items)
		ch <- chosen{i, err}
	}()
	return ch
}

func chooseResult(t *testing.T, ctx context.Context, ch <-chan chosen) chosen {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-ctx.Done():
		t.Fatal("Choose did not return")
		return chosen{}
	}
}

func TestNotifyPresenceChoose(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, nil)
	items := []string{"alice (Alice)", "bob\x1b[31m (Bob\u202e)", "c", "d", "e", "f", "g", "h"}
	ch := chooseAsync(WithRequester(ctx, "firefox"), p, "Choose an account for example.com\x07", "Several passkeys match.\n\x1b[2J", items)
	n := s.WaitNotify(ctx)
	want := []string{"0", "alice (Alice)", "1", "bob[31m (Bob)", "2", "c", "3", "d", "4", "e", "5", "f", notify.ActionCancel, "Cancel"}
	if !slices.Equal(n.Actions, want) {
		t.Errorf("actions = %q, want %q", n.Actions, want)
	}
	if n.Summary != "Choose an account for example.com" {
		t.Errorf("summary = %q", n.Summary)
	}
	wantBody := "Several passkeys match.\n[2J\n1. alice (Alice)\n2. bob[31m (Bob)\n3. c\n4. d\n5. e\n6. f\n(2 more not shown)\nRequested by: firefox"
	if n.Body != wantBody {
		t.Errorf("body = %q, want %q", n.Body, wantBody)
	}
	s.Invoke(n.ID, "1")
	if c := chooseResult(t, ctx, ch); c.i != 1 || c.err != nil {
		t.Fatalf("Choose = %d, %v; want 1, nil", c.i, c.err)
	}
}

func TestNotifyPresenceChooseCancel(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, nil)
	ch := chooseAsync(ctx, p, "t", "b", []string{"a", "b"})
	n := s.WaitNotify(ctx)
	s.Invoke(n.ID, notify.ActionCancel)
	if c := chooseResult(t, ctx, ch); c.i != -1 || !errors.Is(c.err, ErrDeclined) {
		t.Fatalf("Choose = %d, %v; want ErrDeclined", c.i, c.err)
	}

	cctx, cancel := context.WithCancel(ctx)
	ch = chooseAsync(cctx, p, "t", "b", []string{"a", "b"})
	n = s.WaitNotify(ctx)
	cancel()
	if c := chooseResult(t, ctx, ch); c.i != -1 || !errors.Is(c.err, context.Canceled) {
		t.Fatalf("Choose = %d, %v; want Canceled", c.i, c.err)
	}
	if ids := s.Closed(); !slices.Contains(ids, n.ID) {
		t.Errorf("notification %d not withdrawn: %v", n.ID, ids)
	}
}

func TestNotifyPresenceChooseWithoutChoiceNotifier(t *testing.T) {
	log, _ := testLogger()
	p := NotifyPresence{Notifier: &fakeNotifier{}, Logger: log}
	if _, err := p.Choose(testCtx(t), "t", "b", []string{"a"}); !errors.Is(err, ErrDeclined) {
		t.Fatalf("Choose = %v, want ErrDeclined", err)
	}
}

func TestTerminalChoose(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	ch := chooseAsync(ctx, tp, "Choose an account for example.com", "Several passkeys match.", []string{"alice (Alice)", "bob\x1b[2J (Bob)"})
	waitOutput(t, ctx, out, choicePrompt, 1)
	io.WriteString(kbd, " 2 \n")
	if c := chooseResult(t, ctx, ch); c.i != 1 || c.err != nil {
		t.Fatalf("Choose = %d, %v; want 1, nil", c.i, c.err)
	}
	want := "authd: Choose an account for example.com\nSeveral passkeys match.\n  1) alice (Alice)\n  2) bob[2J (Bob)\nChoose 1-2 (empty to cancel): "
	if !strings.Contains(out.String(), want) {
		t.Errorf("output %q, want it to contain %q", out, want)
	}
}

// TestTerminalChooseInvalid: an invalid answer asks again; three in a row
// decline; an empty line cancels at once.
func TestTerminalChooseInvalid(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	items := []string{"a", "b"}

	ch := chooseAsync(ctx, tp, "t", "", items)
	waitOutput(t, ctx, out, choicePrompt, 1)
	io.WriteString(kbd, "3\n")
	waitOutput(t, ctx, out, "Not a choice", 1)
	io.WriteString(kbd, "1\n")
	if c := chooseResult(t, ctx, ch); c.i != 0 || c.err != nil {
		t.Fatalf("Choose after an invalid answer = %d, %v; want 0, nil", c.i, c.err)
	}

	ch = chooseAsync(ctx, tp, "t", "", items)
	waitOutput(t, ctx, out, choicePrompt, 2)
	for i, a := range []string{"x\n", "0\n", "01x\n"} {
		io.WriteString(kbd, a)
		if i < 2 {
			waitOutput(t, ctx, out, "Not a choice", 2+i)
		}
	}
	if c := chooseResult(t, ctx, ch); c.i != -1 || !errors.Is(c.err, ErrDeclined) {
		t.Fatalf("Choose after 3 invalid answers = %d, %v; want ErrDeclined", c.i, c.err)
	}

	ch = chooseAsync(ctx, tp, "t", "", items)
	waitOutput(t, ctx, out, choicePrompt, 3)
	io.WriteString(kbd, "\n")
	if c := chooseResult(t, ctx, ch); c.i != -1 || !errors.Is(c.err, ErrDeclined) {
		t.Fatalf("Choose on an empty line = %d, %v; want ErrDeclined", c.i, c.err)
	}
}

// TestTerminalChooseCancelThenLateAnswer: a cancelled choice returns
// ctx.Err(), and a number typed for it afterwards answers nothing: neither a
// later choice nor a later y/N prompt.
func TestTerminalChooseCancelThenLateAnswer(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, stamps := pipeTerminal(t)
	cctx, cancel := context.WithCancel(ctx)
	ch := chooseAsync(cctx, tp, "t", "", []string{"a", "b"})
	waitOutput(t, ctx, out, choicePrompt, 1)
	cancel()
	if c := chooseResult(t, ctx, ch); c.i != -1 || !errors.Is(c.err, context.Canceled) {
		t.Fatalf("Choose = %d, %v; want Canceled", c.i, c.err)
	}
	io.WriteString(kbd, "2\n")
	if gen := <-stamps; gen != 0 {
		t.Fatalf("late answer stamped for prompt %d", gen)
	}
	ch = chooseAsync(ctx, tp, "t", "", []string{"a", "b"})
	waitOutput(t, ctx, out, choicePrompt, 2)
	io.WriteString(kbd, "1\n")
	if c := chooseResult(t, ctx, ch); c.i != 0 || c.err != nil {
		t.Fatalf("Choose = %d, %v; want 0 (the late 2 must not count)", c.i, c.err)
	}
	errc := ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 1)
	io.WriteString(kbd, "y\n")
	if err := result(t, ctx, errc); err != nil {
		t.Fatalf("y/N prompt after a choice = %v", err)
	}
}

// TestTerminalChooseQueued: a choice waits for a pending y/N prompt and is
// not shown meanwhile.
func TestTerminalChooseQueued(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	errc := ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 1)
	ch := chooseAsync(ctx, tp, "t", "", []string{"a", "b"})
	if strings.Contains(out.String(), choicePrompt) {
		t.Fatal("choice shown while a prompt was pending")
	}
	io.WriteString(kbd, "y\n")
	if err := result(t, ctx, errc); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, ctx, out, choicePrompt, 1)
	io.WriteString(kbd, "2\n")
	if c := chooseResult(t, ctx, ch); c.i != 1 || c.err != nil {
		t.Fatalf("Choose = %d, %v", c.i, c.err)
	}
}

func TestTerminalChooseEOF(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	ch := chooseAsync(ctx, tp, "t", "", []string{"a"})
	waitOutput(t, ctx, out, choicePrompt, 1)
	kbd.Close()
	if c := chooseResult(t, ctx, ch); !errors.Is(c.err, ErrDeclined) {
		t.Fatalf("Choose at EOF = %d, %v; want ErrDeclined", c.i, c.err)
	}
	if _, err := (&TerminalPresence{}).Choose(ctx, "t", "", []string{"a"}); !errors.Is(err, ErrDeclined) {
		t.Fatalf("no terminal: %v", err)
	}
}
