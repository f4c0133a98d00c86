package uv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// maxAnswer bounds a terminal answer; longer lines are declined unread.
const maxAnswer = 256

// TerminalPresence asks on a terminal (--presence terminal): it prints the
// question from Message and "Approve?" with a default of no, then reads one
// line. "y" or "yes" (any case) approves; anything else, including an empty
// line, an unterminated line or end of input (Ctrl-D), declines.
//
// The daemon passes /dev/tty, or its stdin and stderr. Prompts are asked one
// at a time. A single goroutine reads In, one Read at a time, so that a
// cancelled prompt returns at once although its Read stays blocked. Input
// is stamped with the prompt that was on screen when it arrived: an answer
// typed for a cancelled prompt, or while no prompt was shown, is discarded
// and can never approve a later prompt. When In is a terminal, type-ahead is
// also flushed before each prompt. If In is not a terminal and reaches end
// of file, this and every later prompt are declined.
//
// When ctx allows another device (WithAlternative), the prompt also offers
// "o" (or "other"): use another device. That answer records the choice
// (AlternativeChoice) and declines. Without the flag "o" declines like any
// other answer.
//
// TerminalPresence is also a Chooser (Choose, in choose.go): a numbered
// list answered by a number, under the same rules.
//
// A TerminalPresence must not be copied after first use.
type TerminalPresence struct {
	In     io.Reader    // where answers are read
	Out    io.Writer    // where questions are written
	Logger *slog.Logger // nil means slog.Default()

	once    sync.Once
	sem     chan struct{} // one prompt at a time; a channel so waiting honours ctx
	lines   chan termLine // from the reader goroutine, unbuffered
	done    chan struct{} // closed when the reader stops for good
	readErr error         // why it stopped; written before done is closed
	active  atomic.Uint64 // generation of the prompt on screen, 0 if none
	gen     uint64        // last generation handed out; guarded by sem

	stamped func(gen uint64) // test hook: called after each Read is stamped
}

// termLine is one line of input and the prompt that was on screen when it
// arrived.
type termLine struct {
	text string
	gen  uint64
}

// ConfirmPresence asks the question on the terminal and waits for an answer.
func (t *TerminalPresence) ConfirmPresence(ctx context.Context, op, rpID, userName string) error {
	if t.In == nil || t.Out == nil {
		return fmt.Errorf("%w: terminal presence has no terminal (In or Out is nil)", ErrDeclined)
	}
	t.once.Do(t.start)
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-t.sem }()
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-t.done:
		return fmt.Errorf("%w: terminal input: %v", ErrDeclined, t.readErr)
	default:
	}
	log := logger(t.Logger).With("op", op, "rp", Sanitize(rpID, maxRPIDRunes))

	t.gen++
	gen := t.gen
	flushTypeahead(t.In) // before activating, so older keystrokes cannot answer
	t.active.Store(gen)
	defer t.active.Store(0)

	alt := Alternative(ctx)
	question := "Approve? [y/N] "
	if alt != nil {
		question = "Approve? [y/N, o = use another device] "
	}
	if _, err := fmt.Fprintf(t.Out, "\nauthd: %s\n%s", Message(op, rpID, userName), question); err != nil {
		return fmt.Errorf("%w: write prompt: %v", ErrDeclined, err)
	}
	for {
		select {
		case l := <-t.lines:
			if l.gen != gen {
				log.Debug("discarding terminal input typed for an earlier prompt")
				continue
			}
			if approved(l.text) {
				log.Info("presence approved on terminal")
				return nil
			}
			if alt != nil && other(l.text) {
				alt.Choose()
				fmt.Fprintln(t.Out, "Using another device.")
				log.Info("presence declined: the user chose another device on the terminal")
				return fmt.Errorf("%w: the user chose another device", ErrDeclined)
			}
			fmt.Fprintln(t.Out, "Declined.")
			log.Info("presence declined on terminal")
			return fmt.Errorf("%w: declined on the terminal", ErrDeclined)
		case <-t.done:
			fmt.Fprintln(t.Out)
			return fmt.Errorf("%w: terminal input: %v", ErrDeclined, t.readErr)
		case <-ctx.Done():
			// Deactivate before printing, so an answer to "(cancelled)" is stale.
			t.active.Store(0)
			fmt.Fprintln(t.Out, "(cancelled)")
			log.Info("presence prompt cancelled", "err", ctx.Err())
			return ctx.Err()
		}
	}
}

func approved(answer string) bool {
	a := strings.ToLower(strings.TrimSpace(answer))
	return a == "y" || a == "yes"
}

func other(answer string) bool {
	a := strings.ToLower(strings.TrimSpace(answer))
	return a == "o" || a == "other"
}

func (t *TerminalPresence) start() {
	t.sem = make(chan struct{}, 1)
	t.lines = make(chan termLine)
	t.done = make(chan struct{})
	go t.read()
}

// read runs for the life of t, splitting In into lines. It never reads ahead
// of the consumer by more than one Read: each line is handed over before the
// next Read, so unread input stays in the kernel where flushTypeahead can
// drop it.
func (t *TerminalPresence) read() {
	tty := isTerminal(t.In)
	buf := make([]byte, 1024)
	var line []byte
	overlong := false
	send := func(gen uint64) {
		text := string(line)
		if overlong {
			text = "" // too long to be "yes": decline
		}
		t.lines <- termLine{text: text, gen: gen}
		line, overlong = line[:0], false
	}
	for {
		n, err := t.In.Read(buf)
		gen := t.active.Load() // the prompt this input answers
		if t.stamped != nil && n > 0 {
			t.stamped(gen)
		}
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			end := i
			if i < 0 {
				end = len(data)
			}
			if len(line)+end > maxAnswer {
				overlong = true
			} else {
				line = append(line, data[:end]...)
			}
			if i < 0 {
				break
			}
			send(gen)
			data = data[i+1:]
		}
		if err == nil {
			continue
		}
		// Only a completed line answers: an unterminated one at EOF is
		// dropped. Ctrl-D on a terminal is an answer ("no"), not the end of
		// input. A hung-up terminal returning EOF forever cannot spin: each
		// EOF waits in send for a prompt, which it declines.
		line, overlong = line[:0], false
		if errors.Is(err, io.EOF) && tty {
			send(gen)
			continue
		}
		t.readErr = err
		close(t.done)
		logger(t.Logger).Warn("terminal presence: input closed; every further request will be declined", "err", err)
		return
	}
}

// isTerminal reports whether r is a file descriptor referring to a terminal.
func isTerminal(r io.Reader) bool {
	tty := false
	withFD(r, func(fd int) { tty = term.IsTerminal(fd) })
	return tty
}

// flushTypeahead discards input typed on terminal r but not yet read, so a
// keystroke made before the question was shown cannot answer it.
func flushTypeahead(r io.Reader) {
	withFD(r, func(fd int) {
		if term.IsTerminal(fd) {
			_ = unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH)
		}
	})
}

// withFD calls f with r's file descriptor, if it has one. It uses
// SyscallConn rather than os.File.Fd, which would switch the file to
// blocking mode.
func withFD(r io.Reader, f func(fd int)) {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { f(int(fd)) })
}
