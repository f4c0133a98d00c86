package pinuv

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/authd/authd/internal/cose"
)

// KeyAgreement is the authenticator's ephemeral P-256 key-agreement key
// (CTAP 2.1 §6.5.6 initialize/regenerate/getPublicKey/decapsulate), shared by
// both protocols. Create it at power-up, Regenerate it after every wrong PIN
// (and wherever else the engine's policy says). It is safe for concurrent use.
type KeyAgreement struct {
	mu   sync.Mutex
	rand io.Reader // nil: crypto/rand via ecdh.GenerateKey
	priv *ecdh.PrivateKey
	cose []byte // canonical COSE_Key of priv's public key
}

// maxKeyTries bounds rejection sampling; a uniformly random 32-byte string
// is a valid P-256 scalar with probability about 1 - 2^-32.
const maxKeyTries = 16

// NewKeyAgreement generates a key-agreement key. With r == nil the key comes
// from crypto/ecdh and crypto/rand. Otherwise it is drawn from r by rejection
// sampling (32 bytes at a time until a valid scalar 1..n-1 appears), so a
// deterministic r gives deterministic keys — crypto/ecdh itself ignores custom
// readers since Go 1.26. Regenerate uses the same r.
func NewKeyAgreement(r io.Reader) (*KeyAgreement, error) {
	k := &KeyAgreement{rand: r}
	if err := k.Regenerate(); err != nil {
		return nil, err
	}
	return k, nil
}

// NewKeyAgreementFromKey wraps an existing P-256 private key, for known-answer
// tests and for platform-side test code (decapsulation is symmetric: the
// platform decapsulates the authenticator's public key with its own private
// key and obtains the same SharedSecret). Regenerate then uses crypto/rand.
func NewKeyAgreementFromKey(priv *ecdh.PrivateKey) (*KeyAgreement, error) {
	if priv == nil || priv.Curve() != ecdh.P256() {
		return nil, errors.New("pinuv: key agreement needs a P-256 private key")
	}
	k := &KeyAgreement{}
	if err := k.setLocked(priv); err != nil {
		return nil, err
	}
	return k, nil
}

// Regenerate replaces the key with a fresh one (CTAP 2.1 §6.5.6 regenerate()).
// On error the previous key stays in place.
func (k *KeyAgreement) Regenerate() error {
	priv, err := generateP256(k.rand)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.setLocked(priv)
}

func (k *KeyAgreement) setLocked(priv *ecdh.PrivateKey) error {
	b, err := cose.EncodeECDHP256(priv.PublicKey())
	if err != nil {
		return fmt.Errorf("pinuv: encoding key-agreement key: %w", err)
	}
	k.priv, k.cose = priv, b
	return nil
}

func generateP256(r io.Reader) (*ecdh.PrivateKey, error) {
	if r == nil {
		priv, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("pinuv: generating key-agreement key: %w", err)
		}
		return priv, nil
	}
	var buf [32]byte
	defer clear(buf[:])
	for range maxKeyTries {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return nil, fmt.Errorf("pinuv: generating key-agreement key: %w", err)
		}
		if priv, err := ecdh.P256().NewPrivateKey(buf[:]); err == nil {
			return priv, nil
		}
	}
	return nil, errors.New("pinuv: generating key-agreement key: random source yields no valid scalar")
}

// PublicKeyCOSE returns the public key as the canonical COSE_Key
// {1: 2, 3: -25, -1: 1, -2: x, -3: y} (CTAP 2.1 §6.5.6 getPublicKey()), ready to
// embed as a cbor.RawMessage in the getKeyAgreement response. The slice is a
// copy.
func (k *KeyAgreement) PublicKeyCOSE() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]byte(nil), k.cose...)
}

// Decapsulate derives the shared secret with the platform's key-agreement key
// (CTAP 2.1 §6.5.6 decapsulate()): it checks the COSE key and that the point is
// on P-256, computes Z = the x-coordinate of the ECDH product, and returns
// p.KDF(Z). Errors for an unusable peer key wrap ErrInvalidKey (and the
// cose error: cose.ErrMalformed or cose.ErrInvalidKey); a nil p returns
// ErrProtocol.
func (k *KeyAgreement) Decapsulate(p Protocol, peer cose.Key) (SharedSecret, error) {
	if p == nil {
		return SharedSecret{}, fmt.Errorf("%w: nil protocol", ErrProtocol)
	}
	pub, err := cose.ParseECDHP256(peer)
	if err != nil {
		return SharedSecret{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	k.mu.Lock()
	priv := k.priv
	k.mu.Unlock()
	if priv == nil {
		return SharedSecret{}, errors.New("pinuv: key agreement not initialised")
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		return SharedSecret{}, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	defer clear(z)
	s := p.KDF(z)
	if s.Version() != p.Version() {
		return SharedSecret{}, errors.New("pinuv: key derivation failed")
	}
	return s, nil
}
