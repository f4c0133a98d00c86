package pinuv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
)

// ProtocolV1 is PIN/UV auth protocol One (CTAP 2.1 §6.5.6):
// kdf(Z) = SHA-256(Z); AES-256-CBC with a zero IV under the whole 32-byte
// secret; MAC = LEFT(HMAC-SHA-256(key, msg), 16).
type ProtocolV1 struct{}

// ProtocolV2 is PIN/UV auth protocol Two (CTAP 2.1 §6.5.7):
// kdf(Z) = HKDF-SHA-256(salt = 32×0x00, Z, "CTAP2 HMAC key", 32) ‖
// HKDF-SHA-256(salt = 32×0x00, Z, "CTAP2 AES key", 32); AES-256-CBC under the
// second half with a random IV prepended to the ciphertext;
// MAC = HMAC-SHA-256(key[:32], msg).
type ProtocolV2 struct {
	// Rand supplies encryption IVs; nil means crypto/rand.Reader. Tests set
	// it to reproduce known-answer vectors. A SharedSecret derived by this
	// value's KDF (or by Decapsulate with it) uses the same Rand.
	Rand io.Reader
}

var (
	_ Protocol = ProtocolV1{}
	_ Protocol = ProtocolV2{}
)

func (ProtocolV1) sealed() {}
func (ProtocolV2) sealed() {}

// Version returns 1.
func (ProtocolV1) Version() int { return 1 }

// Version returns 2.
func (ProtocolV2) Version() int { return 2 }

const (
	blockSize = aes.BlockSize // 16
	v1MACSize = 16
	v2MACSize = sha256.Size // 32
)

// KDF returns SHA-256(z).
func (p ProtocolV1) KDF(z []byte) SharedSecret {
	s := SharedSecret{p: p}
	sum := sha256.Sum256(z)
	copy(s.b[:32], sum[:])
	clear(sum[:])
	return s
}

var hkdfSalt [32]byte // 32 zero bytes

// KDF returns HKDF-SHA-256(Z, "CTAP2 HMAC key") ‖ HKDF-SHA-256(Z, "CTAP2 AES key"),
// both with a salt of 32 zero bytes and 32 bytes long. It returns the
// (unusable) zero SharedSecret if HKDF refuses its input, which happens only
// in FIPS 140-only mode with a Z shorter than 14 bytes.
func (p ProtocolV2) KDF(z []byte) SharedSecret {
	hk, err := hkdf.Key(sha256.New, z, hkdfSalt[:], "CTAP2 HMAC key", 32)
	if err != nil {
		return SharedSecret{}
	}
	defer clear(hk)
	ak, err := hkdf.Key(sha256.New, z, hkdfSalt[:], "CTAP2 AES key", 32)
	if err != nil {
		return SharedSecret{}
	}
	defer clear(ak)
	s := SharedSecret{p: p}
	copy(s.b[:32], hk)
	copy(s.b[32:], ak)
	return s
}

// check returns s's AES key if s was derived by a protocol of version v.
func check(v int, s *SharedSecret) ([]byte, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil secret", ErrProtocol)
	}
	if s.Version() != v {
		return nil, fmt.Errorf("%w: v%d secret with protocol %d", ErrProtocol, s.Version(), v)
	}
	return s.aesKey(), nil
}

func cbc(key, iv, dst, src []byte, encrypt bool) {
	// Callers have checked that len(src) is a multiple of the block size and
	// that len(key) == 32, so neither NewCipher nor CryptBlocks can fail.
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("pinuv: " + err.Error())
	}
	if encrypt {
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(dst, src)
	} else {
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(dst, src)
	}
}

var zeroIV [blockSize]byte

// Encrypt returns AES-256-CBC(s, IV = 0, pt); len(pt) must be a multiple of 16.
func (ProtocolV1) Encrypt(s *SharedSecret, pt []byte) ([]byte, error) {
	key, err := check(1, s)
	if err != nil {
		return nil, err
	}
	if len(pt)%blockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes", ErrPlaintext, len(pt))
	}
	ct := make([]byte, len(pt))
	cbc(key, zeroIV[:], ct, pt, true)
	return ct, nil
}

// Decrypt reverses Encrypt; len(ct) must be a multiple of 16 (0 gives an empty
// plaintext).
func (ProtocolV1) Decrypt(s *SharedSecret, ct []byte) ([]byte, error) {
	key, err := check(1, s)
	if err != nil {
		return nil, err
	}
	if len(ct)%blockSize != 0 {
		return nil, fmt.Errorf("%w: v1 ciphertext of %d bytes", ErrDecrypt, len(ct))
	}
	pt := make([]byte, len(ct))
	cbc(key, zeroIV[:], pt, ct, false)
	return pt, nil
}

// Authenticate returns the first 16 bytes of HMAC-SHA-256(key, msg).
func (ProtocolV1) Authenticate(key, msg []byte) []byte {
	return hmacSHA256(key, msg)[:v1MACSize]
}

// Verify reports whether sig is 16 bytes and equals Authenticate(key, msg).
func (p ProtocolV1) Verify(key, msg, sig []byte) bool {
	if len(key) == 0 || len(sig) != v1MACSize {
		return false
	}
	return hmac.Equal(p.Authenticate(key, msg), sig)
}

// Encrypt returns IV ‖ AES-256-CBC(s[32:64], IV, pt) with a 16-byte IV read
// from p.Rand; len(pt) must be a multiple of 16.
func (p ProtocolV2) Encrypt(s *SharedSecret, pt []byte) ([]byte, error) {
	key, err := check(2, s)
	if err != nil {
		return nil, err
	}
	if len(pt)%blockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes", ErrPlaintext, len(pt))
	}
	r := p.Rand
	if r == nil {
		r = rand.Reader
	}
	out := make([]byte, blockSize+len(pt))
	if _, err := io.ReadFull(r, out[:blockSize]); err != nil {
		return nil, fmt.Errorf("pinuv: reading IV: %w", err)
	}
	cbc(key, out[:blockSize], out[blockSize:], pt, true)
	return out, nil
}

// Decrypt reverses Encrypt; len(ct) must be at least 16 (the IV) and a
// multiple of 16 (16 gives an empty plaintext).
func (ProtocolV2) Decrypt(s *SharedSecret, ct []byte) ([]byte, error) {
	key, err := check(2, s)
	if err != nil {
		return nil, err
	}
	if len(ct) < blockSize || len(ct)%blockSize != 0 {
		return nil, fmt.Errorf("%w: v2 ciphertext of %d bytes", ErrDecrypt, len(ct))
	}
	pt := make([]byte, len(ct)-blockSize)
	cbc(key, ct[:blockSize], pt, ct[blockSize:], false)
	return pt, nil
}

// Authenticate returns HMAC-SHA-256(key[:32], msg); a key longer than 32 bytes
// is truncated (which selects the HMAC half of a raw 64-byte shared secret).
func (ProtocolV2) Authenticate(key, msg []byte) []byte {
	if len(key) > 32 {
		key = key[:32]
	}
	return hmacSHA256(key, msg)
}

// Verify reports whether sig is 32 bytes and equals Authenticate(key, msg).
func (p ProtocolV2) Verify(key, msg, sig []byte) bool {
	if len(key) == 0 || len(sig) != v2MACSize {
		return false
	}
	return hmac.Equal(p.Authenticate(key, msg), sig)
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
