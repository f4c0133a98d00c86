package ctap2

import (
	"context"
	"crypto/subtle"
	"errors"
	"unicode/utf8"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/keystore"
)

// authenticatorClientPIN subcommands (CTAP 2.1 §6.5.5).
const (
	pinGetRetries          = 0x01
	pinGetKeyAgreement     = 0x02
	pinSetPIN              = 0x03
	pinChangePIN           = 0x04
	pinGetPinToken         = 0x05
	pinGetTokenUsingUV     = 0x06
	pinGetUVRetries        = 0x07
	pinGetTokenUsingPINPrm = 0x09
)

const maxPINBytes = 63

// supportedProtocols lists PIN/UV auth protocols in preference order (getInfo 0x06).
var supportedProtocols = []int{2, 1}

// protocolOf resolves a request's pinUvAuthProtocol: absent → MISSING_PARAMETER,
// unsupported → INVALID_PARAMETER.
func protocolOf(v *uint64) (pinuv.Protocol, error) {
	if v == nil {
		return nil, fail(ErrMissingParameter, "pinUvAuthProtocol missing")
	}
	if *v > 2 {
		return nil, fail(ErrInvalidParameter, "unsupported pinUvAuthProtocol %d", *v)
	}
	p, ok := pinuv.ByVersion(int(*v))
	if !ok {
		return nil, fail(ErrInvalidParameter, "unsupported pinUvAuthProtocol %d", *v)
	}
	return p, nil
}

// consecutiveFails is the count of wrong PINs since this boot's "power-up":
// tied to the kernel boot id so that restarting the daemon does not clear it.
func (a *Authenticator) consecutiveFails(st *keystore.State) int {
	if st.PINFailsBootID != a.cfg.BootID {
		return 0
	}
	return st.PINFails
}

