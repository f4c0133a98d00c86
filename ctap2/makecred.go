package ctap2

import (
	"context"
	"errors"
	"fmt"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/keystore"
)

// Attestation statement formats offered (WebAuthn L3 §8.2 packed self
// attestation, §8.7 none), in preference order.
var attestationFormats = []string{"packed", "none"}

// uvState is the outcome of the pinUvAuthParam step shared by MakeCredential
// and GetAssertion.
type uvState struct {
	verified bool // UV flag
	protocol pinuv.Protocol
}

// touchToSelect handles a zero-length pinUvAuthParam: CTAP 2.0-era platforms
// use it to let the user pick an authenticator (CTAP 2.1 §6.1.2 step 1).
func (a *Authenticator) touchToSelect(ctx context.Context, keepalive func(byte)) error {
	if err := a.confirm(ctx, keepalive, "selection", "", "", ErrOperationDenied); err != nil {
		return err
	}
	if !a.cfg.State.State().PINSet {
		return fail(ErrPINNotSet, "zero-length pinUvAuthParam: no PIN set")
	}
	return fail(ErrPINInvalid, "zero-length pinUvAuthParam: PIN set")
}

// checkPinUvAuthParam verifies pinUvAuthParam over clientDataHash with the
// current token, its permission and RP binding (CTAP 2.1 §6.1.2 step 11.1,
// §6.2.2 step 6.1).
func (a *Authenticator) checkPinUvAuthParam(p pinuv.Protocol, cdh, param []byte, perm uint64, rpID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.verifyTokenLocked(p, cdh, param) {
		return fail(ErrPINAuthInvalid, "pinUvAuthParam does not verify with the current token")
	}
	if a.token.permissions&perm == 0 {
		return fail(ErrPINAuthInvalid, "token lacks the 0x%02x permission", perm)
	}
	if !a.token.userVerified {
		return fail(ErrPINAuthInvalid, "token was already used for an operation")
	}
	if !a.rpMatchesLocked(rpID, true) {
		return fail(ErrPINAuthInvalid, "token is bound to another RP ID")
	}
	return nil
}

