package ctap2

import (
	"context"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/keystore"
)

// Local operations for authd's own API (where authd itself is the client and
// collects PINs with its own prompt). They apply the same rules and counters
// as the CTAP commands they mirror and wait for their turn like any request.

// SetPINLocal sets the first PIN (clientPIN setPIN's rules: PIN_AUTH_INVALID
// if one is set, PIN_POLICY_VIOLATION for a PIN outside the policy).
func (a *Authenticator) SetPINLocal(ctx context.Context, pin []byte) error {
	release, err := a.Idle(ctx)
	if err != nil {
		return fail(ErrChannelBusy, "authenticator busy")
	}
	defer release()
	if a.cfg.State.State().PINSet {
		return fail(ErrPINAuthInvalid, "a PIN is already set: change it instead")
	}
	hash, n, err := a.pinPolicy(pin)
	if err != nil {
		return err
	}
	if err := a.cfg.State.SetPIN(hash, func(st *keystore.State) error {
		st.PINCodePoints = n
		st.PINRetries, st.PINFails = maxPINRetries, 0
		return nil
	}); err != nil {
		return wrapStore("setPIN", err)
	}
	a.log.Info("ctap2: PIN set (local API)")
	return nil
}

// ChangePINLocal changes the PIN after verifying the current one with
// clientPIN changePIN's counters and rules (forcePINChange needs a different PIN).
func (a *Authenticator) ChangePINLocal(ctx context.Context, oldPIN, newPIN []byte) error {
	if err := a.VerifyPIN(ctx, oldPIN); err != nil && StatusOf(err) != ErrPINPolicyViolation {
		return err // a pending forced change is exactly what this call resolves
	}
	release, err := a.Idle(ctx)
	if err != nil {
		return fail(ErrChannelBusy, "authenticator busy")
	}
	defer release()
	hash, n, err := a.pinPolicy(newPIN)
	if err != nil {
		return err
	}
	if err := a.storeChangedPIN(a.cfg.State.State().ForcePINChange, pinuv.PINHash(oldPIN), hash, n); err != nil {
		return err
	}
	a.log.Info("ctap2: PIN changed (local API)")
	return nil
}

// ResetLocal erases every credential and the PIN after the user confirmed
// a presence prompt saying so. Unlike authenticatorReset it is not limited to
// 10 s after start: the local API is reachable only by the user's own
// processes, and the prompt is the user's decision.
func (a *Authenticator) ResetLocal(ctx context.Context) error {
	release, err := a.Idle(ctx)
	if err != nil {
		return fail(ErrChannelBusy, "authenticator busy")
	}
	defer release()
	if err := a.confirm(ctx, func(byte) {}, "reset", "", "", ErrUserActionTimeout); err != nil {
		return err
	}
	if err := a.cfg.State.Wipe(); err != nil {
		return wrapStore("reset", err)
	}
	a.mu.Lock()
	a.resetTokenLocked()
	a.dropNextLocked()
	a.credMgmt, a.largeBlobWrite, a.bioEnrolling = nil, nil, nil
	err = a.ka.Regenerate()
	a.mu.Unlock()
	if err != nil {
		return err
	}
	a.log.Warn("ctap2: authenticator reset through the local API: every credential and the PIN were erased")
	return nil
}
