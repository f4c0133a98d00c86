package daemon

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/uv"
	"github.com/authd/authd/uv/pinentry"
)

// maxPromptAttempts is how many times one PromptPIN asks again after a wrong
// PIN; every attempt costs a CTAP retry, as it would through clientPIN.
const maxPromptAttempts = 3

// PromptPIN asks the user for the authenticator PIN in authd's own pinentry
// prompt (for flows where authd itself is the client: the local API and the
// CLI) and verifies it exactly as clientPIN does, with the same retry
// counters. It returns nil when the PIN was right, an error wrapping
// pinentry.ErrCancelled when the user cancelled, ctx.Err() when ctx ended, or
// an error wrapping the CTAP status (PIN_INVALID, PIN_BLOCKED,
// PIN_AUTH_BLOCKED, PIN_NOT_SET). The PIN never leaves the fixed-size
// pinentry.Secret, which is cleared after use.
func (d *Daemon) PromptPIN(ctx context.Context, reason string) error {
	path, err := resolvePinentry(d.pinentryPath)
	if err != nil {
		return err
	}
	prog := pinentry.Program{Path: path}
	prompt := pinentry.Prompt{
		Title:       "authd",
		Description: uv.Sanitize(reason, 200),
		Prompt:      "Authenticator PIN:",
		OK:          "Unlock",
		Cancel:      "Cancel",
	}
	for attempt := 1; ; attempt++ {
		secret, err := prog.GetPIN(ctx, prompt)
		if err != nil {
			return fmt.Errorf("daemon: PIN prompt: %w", err)
		}
		err = d.engine.VerifyPIN(ctx, secret.Bytes())
		secret.Clear()
		if err == nil {
			return nil
		}
		if ctap2.StatusOf(err) != ctap2.ErrPINInvalid || attempt == maxPromptAttempts {
			return fmt.Errorf("daemon: PIN: %w", err)
		}
		prompt.Error = fmt.Sprintf("Wrong PIN (%d tries left before the PIN is blocked)", d.store.State().PINRetries)
	}
}

// resolvePinentry finds the pinentry program: an absolute path as given, a
// bare name on PATH (default "pinentry").
func resolvePinentry(p string) (string, error) {
	if p == "" {
		p = pinentry.DefaultProgram
	}
	if filepath.IsAbs(p) {
		return p, nil
	}
	found, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("daemon: no pinentry program %q: %w", p, errors.Unwrap(err))
	}
	return found, nil
}
