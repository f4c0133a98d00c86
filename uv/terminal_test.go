package uv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const promptText = "Approve? [y/N]"

// pipeTerminal returns a TerminalPresence reading from a pipe, the pipe's
// write end standing in for the user's keyboard, and the prompt output.
// Every Read the presence makes is reported, with its stamp, on the
// returned channel.
func pipeTerminal(t *testing.T) (*TerminalPresence, *os.File, *syncBuffer, chan uint64) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); r.Close() })
	out := &syncBuffer{}
	log, _ := testLogger()
	stamps := make(chan uint64, 16)
	tp := &TerminalPresence{In: r, Out: out, Logger: log}
	tp.stamped = func(gen uint64) { stamps <- gen }
	return tp, w, out, stamps
}

// ask starts a prompt in the background.
func ask(ctx context.Context, tp *TerminalPresence, op, rp, user string) chan error {
	errc := make(chan error, 1)
	go func() { errc <- tp.ConfirmPresence(ctx, op, rp, user) }()
	return errc
}

func result(t *testing.T, ctx context.Context, errc chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		t.Fatal("ConfirmPresence did not return")
		return nil
	}
}

func TestTerminalAnswers(t *testing.T) {
	tests := []struct {
		answer  string
		approve bool
	}{
		{"y\n", true},
		{"Y\n", true},
		{"yes\n", true},
		{"  YeS \r\n", true},
		{"n\n", false},
		{"\n", false},
		{"no\n", false},
		{"yess\n", false},
		{"y y\n", false},
		{"ye" + strings.Repeat(" ", 300) + "s\n", false},
		{"yes" + strings.Repeat(" ", 2000) + "\n", false}, // overlong
	}
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	for i, tt := range tests {
		errc := ask(ctx, tp, OpGetAssertion, "example.com", "user")
		waitOutput(t, ctx, out, promptText, i+1)
		if _, err := io.WriteString(kbd, tt.answer); err != nil {
			t.Fatal(err)
		}
		err := result(t, ctx, errc)
		if tt.approve && err != nil {
			t.Errorf("answer %q: %v, want approval", tt.answer, err)
		}
		if !tt.approve && !errors.Is(err, ErrDeclined) {
			t.Errorf("answer %q: %v, want ErrDeclined", tt.answer, err)
		}
	}
	if !strings.Contains(out.String(), `Sign in to example.com as "user"?`+"\n"+promptText) {
		t.Errorf("prompt output:\n%s", out)
	}
}

func TestTerminalSanitisesPrompt(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	errc := ask(ctx, tp, OpMakeCredential, "evil.example\x1b]0;x\x07", "\x1b[2Jroot")
	waitOutput(t, ctx, out, promptText, 1)
	io.WriteString(kbd, "n\n")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("got %v", err)
	}
	if s := out.String(); strings.ContainsAny(s, "\x1b\x07") {
		t.Errorf("escape sequence reached the terminal: %q", s)
	}
}

func TestTerminalCancelThenLateAnswer(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, stamps := pipeTerminal(t)

	cctx, cancel := context.WithCancel(ctx)
	errc := ask(cctx, tp, OpReset, "", "")
	waitOutput(t, ctx, out, promptText, 1)
	if !strings.Contains(out.String(), "ERASE EVERY PASSKEY") {
		t.Errorf("reset prompt does not warn: %q", out)
	}
	cancel()
	if err := result(t, ctx, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled prompt = %v, want context.Canceled", err)
	}
	if !strings.Contains(out.String(), "(cancelled)") {
		t.Errorf("no (cancelled) notice: %q", out)
	}

	// The user answers the vanished prompt; the answer is read while no
	// prompt is shown.
	io.WriteString(kbd, "y\n")
	if gen := <-stamps; gen != 0 {
		t.Fatalf("late answer stamped for prompt %d", gen)
	}

	errc = ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 2)
	io.WriteString(kbd, "n\n")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("next prompt = %v, want ErrDeclined: the late answer must not approve it", err)
	}

	// Input typed while no prompt is shown is likewise ignored.
	for len(stamps) > 0 {
		<-stamps
	}
	io.WriteString(kbd, "yes\nyes\n") // one Read: both lines stamped 0
	if gen := <-stamps; gen != 0 {
		t.Fatalf("idle input stamped for prompt %d", gen)
	}
	errc = ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 3)
	io.WriteString(kbd, "no\n")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("prompt after idle input = %v, want ErrDeclined", err)
	}

	// And the terminal still works.
	errc = ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 4)
	io.WriteString(kbd, "y\n")
	if err := result(t, ctx, errc); err != nil {
		t.Fatalf("final prompt = %v, want approval", err)
	}
}

