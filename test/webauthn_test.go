package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/authd/authd/internal/cbor"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"
)

// rpUser is a relying party's account.
type rpUser struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *rpUser) WebAuthnID() []byte                         { return u.id }
func (u *rpUser) WebAuthnName() string                       { return u.name }
func (u *rpUser) WebAuthnDisplayName() string                { return u.name }
func (u *rpUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

const (
	rpID   = "login.example.com"
	origin = "https://login.example.com"
)

func newRP(t *testing.T) *webauthn.WebAuthn {
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "Example", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	return wa
}

// register runs a whole registration ceremony: go-webauthn's options, authd
// over the CTAPHID socket, go-webauthn's verification.
func register(t *testing.T, wa *webauthn.WebAuthn, dt *daemonT, u *rpUser, rk bool, alg int, format string) *webauthn.Credential {
	t.Helper()
	opts := []webauthn.RegistrationOption{webauthn.WithConveyancePreference(protocol.PreferDirectAttestation)}
	creation, session, err := wa.BeginRegistration(u, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cdj, cdh := clientData(t, "webauthn.create", creation.Response.Challenge.String(), origin)
	params := map[int]any{
		1: cdh,
		2: map[string]any{"id": creation.Response.RelyingParty.ID, "name": creation.Response.RelyingParty.Name},
		3: map[string]any{"id": []byte(creation.Response.User.ID.(protocol.URLEncodedBase64)), "name": u.name, "displayName": u.name},
		4: []any{map[string]any{"alg": alg, "type": "public-key"}},
		7: map[string]bool{"rk": rk},
	}
	if format != "" {
		params[11] = []string{format}
	}
	c := dt.client(t)
	st, m := ctap(t, c, 0x01, params)
	if st != 0 {
		t.Fatalf("makeCredential: status 0x%02x", st)
	}
	obj, err := cbor.Marshal(map[string]any{"fmt": m[1], "attStmt": m[3], "authData": m[2]})
	if err != nil {
		t.Fatal(err)
	}
	var ad protocol.AuthenticatorData
	if err := ad.Unmarshal(m[2].([]byte)); err != nil {
		t.Fatal(err)
	}
	id := ad.AttData.CredentialID
	body, _ := json.Marshal(map[string]any{
		"id": b64(id), "rawId": b64(id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(cdj), "attestationObject": b64(obj)},
	})
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		t.Fatalf("go-webauthn parse: %v", err)
	}
	cred, err := wa.CreateCredential(u, *session, parsed)
	if err != nil {
		t.Fatalf("go-webauthn rejects the registration: %v", errDetails(err))
	}
	// go-webauthn names packed self attestation "basic_surrogate".
	if want := map[any]string{"packed": "basic_surrogate", "none": "none"}[m[1]]; cred.AttestationType != want {
		t.Fatalf("attestation type %q for fmt %v", cred.AttestationType, m[1])
	}
	return cred
}

// login runs an authentication ceremony with an allowList (or none, for a
// discoverable credential) and returns the RP's updated credential.
func login(t *testing.T, wa *webauthn.WebAuthn, dt *daemonT, u *rpUser, discoverable bool) *webauthn.Credential {
	t.Helper()
	var assertion *protocol.CredentialAssertion
	var session *webauthn.SessionData
	var err error
	if discoverable {
		assertion, session, err = wa.BeginDiscoverableLogin()
	} else {
		assertion, session, err = wa.BeginLogin(u)
	}
	if err != nil {
		t.Fatal(err)
	}
	cdj, cdh := clientData(t, "webauthn.get", assertion.Response.Challenge.String(), origin)
	params := map[int]any{1: assertion.Response.RelyingPartyID, 2: cdh}
	if !discoverable {
		var allow []any
		for _, d := range assertion.Response.AllowedCredentials {
			allow = append(allow, map[string]any{"type": "public-key", "id": []byte(d.CredentialID)})
		}
		params[3] = allow
	}
	st, m := ctap(t, dt.client(t), 0x02, params)
	if st != 0 {
		t.Fatalf("getAssertion: status 0x%02x", st)
	}
	id := m[1].(map[any]any)["id"].([]byte)
	resp := map[string]any{"clientDataJSON": b64(cdj), "authenticatorData": b64(m[2].([]byte)), "signature": b64(m[3].([]byte))}
	if user, ok := m[4].(map[any]any); ok {
		resp["userHandle"] = b64(user["id"].([]byte))
	}
	body, _ := json.Marshal(map[string]any{"id": b64(id), "rawId": b64(id), "type": "public-key", "response": resp})
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		t.Fatalf("go-webauthn parse: %v", err)
	}
	var cred *webauthn.Credential
	if discoverable {
		cred, err = wa.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
			if !bytes.Equal(userHandle, u.id) {
				return nil, fmt.Errorf("unknown user handle %x", userHandle)
			}
			return u, nil
		}, *session, parsed)
	} else {
		cred, err = wa.ValidateLogin(u, *session, parsed)
	}
	if err != nil {
		t.Fatalf("go-webauthn rejects the assertion: %v", errDetails(err))
	}
	return cred
}

// TestGoWebAuthnRelyingParty: registrations and sign-ins through the real
// socket, verified by go-webauthn, for both algorithms, both attestation
// formats, discoverable and non-discoverable credentials; the signature
// counter grows on every sign-in (go-webauthn flags clones otherwise).
func TestGoWebAuthnRelyingParty(t *testing.T) {
	dt := startDaemon(t)
	wa := newRP(t)
	for i, tc := range []struct {
		alg    int
		rk     bool
		format string
	}{
		{int(webauthncose.AlgES256), false, ""},
		{int(webauthncose.AlgEdDSA), true, ""},
		{int(webauthncose.AlgES256), true, "none"},
		{int(webauthncose.AlgEdDSA), false, "packed"},
	} {
		t.Run(fmt.Sprintf("alg%d-rk%v-%s", tc.alg, tc.rk, tc.format), func(t *testing.T) {
			u := &rpUser{id: []byte(fmt.Sprintf("user-%d", i)), name: fmt.Sprintf("user%d@example.com", i)}
			cred := register(t, wa, dt, u, tc.rk, tc.alg, tc.format)
			if cred.Flags.BackupEligible || cred.Flags.BackupState {
				t.Error("a device-bound credential must not claim backup eligibility")
			}
			u.creds = []webauthn.Credential{*cred}
			last := cred.Authenticator.SignCount
			for j := 0; j < 3; j++ {
				got := login(t, wa, dt, u, false)
				if got.Authenticator.SignCount <= last || got.Authenticator.CloneWarning {
					t.Fatalf("sign count %d after %d (clone warning %v)", got.Authenticator.SignCount, last, got.Authenticator.CloneWarning)
				}
				last = got.Authenticator.SignCount
				u.creds[0].Authenticator.SignCount = last
			}
			if tc.rk {
				// Discoverable: found without an allowList, user handle returned.
				login(t, wa, dt, u, true)
			}
		})
	}
}

// errDetails includes go-webauthn's DevInfo, which says what failed.
func errDetails(err error) string {
	if pe, ok := err.(*protocol.Error); ok {
		return pe.Error() + ": " + pe.Details + " " + pe.DevInfo
	}
	return err.Error()
}
