// Package pinuv implements PIN/UV auth protocols One and Two on the
// authenticator side.
//
// Specification: CTAP 2.1 §6.5.4 "PIN/UV Auth Protocol Abstract Definition",
// §6.5.6 "PIN/UV Auth Protocol One" and §6.5.7 "PIN/UV Auth Protocol Two"
// (https://fidoalliance.org/specs/fido-v2.1-ps-20210615/fido-client-to-authenticator-protocol-v2.1-ps-20210615.html).
//
// The package owns the cryptography only: the key-agreement key
// ([KeyAgreement]: initialize, regenerate, getPublicKey, decapsulate), the
// shared-secret KDF, encrypt/decrypt, authenticate/verify, and the PIN helpers
// [PINHash] and [ParsePaddedPIN]. Retry counters, token permissions, timers and
// the mapping of errors to CTAP status codes belong to the ctap2 engine.
//
// A typical ClientPIN exchange on the authenticator:
//
//	p, ok := pinuv.ByVersion(req.PinUvAuthProtocol)      // !ok → INVALID_PARAMETER
//	ss, err := ka.Decapsulate(p, *req.KeyAgreement)       // err → INVALID_PARAMETER
//	if !ss.Verify(req.NewPinEnc, req.PinUvAuthParam) { … } // → PIN_AUTH_INVALID
//	pin, err := ss.DecryptNewPIN(req.NewPinEnc)           // err → INVALID_PARAMETER
//	…
//	enc, err := ss.Encrypt(token[:])                      // pinUvAuthToken for the platform
//
// and for MakeCredential/GetAssertion: p.Verify(token[:], clientDataHash,
// pinUvAuthParam) (or token.Verify(p, …)).
//
// Secrets live in fixed-size arrays ([SharedSecret], [Token]) that refuse to be
// printed or marshalled; MACs are compared in constant time; every ciphertext
// length is checked before AES-CBC runs, so malformed input yields an error and
// never a panic.
package pinuv

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// Sizes fixed by the specification.
const (
	TokenSize     = 32 // pinUvAuthToken, both protocols
	PINHashSize   = 16 // LEFT(SHA-256(PIN), 16)
	PaddedPINSize = 64 // paddedNewPin
)

var (
	// ErrDecrypt reports a ciphertext whose length is impossible for the
	// protocol (v1: not a multiple of 16; v2: shorter than the IV or not a
	// multiple of 16), or, for the fixed-size helpers, a plaintext of the
	// wrong length.
	ErrDecrypt = errors.New("pinuv: malformed ciphertext")
	// ErrPlaintext reports an Encrypt input that is not a multiple of the AES
	// block size (a caller bug: every CTAP plaintext is 16, 32 or 64 bytes).
	ErrPlaintext = errors.New("pinuv: plaintext is not a multiple of 16 bytes")
	// ErrPadding reports a decrypted paddedNewPin that is not exactly 64 bytes.
	ErrPadding = errors.New("pinuv: padded PIN is not 64 bytes")
	// ErrProtocol reports a SharedSecret used with a protocol it was not
	// derived for, a zero SharedSecret, or a nil Protocol.
	ErrProtocol = errors.New("pinuv: shared secret does not belong to this protocol")
	// ErrInvalidKey reports a platform key-agreement key that Decapsulate
	// cannot use. The error also wraps cose.ErrMalformed (missing member) or
	// cose.ErrInvalidKey (wrong kty/crv/length, point not on the curve).
	// CTAP 2.1 §6.5.6: the engine answers CTAP1_ERR_INVALID_PARAMETER.
	ErrInvalidKey = errors.New("pinuv: invalid platform key-agreement key")
)

// Protocol is one PIN/UV auth protocol (CTAP 2.1 §6.5.4). The implementations
// are [ProtocolV1] and [ProtocolV2]; the interface is sealed.
//
// Authenticate and Verify take the MAC key explicitly: token[:] for a
// pinUvAuthToken, or sharedSecret.HMACKey() (more conveniently the
// SharedSecret methods of the same name) for setPIN, changePIN and
// hmac-secret's saltAuth.
type Protocol interface {
	// Version is 1 or 2, the pinUvAuthProtocol number on the wire.
	Version() int
	// KDF derives the shared secret from Z, the x-coordinate of the ECDH
	// result. Decapsulate calls it; it is exported for platform-side tests.
	KDF(z []byte) SharedSecret
	// Encrypt encrypts pt (a multiple of 16 bytes) under s. v1: AES-256-CBC,
	// zero IV, output the same length as pt. v2: a fresh random IV is
	// prepended, output 16 bytes longer.
	Encrypt(s *SharedSecret, pt []byte) ([]byte, error)
	// Decrypt reverses Encrypt; an impossible length returns ErrDecrypt.
	// There is no integrity check: verify the MAC first.
	Decrypt(s *SharedSecret, ct []byte) ([]byte, error)
	// Authenticate returns the MAC of msg: v1 the first 16 bytes of
	// HMAC-SHA-256(key, msg); v2 all 32 bytes of HMAC-SHA-256(key[:32], msg).
	Authenticate(key, msg []byte) []byte
	// Verify reports, in constant time, whether sig is exactly the MAC of msg
	// (16 bytes for v1, 32 for v2). An empty key never verifies.
	Verify(key, msg, sig []byte) bool

	sealed()
}

