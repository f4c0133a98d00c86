package uv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// AllowPresence approves every request without asking anyone. It exists for
// automated tests (--presence allow): with it any local process can use every
// credential silently, so it logs a warning each time it is used.
type AllowPresence struct {
	Logger *slog.Logger // nil means slog.Default()
}

// ConfirmPresence approves unless ctx is already done.
func (p AllowPresence) ConfirmPresence(ctx context.Context, op, rpID, userName string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	logger(p.Logger).Warn("presence auto-approved (--presence allow): for tests only",
		"op", op, "rp", Sanitize(rpID, maxRPIDRunes))
	return nil
}

// ErrDeclined is wrapped by every error a Presence in this package returns to
// mean "declined" (by the user, by a helper's exit status, or by policy), as
// opposed to ctx.Err().
var ErrDeclined = errors.New("uv: presence declined")

// DenyPresence declines every request, logging how to configure presence
// (--presence deny), so that a daemon meant to ask nobody fails closed and
// says why.
type DenyPresence struct {
	Reason string       // why presence cannot be confirmed, for the log
	Logger *slog.Logger // nil means slog.Default()
}

// ConfirmPresence declines (ctx.Err() if ctx is already done).
func (p DenyPresence) ConfirmPresence(ctx context.Context, op, rpID, userName string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	reason := p.Reason
	if reason == "" {
		reason = "no way to ask the user is configured"
	}
	logger(p.Logger).Warn("presence declined: "+reason+
		"; configure user presence with --presence notify|pinentry|terminal|command:PATH|allow",
		"op", op, "rp", Sanitize(rpID, maxRPIDRunes))
	return fmt.Errorf("%w: %s", ErrDeclined, reason)
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