func (a *Authenticator) makeCredential(ctx context.Context, req *makeCredentialRequest, keepalive func(byte)) (any, error) {
	switch {
	case req.ClientDataHash == nil:
		return nil, fail(ErrMissingParameter, "clientDataHash missing")
	case req.RP == nil:
		return nil, fail(ErrMissingParameter, "rp missing")
	case req.User == nil:
		return nil, fail(ErrMissingParameter, "user missing")
	case req.PubKeyCredParams == nil:
		return nil, fail(ErrMissingParameter, "pubKeyCredParams missing")
	case req.RP.ID == nil:
		return nil, fail(ErrMissingParameter, "rp.id missing")
	case req.User.ID == nil:
		return nil, fail(ErrMissingParameter, "user.id missing")
	}
	if len(req.ClientDataHash) != 32 {
		return nil, fail(ErrInvalidParameter, "clientDataHash is %d bytes, want 32", len(req.ClientDataHash))
	}
	if len(req.User.ID) == 0 || len(req.User.ID) > 64 {
		return nil, fail(ErrInvalidParameter, "user.id is %d bytes, want 1..64", len(req.User.ID))
	}
	rpID := *req.RP.ID
	if rpID == "" {
		return nil, fail(ErrInvalidParameter, "rp.id is empty")
	}
	// Step 1: touch-to-select.
	if req.PinUvAuthParam != nil && len(req.PinUvAuthParam) == 0 {
		return nil, a.touchToSelect(ctx, keepalive)
	}
	// Step 2: protocol.
	var p pinuv.Protocol
	if req.PinUvAuthParam != nil {
		var err error
		if p, err = protocolOf(req.PinUvAuthProtocol); err != nil {
			return nil, err
		}
	}
	// Step 3: the first supported algorithm in the platform's order.
	alg, err := chooseAlgorithm(*req.PubKeyCredParams)
	if err != nil {
		return nil, err
	}
	// Step 5: options.
	rk, up, uvOpt := false, true, false
	for k, v := range req.Options {
		switch k {
		case "rk":
			rk = v
		case "up":
			up = v
		case "uv":
			uvOpt = v && req.PinUvAuthParam == nil // a pinUvAuthParam makes uv moot
		}
	}
	uvReady := a.uvConfigured(ctx)
	if uvOpt && !uvReady {
		return nil, fail(ErrInvalidOption, "uv=true but built-in user verification is not available")
	}
	if !up {
		return nil, fail(ErrInvalidOption, "up=false is not allowed for makeCredential")
	}
	// Step 9: enterprise attestation is not offered.
	if req.EnterpriseAttest != nil {
		return nil, fail(ErrInvalidParameter, "enterprise attestation is not supported")
	}
	settings, err := a.cfg.State.Settings()
	if err != nil {
		return nil, wrapStore("settings", err)
	}
	// Extension inputs are checked before anyone is asked anything.
	ext, err := a.parseMCExtensions(req.Extensions, rk)
	if err != nil {
		return nil, err
	}
	if ext.hmacMC != nil {
		defer ext.hmacMC.clear()
	}
	// Steps 6-11: user verification. With a PIN set, only non-discoverable
	// credentials may be made without it (makeCredUvNotRqd).
	st := a.cfg.State.State()
	if settings.AlwaysUV && req.PinUvAuthParam == nil && uvReady {
		uvOpt = true // alwaysUv with built-in UV: treat as uv=true (step 6)
	}
	var uv, upDone bool
	switch {
	case req.PinUvAuthParam != nil:
		if err := a.checkPinUvAuthParam(p, req.ClientDataHash, req.PinUvAuthParam, permMC, rpID); err != nil {
			return nil, err
		}
		uv = true
	case uvOpt:
		// Step 11.2: built-in UV, which also collects user presence (step 13).
		if err := a.uvForOperation(ctx, keepalive, "makeCredential", rpID); err != nil {
			return nil, err
		}
		uv, upDone = true, true
	case settings.AlwaysUV:
		return nil, fail(ErrPUATRequired, "alwaysUv: every credential needs user verification")
	case (st.PINSet || uvReady) && rk:
		return nil, fail(ErrPUATRequired, "discoverable credentials need user verification (a PIN or built-in UV)")
	}
	// Step 12: excludeList.
	for _, d := range req.ExcludeList {
		if d.Type == nil || d.ID == nil {
			return nil, fail(ErrMissingParameter, "excludeList descriptor lacks type or id")
		}
		if *d.Type != "public-key" {
			continue
		}
		c, err := a.cfg.Store.Get(d.ID)
		if err != nil || c.RPID != rpID {
			continue
		}
		if c.CredProtect == 3 && !uv {
			continue
		}
		// Ask for presence so the answer is not a silent oracle; the result
		// is CREDENTIAL_EXCLUDED whatever the user does, unless cancelled.
		if err := a.confirm(ctx, keepalive, "credentialExcluded", rpID, c.UserName, ErrCredentialExcluded); err != nil && StatusOf(err) == ErrKeepaliveCancel {
			return nil, err
		}
		return nil, fail(ErrCredentialExcluded, "a credential in excludeList exists for %s", rpID)
	}
	// Step 14: user presence (unless built-in UV collected it).
	if !upDone {
		if err := a.confirm(ctx, keepalive, "makeCredential", rpID, req.User.Name, ErrOperationDenied); err != nil {
			return nil, err
		}
	}
	a.mu.Lock()
	a.afterUPLocked()
	a.mu.Unlock()
	// Steps 16-18: key pair and credential.
	blob, pub, err := a.cfg.Store.NewKey(alg)
	if err != nil {
		return nil, fmt.Errorf("ctap2: new key: %w", err)
	}
	_, coseKey, err := cose.Encode(pub)
	if err != nil {
		return nil, fmt.Errorf("ctap2: encode public key: %w", err)
	}
	id := make([]byte, credentialIDLength)
	if _, err := a.cfg.Rand.Read(id); err != nil {
		return nil, err
	}
	now := a.cfg.Now()
	cred := &keystore.Credential{
		ID: id, RPID: rpID, RPName: req.RP.Name,
		UserID: req.User.ID, UserName: req.User.Name, UserDisplayName: req.User.DisplayName,
		Alg: alg, PublicKey: coseKey, KeyBlob: blob,
		Created: now, LastUsed: now, Discoverable: rk,
	}
	// Step 15: extensions.
	if err := ext.apply(a, cred); err != nil {
		return nil, err
	}
	outs, err := ext.outputs(a, cred, rpID, uv)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Store.Put(cred); err != nil {
		if errors.Is(err, keystore.ErrFull) {
			return nil, fail(ErrKeyStoreFull, "no room for another discoverable credential")
		}
		return nil, wrapStore("store credential", err)
	}
	var flags byte = flagUP
	if uv {
		flags |= flagUV
	}
	ad, err := withExtensions(authData(rpID, flags, 0, attestedCredentialData(AAGUID, id, coseKey)), outs)
	if err != nil {
		return nil, err
	}
	// Step 19: attestation.
	format := chooseFormat(req.AttFormatsPref)
	resp := &makeCredentialResponse{Fmt: format, AuthData: ad, LargeBlobKey: cred.Secrets[secretLargeBlobKey]}
	if format == "none" {
		resp.AttStmt = cbor.RawMessage{0xa0}
	} else {
		signer, err := a.cfg.Store.Signer(cred)
		if err != nil {
			return nil, fmt.Errorf("ctap2: signer: %w", err)
		}
		sig, err := sign(a.cfg.Rand, signer, alg, ad, req.ClientDataHash)
		if err != nil {
			return nil, fmt.Errorf("ctap2: attestation signature: %w", err)
		}
		stmt, err := cbor.Marshal(struct {
			Alg int    `cbor:"alg"`
			Sig []byte `cbor:"sig"`
		}{alg, sig})
		if err != nil {
			return nil, err
		}
		resp.AttStmt = stmt
	}
	a.log.Info("ctap2: credential created", "rp", rpID, "discoverable", rk, "alg", alg, "uv", uv)
	return resp, nil
}

// chooseAlgorithm picks the first supported algorithm in the platform's order;
// entries of an unknown type are skipped (CTAP 2.1 §6.1.2 step 3).
func chooseAlgorithm(params []credParam) (int, error) {
	for _, p := range params {
		if p.Type == nil || p.Alg == nil {
			return 0, fail(ErrMissingParameter, "pubKeyCredParams entry lacks type or alg")
		}
		if *p.Type != "public-key" {
			continue
		}
		switch *p.Alg {
		case keystore.AlgES256, keystore.AlgEdDSA:
			return int(*p.Alg), nil
		}
	}
	return 0, fail(ErrUnsupportedAlgorithm, "none of the requested algorithms is supported (ES256 -7, EdDSA -8)")
}

// chooseFormat honours attestationFormatsPreference (CTAP 2.2 §6.1 0x0B):
// the first format offered, else packed.
func chooseFormat(pref []string) string {
	for _, f := range pref {
		for _, s := range attestationFormats {
			if f == s {
				return f
			}
		}
	}
	return "packed"
}
