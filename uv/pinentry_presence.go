package uv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/authd/authd/uv/pinentry"
)

// DefaultPinentryTimeout is how long a pinentry presence prompt stays up when
// PinentryPresence.Timeout is zero.
const DefaultPinentryTimeout = 30 * time.Second

// PinentryPresence asks through pinentry's CONFIRM dialog (--presence
// pinentry[:PATH]): the question from Message with Allow and Deny buttons.
// Allow approves; Deny, closing the dialog, or a pinentry that cannot show
// it (no display, no terminal), or fails, declines with ErrDeclined. The
// prompt is withdrawn (the program stopped) when ctx is done, and gives up
// after Timeout; both return the context's error.
type PinentryPresence struct {
	Program pinentry.Program
	Logger  *slog.Logger  // nil means slog.Default()
	Timeout time.Duration // zero means DefaultPinentryTimeout
}

var _ Presence = PinentryPresence{}

// NewPinentryPresence returns a PinentryPresence for the pinentry program
// path: an absolute path, or a name looked up in $PATH ("pinentry-gnome3");
// empty means pinentry.DefaultProgram ("pinentry", which Debian's
// alternatives point at the desktop's flavour). The program is resolved now,
// so that a later change of $PATH or of the working directory cannot change
// which program decides, and a missing one is reported at start rather than
// at the first request.
func NewPinentryPresence(path string, logger *slog.Logger) (PinentryPresence, error) {
	if path == "" {
		path = pinentry.DefaultProgram
	}
	if !strings.Contains(path, "/") {
		found, err := exec.LookPath(path)
		if err != nil {
			return PinentryPresence{}, fmt.Errorf("uv: --presence pinentry: %w", err)
		}
		path = found
	}
	if !filepath.IsAbs(path) {
		return PinentryPresence{}, fmt.Errorf("uv: --presence pinentry: %q is neither an absolute path nor a name in $PATH", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return PinentryPresence{}, fmt.Errorf("uv: --presence pinentry: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 || unix.Access(path, unix.X_OK) != nil {
		return PinentryPresence{}, fmt.Errorf("uv: --presence pinentry: %s is not an executable file", path)
	}
	return PinentryPresence{Program: pinentry.Program{Path: path}, Logger: logger}, nil
}

// ConfirmPresence shows the question and waits for the answer.
func (p PinentryPresence) ConfirmPresence(ctx context.Context, op, rpID, userName string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultPinentryTimeout
	}
	log := logger(p.Logger).With("pinentry", p.Program.Path, "op", op, "rp", Sanitize(rpID, maxRPIDRunes))
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := p.Program.Confirm(pctx, pinentry.Prompt{
		Title:       "authd",
		Description: Message(op, rpID, userName),
		OK:          "Allow",
		Cancel:      "Deny",
		Timeout:     timeout, // pinentry closes its own dialog, too
	})
	switch {
	case ctx.Err() != nil:
		log.Debug("pinentry prompt withdrawn: request cancelled")
		return ctx.Err()
	case pctx.Err() != nil || errors.Is(err, pinentry.ErrTimeout):
		log.Info("presence not confirmed: pinentry prompt timed out", "timeout", timeout)
		return context.DeadlineExceeded
	case err != nil:
		log.Warn("presence declined: pinentry failed", "err", err)
		return fmt.Errorf("%w: pinentry %s: %v", ErrDeclined, p.Program.Path, err)
	case !ok:
		log.Info("presence declined in pinentry")
		return fmt.Errorf("%w: declined in pinentry", ErrDeclined)
	}
	log.Info("presence approved in pinentry")
	return nil
}
