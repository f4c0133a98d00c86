// Package pinentry asks a person for a PIN, or for a yes/no confirmation,
// through a pinentry program (pinentry-gnome3, pinentry-qt, pinentry-curses,
// pinentry-tty...), the prompt GnuPG uses.
//
// It speaks the subset of the Assuan protocol that pinentry implements, over
// the program's stdin and stdout:
//
//	S: OK Pleased to meet you                    greeting
//	C: OPTION ttyname=/dev/pts/3                 from GPG_TTY (and ttytype from TERM)
//	C: SETTITLE / SETDESC / SETPROMPT / SETERROR / SETOK / SETCANCEL / SETTIMEOUT
//	C: GETPIN                                    or CONFIRM
//	S: D 12%2534                                 the PIN, %-escaped ("12%34")
//	S: OK                                        or ERR 83886179 Operation cancelled
//	C: BYE
//
// Every line is at most MaxLine (1000) bytes. Command arguments are
// %-escaped ('%', CR, LF as %25, %0D, %0A) and the text is first sanitised:
// control and format characters are removed (LF is kept in descriptions), so
// a relying party ID or user name from a website cannot inject commands or
// terminal escapes; too-long text is cut with "…". Data lines are %-decoded;
// status ("S") and comment ("#") lines are ignored and an INQUIRE is
// answered with CAN.
//
// The PIN is decoded straight from a fixed read buffer into a Secret; the
// buffer is zeroed afterwards, and the PIN is never logged or formatted.
//
// This package imports no other authd package.
package pinentry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultProgram is run when Program.Path is empty; it is looked up in $PATH.
const DefaultProgram = "pinentry"

// grace is how long pinentry has to exit after BYE and end of input, or after
// SIGTERM, before it is killed.
const grace = time.Second

// timeoutSlack is how long past Prompt.Timeout the program may take to report
// its own timeout before it is stopped.
const timeoutSlack = 2 * time.Second

// maxStderr bounds how much of the program's stderr is kept for error
// messages.
const maxStderr = 2 << 10

var (
	// ErrCancelled means the user cancelled the prompt (or pinentry had no
	// display or terminal to show it on). Errors that match it are *Error
	// values from pinentry.
	ErrCancelled = errors.New("pinentry: cancelled")
	// ErrTimeout means Prompt.Timeout expired: pinentry reported it, or did
	// not answer within a short time after it.
	ErrTimeout = errors.New("pinentry: timed out")
)

// Prompt is what a pinentry dialog shows. Empty fields are not sent, leaving
// pinentry's defaults. Every field is sanitised; Description and Error may
// span lines.
type Prompt struct {
	Title       string        // window title (SETTITLE)
	Description string        // the text above the entry (SETDESC)
	Prompt      string        // the entry's label, e.g. "PIN:" (SETPROMPT)
	OK          string        // OK button label (SETOK)
	Cancel      string        // Cancel button label (SETCANCEL)
	Error       string        // shown in red, e.g. after a wrong PIN (SETERROR)
	Timeout     time.Duration // pinentry gives up after this (SETTIMEOUT, whole seconds); zero: never
}

// Program is a pinentry program and how to run it.
//
// It runs directly (no shell) in a session of its own (setsid), so that it
// is never a background job of a terminal it reads and that cancellation
// reaches its children too, with the daemon's environment plus Env (later
// entries win). pinentry takes DISPLAY, WAYLAND_DISPLAY and
// DBUS_SESSION_BUS_ADDRESS from its environment; a terminal pinentry needs
// GPG_TTY (sent as OPTION ttyname, with TERM as OPTION ttytype) since its
// stdin and stdout carry the protocol.
type Program struct {
	Path string   // program name or path; empty means DefaultProgram
	Env  []string // "KEY=value" entries added to the environment
	Args []string // arguments after the program name
}

// GetPIN shows pr and returns the PIN entered. The caller must Clear it.
//
// A cancelled prompt returns an error matching ErrCancelled, an expired
// Prompt.Timeout ErrTimeout, a PIN longer than MaxSecretLen
// ErrSecretTooLong. When ctx is done first the program is stopped (SIGTERM,
// then SIGKILL after a second, to its whole session) and ctx.Err() is
// returned.
func (p Program) GetPIN(ctx context.Context, pr Prompt) (*Secret, error) {
	pin := new(Secret)
	err := p.run(ctx, pr, func(s *session) error {
		return s.command("GETPIN", pin)
	})
	if err != nil {
		pin.Clear()
		return nil, err
	}
	return pin, nil
}