func (a *Authenticator) clientPIN(ctx context.Context, req *clientPINRequest, keepalive func(byte)) (any, error) {
	if req.SubCommand == nil {
		return nil, fail(ErrMissingParameter, "clientPIN subCommand missing")
	}
	switch *req.SubCommand {
	case pinGetRetries:
		st := a.cfg.State.State()
		retries := st.PINRetries
		blocked := a.consecutiveFails(&st) >= maxConsecutiveFails
		return &clientPINResponse{PinRetries: &retries, PowerCycleState: &blocked}, nil
	case pinGetKeyAgreement:
		if _, err := protocolOf(req.PinUvAuthProtocol); err != nil {
			return nil, err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return &clientPINResponse{KeyAgreement: a.ka.PublicKeyCOSE()}, nil
	case pinSetPIN:
		return nil, a.setPIN(req)
	case pinChangePIN:
		return nil, a.changePIN(req)
	case pinGetPinToken:
		if req.Permissions != nil || req.RPID != nil {
			return nil, fail(ErrInvalidParameter, "getPinToken takes no permissions or rpId")
		}
		return a.getPINToken(req, permMC|permGA, nil, ErrPINInvalid)
	case pinGetTokenUsingPINPrm:
		if req.Permissions == nil {
			return nil, fail(ErrMissingParameter, "permissions missing")
		}
		return a.getPINToken(req, *req.Permissions, req.RPID, ErrPINPolicyViolation)
	case pinGetUVRetries:
		if a.cfg.Verifier == nil {
			return nil, fail(ErrInvalidSubcommand, "built-in user verification is not supported")
		}
		n := a.cfg.State.State().UVRetries
		return &clientPINResponse{UVRetries: &n}, nil
	case pinGetTokenUsingUV:
		return a.getUVToken(ctx, req, keepalive)
	}
	return nil, fail(ErrInvalidSubcommand, "clientPIN subcommand 0x%02x", *req.SubCommand)
}

// pinUsable reports why the PIN cannot be tried now: none is set, it is
// blocked (no retries left) or auth-blocked until the next boot.
func (a *Authenticator) pinUsable(st *keystore.State) error {
	switch {
	case !st.PINSet:
		return fail(ErrPINNotSet, "no PIN is set")
	case st.PINRetries <= 0:
		return fail(ErrPINBlocked, "PIN blocked: no retries left; only reset helps")
	case a.consecutiveFails(st) >= maxConsecutiveFails:
		return fail(ErrPINAuthBlocked, "PIN auth blocked until the next boot (3 consecutive wrong PINs)")
	}
	return nil
}

// sharedSecret performs the key agreement for a request.
func (a *Authenticator) sharedSecret(p pinuv.Protocol, req *clientPINRequest) (pinuv.SharedSecret, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.ka.Decapsulate(p, *req.KeyAgreement)
	if err != nil {
		return s, fail(ErrInvalidParameter, "keyAgreement: %v", err)
	}
	return s, nil
}

// checkNewPIN decrypts newPinEnc and applies the PIN policy (CTAP 2.1 §6.5.5.5).
func (a *Authenticator) checkNewPIN(p pinuv.Protocol, s *pinuv.SharedSecret, newPinEnc []byte) ([16]byte, int, error) {
	padded, err := p.Decrypt(s, newPinEnc)
	if err != nil {
		return [16]byte{}, 0, fail(ErrInvalidParameter, "newPinEnc: %v", err)
	}
	defer clear(padded)
	pin, err := pinuv.ParsePaddedPIN(padded)
	if err != nil {
		return [16]byte{}, 0, fail(ErrInvalidParameter, "newPinEnc: %v", err)
	}
	return a.pinPolicy(pin)
}

// pinPolicy applies the PIN rules (CTAP 2.1 §6.5.5.5: at least minPINLength
// code points, at most 63 bytes, UTF-8) and returns the PIN's hash.
func (a *Authenticator) pinPolicy(pin []byte) ([16]byte, int, error) {
	st := a.cfg.State.State()
	n := utf8.RuneCount(pin)
	if n < st.MinPINLength || len(pin) > maxPINBytes || !utf8.Valid(pin) {
		return [16]byte{}, 0, fail(ErrPINPolicyViolation, "new PIN has %d code points / %d bytes (minimum %d code points, maximum %d bytes, UTF-8)", n, len(pin), st.MinPINLength, maxPINBytes)
	}
	return pinuv.PINHash(pin), n, nil
}

func (a *Authenticator) setPIN(req *clientPINRequest) error {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.PinUvAuthParam == nil || req.NewPinEnc == nil {
		return fail(ErrMissingParameter, "setPIN needs pinUvAuthProtocol, keyAgreement, pinUvAuthParam and newPinEnc")
	}
	p, err := protocolOf(req.PinUvAuthProtocol)
	if err != nil {
		return err
	}
	if a.cfg.State.State().PINSet {
		return fail(ErrPINAuthInvalid, "setPIN: a PIN is already set")
	}
	s, err := a.sharedSecret(p, req)
	if err != nil {
		return err
	}
	if !p.Verify(s.HMACKey(), req.NewPinEnc, req.PinUvAuthParam) {
		return fail(ErrPINAuthInvalid, "setPIN: pinUvAuthParam does not verify")
	}
	hash, n, err := a.checkNewPIN(p, &s, req.NewPinEnc)
	if err != nil {
		return err
	}
	if a.cfg.State.State().PINSet {
		return fail(ErrPINAuthInvalid, "setPIN: a PIN is already set")
	}
	err = a.cfg.State.SetPIN(hash, func(st *keystore.State) error {
		st.PINCodePoints = n
		st.PINRetries, st.PINFails = maxPINRetries, 0
		return nil
	})
	if err != nil {
		return wrapStore("setPIN", err)
	}
	a.log.Info("ctap2: PIN set")
	return nil
}

// verifyPIN is the shared "decrement, then compare" step of changePIN and the
// token subcommands (CTAP 2.1 §6.5.5.5 steps "pinRetries ... ", "pinHashEnc").
// The retry counter is decremented durably before the comparison, so a crash
// or kill during verification costs the attacker a retry.
func (a *Authenticator) verifyPIN(p pinuv.Protocol, s *pinuv.SharedSecret, pinHashEnc []byte) (verified [16]byte, err error) {
	st := a.cfg.State.State()
	if err := a.pinUsable(&st); err != nil {
		return verified, err
	}
	got, err := p.Decrypt(s, pinHashEnc)
	if err != nil || len(got) != 16 {
		return verified, fail(ErrInvalidParameter, "pinHashEnc has the wrong length")
	}
	defer clear(got)
	var hash [16]byte
	copy(hash[:], got)
	defer clear(hash[:])
	if err := a.checkPINHash(hash); err != nil {
		return verified, err
	}
	return hash, nil
}

// checkPINHash is clientPIN's verification with its counters: decrement the
// persistent retries durably, compare, then either reset the counters (and
// give built-in UV its retries back) or count a consecutive failure for this
// boot and regenerate the key-agreement key.
func (a *Authenticator) checkPINHash(hash [16]byte) error {
	if err := a.cfg.State.UpdateState(func(st *keystore.State) error {
		st.PINRetries--
		return nil
	}); err != nil {
		return wrapStore("PIN retries", err)
	}
	var retries, fails int
	ok, err := a.cfg.State.VerifyPIN(hash)
	if errors.Is(err, keystore.ErrPINLockout) {
		// Nothing was compared: give the retry back; the TPM's own
		// lockout is what blocks the attempt.
		if uerr := a.cfg.State.UpdateState(func(st *keystore.State) error { st.PINRetries++; return nil }); uerr != nil {
			return wrapStore("PIN retries", uerr)
		}
		return fail(ErrPINAuthBlocked, "the TPM's dictionary-attack protection refuses PIN checks for now: %v", err)
	}
	if err != nil {
		return wrapStore("verify PIN", err)
	}
	if ok {
		if err := a.cfg.State.UpdateState(func(st *keystore.State) error {
			st.PINRetries, st.PINFails, st.PINFailsBootID = maxPINRetries, 0, ""
			resetUVRetries(st)
			return nil
		}); err != nil {
			return wrapStore("PIN retries", err)
		}
		return nil
	}
	a.mu.Lock()
	if err := a.ka.Regenerate(); err != nil {
		a.mu.Unlock()
		return err
	}
	a.mu.Unlock()
	if err := a.cfg.State.UpdateState(func(st *keystore.State) error {
		st.PINFails = a.consecutiveFails(st) + 1
		st.PINFailsBootID = a.cfg.BootID
		retries, fails = st.PINRetries, st.PINFails
		return nil
	}); err != nil {
		return wrapStore("PIN retries", err)
	}
	a.log.Warn("ctap2: wrong PIN", "retries_left", retries, "consecutive", fails)
	switch {
	case retries <= 0:
		return fail(ErrPINBlocked, "wrong PIN; no retries left")
	case fails >= maxConsecutiveFails:
		return fail(ErrPINAuthBlocked, "wrong PIN %d times in a row; blocked until the next boot", fails)
	}
	return fail(ErrPINInvalid, "wrong PIN")
}

func (a *Authenticator) changePIN(req *clientPINRequest) error {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.PinUvAuthParam == nil || req.NewPinEnc == nil || req.PinHashEnc == nil {
		return fail(ErrMissingParameter, "changePIN needs pinUvAuthProtocol, keyAgreement, pinUvAuthParam, newPinEnc and pinHashEnc")
	}
	p, err := protocolOf(req.PinUvAuthProtocol)
	if err != nil {
		return err
	}
	st := a.cfg.State.State()
	if err := a.pinUsable(&st); err != nil {
		return err
	}
	s, err := a.sharedSecret(p, req)
	if err != nil {
		return err
	}
	msg := append(append([]byte{}, req.NewPinEnc...), req.PinHashEnc...)
	if !p.Verify(s.HMACKey(), msg, req.PinUvAuthParam) {
		return fail(ErrPINAuthInvalid, "changePIN: pinUvAuthParam does not verify")
	}
	old, err := a.verifyPIN(p, &s, req.PinHashEnc)
	if err != nil {
		return err
	}
	hash, n, err := a.checkNewPIN(p, &s, req.NewPinEnc)
	if err != nil {
		return err
	}
	// The old PIN was just verified, so no stored hash is needed to compare.
	if err := a.storeChangedPIN(st.ForcePINChange, old, hash, n); err != nil {
		return err
	}
	a.log.Info("ctap2: PIN changed")
	return nil
}

// storeChangedPIN is the end of every PIN change (clientPIN changePIN and
// the local API): under forcePINChange the new PIN must differ from the
// verified old one (CTAP 2.1 §6.5.5.6, changePIN); the change clears that
// requirement and invalidates the current pinUvAuthToken.
func (a *Authenticator) storeChangedPIN(forced bool, old, hash [16]byte, codePoints int) error {
	if forced && subtle.ConstantTimeCompare(hash[:], old[:]) == 1 {
		return fail(ErrPINPolicyViolation, "forcePINChange: the new PIN must differ from the old one")
	}
	if err := a.cfg.State.SetPIN(hash, func(st *keystore.State) error {
		st.PINCodePoints, st.ForcePINChange = codePoints, false
		return nil
	}); err != nil {
		return wrapStore("changePIN", err)
	}
	a.mu.Lock()
	a.resetTokenLocked()
	a.mu.Unlock()
	return nil
}

// getPINToken implements getPinToken (0x05) and
// getPinUvAuthTokenUsingPinWithPermissions (0x09). forceCode is what a pending
// forced PIN change yields (PIN_INVALID for 0x05, PIN_POLICY_VIOLATION for 0x09).
func (a *Authenticator) getPINToken(req *clientPINRequest, perms uint64, rpID *string, forceCode StatusCode) (any, error) {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.PinHashEnc == nil {
		return nil, fail(ErrMissingParameter, "token request needs pinUvAuthProtocol, keyAgreement and pinHashEnc")
	}
	p, err := protocolOf(req.PinUvAuthProtocol)
	if err != nil {
		return nil, err
	}
	if perms == 0 {
		return nil, fail(ErrInvalidParameter, "permissions must not be 0")
	}
	if perms&permPCMR != 0 || (perms&permBE != 0 && a.cfg.BioEnroller == nil) {
		return nil, fail(ErrUnauthorizedPermission, "permissions 0x%02x include features this authenticator does not offer", perms)
	}
	perms &= permSupported | permBE
	// A token with mc/ga but no rpId is bound to the RP of its first use
	// (CTAP 2.1 §6.1.2 step 11.1.2.6), so rpId stays optional.
	st := a.cfg.State.State()
	if err := a.pinUsable(&st); err != nil {
		return nil, err
	}
	s, err := a.sharedSecret(p, req)
	if err != nil {
		return nil, err
	}
	if _, err := a.verifyPIN(p, &s, req.PinHashEnc); err != nil {
		return nil, err
	}
	if a.cfg.State.State().ForcePINChange {
		return nil, fail(forceCode, "the PIN must be changed first (forcePINChange)")
	}
	a.mu.Lock()
	tok, err := a.issueLocked(p.Version(), perms, rpID)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	enc, err := p.Encrypt(&s, tok[:])
	if err != nil {
		return nil, err
	}
	return &clientPINResponse{PinUvAuthToken: enc}, nil
}

// wrapStore maps a storage failure to CTAP1_ERR_OTHER unless it already carries a status.
func wrapStore(what string, err error) error {
	var sc StatusCode
	if errors.As(err, &sc) {
		return err
	}
	return &statusError{code: ErrOther, reason: what + ": " + err.Error()}
}

// getUVToken implements getPinUvAuthTokenUsingUvWithPermissions (CTAP 2.1
// §6.5.5.7.3): a token issued after the built-in UV recognised the user.
func (a *Authenticator) getUVToken(ctx context.Context, req *clientPINRequest, keepalive func(byte)) (any, error) {
	if a.cfg.Verifier == nil {
		return nil, fail(ErrInvalidSubcommand, "built-in user verification is not supported")
	}
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.Permissions == nil {
		return nil, fail(ErrMissingParameter, "UV token request needs pinUvAuthProtocol, keyAgreement and permissions")
	}
	p, err := protocolOf(req.PinUvAuthProtocol)
	if err != nil {
		return nil, err
	}
	perms := *req.Permissions
	if perms == 0 {
		return nil, fail(ErrInvalidParameter, "permissions must not be 0")
	}
	// be needs bioEnroll; acfg over UV needs uvAcfg, which is not offered.
	if perms&(permPCMR|permACFG) != 0 || (perms&permBE != 0 && a.cfg.BioEnroller == nil) {
		return nil, fail(ErrUnauthorizedPermission, "permissions 0x%02x are not available through built-in UV", perms)
	}
	if !a.uvConfigured(ctx) {
		return nil, fail(ErrNotAllowed, "built-in user verification is not configured (no finger enrolled or no sensor)")
	}
	if a.cfg.State.State().UVRetries <= 0 {
		return nil, errUVBlocked
	}
	s, err := a.sharedSecret(p, req)
	if err != nil {
		return nil, err
	}
	if err := a.builtInUV(ctx, keepalive, uvTokenOp(perms), strOr(req.RPID), 1); err != nil {
		return nil, err
	}
	a.mu.Lock()
	tok, err := a.issueLocked(p.Version(), perms&(permSupported|permBE), req.RPID)
	a.token.userPresent = true // a fingerprint is also a test of presence
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	enc, err := p.Encrypt(&s, tok[:])
	if err != nil {
		return nil, err
	}
	return &clientPINResponse{PinUvAuthToken: enc}, nil
}

// uvTokenOp names the operation a UV token is for, as Verifier.VerifyUser
// takes it: a platform asks for a token with mc or ga alone (largeBlobWrite
// aside) just before that operation; any other set is "" (unknown).
func uvTokenOp(perms uint64) string {
	switch perms &^ permLBW {
	case permMC:
		return "makeCredential"
	case permGA:
		return "getAssertion"
	}
	return ""
}

func strOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// VerifyPIN checks a PIN that authd itself collected (its own pinentry
// prompt, for the local API) exactly as clientPIN does: the same blocked
// states, the same durable retry counters, the same per-boot consecutive
// failures. It returns nil or an error wrapping the StatusCode clientPIN
// would have answered (PIN_INVALID, PIN_BLOCKED, PIN_AUTH_BLOCKED,
// PIN_NOT_SET, PIN_POLICY_VIOLATION when a change is forced). Like every
// request it waits for its turn; it fails with CHANNEL_BUSY if ctx ends first.
func (a *Authenticator) VerifyPIN(ctx context.Context, pin []byte) error {
	release, err := a.Idle(ctx)
	if err != nil {
		return fail(ErrChannelBusy, "authenticator busy")
	}
	defer release()
	st := a.cfg.State.State()
	if err := a.pinUsable(&st); err != nil {
		return err
	}
	hash := pinuv.PINHash(pin)
	defer clear(hash[:])
	if err := a.checkPINHash(hash); err != nil {
		return err
	}
	if a.cfg.State.State().ForcePINChange {
		return fail(ErrPINPolicyViolation, "the PIN must be changed first (forcePINChange)")
	}
	return nil
}
