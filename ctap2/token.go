package ctap2

import (
	"crypto/subtle"
	"time"

	"github.com/authd/authd/ctap2/pinuv"
)

// pinUvAuthToken permissions (CTAP 2.1 §6.5.5.7).
const (
	permMC   = 0x01
	permGA   = 0x02
	permCM   = 0x04
	permBE   = 0x08
	permLBW  = 0x10
	permACFG = 0x20
	permPCMR = 0x40
	// permSupported are the permissions this authenticator can grant; be and
	// pcmr need features it does not advertise (→ UNAUTHORIZED_PERMISSION).
	permSupported = permMC | permGA | permCM | permLBW | permACFG
)

// Token lifetime (CTAP 2.1 §6.5.2.1): it must be used within the initial usage
// limit, then lives at most maxUsagePeriod; user presence counts for upLimit.
const (
	initialUsageLimit = 30 * time.Second
	maxUsagePeriod    = 10 * time.Minute
	upLimit           = 30 * time.Second
)

// tokenState is the pinUvAuthToken state (CTAP 2.1 §6.5.2.1). Guarded by Authenticator.mu.
type tokenState struct {
	valid        bool
	token        pinuv.Token
	protocol     int
	permissions  uint64
	rpID         string
	hasRPID      bool
	issued       time.Time
	used         bool
	userPresent  bool
	userVerified bool
}

// issueLocked replaces any previous token (issuing one invalidates the others).
func (a *Authenticator) issueLocked(protocol int, perms uint64, rpID *string) (*pinuv.Token, error) {
	var t tokenState
	if _, err := a.cfg.Rand.Read(t.token[:]); err != nil {
		return nil, err
	}
	t.valid = true
	t.protocol = protocol
	t.permissions = perms
	if rpID != nil {
		t.rpID, t.hasRPID = *rpID, true
	}
	t.issued = a.cfg.Now()
	t.userVerified = true
	a.token = t
	return &a.token.token, nil
}

// resetTokenLocked invalidates the token (resetPinUvAuthToken for all protocols).
func (a *Authenticator) resetTokenLocked() {
	a.token = tokenState{}
}

// liveLocked reports whether the token exists and has not expired.
func (a *Authenticator) liveLocked() bool {
	t := &a.token
	if !t.valid {
		return false
	}
	age := a.cfg.Now().Sub(t.issued)
	if age > maxUsagePeriod || (!t.used && age > initialUsageLimit) {
		a.resetTokenLocked()
		return false
	}
	if age > upLimit {
		t.userPresent = false
	}
	return true
}

// verifyTokenLocked checks pinUvAuthParam = authenticate(token, msg) under the
// given protocol. It does not check permissions.
func (a *Authenticator) verifyTokenLocked(p pinuv.Protocol, msg, param []byte) bool {
	if !a.liveLocked() || a.token.protocol != p.Version() {
		// Still spend the MAC computation so timing does not reveal token state.
		var zero pinuv.Token
		p.Verify(zero[:], msg, param)
		return false
	}
	ok := p.Verify(a.token.token[:], msg, param)
	if ok {
		a.token.used = true
	}
	return ok
}

// rpMatchesLocked applies the token's RP ID binding: an unbound token is bound
// to rpID when bind is set.
func (a *Authenticator) rpMatchesLocked(rpID string, bind bool) bool {
	if a.token.hasRPID {
		return subtle.ConstantTimeCompare([]byte(a.token.rpID), []byte(rpID)) == 1
	}
	if bind {
		a.token.rpID, a.token.hasRPID = rpID, true
	}
	return true
}

// afterUPLocked makes a token good for one MakeCredential/GetAssertion: flags
// and every permission except lbw are cleared (CTAP 2.1 §6.1.2 step 14).
func (a *Authenticator) afterUPLocked() {
	a.token.userPresent = false
	a.token.userVerified = false
	a.token.permissions &= permLBW
}
