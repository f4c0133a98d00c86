package webauthn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/ipc"
)

// Transport is the authenticator: ctap2.(*Authenticator).ServeCTAP satisfies
// it. msg is a command byte ‖ CBOR parameters; the answer is a status byte ‖
// CBOR response. Cancelling ctx ends a wait for the user with
// CTAP2_ERR_KEEPALIVE_CANCEL.
type Transport interface {
	ServeCTAP(ctx context.Context, msg []byte, keepalive func(status byte)) []byte
}

// UserVerifier is how the client collects user verification when the RP
// wants it and built-in UV is unavailable or failed.
type UserVerifier interface {
	// PIN returns the authenticator PIN (collected by authd's own prompt);
	// attempt counts from 1; retries is what getPINRetries said. The client
	// clears the returned slice after use. An error (the user cancelled the
	// prompt) ends the operation with NotAllowedError.
	PIN(ctx context.Context, attempt, retries int) ([]byte, error)
}

// Account is one credential that matches a get() request.
type Account struct {
	CredentialID []byte
	UserID       []byte // empty for non-discoverable credentials
	Name         string
	DisplayName  string
}

// AccountChooser lets the user pick the account when several credentials
// match a get() (the authenticator reports numberOfCredentials > 1). It
// returns an index into accounts; an error ends the operation with
// NotAllowedError (AbortError when ctx was cancelled). Without a chooser the
// first account (the most recently created, per CTAP 2.1 §6.2.2) is used;
// the choice UI is meant to come with the presence prompt.
type AccountChooser interface {
	ChooseAccount(ctx context.Context, rpID string, accounts []Account) (int, error)
}

// Client is the WebAuthn client in front of one authenticator.
type Client struct {
	Transport Transport
	UV        UserVerifier     // nil: no PIN prompt (UV by PIN fails with NotAllowedError)
	Accounts  AccountChooser   // nil: the first matching account
	Now       func() time.Time // reserved for time-dependent checks; nil means time.Now
	Logger    *slog.Logger
}

func (c *Client) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// newSession applies the operation timeout: the options' timeout (clamped to
// 15 s..10 min, default 5 min, as browsers do) and the local caller's hint,
// whichever is shorter.
func (c *Client) newSession(ctx context.Context, optionsMS uint64, hint time.Duration) (*session, context.CancelFunc) {
	d := defaultTimeout
	if optionsMS > 0 {
		d = time.Duration(min(optionsMS, uint64(maxTimeout/time.Millisecond))) * time.Millisecond
		d = max(d, minTimeout)
	}
	if hint > 0 && hint < d {
		d = hint
	}
	tctx, cancel := context.WithTimeout(ctx, d)
	return &session{c: c, parent: ctx, ctx: tctx}, cancel
}

// crossOrigin validates the top-level origin hint: a different top origin
// makes the call cross-origin (CollectedClientData.crossOrigin, topOrigin).
func crossOrigin(o *originInfo, top string) (bool, string, error) {
	if top == "" || top == o.serialized {
		return false, "", nil
	}
	if _, err := parseOrigin(top); err != nil {
		return false, "", ipc.Errorf(ipc.SecurityError, "top_origin: %v", err)
	}
	return true, top, nil
}

