package ctap2

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"slices"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/keystore"
)

// Extensions (CTAP 2.1 §12, CTAP 2.2 §12.8 hmac-secret-mc). Inputs are
// decoded strictly: a wrong type is CTAP2_ERR_CBOR_UNEXPECTED_TYPE, a value
// out of range the code each extension names; unknown extensions are ignored;
// outputs are a subset of the inputs.
const (
	extCredProtect  = "credProtect"
	extHMACSecret   = "hmac-secret"
	extHMACSecretMC = "hmac-secret-mc"
	extCredBlob     = "credBlob"
	extLargeBlobKey = "largeBlobKey"
	extMinPINLength = "minPinLength"

	maxCredBlobLength = 32

	// Keys of keystore.Credential.Secrets.
	secretHMACWithUV    = "hmac-secret-uv"
	secretHMACWithoutUV = "hmac-secret"
	secretCredBlob      = "credBlob"
	secretLargeBlobKey  = "largeBlobKey"
)

// supportedExtensions is getInfo's list (0x02).
var supportedExtensions = []string{extCredBlob, extCredProtect, extHMACSecret, extHMACSecretMC, extLargeBlobKey, extMinPINLength}

// hmacSecretInput is the hmac-secret (and hmac-secret-mc) input map.
type hmacSecretInput struct {
	KeyAgreement *cose.Key  `cbor:"1,keyasint"`
	SaltEnc      cbor.Bytes `cbor:"2,keyasint"`
	SaltAuth     cbor.Bytes `cbor:"3,keyasint"`
	Protocol     *uint64    `cbor:"4,keyasint"`
}

// hmacSession is a validated hmac-secret request: the shared secret with the
// platform and the decrypted salts. It lives as long as the request (and its
// getNextAssertion sequence).
type hmacSession struct {
	ss    pinuv.SharedSecret
	salts []byte // 32 or 64 bytes
}

func (h *hmacSession) clear() {
	if h != nil {
		h.ss.Clear()
		clear(h.salts)
	}
}

// decodeExt decodes one extension input.
func decodeExt(name string, raw cbor.RawMessage, v any) error {
	if err := decode(raw, v); err != nil {
		return fail(StatusOf(err), "extension %s: %v", name, err)
	}
	return nil
}

// openHMACSecret validates an hmac-secret input (CTAP 2.1 §12.5): key
// agreement, saltAuth over saltEnc, 32- or 64-byte salts.
func (a *Authenticator) openHMACSecret(name string, raw cbor.RawMessage) (*hmacSession, error) {
	var in hmacSecretInput
	if err := decodeExt(name, raw, &in); err != nil {
		return nil, err
	}
	if in.KeyAgreement == nil || in.SaltEnc == nil || in.SaltAuth == nil {
		return nil, fail(ErrMissingParameter, "%s: keyAgreement, saltEnc and saltAuth are required", name)
	}
	version := uint64(1) // absent means protocol one
	if in.Protocol != nil {
		version = *in.Protocol
	}
	p, err := protocolOf(&version)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	ss, err := a.ka.Decapsulate(p, *in.KeyAgreement)
	a.mu.Unlock()
	if err != nil {
		return nil, fail(ErrInvalidParameter, "%s: keyAgreement: %v", name, err)
	}
	if !ss.Verify(in.SaltEnc, in.SaltAuth) {
		ss.Clear()
		return nil, fail(ErrPINAuthInvalid, "%s: saltAuth does not verify", name)
	}
	salts, err := ss.Decrypt(in.SaltEnc)
	if err != nil || (len(salts) != 32 && len(salts) != 64) {
		ss.Clear()
		return nil, fail(ErrInvalidParameter, "%s: salts must be 32 or 64 bytes", name)
	}
	return &hmacSession{ss: ss, salts: salts}, nil
}

// output computes encrypt(sharedSecret, HMAC-SHA-256(CredRandom, salt1) [‖
// HMAC-SHA-256(CredRandom, salt2)]) with the UV or non-UV secret.
func (h *hmacSession) output(c *keystore.Credential, uv bool) ([]byte, bool, error) {
	key := c.Secrets[secretHMACWithoutUV]
	if uv {
		key = c.Secrets[secretHMACWithUV]
	}
	if len(key) != 32 {
		return nil, false, nil // the credential was made without hmac-secret
	}
	out := make([]byte, 0, 64)
	for i := 0; i < len(h.salts); i += 32 {
		m := hmac.New(sha256.New, key)
		m.Write(h.salts[i : i+32])
		out = m.Sum(out)
	}
	enc, err := h.ss.Encrypt(out)
	clear(out)
	return enc, true, err
}

// mcExtensions is what makeCredential's extensions decided.
type mcExtensions struct {
	credProtect  uint8
	hmacSecret   bool
	hmacMC       *hmacSession
	credBlob     []byte
	credBlobOK   bool
	hasCredBlob  bool
	largeBlobKey bool
	minPINLength bool
}