func TestTerminalOnePromptAtATime(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	first := ask(ctx, tp, OpGetAssertion, "one.example", "")
	waitOutput(t, ctx, out, promptText, 1)

	cctx, cancel := context.WithCancel(ctx)
	second := ask(cctx, tp, OpGetAssertion, "two.example", "")
	cancel()
	if err := result(t, ctx, second); !errors.Is(err, context.Canceled) {
		t.Fatalf("queued prompt = %v, want context.Canceled", err)
	}
	io.WriteString(kbd, "y\n")
	if err := result(t, ctx, first); err != nil {
		t.Fatalf("first prompt = %v", err)
	}
	if strings.Contains(out.String(), "two.example") {
		t.Errorf("second prompt was shown while the first was pending:\n%s", out)
	}
}

func TestTerminalEOF(t *testing.T) {
	ctx := testCtx(t)
	tp, kbd, out, _ := pipeTerminal(t)
	errc := ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 1)
	io.WriteString(kbd, "y") // no newline: not an answer yet
	kbd.Close()
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("prompt at EOF = %v, want ErrDeclined", err)
	}
	if err := tp.ConfirmPresence(ctx, OpGetAssertion, "example.com", ""); !errors.Is(err, ErrDeclined) {
		t.Fatalf("prompt after EOF = %v, want ErrDeclined", err)
	}
}

func TestTerminalNoTerminal(t *testing.T) {
	if err := (&TerminalPresence{}).ConfirmPresence(testCtx(t), OpSelection, "", ""); !errors.Is(err, ErrDeclined) {
		t.Fatalf("got %v, want ErrDeclined", err)
	}
}

// openPTY returns the master and slave ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func TestTerminalOnPTY(t *testing.T) {
	ctx := testCtx(t)
	master, slave := openPTY(t)
	// Drain what the terminal displays (prompt and echo) so writes never block.
	go io.Copy(io.Discard, master)
	log, _ := testLogger()
	out := &syncBuffer{}
	tp := &TerminalPresence{In: slave, Out: out, Logger: log}

	errc := ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 1)
	io.WriteString(master, "yes\n")
	if err := result(t, ctx, errc); err != nil {
		t.Fatalf("got %v, want approval", err)
	}

	// An unterminated answer is no answer; Ctrl-D on a terminal declines
	// this prompt only.
	errc = ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 2)
	io.WriteString(master, "y\x04") // delivers "y" without a newline
	io.WriteString(master, "\x04")  // EOF
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("y, Ctrl-D = %v, want ErrDeclined", err)
	}

	// Ctrl-D alone declines too.
	errc = ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 3)
	io.WriteString(master, "\x04")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("Ctrl-D = %v, want ErrDeclined", err)
	}
	errc = ask(ctx, tp, OpGetAssertion, "example.com", "")
	waitOutput(t, ctx, out, promptText, 4)
	io.WriteString(master, "y\n")
	if err := result(t, ctx, errc); err != nil {
		t.Fatalf("prompt after Ctrl-D = %v, want approval", err)
	}
}

func TestTerminalFlushesTypeahead(t *testing.T) {
	ctx := testCtx(t)
	master, slave := openPTY(t)
	go io.Copy(io.Discard, master)
	log, _ := testLogger()
	out := &syncBuffer{}
	stamps := make(chan uint64, 16)
	tp := &TerminalPresence{In: slave, Out: out, Logger: log}
	tp.stamped = func(gen uint64) { stamps <- gen }

	// Start the reader with a first prompt.
	errc := ask(ctx, tp, OpSelection, "", "")
	waitOutput(t, ctx, out, promptText, 1)
	io.WriteString(master, "n\n")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatal(err)
	}
	<-stamps

	// Type ahead twice while no prompt is shown: the reader takes the first
	// line (stale), the second stays queued in the terminal.
	io.WriteString(master, "y\n")
	if gen := <-stamps; gen != 0 {
		t.Fatalf("idle input stamped for prompt %d", gen)
	}
	io.WriteString(master, "y\n")
	eventually(t, ctx, "type-ahead to reach the terminal", func() bool {
		queued := 0
		withFD(slave, func(fd int) { queued, _ = unix.IoctlGetInt(fd, unix.TIOCINQ) })
		return queued > 0
	})

	errc = ask(ctx, tp, OpMakeCredential, "example.com", "")
	waitOutput(t, ctx, out, promptText, 2)
	io.WriteString(master, "n\n")
	if err := result(t, ctx, errc); !errors.Is(err, ErrDeclined) {
		t.Fatalf("prompt after type-ahead = %v, want ErrDeclined", err)
	}
}
