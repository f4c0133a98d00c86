package uv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// DefaultGrace is how long a presence helper has to exit after SIGTERM before
// it is killed, when CommandPresence.Grace is zero.
const DefaultGrace = 2 * time.Second

// maxHelperLog bounds how much of a helper's stdout and stderr (each) reaches
// the log, so that a chatty or hostile helper cannot flood it.
const maxHelperLog = 8 << 10

// ExitAlternative is the exit status by which a CommandPresence helper says
// "use another device" (only when AUTHD_ALLOW_ALTERNATIVE=1).
const ExitAlternative = 3

// CommandPresence asks through a helper program (--presence command:PATH),
// typically a desktop dialog, for a daemon that has no terminal. The helper
// is run directly (no shell) with the daemon's environment plus:
//
//	AUTHD_OPERATION  the op (makeCredential, getAssertion, reset, ...)
//	AUTHD_RP_ID      the relying party ID, sanitised, possibly empty
//	AUTHD_USER_NAME  the user name, sanitised, possibly empty
//	AUTHD_MESSAGE    the question to show, from Message
//	AUTHD_REQUESTER  the program asking (see WithRequester), sanitised, possibly empty
//
//	AUTHD_ALLOW_ALTERNATIVE  "1" when the helper may offer "use another
//	                         device" (WithAlternative), else ""
//
// Exit status 0 approves; any other outcome declines. When
// AUTHD_ALLOW_ALTERNATIVE is "1", exit status 3 (ExitAlternative) means the
// user chose another device: the choice is recorded (AlternativeChoice) and
// the request declined; without it, 3 declines like any other status. The values come from
// remote websites: they are free of control characters, but a helper that
// renders markup (zenity, notify-send) must still escape them.
//
// The helper runs in its own process group with stdin on /dev/null, so it
// cannot read the daemon's terminal. When ctx is done (client cancel, timeout)
// the group gets SIGTERM, the helper is SIGKILLed if it has not exited after
// Grace, and whatever is left of its process group is then SIGKILLed.
type CommandPresence struct {
	Path   string        // absolute path of the helper
	Logger *slog.Logger  // nil means slog.Default(); helper output goes here at debug level
	Grace  time.Duration // SIGTERM to SIGKILL delay; zero means DefaultGrace
}

// ConfirmPresence runs the helper and reports its verdict.
func (p CommandPresence) ConfirmPresence(ctx context.Context, op, rpID, userName string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	log := logger(p.Logger).With("helper", p.Path, "op", op)
	grace := p.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}

	alt := Alternative(ctx)
	allowAlt := ""
	if alt != nil {
		allowAlt = "1"
	}
	cmd := exec.CommandContext(ctx, p.Path)
	cmd.Env = append(os.Environ(),
		"AUTHD_ALLOW_ALTERNATIVE="+allowAlt,
		"AUTHD_OPERATION="+Sanitize(op, 64),
		"AUTHD_RP_ID="+Sanitize(rpID, maxRPIDRunes),
		"AUTHD_USER_NAME="+Sanitize(userName, maxUserRunes),
		"AUTHD_MESSAGE="+Message(op, rpID, userName),
		"AUTHD_REQUESTER="+Sanitize(Requester(ctx), maxProgramRunes),
	) // exec keeps the last of duplicate keys, so inherited AUTHD_* are overridden
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Signal the whole group: a shell-script helper's dialog is a child of it.
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	// After Grace, Wait SIGKILLs the helper and stops waiting for output held
	// open by its descendants.
	cmd.WaitDelay = grace
	stdout := &logWriter{log: log, stream: "stdout"}
	stderr := &logWriter{log: log, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: start helper %s: %v", ErrDeclined, p.Path, err)
	}
	pgid := cmd.Process.Pid
	err := cmd.Wait()
	stdout.flush()
	stderr.flush()

	if ctx.Err() != nil {
		// The leader is gone; sweep what remains of its group. The kernel
		// keeps the group ID reserved while any member lives, so this reaches
		// the helper's descendants, or nobody (ESRCH, ignored): a stranger
		// would need the ID reused in the instant since Wait returned.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		log.Debug("presence helper stopped: request cancelled", "err", err)
		return ctx.Err()
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		// Exit status 0, but a background child of the helper kept its
		// output open past Grace: the answer was still yes.
		log.Debug("presence helper left output open after exiting", "err", err)
		err = nil
	}
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if alt != nil && exitErr.ExitCode() == ExitAlternative {
				alt.Choose()
				log.Info("presence declined: the user chose another device in the helper")
				return fmt.Errorf("%w: helper %s: the user chose another device", ErrDeclined, p.Path)
			}
			log.Info("presence declined by helper", "status", exitErr.ProcessState.String())
			return fmt.Errorf("%w: helper %s: %s", ErrDeclined, p.Path, exitErr.ProcessState)
		}
		return fmt.Errorf("%w: helper %s: %v", ErrDeclined, p.Path, err)
	}
	log.Info("presence approved by helper")
	return nil
}

// logWriter turns a helper's output into debug log lines, keeping at most
// maxHelperLog bytes; the rest is read and dropped so the helper never blocks
// on a full pipe. Each exec stream has its own logWriter, written from one
// goroutine, so it needs no lock.
type logWriter struct {
	log       *slog.Logger
	stream    string
	buf       []byte
	logged    int
	truncated bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !w.truncated {
		room := maxHelperLog - w.logged - len(w.buf)
		if room <= 0 {
			w.flush()
			w.truncated = true
			w.log.Debug("presence helper output truncated", "stream", w.stream)
			break
		}
		chunk := p
		if len(chunk) > room {
			chunk = chunk[:room]
		}
		p = p[len(chunk):]
		for {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				w.buf = append(w.buf, chunk...)
				break
			}
			w.buf = append(w.buf, chunk[:i]...)
			w.flush()
			w.logged++ // the newline
			chunk = chunk[i+1:]
		}
	}
	return n, nil
}

// flush logs the buffered partial line, if any.
func (w *logWriter) flush() {
	if len(w.buf) == 0 {
		return
	}
	w.log.Debug("presence helper output", "stream", w.stream, "line", Sanitize(string(w.buf), maxHelperLog))
	w.logged += len(w.buf)
	w.buf = w.buf[:0]
}
