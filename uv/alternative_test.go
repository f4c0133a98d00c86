package uv

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd/uv/notify"
)

func TestNotifyAlternative(t *testing.T) {
	ctx := testCtx(t)
	p, s, _ := realNotify(t, nil)

	// Without the flag: Allow and Deny only, as before.
	ch := confirmAsync(ctx, p, OpGetAssertion, "example.com", "alice")
	n := s.WaitNotify(ctx)
	if slices.Contains(n.Actions, notify.ActionOther) {
		t.Fatalf("actions without WithAlternative = %q", n.Actions)
	}
	s.Invoke(n.ID, notify.ActionOther) // not offered: declines, records nothing
	if err := notifyResult(t, ctx, ch); !errors.Is(err, ErrDeclined) {
		t.Fatalf("ConfirmPresence = %v, want ErrDeclined", err)
	}

	// With the flag: a third action, which records the choice and declines.
	actx, alt := WithAlternative(ctx)
	ch = confirmAsync(actx, p, OpMakeCredential, "example.com", "alice")
	n = s.WaitNotify(ctx)
	i := slices.Index(n.Actions, notify.ActionOther)
	if i < 0 || i+1 >= len(n.Actions) || n.Actions[i+1] != AlternativeLabel {
		t.Fatalf("actions with WithAlternative = %q", n.Actions)
	}
	if alt.Chosen() {
		t.Fatal("chosen before the answer")
	}
	s.Invoke(n.ID, notify.ActionOther)
	if err := notifyResult(t, ctx, ch); !errors.Is(err, ErrDeclined) || !alt.Chosen() {
		t.Fatalf("ConfirmPresence = %v, chosen %v; want ErrDeclined and the choice recorded", err, alt.Chosen())
	}

	// Allow and Deny still work with the flag, recording nothing.
	for _, key := range []string{notify.ActionAllow, notify.ActionDeny} {
		actx, alt := WithAlternative(ctx)
		ch = confirmAsync(actx, p, OpGetAssertion, "example.com", "alice")
		n = s.WaitNotify(ctx)
		s.Invoke(n.ID, key)
		err := notifyResult(t, ctx, ch)
		if (key == notify.ActionAllow) != (err == nil) || alt.Chosen() {
			t.Fatalf("%s: ConfirmPresence = %v, chosen %v", key, err, alt.Chosen())
		}
	}
}

func TestTerminalAlternative(t *testing.T) {
	ctx := testCtx(t)
	tp, w, out, _ := pipeTerminal(t)

	// Without the flag "o" is a plain no.
	errc := ask(ctx, tp, OpGetAssertion, "example.com", "alice")
	waitOutput(t, ctx, out, "Approve? [y/N] ", 1)
	fmt.Fprint(w, "o\n")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("ConfirmPresence = %v, want ErrDeclined", err)
	}

	actx, alt := WithAlternative(ctx)
	errc = ask(actx, tp, OpMakeCredential, "example.com", "alice")
	waitOutput(t, ctx, out, "o = use another device", 1)
	fmt.Fprint(w, "other\n")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) || !alt.Chosen() {
		t.Fatalf("ConfirmPresence = %v, chosen %v; want ErrDeclined and the choice recorded", err, alt.Chosen())
	}
}

func TestCommandAlternative(t *testing.T) {
	path, _ := writeHelper(t, `[ "$AUTHD_ALLOW_ALTERNATIVE" = 1 ] && exit 3; exit 1`)
	log, _ := testLogger()
	p := CommandPresence{Path: path, Logger: log, Grace: 50 * time.Millisecond}

	t.Setenv("AUTHD_ALLOW_ALTERNATIVE", "1") // inherited values do not leak through
	if err := p.ConfirmPresence(testCtx(t), OpGetAssertion, "example.com", "u"); !errors.Is(err, ErrDeclined) {
		t.Fatalf("without the flag: %v, want ErrDeclined", err)
	}
	ctx, alt := WithAlternative(testCtx(t))
	if err := p.ConfirmPresence(ctx, OpGetAssertion, "example.com", "u"); !errors.Is(err, ErrDeclined) || !alt.Chosen() {
		t.Fatalf("with the flag: %v, chosen %v; want ErrDeclined and the choice recorded", err, alt.Chosen())
	}

	// Exit 3 without the flag only declines.
	path3, _ := writeHelper(t, "exit 3")
	if err := (CommandPresence{Path: path3, Logger: log}).ConfirmPresence(testCtx(t), OpGetAssertion, "example.com", "u"); !errors.Is(err, ErrDeclined) {
		t.Fatalf("exit 3 without the flag: %v", err)
	}
}