// Confirm shows pr with OK and Cancel buttons (CONFIRM). It returns true
// for OK, false for Cancel or closing the dialog (pinentry's ERR "Operation
// cancelled" or "Not confirmed"). An expired Prompt.Timeout returns
// ErrTimeout; other failures (no such program, a protocol error, another
// ERR) return an error; ctx ends it as for GetPIN.
func (p Program) Confirm(ctx context.Context, pr Prompt) (bool, error) {
	err := p.run(ctx, pr, func(s *session) error {
		return s.command("CONFIRM", nil)
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrCancelled):
		return false, nil
	default:
		return false, err
	}
}

// run starts the program, sets up the prompt, calls ask and says BYE.
func (p Program) run(ctx context.Context, pr Prompt, ask func(*session) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var timedOut func() bool
	if pr.Timeout > 0 {
		inner, cancel := context.WithTimeout(ctx, pr.Timeout+timeoutSlack)
		defer cancel()
		outer := ctx
		timedOut = func() bool { return outer.Err() == nil }
		ctx = inner
	}

	s, err := p.start()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.converse(pr, ask) }()
	select {
	case err = <-done:
		if err == nil || isAssuanErr(err) {
			s.finish() // still in step: let pinentry exit by itself
		} else {
			s.stop()
		}
	case <-ctx.Done():
		s.stop() // unblocks converse: the pipes are closed
		<-done
		err = ctx.Err()
		if timedOut != nil && timedOut() {
			err = ErrTimeout
		}
	}
	s.lines.wipe()
	return err
}

// session is one running pinentry.
type session struct {
	cmd    *exec.Cmd
	pid    int
	in     *os.File // the program's stdin (our write end)
	out    *os.File // the program's stdout (our read end)
	lines  lineReader
	stderr *tailBuffer
	exited chan struct{} // closed when Wait has returned
	waited error
	once   sync.Once
}