var (
	// V1 is PIN/UV auth protocol One.
	V1 = ProtocolV1{}
	// V2 is PIN/UV auth protocol Two, drawing IVs from crypto/rand.
	V2 = ProtocolV2{}
)

// ByVersion returns the protocol with the given pinUvAuthProtocol number (1 or
// 2), using crypto/rand for IVs.
func ByVersion(v int) (Protocol, bool) {
	switch v {
	case 1:
		return V1, true
	case 2:
		return V2, true
	}
	return nil, false
}

// SharedSecret is the result of Decapsulate: 32 bytes for protocol 1
// (AES and HMAC key alike), 64 for protocol 2 (HMAC key ‖ AES key). It
// remembers the Protocol that derived it, so its methods need no protocol
// argument. The zero value is unusable (every operation fails).
//
// A SharedSecret refuses to be printed or marshalled; call Clear when done.
type SharedSecret struct {
	b [64]byte
	p Protocol
}

// Protocol returns the protocol that derived s, or nil for the zero value.
func (s *SharedSecret) Protocol() Protocol { return s.p }

// Version returns s.Protocol().Version(), or 0 for the zero value.
func (s *SharedSecret) Version() int {
	if s.p == nil {
		return 0
	}
	return s.p.Version()
}

// hmacKey is the MAC key part: all 32 bytes for v1, the first 32 for v2.
func (s *SharedSecret) hmacKey() []byte {
	if s.p == nil {
		return nil
	}
	return s.b[:32]
}

// aesKey is the AES-256 key part: all 32 bytes for v1, bytes 32..63 for v2.
func (s *SharedSecret) aesKey() []byte {
	switch s.Version() {
	case 1:
		return s.b[:32]
	case 2:
		return s.b[32:64]
	}
	return nil
}

// HMACKey returns a copy of the key Authenticate and Verify use with this
// secret (v1: the whole 32-byte secret; v2: its first 32 bytes), for calling
// Protocol.Authenticate/Verify directly. Nil for the zero value.
func (s *SharedSecret) HMACKey() []byte {
	if k := s.hmacKey(); k != nil {
		return append([]byte(nil), k...)
	}
	return nil
}

// Encrypt is s.Protocol().Encrypt(s, pt).
func (s *SharedSecret) Encrypt(pt []byte) ([]byte, error) {
	if s.p == nil {
		return nil, ErrProtocol
	}
	return s.p.Encrypt(s, pt)
}

// Decrypt is s.Protocol().Decrypt(s, ct).
func (s *SharedSecret) Decrypt(ct []byte) ([]byte, error) {
	if s.p == nil {
		return nil, ErrProtocol
	}
	return s.p.Decrypt(s, ct)
}

// Authenticate is s.Protocol().Authenticate(s.HMACKey(), msg): the
// pinUvAuthParam of setPIN (msg = newPinEnc) and changePIN (msg = newPinEnc ‖
// pinHashEnc), or hmac-secret's saltAuth (msg = saltEnc). Nil for the zero value.
func (s *SharedSecret) Authenticate(msg []byte) []byte {
	if s.p == nil {
		return nil
	}
	return s.p.Authenticate(s.hmacKey(), msg)
}

// Verify is s.Protocol().Verify(s.HMACKey(), msg, sig); false for the zero value.
func (s *SharedSecret) Verify(msg, sig []byte) bool {
	if s.p == nil {
		return false
	}
	return s.p.Verify(s.hmacKey(), msg, sig)
}

