package ctap2

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/authd/authd/keystore"
)

// Authenticator data flags (WebAuthn L3 §6.1).
const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
	flagED = 0x80
)

// authData builds authenticator data (WebAuthn L3 §6.1): rpIdHash ‖ flags ‖
// signCount (big-endian) ‖ [attestedCredentialData].
func authData(rpID string, flags byte, counter uint32, attested []byte) []byte {
	h := sha256.Sum256([]byte(rpID))
	out := make([]byte, 0, 37+len(attested))
	out = append(out, h[:]...)
	if len(attested) > 0 {
		flags |= flagAT
	}
	out = append(out, flags)
	out = binary.BigEndian.AppendUint32(out, counter)
	return append(out, attested...)
}

// attestedCredentialData: aaguid ‖ credentialIdLength (uint16 BE) ‖ credentialId ‖ COSE key (WebAuthn L3 §6.5.1).
func attestedCredentialData(aaguid [16]byte, id, coseKey []byte) []byte {
	out := make([]byte, 0, 18+len(id)+len(coseKey))
	out = append(out, aaguid[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(id)))
	out = append(out, id...)
	return append(out, coseKey...)
}

// sign signs authData ‖ clientDataHash with the credential key: ECDSA over
// SHA-256 with an ASN.1 DER signature, Ed25519 over the message itself
// (WebAuthn L3 §6.3.3 step 11, §8.2).
func sign(r io.Reader, s crypto.Signer, alg int, authData, clientDataHash []byte) ([]byte, error) {
	switch alg {
	case keystore.AlgES256:
		h := sha256.New()
		h.Write(authData)
		h.Write(clientDataHash)
		return s.Sign(r, h.Sum(nil), crypto.SHA256)
	case keystore.AlgEdDSA:
		msg := make([]byte, 0, len(authData)+len(clientDataHash))
		msg = append(append(msg, authData...), clientDataHash...)
		return s.Sign(r, msg, &ed25519.Options{})
	}
	return nil, fmt.Errorf("ctap2: cannot sign with algorithm %d", alg)
}