func b64e(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// credential protection policies (CTAP 2.1 §12.1).
var credProtectLevels = map[string]int{
	"userVerificationOptional":                     1,
	"userVerificationOptionalWithCredentialIDList": 2,
	"userVerificationRequired":                     3,
}

// --- create ---------------------------------------------------------------

type registrationResponseJSON struct {
	ID                      string                  `json:"id"`
	RawID                   string                  `json:"rawId"`
	Type                    string                  `json:"type"`
	AuthenticatorAttachment string                  `json:"authenticatorAttachment"`
	Response                attestationResponseJSON `json:"response"`
	ClientExtensionResults  map[string]any          `json:"clientExtensionResults"`
}

type attestationResponseJSON struct {
	ClientDataJSON     string   `json:"clientDataJSON"`
	AuthenticatorData  string   `json:"authenticatorData"`
	Transports         []string `json:"transports"`
	PublicKey          string   `json:"publicKey,omitempty"`
	PublicKeyAlgorithm int      `json:"publicKeyAlgorithm"`
	AttestationObject  string   `json:"attestationObject"`
}

// Create is navigator.credentials.create({publicKey}) for origin (WebAuthn
// L3 §5.1.3): optionsJSON is PublicKeyCredentialCreationOptionsJSON, the
// result RegistrationResponseJSON. Errors are *ipc.Error.
func (c *Client) Create(ctx context.Context, origin string, optionsJSON []byte, hints ipc.Hints) ([]byte, error) {
	o, err := parseCreationOptions(optionsJSON)
	if err != nil {
		return nil, err
	}
	oi, rpID, cross, top, err := resolveCaller(origin, o.hasRPID, o.RPID, "rp.id", hints.TopOrigin)
	if err != nil {
		return nil, err
	}
	if o.Attachment == "cross-platform" {
		return nil, ipc.Errorf(ipc.NotAllowedError, "the RP asks for a cross-platform authenticator; authd is a platform authenticator")
	}
	if o.Ext.PRF != nil && len(o.Ext.PRF.EvalByCredential) > 0 {
		return nil, ipc.Errorf(ipc.NotSupportedError, "prf: evalByCredential is not allowed when creating a credential")
	}
	var prfSalts []byte
	if o.Ext.PRF != nil && o.Ext.PRF.Eval != nil {
		if prfSalts, err = prfSaltsOf(o.Ext.PRF.Eval); err != nil {
			return nil, err
		}
	}
	cdj := clientDataJSON(typeCreate, o.Challenge, oi.serialized, cross, top)
	return c.run(ctx, "create", origin, rpID, o.TimeoutMS, hints, func(s *session) ([]byte, error) {
		return s.create(o, rpID, cdj, prfSalts)
	})
}

// resolveCaller checks the origin and the RP ID against it (member names the
// RP ID's field for the error) and works out the cross-origin state from the
// top-level origin hint (WebAuthn L3 §5.1.3 and §5.1.4 steps 5–8).
func resolveCaller(origin string, hasRPID bool, rpID, member, topOrigin string) (oi *originInfo, id string, cross bool, top string, err error) {
	if oi, err = parseOrigin(origin); err != nil {
		return nil, "", false, "", err
	}
	if hasRPID && rpID == "" {
		return nil, "", false, "", ipc.Errorf(ipc.SecurityError, "%s is empty", member)
	}
	if id, err = oi.rpID(rpID); err != nil {
		return nil, "", false, "", err
	}
	if cross, top, err = crossOrigin(oi, topOrigin); err != nil {
		return nil, "", false, "", err
	}
	return oi, id, cross, top, nil
}

// run runs one ceremony in a session bounded by the request's timeouts and
// maps its failure to a WebAuthn error.
func (c *Client) run(ctx context.Context, op, origin, rpID string, timeoutMS uint64, hints ipc.Hints, fn func(*session) ([]byte, error)) ([]byte, error) {
	s, cancel := c.newSession(ctx, timeoutMS, hints.Timeout)
	defer cancel()
	out, err := fn(s)
	if err != nil {
		err = s.mapError(err)
		c.log().Info("webauthn: "+op+" failed", "origin", origin, "rp_id", rpID, "error", err)
		return nil, err
	}
	return out, nil
}

func (s *session) create(o *creationOptions, rpID string, cdj, prfSalts []byte) ([]byte, error) {
	if err := s.loadInfo(); err != nil {
		return nil, err
	}
	info := s.info
	var algs []any
	for _, a := range o.Algs {
		if (a == algES256 || a == algEdDSA) && info.supportsAlg(a) {
			algs = append(algs, map[string]any{"type": "public-key", "alg": a})
		}
	}
	if len(algs) == 0 {
		return nil, ipc.Errorf(ipc.NotSupportedError, "none of the requested algorithms %v is supported (authd offers ES256 -7 and EdDSA -8)", o.Algs)
	}
	rkOpt, _ := info.option("rk")
	var rk bool
	switch o.ResidentKey {
	case "required":
		if !rkOpt {
			return nil, ipc.Errorf(ipc.ConstraintError, "the authenticator cannot store discoverable credentials")
		}
		rk = true
	case "preferred":
		rk = rkOpt
	}
	uvAvail, _ := info.option("uv")
	pinSet, _ := info.option("clientPin")
	alwaysUV, _ := info.option("alwaysUv")
	canUV := uvAvail || pinSet
	need := o.UserVerification == "required" ||
		(o.UserVerification == "preferred" && canUV) ||
		(rk && canUV) || // CTAP 2.1 §6.1.2 step 6: rk needs UV when it is configured
		alwaysUV
	// Extensions that need no key agreement.
	ext := map[string]any{}
	if name := o.Ext.CredentialProtectionPolicy; name != nil {
		level, known := credProtectLevels[*name]
		switch {
		case known && info.hasExtension("credProtect"):
			if level > 1 || o.Ext.EnforceCredentialProtectionPolicy {
				ext["credProtect"] = level
			}
		case known && o.Ext.EnforceCredentialProtectionPolicy && level > 1:
			return nil, ipc.Errorf(ipc.NotAllowedError, "credProtect is enforced but the authenticator does not support it")
		}
	}
	if o.Ext.MinPinLength != nil && *o.Ext.MinPinLength && info.hasExtension("minPinLength") {
		ext["minPinLength"] = true
	}
	wantPRF := o.Ext.PRF != nil && info.hasExtension("hmac-secret")
	if wantPRF {
		ext["hmac-secret"] = true
	}
	wantLB, lbRequired, err := largeBlobCreate(o)
	if err != nil {
		return nil, err
	}
	if wantLB {
		switch {
		case info.largeBlobsSupported() && rk:
			ext["largeBlobKey"] = true
		case lbRequired:
			return nil, ipc.Errorf(ipc.NotSupportedError, "largeBlob support is required, but the authenticator cannot store large blobs for this credential (it needs a discoverable credential)")
		}
	}
	var tok *token
	if need {
		var err error
		if tok, err = s.userVerification(permMakeCredential, rpID, o.UserVerification == "required"); err != nil {
			return nil, err
		}
		defer tok.clear()
	}
	cdh := hashClientData(cdj)
	var hk *platformKey
	if wantPRF && prfSalts != nil && info.hasExtension("hmac-secret-mc") {
		var in map[int]any
		var err error
		if hk, in, err = s.hmacSecretInput(prfSalts); err != nil {
			return nil, err
		}
		defer hk.clear()
		ext["hmac-secret-mc"] = in
	}
	rp := map[string]any{"id": rpID}
	if o.RPName != "" {
		rp["name"] = o.RPName
	}
	user := map[string]any{"id": o.UserID}
	if o.UserName != "" {
		user["name"] = o.UserName
	}
	if o.DisplayName != "" {
		user["displayName"] = o.DisplayName
	}
	params := map[int]any{1: cdh, 2: rp, 3: user, 4: algs}
	if ex := s.descriptors(o.Exclude); len(ex) > 0 {
		ex, _, err := s.fitList(rpID, cdh, ex)
		if err != nil {
			return nil, err
		}
		if len(ex) > 0 {
			params[5] = ex
		}
	}
	if len(ext) > 0 {
		params[6] = ext
	}
	if rk {
		params[7] = map[string]bool{"rk": true}
	}
	if tok != nil {
		params[8] = tok.param(cdh)
		params[9] = tok.p.Version()
	}
	if o.Attestation == "none" {
		params[11] = []string{"none"}
	} else if len(o.AttestationFormats) > 0 {
		params[11] = o.AttestationFormats
	}
	body, err := s.call(cmdMakeCredential, params)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Fmt      string          `cbor:"1,keyasint"`
		AuthData []byte          `cbor:"2,keyasint"`
		AttStmt  cbor.RawMessage `cbor:"3,keyasint"`
		LBKey    []byte          `cbor:"5,keyasint"`
	}
	if err := decode(body, &resp); err != nil {
		return nil, err
	}
	ad, err := parseAuthData(resp.AuthData)
	if err != nil {
		return nil, fmt.Errorf("makeCredential: %w", err)
	}
	if want := sha256.Sum256([]byte(rpID)); !bytes.Equal(ad.rpIDHash, want[:]) || ad.credID == nil {
		return nil, fmt.Errorf("makeCredential: authenticator data for another RP or without a credential")
	}
	pub, alg, err := cose.ParsePublicKey(ad.publicKey)
	if err != nil {
		return nil, fmt.Errorf("makeCredential: credential public key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("makeCredential: credential public key: %w", err)
	}
	fmtName, attStmt := resp.Fmt, resp.AttStmt
	if o.Attestation == "none" && fmtName != "none" {
		// §5.1.3 step 21 / §6.5.4: the RP asked for no attestation.
		fmtName, attStmt = "none", cbor.RawMessage{0xa0}
	}
	attObj, err := cbor.Marshal(map[string]any{"fmt": fmtName, "attStmt": attStmt, "authData": resp.AuthData})
	if err != nil {
		return nil, err
	}
	// Client extension outputs.
	results := map[string]any{}
	if wantLB {
		results["largeBlob"] = map[string]bool{"supported": len(resp.LBKey) == 32}
		clear(resp.LBKey)
	}
	if o.Ext.CredProps != nil && *o.Ext.CredProps {
		results["credProps"] = map[string]bool{"rk": rk}
	}
	if o.Ext.PRF != nil {
		prf := map[string]any{"enabled": false}
		outs, err := authExtensions(ad)
		if err != nil {
			return nil, err
		}
		if v, ok := outs["hmac-secret"].(bool); ok && v {
			prf["enabled"] = true
		}
		if enc, ok := outs["hmac-secret-mc"].([]byte); ok && hk != nil {
			r, err := prfResults(hk, enc)
			if err != nil {
				return nil, err
			}
			prf["results"] = r
		}
		results["prf"] = prf
	}
	out := registrationResponseJSON{
		ID: b64e(ad.credID), RawID: b64e(ad.credID), Type: "public-key", AuthenticatorAttachment: "platform",
		Response: attestationResponseJSON{
			ClientDataJSON: b64e(cdj), AuthenticatorData: b64e(resp.AuthData), Transports: []string{"internal"},
			PublicKey: b64e(spki), PublicKeyAlgorithm: alg, AttestationObject: b64e(attObj),
		},
		ClientExtensionResults: results,
	}
	return json.Marshal(out)
}

// descriptors builds an allowList/excludeList, leaving out IDs longer than
// the authenticator's maxCredentialIdLength (they cannot be its own).
func (s *session) descriptors(ds []descriptor) []any {
	var out []any
	for _, d := range ds {
		if s.info.MaxCredIDLength > 0 && len(d.ID) > s.info.MaxCredIDLength {
			continue
		}
		out = append(out, map[string]any{"type": "public-key", "id": d.ID})
	}
	return out
}

// authExtensions decodes the authenticator extension outputs in authData.
func authExtensions(ad *authData) (map[string]any, error) {
	out := map[string]any{}
	if ad.ext == nil {
		return out, nil
	}
	var m map[string]any
	if err := cbor.UnmarshalRecord(ad.ext, &m); err != nil {
		return nil, fmt.Errorf("authenticator extension outputs: %w", err)
	}
	return m, nil
}

// --- prf ----------------------------------------------------------------

// prfSalt is the WebAuthn PRF salt (L3 §10.1.4): SHA-256("WebAuthn PRF" ‖ 0x00 ‖ input).
func prfSalt(input []byte) []byte {
	h := sha256.New()
	h.Write([]byte("WebAuthn PRF"))
	h.Write([]byte{0})
	h.Write(input)
	return h.Sum(nil)
}

// prfSaltsOf returns salt1 [‖ salt2] for an eval value.
func prfSaltsOf(v *prfValuesJSON) ([]byte, error) {
	if v.First == nil {
		return nil, typeErr("prf eval needs first")
	}
	first, err := b64("prf.first", *v.First)
	if err != nil {
		return nil, err
	}
	salts := prfSalt(first)
	if v.Second != nil {
		second, err := b64("prf.second", *v.Second)
		if err != nil {
			return nil, err
		}
		salts = append(salts, prfSalt(second)...)
	}
	return salts, nil
}

// hmacSecretInput builds the hmac-secret / hmac-secret-mc input (CTAP 2.1
// §12.5): a fresh key agreement, saltEnc and saltAuth.
func (s *session) hmacSecretInput(salts []byte) (*platformKey, map[int]any, error) {
	p := s.info.protocol()
	k, err := s.keyAgreement(p)
	if err != nil {
		return nil, nil, err
	}
	enc, err := k.ss.Encrypt(salts)
	if err != nil {
		k.clear()
		return nil, nil, err
	}
	return k, map[int]any{1: k.pub, 2: enc, 3: k.ss.Authenticate(enc), 4: p.Version()}, nil
}

// prfResults decrypts an hmac-secret output into prf.results.
func prfResults(k *platformKey, enc []byte) (map[string]string, error) {
	out, err := k.ss.Decrypt(enc)
	if err != nil || (len(out) != 32 && len(out) != 64) {
		return nil, fmt.Errorf("hmac-secret output cannot be decrypted")
	}
	r := map[string]string{"first": b64e(out[:32])}
	if len(out) == 64 {
		r["second"] = b64e(out[32:])
	}
	clear(out)
	return r, nil
}

// --- get ------------------------------------------------------------------

type authenticationResponseJSON struct {
	ID                      string                `json:"id"`
	RawID                   string                `json:"rawId"`
	Type                    string                `json:"type"`
	AuthenticatorAttachment string                `json:"authenticatorAttachment"`
	Response                assertionResponseJSON `json:"response"`
	ClientExtensionResults  map[string]any        `json:"clientExtensionResults"`
}

type assertionResponseJSON struct {
	ClientDataJSON    string `json:"clientDataJSON"`
	AuthenticatorData string `json:"authenticatorData"`
	Signature         string `json:"signature"`
	UserHandle        string `json:"userHandle,omitempty"`
}

// Get is navigator.credentials.get({publicKey}) for origin (WebAuthn L3
// §5.1.4): optionsJSON is PublicKeyCredentialRequestOptionsJSON, the result
// AuthenticationResponseJSON. Errors are *ipc.Error.
func (c *Client) Get(ctx context.Context, origin string, optionsJSON []byte, hints ipc.Hints) ([]byte, error) {
	o, err := parseRequestOptions(optionsJSON)
	if err != nil {
		return nil, err
	}
	oi, rpID, cross, top, err := resolveCaller(origin, o.hasRPID, o.RPID, "rpId", hints.TopOrigin)
	if err != nil {
		return nil, err
	}
	prf, err := parsePRFGet(o)
	if err != nil {
		return nil, err
	}
	lb, err := parseLargeBlobGet(o)
	if err != nil {
		return nil, err
	}
	cdj := clientDataJSON(typeGet, o.Challenge, oi.serialized, cross, top)
	return c.run(ctx, "get", origin, rpID, o.TimeoutMS, hints, func(s *session) ([]byte, error) {
		return s.get(o, rpID, cdj, prf, lb)
	})
}

// prfGet is the validated prf input of a get(): salts for every credential
// (by base64url ID) and the default.
type prfGet struct {
	def    []byte
	byCred map[string][]byte
}

func (p *prfGet) saltsFor(id []byte) []byte {
	if s, ok := p.byCred[b64e(id)]; ok {
		return s
	}
	return p.def
}

func parsePRFGet(o *requestOptions) (*prfGet, error) {
	in := o.Ext.PRF
	if in == nil {
		return nil, nil
	}
	p := &prfGet{byCred: map[string][]byte{}}
	if len(in.EvalByCredential) > 0 && len(o.Allow) == 0 {
		return nil, ipc.Errorf(ipc.NotSupportedError, "prf: evalByCredential needs allowCredentials")
	}
	for key, v := range in.EvalByCredential {
		id, err := b64("prf.evalByCredential key", key)
		if err != nil || len(id) == 0 {
			return nil, typeErr("prf.evalByCredential: %q is not a base64url credential ID", key)
		}
		found := false
		for _, d := range o.Allow {
			found = found || bytes.Equal(d.ID, id)
		}
		if !found {
			return nil, typeErr("prf.evalByCredential: %q is not in allowCredentials", key)
		}
		salts, err := prfSaltsOf(&v)
		if err != nil {
			return nil, err
		}
		p.byCred[b64e(id)] = salts
	}
	if in.Eval != nil {
		var err error
		if p.def, err = prfSaltsOf(in.Eval); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// assertion is one getAssertion/getNextAssertion response.
type assertion struct {
	Credential *struct {
		ID   []byte `cbor:"id"`
		Type string `cbor:"type"`
	} `cbor:"1,keyasint"`
	AuthData  []byte `cbor:"2,keyasint"`
	Signature []byte `cbor:"3,keyasint"`
	User      *struct {
		ID          []byte `cbor:"id"`
		Name        string `cbor:"name"`
		DisplayName string `cbor:"displayName"`
	} `cbor:"4,keyasint"`
	NumberOfCredentials int    `cbor:"5,keyasint"`
	LargeBlobKey        []byte `cbor:"7,keyasint"`
}

func (s *session) get(o *requestOptions, rpID string, cdj []byte, prf *prfGet, lb *largeBlobGet) ([]byte, error) {
	if err := s.loadInfo(); err != nil {
		return nil, err
	}
	info := s.info
	allow := s.descriptors(o.Allow)
	if len(o.Allow) > 0 && len(allow) == 0 {
		return nil, ipc.Errorf(ipc.NotAllowedError, "no credential in allowCredentials can belong to this authenticator")
	}
	cdh := hashClientData(cdj)
	if len(allow) > 0 {
		var err error
		if allow, _, err = s.fitList(rpID, cdh, allow); err != nil {
			return nil, err
		}
		if len(allow) == 0 {
			return nil, &ctapError{cmd: cmdGetAssertion, status: stNoCredentials}
		}
	}
	// Which salts? CTAP carries one salt pair per request: with per-credential
	// inputs and several candidates, find the credential first (up=false).
	var salts []byte
	wantPRF := prf != nil && info.hasExtension("hmac-secret")
	if wantPRF {
		salts = prf.def
		if len(prf.byCred) > 0 {
			id := allow[0].(map[string]any)["id"].([]byte)
			if len(allow) > 1 {
				found, err := s.preflight(rpID, cdh, allow)
				if err != nil {
					return nil, err
				}
				if found != nil {
					id = found
					allow = []any{map[string]any{"type": "public-key", "id": found}}
				}
			}
			salts = prf.saltsFor(id)
		}
	}
	uvAvail, _ := info.option("uv")
	pinSet, _ := info.option("clientPin")
	alwaysUV, _ := info.option("alwaysUv")
	need := o.UserVerification == "required" ||
		(o.UserVerification == "preferred" && (uvAvail || pinSet)) || alwaysUV
	perm := permGetAssertion
	wantLB := lb != nil && info.largeBlobsSupported()
	if wantLB && lb.write != nil {
		// The write needs a token with lbw when the authenticator is
		// protected; getAssertion keeps lbw on it (CTAP 2.1 §6.2.2).
		perm |= permLargeBlobWrite
		need = need || pinSet || alwaysUV
	}
	var tok *token
	if need {
		var err error
		if tok, err = s.userVerification(perm, rpID, o.UserVerification == "required"); err != nil {
			return nil, err
		}
		defer tok.clear()
	}
	params := map[int]any{1: rpID, 2: cdh}
	if len(allow) > 0 {
		params[3] = allow
	}
	var hk *platformKey
	if wantPRF && salts != nil {
		var in map[int]any
		var err error
		if hk, in, err = s.hmacSecretInput(salts); err != nil {
			return nil, err
		}
		defer hk.clear()
		params[4] = map[string]any{"hmac-secret": in}
	}
	if wantLB {
		ext, _ := params[4].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
		}
		ext["largeBlobKey"] = true
		params[4] = ext
	}
	if tok != nil {
		params[6] = tok.param(cdh)
		params[7] = tok.p.Version()
	}
	body, err := s.call(cmdGetAssertion, params)
	if err != nil {
		return nil, err
	}
	first := &assertion{}
	if err := decode(body, first); err != nil {
		return nil, err
	}
	all := []*assertion{first}
	for i := 1; i < first.NumberOfCredentials; i++ {
		body, err := s.call(cmdGetNextAssertion, nil)
		if err != nil {
			return nil, err
		}
		a := &assertion{}
		if err := decode(body, a); err != nil {
			return nil, err
		}
		all = append(all, a)
	}
	for _, a := range all {
		if a.Credential == nil {
			if len(allow) != 1 { // CTAP 2.1 §6.2: omitted only for a one-entry allowList
				return nil, fmt.Errorf("getAssertion: the authenticator omitted the credential")
			}
			a.Credential = &struct {
				ID   []byte `cbor:"id"`
				Type string `cbor:"type"`
			}{ID: allow[0].(map[string]any)["id"].([]byte), Type: "public-key"}
		}
	}
	chosen, err := s.choose(rpID, all)
	if err != nil {
		return nil, err
	}
	ad, err := parseAuthData(chosen.AuthData)
	if err != nil {
		return nil, fmt.Errorf("getAssertion: %w", err)
	}
	if want := sha256.Sum256([]byte(rpID)); !bytes.Equal(ad.rpIDHash, want[:]) {
		return nil, fmt.Errorf("getAssertion: authenticator data for another RP")
	}
	results := map[string]any{}
	if prf != nil {
		outs, err := authExtensions(ad)
		if err != nil {
			return nil, err
		}
		p := map[string]any{}
		if enc, ok := outs["hmac-secret"].([]byte); ok && hk != nil {
			r, err := prfResults(hk, enc)
			if err != nil {
				return nil, err
			}
			p["results"] = r
		}
		results["prf"] = p
	}
	if lb != nil {
		if err := s.largeBlobGetResult(lb, chosen.LargeBlobKey, tok, results); err != nil {
			return nil, err
		}
	}
	for _, a := range all {
		clear(a.LargeBlobKey)
	}
	id := chosen.Credential.ID
	out := authenticationResponseJSON{
		ID: b64e(id), RawID: b64e(id), Type: "public-key", AuthenticatorAttachment: "platform",
		Response: assertionResponseJSON{
			ClientDataJSON: b64e(cdj), AuthenticatorData: b64e(chosen.AuthData), Signature: b64e(chosen.Signature),
		},
		ClientExtensionResults: results,
	}
	if chosen.User != nil && len(chosen.User.ID) > 0 {
		out.Response.UserHandle = b64e(chosen.User.ID)
	}
	return json.Marshal(out)
}

// preflight finds which of allow the authenticator holds, silently
// (getAssertion with up=false): the ID of the first match, nil if none.
func (s *session) preflight(rpID string, cdh []byte, allow []any) ([]byte, error) {
	body, err := s.call(cmdGetAssertion, map[int]any{1: rpID, 2: cdh, 3: allow, 5: map[string]bool{"up": false}})
	if st, ok := statusOf(err); ok && st == stNoCredentials {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a assertion
	if err := decode(body, &a); err != nil {
		return nil, err
	}
	if a.Credential == nil {
		return nil, nil
	}
	return a.Credential.ID, nil
}

// fitList makes a descriptor list fit the authenticator's
// maxCredentialCountInList: a longer list is probed silently in chunks
// (getAssertion with up=false, as browsers do) and replaced by the one
// credential found, or by nothing (found is false).
func (s *session) fitList(rpID string, cdh []byte, list []any) (out []any, found bool, err error) {
	limit := s.info.MaxCredsInList
	if limit <= 0 || len(list) <= limit {
		return list, true, nil
	}
	for start := 0; start < len(list); start += limit {
		id, err := s.preflight(rpID, cdh, list[start:min(start+limit, len(list))])
		if err != nil {
			return nil, false, err
		}
		if id != nil {
			return []any{map[string]any{"type": "public-key", "id": id}}, true, nil
		}
	}
	return nil, false, nil
}

func (s *session) choose(rpID string, all []*assertion) (*assertion, error) {
	if len(all) == 1 || s.c.Accounts == nil {
		return all[0], nil
	}
	accounts := make([]Account, len(all))
	for i, a := range all {
		accounts[i].CredentialID = a.Credential.ID
		if a.User != nil {
			accounts[i].UserID, accounts[i].Name, accounts[i].DisplayName = a.User.ID, a.User.Name, a.User.DisplayName
		}
	}
	i, err := s.c.Accounts.ChooseAccount(s.ctx, rpID, accounts)
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, &ctapError{cmd: cmdGetNextAssertion, status: stKeepaliveCancel}
		}
		return nil, ipc.Errorf(ipc.NotAllowedError, "no account was chosen: %v", err)
	}
	if i < 0 || i >= len(all) {
		return nil, ipc.Errorf(ipc.NotAllowedError, "no account was chosen")
	}
	return all[i], nil
}