// parseMCExtensions decodes makeCredential extension inputs (before user
// interaction, so malformed input fails fast).
func (a *Authenticator) parseMCExtensions(in map[string]cbor.RawMessage, rk bool) (*mcExtensions, error) {
	var x mcExtensions
	for name, raw := range in {
		switch name {
		case extCredProtect:
			var v uint64
			if err := decodeExt(name, raw, &v); err != nil {
				return nil, err
			}
			if v < 1 || v > 3 {
				return nil, fail(ErrInvalidParameter, "credProtect %d is not 1, 2 or 3", v)
			}
			x.credProtect = uint8(v)
		case extHMACSecret:
			if err := decodeExt(name, raw, &x.hmacSecret); err != nil {
				return nil, err
			}
		case extCredBlob:
			var b cbor.Bytes
			if err := decodeExt(name, raw, &b); err != nil {
				return nil, err
			}
			x.hasCredBlob = true
			if len(b) <= maxCredBlobLength {
				x.credBlob, x.credBlobOK = b, true
			}
		case extLargeBlobKey:
			var v bool
			if err := decodeExt(name, raw, &v); err != nil {
				return nil, err
			}
			if !v {
				return nil, fail(ErrInvalidOption, "largeBlobKey must be true when present")
			}
			// Only discoverable credentials get a large-blob key.
			x.largeBlobKey = rk
		case extMinPINLength:
			if err := decodeExt(name, raw, &x.minPINLength); err != nil {
				return nil, err
			}
		}
	}
	if raw, ok := in[extHMACSecretMC]; ok {
		if !x.hmacSecret {
			return nil, fail(ErrInvalidParameter, "hmac-secret-mc needs hmac-secret: true")
		}
		h, err := a.openHMACSecret(extHMACSecretMC, raw)
		if err != nil {
			return nil, err
		}
		x.hmacMC = h
	}
	return &x, nil
}

// apply stores the extensions' secrets in the new credential.
func (x *mcExtensions) apply(a *Authenticator, c *keystore.Credential) error {
	c.CredProtect = x.credProtect
	secret := func(name string) error {
		b := make([]byte, 32)
		if _, err := a.cfg.Rand.Read(b); err != nil {
			return err
		}
		c.Secrets[name] = b
		return nil
	}
	c.Secrets = map[string][]byte{}
	if x.hmacSecret {
		if err := secret(secretHMACWithUV); err != nil {
			return err
		}
		if err := secret(secretHMACWithoutUV); err != nil {
			return err
		}
	}
	if x.credBlobOK {
		c.Secrets[secretCredBlob] = append([]byte{}, x.credBlob...)
	}
	if x.largeBlobKey {
		if err := secret(secretLargeBlobKey); err != nil {
			return err
		}
	}
	return nil
}

// outputs builds makeCredential's authenticator extension outputs.
func (x *mcExtensions) outputs(a *Authenticator, c *keystore.Credential, rpID string, uv bool) (map[string]any, error) {
	out := map[string]any{}
	if x.credProtect != 0 {
		out[extCredProtect] = x.credProtect
	}
	if x.hmacSecret {
		out[extHMACSecret] = true
	}
	if x.hmacMC != nil {
		enc, ok, err := x.hmacMC.output(c, uv)
		if err != nil {
			return nil, err
		}
		if ok {
			out[extHMACSecretMC] = enc
		}
	}
	if x.hasCredBlob {
		out[extCredBlob] = x.credBlobOK
	}
	if x.minPINLength {
		settings, err := a.cfg.State.Settings()
		if err != nil {
			return nil, wrapStore("settings", err)
		}
		if slices.Contains(settings.MinPINLengthRPIDs, rpID) {
			out[extMinPINLength] = a.cfg.State.State().MinPINLength
		}
	}
	return out, nil
}

// gaExtensions is what getAssertion's extensions asked for.
type gaExtensions struct {
	hmac         *hmacSession
	credBlob     bool
	largeBlobKey bool
}

func (a *Authenticator) parseGAExtensions(in map[string]cbor.RawMessage, up bool) (*gaExtensions, error) {
	var x gaExtensions
	for name, raw := range in {
		switch name {
		case extCredBlob:
			if err := decodeExt(name, raw, &x.credBlob); err != nil {
				return nil, err
			}
		case extLargeBlobKey:
			var v bool
			if err := decodeExt(name, raw, &v); err != nil {
				return nil, err
			}
			if !v {
				return nil, fail(ErrInvalidOption, "largeBlobKey must be true when present")
			}
			x.largeBlobKey = true
		}
	}
	if raw, ok := in[extHMACSecret]; ok {
		if !up {
			return nil, fail(ErrUnsupportedOption, "hmac-secret needs user presence (up=false)")
		}
		h, err := a.openHMACSecret(extHMACSecret, raw)
		if err != nil {
			return nil, err
		}
		x.hmac = h
	}
	return &x, nil
}

// outputs builds one assertion's extension outputs (signed, in authData).
func (x *gaExtensions) outputs(c *keystore.Credential, uv bool) (map[string]any, error) {
	if x == nil {
		return nil, nil
	}
	out := map[string]any{}
	if x.hmac != nil {
		enc, ok, err := x.hmac.output(c, uv)
		if err != nil {
			return nil, err
		}
		if ok {
			out[extHMACSecret] = enc
		}
	}
	if x.credBlob {
		out[extCredBlob] = append([]byte{}, c.Secrets[secretCredBlob]...)
	}
	return out, nil
}

// withExtensions appends the extension outputs to authData and sets ED.
func withExtensions(ad []byte, out map[string]any) ([]byte, error) {
	if len(out) == 0 {
		return ad, nil
	}
	b, err := cbor.Marshal(out)
	if err != nil {
		return nil, errors.Join(errors.New("ctap2: encode extension outputs"), err)
	}
	ad[32] |= flagED
	return append(ad, b...), nil
}