func (p Program) start() (*session, error) {
	path := p.Path
	if path == "" {
		path = DefaultProgram
	}
	cmd := exec.Command(path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pinentry: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("pinentry: %w", err)
	}
	s := &session{cmd: cmd, in: inW, out: outR, stderr: &tailBuffer{}, exited: make(chan struct{})}
	s.lines.r = outR
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, s.stderr
	// Wait must not hang on stderr held open by a child of the program.
	cmd.WaitDelay = grace
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("pinentry: start %s: %w", path, err)
	}
	s.pid = cmd.Process.Pid
	go func() {
		s.waited = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// converse reads the greeting, sends the options and the prompt, runs ask,
// then says BYE.
func (s *session) converse(pr Prompt, ask func(*session) error) error {
	line, err := s.lines.readLine()
	if err != nil {
		return s.failed("reading greeting", err)
	}
	if !isOK(line) {
		return fmt.Errorf("%w: greeting is %q, not OK", ErrProtocol, clip(line))
	}
	// Options are advisory: a pinentry that does not know one answers ERR,
	// which is not a reason to give up. A terminal's type only matters with
	// a terminal to prompt on; DISPLAY and the like are in the environment.
	if tty := lookupEnv(s.cmd.Env, "GPG_TTY"); tty != "" {
		opts := []string{"ttyname=" + tty}
		if term := lookupEnv(s.cmd.Env, "TERM"); term != "" {
			opts = append(opts, "ttytype="+term)
		}
		for _, o := range opts {
			if err := s.command("OPTION "+escapeArg(sanitize(o, false), MaxLine-len("OPTION ")), nil); err != nil && !isAssuanErr(err) {
				return err
			}
		}
	}
	for _, c := range []struct {
		cmd, text string
		multiline bool
	}{
		{"SETTITLE", pr.Title, false},
		{"SETDESC", pr.Description, true},
		{"SETPROMPT", pr.Prompt, false},
		{"SETOK", pr.OK, false},
		{"SETCANCEL", pr.Cancel, false},
		{"SETERROR", pr.Error, true},
	} {
		text := sanitize(c.text, c.multiline)
		if text == "" {
			continue
		}
		if err := s.command(c.cmd+" "+escapeArg(text, MaxLine-len(c.cmd)-1), nil); err != nil {
			return err
		}
	}
	if pr.Timeout > 0 {
		secs := int64((pr.Timeout + time.Second - 1) / time.Second)
		if err := s.command("SETTIMEOUT "+strconv.FormatInt(secs, 10), nil); err != nil && !isAssuanErr(err) {
			return err
		}
	}
	err = ask(s)
	if err == nil || isAssuanErr(err) {
		// The answer is in; a pinentry that fumbles BYE changes nothing.
		_ = s.command("BYE", nil)
	}
	return err
}

// command sends one command line and reads its response. Data lines are
// decoded into data, or ignored when data is nil.
func (s *session) command(line string, data *Secret) error {
	if len(line) > MaxLine {
		return fmt.Errorf("pinentry: command longer than %d bytes", MaxLine) // a bug: arguments are cut to fit
	}
	if _, err := s.in.WriteString(line + "\n"); err != nil {
		return s.failed("sending "+verb(line), err)
	}
	for {
		resp, err := s.lines.readLine()
		if err != nil {
			return s.failed("reading the answer to "+verb(line), err)
		}
		switch {
		case isOK(resp):
			return nil
		case bytes.HasPrefix(resp, []byte("ERR ")):
			return parseErr(string(resp[4:]))
		case bytes.Equal(resp, []byte("D")) || bytes.HasPrefix(resp, []byte("D ")):
			if data != nil {
				err := decodeData(data, resp[min(2, len(resp)):])
				clear(resp) // the PIN, still %-escaped
				if err != nil {
					return err
				}
			}
		case bytes.Equal(resp, []byte("S")) || bytes.HasPrefix(resp, []byte("S ")),
			bytes.Equal(resp, []byte("#")) || bytes.HasPrefix(resp, []byte("# ")):
			// status and comment lines: nothing to do
		case bytes.Equal(resp, []byte("INQUIRE")) || bytes.HasPrefix(resp, []byte("INQUIRE ")):
			// authd has nothing to offer (e.g. for a quality bar).
			if _, err := s.in.WriteString("CAN\n"); err != nil {
				return s.failed("cancelling an inquiry", err)
			}
		default:
			return fmt.Errorf("%w: unexpected response %q to %s", ErrProtocol, clip(resp), verb(line))
		}
	}
}

// failed describes an I/O error, adding how the program ended if it did.
func (s *session) failed(what string, err error) error {
	select {
	case <-s.exited:
	case <-time.After(grace): // usually exiting right now
	}
	select {
	case <-s.exited:
		msg := "exited"
		if s.waited != nil {
			msg = s.waited.Error()
		}
		if tail := s.stderr.lastLine(); tail != "" {
			msg += ": " + tail
		}
		return fmt.Errorf("pinentry: %s: %s (%s)", what, err, msg)
	default:
		return fmt.Errorf("pinentry: %s: %w", what, err)
	}
}

// finish ends a completed conversation: end of input, then a grace period
// to exit before the program is stopped.
func (s *session) finish() {
	s.in.Close()
	select {
	case <-s.exited:
		s.sweep()
		s.out.Close()
	case <-time.After(grace):
		s.stop()
	}
}

// stop ends the program: SIGTERM to its session's process group, SIGKILL
// after grace, and closes the pipes so that a blocked read or write returns.
func (s *session) stop() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.pid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(grace):
			_ = syscall.Kill(-s.pid, syscall.SIGKILL)
			<-s.exited
		}
		s.sweep()
		s.in.Close()
		s.out.Close()
	})
}

// sweep kills what is left of the program's process group once the program
// has exited. The kernel keeps the group ID reserved while any member lives,
// so this reaches the program's children, or nobody (ESRCH, ignored).
func (s *session) sweep() { _ = syscall.Kill(-s.pid, syscall.SIGKILL) }

func isOK(line []byte) bool {
	return bytes.Equal(line, []byte("OK")) || bytes.HasPrefix(line, []byte("OK "))
}

func isAssuanErr(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// verb returns a command's first word, for error messages (never arguments).
func verb(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return v
}

// clip makes a line from the program short and printable for an error.
func clip(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return sanitize(string(b), false)
}

func lookupEnv(env []string, key string) string {
	v := ""
	for _, kv := range env { // the last entry wins, as in exec
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// tailBuffer keeps the last maxStderr bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - maxStderr; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// lastLine returns the last non-empty line, sanitised and cut to 200 bytes.
func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	l := sanitize(lines[len(lines)-1], false)
	if len(l) > 200 {
		l = l[:200]
	}
	return l
}
