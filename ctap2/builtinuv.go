package ctap2

import (
	"context"
	"errors"
	"time"

	"github.com/authd/authd/keystore"
)

// Verifier performs built-in user verification, e.g. a fingerprint (CTAP 2.1
// §6.5.5.7.3 performBuiltInUv). Available reports whether it can be used
// now: a sensor is reachable and a finger is enrolled. VerifyUser returns nil
// when the user was recognised, an error wrapping ErrUVNoMatch when someone
// else (or nobody) was, ctx.Err() when cancelled or timed out, and any other
// error when verification could not run at all.
//
// op and rpID say what the verification is for, so that the implementation
// can tell the user while it waits: op is "makeCredential" or
// "getAssertion" (as for Presence), or "" when the verification serves a
// pinUvAuthToken for something else or for several operations; rpID may be
// "" (a token without an RP ID).
type Verifier interface {
	Available(ctx context.Context) bool
	VerifyUser(ctx context.Context, op, rpID string) error
}

// ErrUVNoMatch is what a Verifier returns when the presented finger did not match.
var ErrUVNoMatch = errors.New("ctap2: user not recognised")

const (
	maxUVRetries = 8
	// uvAttemptsPerRequest bounds performBuiltInUv's internal retries: one
	// request may try this many scans before it fails (preferredPlatformUvAttempts).
	uvAttemptsPerRequest = 3
	// uvModalityFingerprint is the FIDO registry's USER_VERIFY_FINGERPRINT_INTERNAL.
	uvModalityFingerprint = 0x0002
)

// uvConfigured reports whether built-in UV is offered and usable now
// (getInfo's "uv": true). Absent when no Verifier is configured.
func (a *Authenticator) uvConfigured(ctx context.Context) bool {
	return a.cfg.Verifier != nil && a.cfg.Verifier.Available(ctx)
}

// builtInUV runs performBuiltInUv with internal retries (CTAP 2.1 §6.5.5.7.3):
// every failed scan costs one of the persistent uvRetries; success resets
// them. It reports keepalive UPNEEDED while waiting for the finger.
func (a *Authenticator) builtInUV(ctx context.Context, keepalive func(byte), op, rpID string, attempts int) error {
	keepalive(StatusUPNeeded)
	defer keepalive(StatusProcessing)
	for i := 0; i < attempts; i++ {
		if a.cfg.State.State().UVRetries <= 0 {
			return errUVBlocked
		}
		wctx := &lazyDeadline{Context: ctx, deadline: time.Now().Add(a.cfg.PresenceTimeout)}
		err := a.cfg.Verifier.VerifyUser(wctx, op, rpID)
		wctx.stop()
		switch {
		case err == nil:
			if err := a.cfg.State.UpdateState(func(st *keystore.State) error { st.UVRetries = maxUVRetries; return nil }); err != nil {
				return wrapStore("uv retries", err)
			}
			return nil
		case ctx.Err() != nil:
			return fail(ErrKeepaliveCancel, "user verification cancelled")
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			return fail(ErrUserActionTimeout, "user verification timed out")
		case errors.Is(err, ErrUVNoMatch):
			var left int
			if err := a.cfg.State.UpdateState(func(st *keystore.State) error {
				st.UVRetries--
				left = st.UVRetries
				return nil
			}); err != nil {
				return wrapStore("uv retries", err)
			}
			a.log.Warn("ctap2: fingerprint not recognised", "uv_retries_left", left)
			if left <= 0 {
				return errUVBlocked
			}
		default:
			return &uvUnavailable{err}
		}
	}
	return errUVInvalid
}

var (
	errUVBlocked = fail(ErrUVBlocked, "built-in user verification is blocked: use the PIN (it unblocks UV)")
	errUVInvalid = fail(ErrUVInvalid, "user not recognised")
)

// uvUnavailable wraps a Verifier failure that was not a verdict.
type uvUnavailable struct{ err error }

func (e *uvUnavailable) Error() string {
	return "ctap2: built-in user verification failed: " + e.err.Error()
}
func (e *uvUnavailable) Unwrap() error { return ErrOperationDenied }

// uvForOperation runs built-in UV for makeCredential/getAssertion with uv=true
// and maps a failure so that clients fall back to the PIN (CTAP 2.1 §6.1.2
// step 11.2, §6.2.2 step 6.2): when clientPin is usable the answer is
// PUAT_REQUIRED, never OPERATION_DENIED.
func (a *Authenticator) uvForOperation(ctx context.Context, keepalive func(byte), op, rpID string) error {
	err := a.builtInUV(ctx, keepalive, op, rpID, uvAttemptsPerRequest)
	if err == nil {
		return nil
	}
	switch StatusOf(err) {
	case ErrKeepaliveCancel, ErrUserActionTimeout:
		return err
	}
	if a.cfg.State.State().PINSet {
		return fail(ErrPUATRequired, "built-in user verification failed (%v): use the PIN", err)
	}
	if StatusOf(err) == ErrUVBlocked {
		return fail(ErrPINBlocked, "built-in user verification is blocked and no PIN is set")
	}
	return fail(ErrOperationDenied, "built-in user verification failed: %v", err)
}

// resetUVRetries gives built-in UV its retries back after a correct PIN
// (CTAP 2.1 §6.5.5.7: a PIN unblocks UV).
func resetUVRetries(st *keystore.State) { st.UVRetries = maxUVRetries }
