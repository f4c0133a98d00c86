package ctap2

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/keystore"
)

// assertionState remembers a GetAssertion with several discoverable
// credentials for GetNextAssertion (CTAP 2.1 §6.3). Guarded by Authenticator.mu.
type assertionState struct {
	rpID  string
	cdh   []byte
	creds []*keystore.Credential
	next  int
	flags byte
	uv    bool
	at    time.Time
	ext   *gaExtensions // the same extension inputs apply to every credential
}

// dropNextLocked forgets a getNextAssertion sequence and its secrets.
func (a *Authenticator) dropNextLocked() {
	if a.next != nil && a.next.ext != nil {
		a.next.ext.hmac.clear()
	}
	a.next = nil
}

func (a *Authenticator) getAssertion(ctx context.Context, req *getAssertionRequest, keepalive func(byte)) (any, error) {
	switch {
	case req.RPID == nil:
		return nil, fail(ErrMissingParameter, "rpId missing")
	case req.ClientDataHash == nil:
		return nil, fail(ErrMissingParameter, "clientDataHash missing")
	}
	if len(req.ClientDataHash) != 32 {
		return nil, fail(ErrInvalidParameter, "clientDataHash is %d bytes, want 32", len(req.ClientDataHash))
	}
	rpID := *req.RPID
	// Steps 1-2.
	if req.PinUvAuthParam != nil && len(req.PinUvAuthParam) == 0 {
		return nil, a.touchToSelect(ctx, keepalive)
	}
	var p pinuv.Protocol
	if req.PinUvAuthParam != nil {
		var err error
		if p, err = protocolOf(req.PinUvAuthProtocol); err != nil {
			return nil, err
		}
	}
	// Step 4: options.
	up, uvOpt := true, false
	for k, v := range req.Options {
		switch k {
		case "rk":
			return nil, fail(ErrUnsupportedOption, "rk is not a getAssertion option")
		case "up":
			up = v
		case "uv":
			uvOpt = v && req.PinUvAuthParam == nil
		}
	}

	settings, err := a.cfg.State.Settings()
	if err != nil {
		return nil, wrapStore("settings", err)
	}
	ext, err := a.parseGAExtensions(req.Extensions, up)
	if err != nil {
		return nil, err
	}
	keep := false // the extension secrets outlive this call only for getNextAssertion
	defer func() {
		if !keep {
			ext.hmac.clear()
		}
	}()
	// Steps 5-6: user verification (required for every assertion with up
	// under alwaysUv).
	// Asking the sensor whether it is usable costs a D-Bus round trip, so
	// only when uv or alwaysUv needs the answer (not on every sign-in).
	uvReady := (uvOpt || (settings.AlwaysUV && up && req.PinUvAuthParam == nil)) && a.uvConfigured(ctx)
	if uvOpt && !uvReady {
		return nil, fail(ErrInvalidOption, "uv=true but built-in user verification is not available")
	}
	if settings.AlwaysUV && up && req.PinUvAuthParam == nil && uvReady {
		uvOpt = true // alwaysUv with built-in UV: treat as uv=true (step 5)
	}
	uv, upDone := false, false
	switch {
	case req.PinUvAuthParam != nil:
		if err := a.checkPinUvAuthParam(p, req.ClientDataHash, req.PinUvAuthParam, permGA, rpID); err != nil {
			return nil, err
		}
		uv = true
	case uvOpt:
		// Step 6.2: built-in UV (which is also a test of presence).
		if err := a.uvForOperation(ctx, keepalive, "getAssertion", rpID); err != nil {
			return nil, err
		}
		uv, upDone = true, up
	case settings.AlwaysUV && up:
		return nil, fail(ErrPUATRequired, "alwaysUv: assertions need user verification")
	}
	// Step 7: locate credentials: those in the allowList bound to rpID, else
	// the RP's discoverable ones. Unknown and foreign IDs are simply not found.
	var creds []*keystore.Credential
	if len(req.AllowList) > 0 {
		for _, d := range req.AllowList {
			if d.Type == nil || d.ID == nil {
				return nil, fail(ErrMissingParameter, "allowList descriptor lacks type or id")
			}
			if *d.Type != "public-key" || len(creds) > 0 {
				continue // any one listed credential will do (step 11); keep validating
			}
			c, err := a.cfg.Store.Get(d.ID)
			if err == nil && c.RPID == rpID && (c.CredProtect != 3 || uv) {
				creds = append(creds, c)
			}
		}
	} else {
		all, err := a.cfg.Store.ByRP(rpID)
		if err != nil {
			return nil, wrapStore("find credentials", err)
		}
		for _, c := range all {
			if !c.Discoverable || (c.CredProtect >= 2 && !uv) {
				continue
			}
			creds = append(creds, c)
		}
		sort.SliceStable(creds, func(i, j int) bool { return creds[i].Created.After(creds[j].Created) })
	}
	if len(creds) == 0 {
		return nil, fail(ErrNoCredentials, "no eligible credential for %s", rpID)
	}
	// Steps 8-9: user presence.
	var flags byte
	if up {
		if !upDone {
			if err := a.confirm(ctx, keepalive, "getAssertion", rpID, creds[0].UserName, ErrOperationDenied); err != nil {
				return nil, err
			}
		}
		flags |= flagUP
		a.mu.Lock()
		a.afterUPLocked()
		a.mu.Unlock()
	}
	if uv {
		flags |= flagUV
	}
	discovered := len(req.AllowList) == 0
	resp, err := a.assert(creds[0], rpID, req.ClientDataHash, flags, uv && len(creds) > 1, ext)
	if err != nil {
		return nil, err
	}
	if discovered && len(creds) > 1 {
		resp.NumberOfCredentials = len(creds)
		a.mu.Lock()
		a.dropNextLocked()
		a.next = &assertionState{
			rpID: rpID, cdh: append([]byte(nil), req.ClientDataHash...), creds: creds,
			next: 1, flags: flags, uv: uv, at: a.cfg.Now(), ext: ext,
		}
		keep = true
		a.mu.Unlock()
	}
	return resp, nil
}