// DecryptPINHash decrypts pinHashEnc (changePIN, getPinToken,
// getPinUvAuthTokenUsingPinWithPermissions), which must hold exactly 16 bytes
// of plaintext (ciphertext 16 bytes for v1, 32 for v2); anything else returns
// an error wrapping ErrDecrypt. Compare the result with PINHashEqual.
func (s *SharedSecret) DecryptPINHash(pinHashEnc []byte) (h [PINHashSize]byte, err error) {
	pt, err := s.Decrypt(pinHashEnc)
	if err != nil {
		return h, err
	}
	defer clear(pt)
	if len(pt) != PINHashSize {
		return h, fmt.Errorf("%w: pinHashEnc holds %d bytes, want %d", ErrDecrypt, len(pt), PINHashSize)
	}
	copy(h[:], pt)
	return h, nil
}

// DecryptNewPIN decrypts newPinEnc (setPIN, changePIN) and strips the padding
// with ParsePaddedPIN. Errors wrap ErrDecrypt (impossible ciphertext length)
// or ErrPadding (plaintext not 64 bytes; CTAP1_ERR_INVALID_PARAMETER). PIN
// policy (minimum length, at most 63 bytes) is the caller's.
func (s *SharedSecret) DecryptNewPIN(newPinEnc []byte) ([]byte, error) {
	pt, err := s.Decrypt(newPinEnc)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return ParsePaddedPIN(pt)
}

// Clear zeroes s; it becomes unusable.
func (s *SharedSecret) Clear() {
	clear(s.b[:])
	s.p = nil
}

// String redacts the secret.
func (s SharedSecret) String() string {
	return fmt.Sprintf("pinuv.SharedSecret(v%d, REDACTED)", s.Version())
}

// GoString redacts the secret.
func (s SharedSecret) GoString() string { return s.String() }

// MarshalJSON always fails: a shared secret is never serialised.
func (SharedSecret) MarshalJSON() ([]byte, error) { return nil, errSecretMarshal }

// MarshalCBOR always fails: a shared secret is never serialised.
func (SharedSecret) MarshalCBOR() ([]byte, error) { return nil, errSecretMarshal }

var errSecretMarshal = errors.New("pinuv: refusing to marshal a secret")

// Token is a pinUvAuthToken (32 random bytes for both protocols). The engine
// owns its lifetime (permissions, RP ID, timers, in-use flag). A Token refuses
// to be printed or marshalled.
type Token [TokenSize]byte

// NewToken returns a fresh random token read from r (nil: crypto/rand).
func NewToken(r io.Reader) (Token, error) {
	var t Token
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, t[:]); err != nil {
		return Token{}, fmt.Errorf("pinuv: generating token: %w", err)
	}
	return t, nil
}

// Verify is p.Verify(t[:], msg, sig): the pinUvAuthParam check of
// MakeCredential, GetAssertion and the other token-authenticated commands.
func (t *Token) Verify(p Protocol, msg, sig []byte) bool {
	if p == nil {
		return false
	}
	return p.Verify(t[:], msg, sig)
}

// Clear zeroes t.
func (t *Token) Clear() { clear(t[:]) }

// String redacts the token.
func (Token) String() string { return "pinuv.Token(REDACTED)" }

// GoString redacts the token.
func (t Token) GoString() string { return t.String() }

// MarshalJSON always fails: a token is never serialised.
func (Token) MarshalJSON() ([]byte, error) { return nil, errSecretMarshal }

// MarshalCBOR always fails: a token is never serialised in the clear
// (encrypt it with SharedSecret.Encrypt).
func (Token) MarshalCBOR() ([]byte, error) { return nil, errSecretMarshal }

// PINHash returns LEFT(SHA-256(pin), 16), the form in which a PIN is stored
// and sent (encrypted, as pinHashEnc) by the platform.
func PINHash(pin []byte) [PINHashSize]byte {
	sum := sha256.Sum256(pin)
	var h [PINHashSize]byte
	copy(h[:], sum[:PINHashSize])
	clear(sum[:])
	return h
}

// PINHashEqual compares two PIN hashes in constant time.
func PINHashEqual(a, b [PINHashSize]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// ParsePaddedPIN strips the trailing 0x00 bytes from a decrypted paddedNewPin,
// which must be exactly 64 bytes (else ErrPadding). It returns a copy; the
// result may be empty or, if the platform sent no padding, 64 bytes long —
// PIN policy is the caller's.
func ParsePaddedPIN(padded []byte) ([]byte, error) {
	if len(padded) != PaddedPINSize {
		return nil, fmt.Errorf("%w: got %d bytes", ErrPadding, len(padded))
	}
	n := len(padded)
	for n > 0 && padded[n-1] == 0 {
		n--
	}
	return append([]byte{}, padded[:n]...), nil
}
