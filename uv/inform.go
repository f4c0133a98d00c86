package uv

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Informer tells the user what authd is waiting for while something else
// does the waiting, such as a fingerprint scan (CTAP's built-in user
// verification has no prompt of its own, so nothing on screen would say
// that authd waits for a finger, for which site, or who asked).
//
// Inform is best effort and quick: it shows title and body if it can do so
// now, never waits for a session or a person, and returns a function that
// takes the notice away (a no-op when nothing was shown or nothing can be
// taken back). It never fails the caller: what it cannot show it logs at
// debug level. title and body are plain text built by authd; untrusted
// parts must be sanitised (VerifyText does).
type Informer interface {
	Inform(ctx context.Context, title, body string) (done func())
}

// InformNotifier is a Notifier that can also show a notice without actions
// and withdraw it. *notify.Notifier satisfies it.
type InformNotifier interface {
	Inform(ctx context.Context, title, body string) (withdraw func(), err error)
}

var (
	_ Informer = NotifyPresence{}
	_ Informer = (*TerminalPresence)(nil)
	_ Informer = (*AutoPresence)(nil)
)

func nothing() {}

// VerifyText returns the summary and plain-text body of the notice shown
// while authd waits for a fingerprint for op (OpMakeCredential,
// OpGetAssertion, or "" when unknown) on rpID ("" when none), naming the
// requesting program when ctx carries it (WithRequester). rpID and the
// program name are sanitised.
func VerifyText(ctx context.Context, op, rpID string) (title, body string) {
	rp := Sanitize(rpID, maxRPIDRunes)
	switch {
	case op == OpMakeCredential && rp != "":
		body = "Touch the fingerprint reader to create a passkey on " + rp
	case op == OpMakeCredential:
		body = "Touch the fingerprint reader to create a passkey"
	case op == OpGetAssertion && rp != "":
		body = "Touch the fingerprint reader to sign in to " + rp
	case op == OpGetAssertion:
		body = "Touch the fingerprint reader to sign in"
	case rp != "":
		body = "Touch the fingerprint reader to continue with " + rp
	default:
		body = "Touch the fingerprint reader to continue"
	}
	if prog := Sanitize(Requester(ctx), maxProgramRunes); prog != "" {
		body += "\nRequested by: " + prog
	}
	return "Verify it's you (authd)", body
}

// Inform shows title and body in a notification without actions until done
// is called, when the Notifier is an InformNotifier (as *notify.Notifier
// is) and its server answers within notify's short bound.
func (p NotifyPresence) Inform(ctx context.Context, title, body string) (done func()) {
	log := logger(p.Logger)
	in, ok := p.Notifier.(InformNotifier)
	if !ok {
		log.Debug("nothing shown: the notifier cannot show a notice", "notice", title)
		return nothing
	}
	withdraw, err := in.Inform(ctx, title, body)
	if err != nil {
		log.Debug("nothing shown: notification failed", "notice", title, "err", err)
		return nothing
	}
	return withdraw
}

// maxInformRunes bounds each line Inform writes on a terminal.
const maxInformRunes = 256

// Inform writes body on Out, one "authd: " line per line of it, sanitised
// like any untrusted text. done does nothing: a line cannot be taken back.
func (t *TerminalPresence) Inform(ctx context.Context, title, body string) (done func()) {
	if t.Out == nil || ctx.Err() != nil {
		return nothing
	}
	var b strings.Builder
	b.WriteString("\n")
	for line := range strings.SplitSeq(body, "\n") {
		fmt.Fprintf(&b, "authd: %s\n", Sanitize(line, maxInformRunes))
	}
	if _, err := io.WriteString(t.Out, b.String()); err != nil {
		logger(t.Logger).Debug("nothing shown: terminal write failed", "notice", title, "err", err)
	}
	return nothing
}

// Inform tells the user through the method ConfirmPresence would ask with
// now, without waiting for one: a notification, or a line on the terminal.
// pinentry cannot show a notice that goes away by itself, so with it, or
// with nobody to tell, nothing is shown (a debug line says why).
func (a *AutoPresence) Inform(ctx context.Context, title, body string) (done func()) {
	if ctx.Err() != nil {
		return nothing
	}
	log := logger(a.Logger)
	a.mu.Lock()
	m, missing := a.resolveLocked(ctx)
	a.mu.Unlock()
	switch m.kind {
	case autoNotify:
		return NotifyPresence{Notifier: m.notifier, Logger: log}.Inform(ctx, title, body)
	case autoTerminal:
		return a.Terminal.Inform(ctx, title, body)
	case autoPinentry:
		log.Debug("nothing shown: pinentry cannot show a notice (--presence auto)", "notice", title)
	default:
		log.Debug("nothing shown: nobody to tell (--presence auto)", "notice", title,
			"missing", strings.Join(missing, "; "))
	}
	return nothing
}
