// Package cose encodes and decodes the COSE_Key structures authd exchanges.
//
// Specification: RFC 9052 §7 "Key Objects" and RFC 9053 §7.1 "Elliptic Curve
// Keys"; WebAuthn Level 3 §6.5.1.1 "Examples of credentialPublicKey Values
// Encoded in COSE_Key Format"; CTAP 2.1 §6.5.6 "getPublicKey()" (the
// key-agreement form with alg -25).
//
// Encoders produce CTAP2 canonical CBOR through internal/cbor, so the bytes can be
// embedded verbatim (cbor.RawMessage) in authenticator data and responses. Two
// kinds of key are handled:
//
//   - credential public keys: ES256 (EC2, P-256, alg -7) and EdDSA (OKP,
//     Ed25519, alg -8) — [Encode], [EncodeES256], [EncodeEdDSA], [ParsePublicKey];
//   - the PIN/UV auth protocol key-agreement key (EC2, P-256, alg -25) —
//     [EncodeECDHP256] and, for the platform's key carried in a request as a
//     [Key] field, [ParseECDHP256].
//
// Errors wrap one of [ErrMalformed] (a required member is missing, or the bytes
// do not decode), [ErrInvalidKey] (members present but wrong: key type, curve,
// coordinate length, point not on the curve) or [ErrUnsupported] (a well-formed
// key of a type or algorithm authd does not handle).
//
// This package imports only internal/cbor from authd.
package cose

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"

	"github.com/authd/authd/internal/cbor"
)

// COSE labels and values (IANA "COSE Key Common Parameters", "COSE Key Type
// Parameters", "COSE Key Types", "COSE Elliptic Curves", "COSE Algorithms").
const (
	LabelKty = 1
	LabelAlg = 3
	LabelCrv = -1 // EC2 and OKP
	LabelX   = -2 // EC2 and OKP
	LabelY   = -3 // EC2 only

	KtyOKP = 1
	KtyEC2 = 2

	CrvP256    = 1
	CrvEd25519 = 6

	AlgES256 = -7
	AlgEdDSA = -8
	// AlgECDHESHKDF256 is the alg a CTAP key-agreement key carries. CTAP 2.1
	// §6.5.6 notes it is "NOT the algorithm actually used" by the protocol.
	AlgECDHESHKDF256 = -25
)

// coordLen is the length of a P-256 or Ed25519 coordinate.
const coordLen = 32

var (
	// ErrMalformed reports a COSE key that does not decode or lacks a
	// required member.
	ErrMalformed = errors.New("cose: malformed key")
	// ErrInvalidKey reports a COSE key whose members are present but unusable:
	// wrong key type or curve, wrong coordinate length, a point not on the
	// curve, or an alg that contradicts the key type.
	ErrInvalidKey = errors.New("cose: invalid key")
	// ErrUnsupported reports a key type or algorithm authd does not implement.
	ErrUnsupported = errors.New("cose: unsupported key")
)

// Key is a decoded COSE_Key holding the members authd uses. It is meant to be
// a field of a request struct decoded with internal/cbor: a member of the wrong
// CBOR type (a text-string kty, an integer or array x, …) makes that decode fail
// with an error wrapping cbor.ErrType; other labels are ignored. The Parse
// functions then check presence (ErrMalformed) and values (ErrInvalidKey).
//
// kty, alg and crv are nil when absent. x and y are cbor.ByteString rather than
// []byte because only ByteString insists on a CBOR byte string (a []byte field
// also accepts an array of small integers); an absent, null or empty coordinate
// is "" and reads as missing. A CBOR null kty, alg or crv reads as absent.
//
// Key also encodes (absent members omitted) in canonical form.
type Key struct {
	Kty *int            `cbor:"1,keyasint,omitempty"`
	Alg *int            `cbor:"3,keyasint,omitempty"`
	Crv *int            `cbor:"-1,keyasint,omitempty"`
	X   cbor.ByteString `cbor:"-2,keyasint,omitempty"`
	Y   cbor.ByteString `cbor:"-3,keyasint,omitempty"`
}

func intp(v int) *int { return &v }

func ec2Key(alg int, x, y []byte) Key {
	return Key{Kty: intp(KtyEC2), Alg: intp(alg), Crv: intp(CrvP256), X: cbor.ByteString(x), Y: cbor.ByteString(y)}
}

func marshal(k Key) ([]byte, error) {
	b, err := cbor.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("cose: encode: %w", err)
	}
	return b, nil
}

// EncodeES256 encodes a P-256 ECDSA credential public key as
// {1: 2, 3: -7, -1: 1, -2: x, -3: y} (77 bytes).
func EncodeES256(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: ES256 needs a P-256 key", ErrInvalidKey)
	}
	pt, err := pub.Bytes() // 0x04 ‖ x ‖ y; fails for invalid points
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return marshal(ec2Key(AlgES256, pt[1:1+coordLen], pt[1+coordLen:]))
}

