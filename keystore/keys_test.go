package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestSoftwareKeys(t *testing.T) {
	var km SoftwareKeys
	msg := []byte("authenticator data || client data hash")
	digest := sha256.Sum256(msg)

	blob, pub, err := km.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != 32 {
		t.Fatalf("ES256 blob is %d bytes", len(blob))
	}
	sg, err := km.Signer(AlgES256, blob)
	if err != nil {
		t.Fatal(err)
	}
	if !sg.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("ES256 signer public key differs from NewKey's")
	}
	sig, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("ES256 signature does not verify: %v", err)
	}

	blob, pub, err = km.NewKey(AlgEdDSA)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != ed25519.SeedSize {
		t.Fatalf("EdDSA blob is %d bytes", len(blob))
	}
	sg, err = km.Signer(AlgEdDSA, blob)
	if err != nil {
		t.Fatal(err)
	}
	sig, err = sg.Sign(nil, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(pub.(ed25519.PublicKey), msg, sig) {
		t.Fatalf("EdDSA signature does not verify: %v", err)
	}

	if _, _, err := km.NewKey(-257); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Fatalf("NewKey(RS256) error %v", err)
	}
	if _, err := km.Signer(-35, make([]byte, 48)); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Fatalf("Signer(ES384) error %v", err)
	}
	for _, tc := range []struct {
		alg  int
		blob []byte
	}{
		{AlgES256, make([]byte, 31)},
		{AlgES256, make([]byte, 33)},
		{AlgES256, make([]byte, 32)}, // zero scalar
		{AlgES256, bytes32(0xff)},    // not reduced mod n
		{AlgEdDSA, make([]byte, 31)},
		{AlgEdDSA, make([]byte, 64)},
	} {
		if _, err := km.Signer(tc.alg, tc.blob); err == nil {
			t.Errorf("Signer(%d, %x) accepted an invalid blob", tc.alg, tc.blob)
		}
	}
}

func bytes32(b byte) []byte {
	out := make([]byte, 32)
	for i := range out {
		out[i] = b
	}
	return out
}
