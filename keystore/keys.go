package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
)

// SoftwareKeys is the KeyMaker used when no TPM is available: keys are
// generated in process memory and their blobs are raw private keys (a 32-byte
// P-256 scalar for AlgES256, a 32-byte Ed25519 seed for AlgEdDSA). The store
// encrypts blobs at rest. The zero value is ready to use.
type SoftwareKeys struct{}

var _ KeyMaker = SoftwareKeys{}

// NewKey generates a key pair for alg. The public key is an *ecdsa.PublicKey
// for AlgES256 and an ed25519.PublicKey for AlgEdDSA.
func (SoftwareKeys) NewKey(alg int) ([]byte, crypto.PublicKey, error) {
	switch alg {
	case AlgES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("keystore: generate ES256 key: %w", err)
		}
		blob, err := k.Bytes()
		if err != nil {
			return nil, nil, fmt.Errorf("keystore: encode ES256 key: %w", err)
		}
		return blob, &k.PublicKey, nil
	case AlgEdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("keystore: generate EdDSA key: %w", err)
		}
		return append([]byte(nil), priv.Seed()...), pub, nil
	default:
		return nil, nil, fmt.Errorf("keystore: COSE algorithm %d: %w", alg, ErrUnsupportedAlgorithm)
	}
}

// Signer turns a blob made by NewKey back into a signer. The signer for
// AlgES256 is an *ecdsa.PrivateKey (ASN.1 DER signatures, caller hashes with
// SHA-256); for AlgEdDSA an ed25519.PrivateKey (pass crypto.Hash(0)).
func (SoftwareKeys) Signer(alg int, blob []byte) (crypto.Signer, error) {
	switch alg {
	case AlgES256:
		if len(blob) != 32 {
			return nil, fmt.Errorf("keystore: ES256 key blob is %d bytes, want 32", len(blob))
		}
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), blob)
		if err != nil {
			return nil, fmt.Errorf("keystore: ES256 key blob: %w", err)
		}
		return k, nil
	case AlgEdDSA:
		if len(blob) != ed25519.SeedSize {
			return nil, fmt.Errorf("keystore: EdDSA key blob is %d bytes, want %d", len(blob), ed25519.SeedSize)
		}
		return ed25519.NewKeyFromSeed(blob), nil
	default:
		return nil, fmt.Errorf("keystore: COSE algorithm %d: %w", alg, ErrUnsupportedAlgorithm)
	}
}

// Backend implements KeyBackend: every SoftwareKeys key is "software".
func (SoftwareKeys) Backend(int, []byte) string { return BackendSoftware }

// Backend names used by Store.Backends.
const (
	BackendSoftware = "software"
	BackendTPM      = "tpm"
)