// assert signs one assertion: a fresh counter, authData and signature.
// identifying controls whether name and displayName accompany the user ID.
func (a *Authenticator) assert(c *keystore.Credential, rpID string, cdh []byte, flags byte, identifying bool, ext *gaExtensions) (*getAssertionResponse, error) {
	outs, err := ext.outputs(c, flags&flagUV != 0)
	if err != nil {
		return nil, err
	}
	counter, err := a.cfg.Store.NextCounter(c.ID)
	if err != nil {
		return nil, wrapStore("signature counter", err)
	}
	ad, err := withExtensions(authData(rpID, flags, counter, nil), outs)
	if err != nil {
		return nil, err
	}
	signer, err := a.cfg.Store.Signer(c)
	if err != nil {
		return nil, fmt.Errorf("ctap2: signer: %w", err)
	}
	sig, err := sign(a.cfg.Rand, signer, c.Alg, ad, cdh)
	if err != nil {
		return nil, fmt.Errorf("ctap2: assertion signature: %w", err)
	}
	resp := &getAssertionResponse{
		Credential: outDescriptor{ID: c.ID, Type: "public-key"},
		AuthData:   ad,
		Signature:  sig,
	}
	if ext != nil && ext.largeBlobKey {
		resp.LargeBlobKey = c.Secrets[secretLargeBlobKey]
	}
	if c.Discoverable {
		resp.User = &assertionUser{ID: c.UserID}
		if identifying {
			resp.User.Name, resp.User.DisplayName = c.UserName, c.UserDisplayName
		}
	}
	return resp, nil
}

func (a *Authenticator) getNextAssertion() (any, error) {
	a.mu.Lock()
	st := a.next
	if st == nil {
		a.mu.Unlock()
		return nil, fail(ErrNotAllowed, "no getAssertion to continue")
	}
	if a.cfg.Now().Sub(st.at) > nextAssertionWindow {
		a.dropNextLocked()
		a.mu.Unlock()
		return nil, fail(ErrNotAllowed, "getNextAssertion window of 30 s expired")
	}
	if st.next >= len(st.creds) {
		a.dropNextLocked()
		a.mu.Unlock()
		return nil, fail(ErrNotAllowed, "no more credentials")
	}
	c := st.creds[st.next]
	st.next++
	st.at = a.cfg.Now()
	a.mu.Unlock()
	return a.assert(c, st.rpID, st.cdh, st.flags, st.uv, st.ext)
}
