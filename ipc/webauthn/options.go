package webauthn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/authd/authd/ipc"
)

// The JSON forms of the options (WebAuthn L3 §5.1.11
// PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON).
// Pointers mark members whose absence matters ("required" in the IDL, or a
// default that differs from the zero value).

type rpEntityJSON struct {
	ID   *string `json:"id"`
	Name *string `json:"name"`
}

type userEntityJSON struct {
	ID          *string `json:"id"`
	Name        *string `json:"name"`
	DisplayName *string `json:"displayName"`
}

type credParamJSON struct {
	Type *string `json:"type"`
	Alg  *int64  `json:"alg"`
}

type descriptorJSON struct {
	Type       *string  `json:"type"`
	ID         *string  `json:"id"`
	Transports []string `json:"transports"`
}

type authenticatorSelectionJSON struct {
	AuthenticatorAttachment string `json:"authenticatorAttachment"`
	ResidentKey             string `json:"residentKey"`
	RequireResidentKey      bool   `json:"requireResidentKey"`
	UserVerification        string `json:"userVerification"`
}

type creationOptionsJSON struct {
	RP                     *rpEntityJSON               `json:"rp"`
	User                   *userEntityJSON             `json:"user"`
	Challenge              *string                     `json:"challenge"`
	PubKeyCredParams       *[]credParamJSON            `json:"pubKeyCredParams"`
	Timeout                *uint64                     `json:"timeout"`
	ExcludeCredentials     []descriptorJSON            `json:"excludeCredentials"`
	AuthenticatorSelection *authenticatorSelectionJSON `json:"authenticatorSelection"`
	Hints                  []string                    `json:"hints"`
	Attestation            string                      `json:"attestation"`
	AttestationFormats     []string                    `json:"attestationFormats"`
	Extensions             *extensionsJSON             `json:"extensions"`
}

type requestOptionsJSON struct {
	Challenge        *string          `json:"challenge"`
	Timeout          *uint64          `json:"timeout"`
	RPID             *string          `json:"rpId"`
	AllowCredentials []descriptorJSON `json:"allowCredentials"`
	UserVerification string           `json:"userVerification"`
	Hints            []string         `json:"hints"`
	Extensions       *extensionsJSON  `json:"extensions"`
}

// prfValuesJSON is AuthenticationExtensionsPRFValuesJSON.
type prfValuesJSON struct {
	First  *string `json:"first"`
	Second *string `json:"second"`
}

type prfInputsJSON struct {
	Eval             *prfValuesJSON           `json:"eval"`
	EvalByCredential map[string]prfValuesJSON `json:"evalByCredential"`
}

// extensionsJSON holds the client extension inputs authd understands;
// others are ignored (WebAuthn L3 §9: unknown extensions are ignored).
type extensionsJSON struct {
	CredProps                         *bool                `json:"credProps"`
	PRF                               *prfInputsJSON       `json:"prf"`
	CredentialProtectionPolicy        *string              `json:"credentialProtectionPolicy"`
	EnforceCredentialProtectionPolicy bool                 `json:"enforceCredentialProtectionPolicy"`
	MinPinLength                      *bool                `json:"minPinLength"`
	LargeBlob                         *largeBlobInputsJSON `json:"largeBlob"`
}

// Parsed, validated forms.

type descriptor struct {
	ID []byte
}

type creationOptions struct {
	RPID, RPName          string
	hasRPID               bool
	UserID                []byte
	UserName, DisplayName string
	Challenge             []byte
	Algs                  []int64 // pubKeyCredParams (public-key only), in order
	TimeoutMS             uint64
	Exclude               []descriptor
	Attachment            string
	ResidentKey           string // "required", "preferred" or "discouraged"
	UserVerification      string
	Attestation           string
	AttestationFormats    []string
	Ext                   extensionsJSON
}

type requestOptions struct {
	RPID             string
	hasRPID          bool
	Challenge        []byte
	TimeoutMS        uint64
	Allow            []descriptor
	UserVerification string
	Ext              extensionsJSON
}

func typeErr(format string, args ...any) error { return ipc.Errorf(ipc.TypeError, format, args...) }

// b64 decodes a Base64URLString: base64url, padding tolerated.
func b64(member, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, typeErr("%s is not base64url: %v", member, err)
	}
	return b, nil
}

func decodeJSON(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return typeErr("options are empty")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return typeErr("options are not valid JSON of the expected shape: %v", err)
	}
	return nil
}