// EncodeEdDSA encodes an Ed25519 credential public key as
// {1: 1, 3: -8, -1: 6, -2: x} (42 bytes).
func EncodeEdDSA(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrInvalidKey, len(pub))
	}
	return marshal(Key{Kty: intp(KtyOKP), Alg: intp(AlgEdDSA), Crv: intp(CrvEd25519), X: cbor.ByteString(pub)})
}

// Encode encodes a credential public key (*ecdsa.PublicKey on P-256 or
// ed25519.PublicKey) and returns its COSE algorithm identifier.
func Encode(pub crypto.PublicKey) (alg int, cose []byte, err error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		cose, err = EncodeES256(k)
		return AlgES256, cose, err
	case ed25519.PublicKey:
		cose, err = EncodeEdDSA(k)
		return AlgEdDSA, cose, err
	default:
		return 0, nil, fmt.Errorf("%w: public key type %T", ErrUnsupported, pub)
	}
}

// EncodeECDHP256 encodes a PIN/UV auth protocol key-agreement public key as
// {1: 2, 3: -25, -1: 1, -2: x, -3: y}, canonically
// a5 01 02 03 38 18 20 01 21 58 20 <x> 22 58 20 <y> (78 bytes).
func EncodeECDHP256(pub *ecdh.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("%w: key agreement needs a P-256 key", ErrInvalidKey)
	}
	pt := pub.Bytes() // 0x04 ‖ x ‖ y
	return marshal(ec2Key(AlgECDHESHKDF256, pt[1:1+coordLen], pt[1+coordLen:]))
}

// uncompressedP256 checks an EC2/P-256 key's members and returns 0x04 ‖ x ‖ y.
func uncompressedP256(k *Key) ([]byte, error) {
	if k.Kty == nil || k.Crv == nil || k.X == "" || k.Y == "" {
		return nil, fmt.Errorf("%w: EC2 key needs kty, crv, x and y", ErrMalformed)
	}
	if *k.Kty != KtyEC2 {
		return nil, fmt.Errorf("%w: kty %d, want %d (EC2)", ErrInvalidKey, *k.Kty, KtyEC2)
	}
	if *k.Crv != CrvP256 {
		return nil, fmt.Errorf("%w: crv %d, want %d (P-256)", ErrInvalidKey, *k.Crv, CrvP256)
	}
	if len(k.X) != coordLen || len(k.Y) != coordLen {
		return nil, fmt.Errorf("%w: coordinates of %d and %d bytes, want %d", ErrInvalidKey, len(k.X), len(k.Y), coordLen)
	}
	pt := make([]byte, 0, 1+2*coordLen)
	pt = append(pt, 4)
	pt = append(pt, k.X...)
	return append(pt, k.Y...), nil
}

// ParseECDHP256 returns the P-256 public key of a platform key-agreement
// COSE_Key. kty must be 2 (EC2), crv 1 (P-256), x and y 32 bytes each, and the
// point on the curve (and not the identity). alg is not checked: clients send
// -25, some historically other values, and it does not select the algorithm.
func ParseECDHP256(k Key) (*ecdh.PublicKey, error) {
	pt, err := uncompressedP256(&k)
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return pub, nil
}

// ParsePublicKey decodes a CTAP2-canonical credential public key (the complete
// input; nothing may follow it) and returns it as *ecdsa.PublicKey (alg -7,
// P-256) or ed25519.PublicKey (alg -8, Ed25519) with its alg. alg is required
// and must match the key type.
func ParsePublicKey(cose []byte) (crypto.PublicKey, int, error) {
	var k Key
	if err := cbor.Unmarshal(cose, &k); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if k.Kty == nil || k.Alg == nil {
		return nil, 0, fmt.Errorf("%w: kty and alg are required", ErrMalformed)
	}
	switch *k.Alg {
	case AlgES256:
		pt, err := uncompressedP256(&k)
		if err != nil {
			return nil, 0, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		return pub, AlgES256, nil
	case AlgEdDSA:
		if k.Crv == nil || k.X == "" {
			return nil, 0, fmt.Errorf("%w: OKP key needs crv and x", ErrMalformed)
		}
		if *k.Kty != KtyOKP {
			return nil, 0, fmt.Errorf("%w: kty %d, want %d (OKP)", ErrInvalidKey, *k.Kty, KtyOKP)
		}
		if *k.Crv != CrvEd25519 {
			return nil, 0, fmt.Errorf("%w: crv %d, want %d (Ed25519)", ErrInvalidKey, *k.Crv, CrvEd25519)
		}
		if len(k.X) != ed25519.PublicKeySize {
			return nil, 0, fmt.Errorf("%w: x of %d bytes, want %d", ErrInvalidKey, len(k.X), ed25519.PublicKeySize)
		}
		if k.Y != "" {
			return nil, 0, fmt.Errorf("%w: OKP key with a y member", ErrInvalidKey)
		}
		return ed25519.PublicKey(k.X), AlgEdDSA, nil
	default:
		return nil, 0, fmt.Errorf("%w: alg %d", ErrUnsupported, *k.Alg)
	}
}
