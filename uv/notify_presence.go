package uv

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/authd/authd/uv/notify"
)

// DefaultNotifyTimeout is how long NotifyPresence waits for an answer when
// its Timeout is zero.
const DefaultNotifyTimeout = 30 * time.Second

// maxProgramRunes bounds the requesting program's name on a prompt.
const maxProgramRunes = 64

// Notifier asks a yes/no question through a desktop notification with Allow
// and Deny actions. *notify.Notifier (uv/notify) satisfies it.
//
// Ask returns true only when the user chose Allow; ctx.Err() when ctx ended
// first, after withdrawing the notification; any other error when the
// question could not be asked or was closed unanswered. body is plain text:
// the Notifier escapes it for the server's markup.
type Notifier interface {
	Ask(ctx context.Context, title, body string) (allowed bool, err error)
}

// OtherNotifier is a Notifier that can also offer a third action (AskOther
// in uv/notify). *notify.Notifier satisfies it.
type OtherNotifier interface {
	Notifier
	AskOther(ctx context.Context, title, body, otherLabel string) (notify.Answer, error)
}

// NotifyPresence asks through a desktop notification (--presence notify):
// the notification names the operation, the relying party ID, the user name
// and, where known (WithRequester), the requesting program, and offers
// Allow and Deny.
//
// Only Allow approves. Deny, dismissing the notification, or a notification
// server that cannot show actions decline (ErrDeclined). When ctx ends the
// notification is withdrawn and ctx.Err() returned; when nobody answers
// within Timeout it is withdrawn too, and the error wraps
// context.DeadlineExceeded.
//
// When ctx allows another device (WithAlternative) and the Notifier is an
// OtherNotifier, the notification also offers "Use another device"
// (AlternativeLabel); choosing it records the choice and declines
// (ErrDeclined). Without the flag the notification is unchanged.
//
// NotifyPresence is also a Chooser (Choose, in choose.go) when its Notifier
// is a ChoiceNotifier, as *notify.Notifier is.
type NotifyPresence struct {
	Notifier Notifier      // nil declines everything
	Logger   *slog.Logger  // nil means slog.Default()
	Timeout  time.Duration // zero means DefaultNotifyTimeout
}

// ConfirmPresence shows the notification and waits for the answer.
func (p NotifyPresence) ConfirmPresence(ctx context.Context, op, rpID, userName string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	log := logger(p.Logger).With("op", op, "rp", Sanitize(rpID, maxRPIDRunes))
	if p.Notifier == nil {
		log.Warn("presence declined: no notification server configured")
		return fmt.Errorf("%w: no notification server configured", ErrDeclined)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultNotifyTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	title, body := NotifyText(ctx, op, rpID, userName)
	var allowed bool
	var err error
	if on, ok := p.Notifier.(OtherNotifier); ok && Alternative(ctx) != nil {
		var ans notify.Answer
		ans, err = on.AskOther(tctx, title, body, AlternativeLabel)
		if ans == notify.Other && err == nil {
			Alternative(ctx).Choose()
			log.Info("presence declined: the user chose another device in the desktop notification")
			return fmt.Errorf("%w: the user chose another device", ErrDeclined)
		}
		allowed = ans == notify.Allowed
	} else {
		allowed, err = p.Notifier.Ask(tctx, title, body)
	}
	switch {
	case allowed && err == nil:
		log.Info("presence confirmed in a desktop notification")
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case tctx.Err() != nil:
		log.Info("presence not confirmed: the notification was not answered in time", "timeout", timeout)
		return fmt.Errorf("uv: notification not answered within %s: %w", timeout, context.DeadlineExceeded)
	case err != nil:
		log.Info("presence declined: notification failed", "err", err)
		return fmt.Errorf("%w: notification: %v", ErrDeclined, err)
	default:
		log.Info("presence declined in a desktop notification")
		return fmt.Errorf("%w: denied in the desktop notification", ErrDeclined)
	}
}

// NotifyText returns the summary and plain-text body of the notification
// for op: Message's question plus, when ctx carries it (WithRequester), the
// requesting program. rpID, userName and the program name are sanitised.
func NotifyText(ctx context.Context, op, rpID, userName string) (title, body string) {
	title = "Passkey request (authd)"
	if op == OpReset {
		title = "Erase all passkeys? (authd)"
	}
	body = Message(op, rpID, userName)
	if prog := Sanitize(Requester(ctx), maxProgramRunes); prog != "" {
		body += "\nRequested by: " + prog
	}
	return title, body
}

type requesterKey struct{}

// WithRequester returns a context carrying the name of the program that
// made the request (for example "firefox (pid 1234)"), for presence prompts
// to show. The name is untrusted display text; prompts sanitise it.
func WithRequester(ctx context.Context, program string) context.Context {
	return context.WithValue(ctx, requesterKey{}, program)
}

// WithRequesterFunc is WithRequester for a door where the asking program is
// known only when a request arrives (the uhid device is shared by every
// process that opens its hidraw node): prompts call fn when they are shown.
// fn must be quick and must not block.
func WithRequesterFunc(ctx context.Context, fn func() string) context.Context {
	return context.WithValue(ctx, requesterKey{}, fn)
}

// Requester returns the program name set by WithRequester or
// WithRequesterFunc, or "".
func Requester(ctx context.Context) string {
	switch v := ctx.Value(requesterKey{}).(type) {
	case string:
		return v
	case func() string:
		return v()
	}
	return ""
}