// The values of the enumerations are DOMStrings in the IDL: an unknown value
// is ignored (as if absent) rather than rejected.
func oneOf(v, def string, allowed ...string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return def
}

func parseDescriptors(member string, in []descriptorJSON) ([]descriptor, error) {
	var out []descriptor
	for i, d := range in {
		if d.Type == nil || d.ID == nil {
			return nil, typeErr("%s[%d] needs type and id", member, i)
		}
		id, err := b64(member+".id", *d.ID)
		if err != nil {
			return nil, err
		}
		if *d.Type != "public-key" {
			continue // unknown credential types are skipped
		}
		out = append(out, descriptor{ID: id})
	}
	return out, nil
}

func parseCreationOptions(data []byte) (*creationOptions, error) {
	var j creationOptionsJSON
	if err := decodeJSON(data, &j); err != nil {
		return nil, err
	}
	switch {
	case j.RP == nil:
		return nil, typeErr("rp is required")
	case j.RP.Name == nil:
		return nil, typeErr("rp.name is required")
	case j.User == nil:
		return nil, typeErr("user is required")
	case j.User.ID == nil || j.User.Name == nil || j.User.DisplayName == nil:
		return nil, typeErr("user.id, user.name and user.displayName are required")
	case j.Challenge == nil:
		return nil, typeErr("challenge is required")
	case j.PubKeyCredParams == nil:
		return nil, typeErr("pubKeyCredParams is required")
	}
	o := &creationOptions{RPName: *j.RP.Name, UserName: *j.User.Name, DisplayName: *j.User.DisplayName}
	if j.RP.ID != nil {
		o.RPID, o.hasRPID = *j.RP.ID, true
	}
	var err error
	if o.UserID, err = b64("user.id", *j.User.ID); err != nil {
		return nil, err
	}
	if len(o.UserID) < 1 || len(o.UserID) > 64 {
		return nil, typeErr("user.id is %d bytes; it must be 1 to 64", len(o.UserID))
	}
	if o.Challenge, err = b64("challenge", *j.Challenge); err != nil {
		return nil, err
	}
	for i, p := range *j.PubKeyCredParams {
		if p.Type == nil || p.Alg == nil {
			return nil, typeErr("pubKeyCredParams[%d] needs type and alg", i)
		}
		if *p.Type == "public-key" {
			o.Algs = append(o.Algs, *p.Alg)
		}
	}
	if len(*j.PubKeyCredParams) == 0 {
		o.Algs = []int64{algES256, algRS256} // §5.1.3 step 10
	}
	if j.Timeout != nil {
		o.TimeoutMS = *j.Timeout
	}
	if o.Exclude, err = parseDescriptors("excludeCredentials", j.ExcludeCredentials); err != nil {
		return nil, err
	}
	sel := j.AuthenticatorSelection
	if sel == nil {
		sel = &authenticatorSelectionJSON{}
	}
	o.Attachment = oneOf(sel.AuthenticatorAttachment, "", "platform", "cross-platform")
	def := "discouraged"
	if sel.RequireResidentKey {
		def = "required"
	}
	o.ResidentKey = oneOf(sel.ResidentKey, def, "required", "preferred", "discouraged")
	o.UserVerification = oneOf(sel.UserVerification, "preferred", "required", "preferred", "discouraged")
	o.Attestation = oneOf(j.Attestation, "none", "none", "indirect", "direct", "enterprise")
	o.AttestationFormats = j.AttestationFormats
	if j.Extensions != nil {
		o.Ext = *j.Extensions
	}
	return o, nil
}

func parseRequestOptions(data []byte) (*requestOptions, error) {
	var j requestOptionsJSON
	if err := decodeJSON(data, &j); err != nil {
		return nil, err
	}
	if j.Challenge == nil {
		return nil, typeErr("challenge is required")
	}
	o := &requestOptions{}
	var err error
	if o.Challenge, err = b64("challenge", *j.Challenge); err != nil {
		return nil, err
	}
	if j.RPID != nil {
		o.RPID, o.hasRPID = *j.RPID, true
	}
	if j.Timeout != nil {
		o.TimeoutMS = *j.Timeout
	}
	if o.Allow, err = parseDescriptors("allowCredentials", j.AllowCredentials); err != nil {
		return nil, err
	}
	o.UserVerification = oneOf(j.UserVerification, "preferred", "required", "preferred", "discouraged")
	if j.Extensions != nil {
		o.Ext = *j.Extensions
	}
	return o, nil
}
