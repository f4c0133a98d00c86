package ctap2

import (
	"testing"

	"github.com/authd/authd/internal/cbor"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// rpVerifyAttestation re-keys a CTAP makeCredential response into a WebAuthn
// attestation object ({"fmt", "attStmt", "authData"}, WebAuthn L3 §6.5) and
// verifies it with go-webauthn, as a relying party would.
func rpVerifyAttestation(t testing.TB, rpID string, m map[int]any) {
	t.Helper()
	obj, err := cbor.Marshal(map[string]any{"fmt": m[1], "attStmt": m[3], "authData": m[2]})
	if err != nil {
		t.Fatal(err)
	}
	var att protocol.AttestationObject
	if err := att.UnmarshalCBOR(obj); err != nil {
		t.Fatalf("go-webauthn: attestation object: %v", err)
	}
	if err := att.AuthData.Unmarshal(att.RawAuthData); err != nil {
		t.Fatalf("go-webauthn: authenticator data: %v", err)
	}
	params := []protocol.CredentialParameter{
		{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
		{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgEdDSA},
	}
	if err := att.Verify(rpID, cdh, false, true, nil, params, protocol.AttestationPolicy{}, protocol.SignaturePolicy{}); err != nil {
		t.Fatalf("go-webauthn rejects the attestation: %v", err)
	}
}

// rpVerifySignature verifies an assertion signature with go-webauthn.
func rpVerifySignature(t testing.TB, coseKey, msg, sig []byte) {
	t.Helper()
	key, err := webauthncose.ParsePublicKey(coseKey)
	if err != nil {
		t.Fatalf("go-webauthn: public key: %v", err)
	}
	ok, err := webauthncose.VerifySignature(key, msg, sig)
	if err != nil || !ok {
		t.Fatalf("go-webauthn rejects the signature: %v", err)
	}
}
