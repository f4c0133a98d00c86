package tpm

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Blob format, version 1 (all integers big-endian):
//
//	"ATPM"             4 bytes magic
//	0x01               1 byte version
//	TPM2B_PUBLIC       u16 size ‖ TPMT_PUBLIC     (Part 2, 12.2.5)
//	TPM2B_PRIVATE      u16 size ‖ encrypted private area (Part 2, 12.3.7)
//
// and nothing after it. The public area says what the object is (its type,
// attributes and, for keys, the public point), so one format serves signing
// keys, sealed secrets and PIN guards; the parsers check that the object is
// the kind the caller asked for. The private area is the TPM's own
// encryption of the sensitive part under the SRK (symmetric key derived from
// the SRK's seed, plus an integrity HMAC): the private key or sealed secret
// never exists outside the TPM in clear, and only this TPM can load it.
const (
	blobMagic   = "ATPM"
	blobVersion = 1
	blobHeader  = len(blobMagic) + 1
)

// IsTPMBlob reports whether blob is in this package's blob format (magic,
// known version, and exactly one TPM2B_PUBLIC and one TPM2B_PRIVATE). It does
// not touch a TPM, so it cannot tell whether this TPM can load the blob. The
// key store uses it to route credentials created by a TPM and by software.
func IsTPMBlob(blob []byte) bool {
	_, _, err := splitBlob(blob)
	return err == nil
}

func marshalBlob(pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate) []byte {
	p := tpm2.Marshal(pub)
	s := tpm2.Marshal(priv)
	out := make([]byte, 0, blobHeader+len(p)+len(s))
	out = append(out, blobMagic...)
	out = append(out, blobVersion)
	out = append(out, p...)
	return append(out, s...)
}

// splitBlob returns the TPM2B_PUBLIC and TPM2B_PRIVATE encodings (each with
// its size prefix) after checking the framing.
func splitBlob(blob []byte) (pub, priv []byte, err error) {
	if len(blob) < blobHeader || string(blob[:len(blobMagic)]) != blobMagic {
		return nil, nil, fmt.Errorf("tpm: not a TPM blob: %w", ErrForeign)
	}
	if v := blob[len(blobMagic)]; v != blobVersion {
		return nil, nil, fmt.Errorf("tpm: TPM blob version %d, want %d: %w", v, blobVersion, ErrForeign)
	}
	rest := blob[blobHeader:]
	next := func(what string) ([]byte, error) {
		if len(rest) < 2 {
			return nil, fmt.Errorf("tpm: TPM blob: truncated %s: %w", what, ErrForeign)
		}
		n := 2 + int(binary.BigEndian.Uint16(rest))
		if n == 2 || len(rest) < n {
			return nil, fmt.Errorf("tpm: TPM blob: bad %s size: %w", what, ErrForeign)
		}
		b := rest[:n:n]
		rest = rest[n:]
		return b, nil
	}
	if pub, err = next("TPM2B_PUBLIC"); err != nil {
		return nil, nil, err
	}
	if priv, err = next("TPM2B_PRIVATE"); err != nil {
		return nil, nil, err
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("tpm: TPM blob: %d trailing bytes: %w", len(rest), ErrForeign)
	}
	return pub, priv, nil
}

// object is a parsed blob.
type object struct {
	pub     tpm2.TPM2BPublic
	priv    tpm2.TPM2BPrivate
	public  *tpm2.TPMTPublic
	private []byte // TPM2B_PRIVATE encoding, for cache identity
}

// parseBlob parses blob and checks that its public area is of kind k.
func parseBlob(blob []byte, k kind) (*object, error) {
	pb, sb, err := splitBlob(blob)
	if err != nil {
		return nil, err
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pb)
	if err != nil {
		return nil, fmt.Errorf("tpm: TPM blob: public area: %v: %w", err, ErrForeign)
	}
	public, err := pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: TPM blob: public area: %v: %w", err, ErrForeign)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](sb)
	if err != nil {
		return nil, fmt.Errorf("tpm: TPM blob: private area: %v: %w", err, ErrForeign)
	}
	if err := k.check(public); err != nil {
		return nil, err
	}
	return &object{pub: *pub, priv: *priv, public: public, private: sb}, nil
}

// kind is what a blob is meant to hold.
type kind int

const (
	kindES256 kind = iota + 1
	kindSealed
	kindPINGuard
)

func (k kind) String() string {
	switch k {
	case kindES256:
		return "ES256 key"
	case kindSealed:
		return "sealed secret"
	case kindPINGuard:
		return "PIN guard"
	}
	return "unknown"
}

// check compares the security-relevant parts of a blob's public area with the
// template this package creates that kind from, so that a blob of one kind is
// never used as another (for instance, unsealing a PIN guard with an empty
// password would count as a dictionary-attack failure).
func (k kind) check(p *tpm2.TPMTPublic) error {
	want := k.template()
	if p.Type != want.Type || p.NameAlg != want.NameAlg ||
		!bytes.Equal(tpm2.Marshal(p.ObjectAttributes), tpm2.Marshal(want.ObjectAttributes)) {
		return fmt.Errorf("tpm: TPM blob is not a %v (type %#x, attributes %+v): %w", k, p.Type, p.ObjectAttributes, ErrForeign)
	}
	if k == kindES256 {
		ecc, err := p.Parameters.ECCDetail()
		if err != nil || ecc.CurveID != tpm2.TPMECCNistP256 {
			return fmt.Errorf("tpm: TPM blob is not a P-256 key: %w", ErrForeign)
		}
	}
	return nil
}

// template returns the TPMT_PUBLIC template TPM2_Create gets for kind k.
func (k kind) template() tpm2.TPMTPublic {
	switch k {
	case kindES256:
		return es256Template()
	case kindSealed:
		return sealTemplate(true)
	case kindPINGuard:
		return sealTemplate(false)
	}
	panic("tpm: unknown kind")
}

// es256Template is an ECC P-256 ECDSA-SHA256 signing key (not restricted, so
// it signs arbitrary digests). Its authValue is empty and it is noDA: the
// daemon decides when to sign, and a dictionary-attack lockout caused by
// wrong PINs must not stop assertions that need no PIN.
func es256Template() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
					&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// sealTemplate is a keyedhash sealed-data object (scheme NULL, neither sign
// nor decrypt). SensitiveDataOrigin is clear because the caller supplies the
// data. Sealed secrets have an empty authValue and are noDA (nothing to
// guess, and the DEK must stay reachable during a PIN lockout); PIN guards
// carry the PIN-derived authValue and are DA-protected (noDA clear).
func sealTemplate(noDA bool) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:     true,
			FixedParent:  true,
			UserWithAuth: true,
			NoDA:         noDA,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
	}
}
