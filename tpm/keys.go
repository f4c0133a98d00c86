package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// AlgES256 is the COSE algorithm identifier of ECDSA P-256 with SHA-256, the
// only algorithm the TPM makes keys for here.
const AlgES256 = -7

// NewKey creates an ES256 key pair under the SRK (TPM2_Create) and returns its
// blob and public key. The private key is generated inside the TPM and leaves
// it only encrypted under the SRK. Other algorithms return an error wrapping
// ErrUnsupportedAlgorithm.
func (d *Device) NewKey(alg int) (blob []byte, pub crypto.PublicKey, err error) {
	if alg != AlgES256 {
		return nil, nil, fmt.Errorf("tpm: new key: COSE algorithm %d: %w", alg, ErrUnsupportedAlgorithm)
	}
	var rsp *tpm2.CreateResponse
	err = d.run(func() error {
		var err error
		rsp, err = d.create(tpm2.Create{ParentHandle: d.srkAuth(), InPublic: tpm2.New2B(es256Template())})
		if err != nil {
			return fmt.Errorf("tpm: create ES256 key (TPM2_Create): %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	p, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: new key: public area: %w", err)
	}
	k, err := ecdsaPublic(p)
	if err != nil {
		return nil, nil, err
	}
	return marshalBlob(rsp.OutPublic, rsp.OutPrivate), k, nil
}

// Signer returns a crypto.Signer for an ES256 blob from NewKey. It sends no
// TPM command: the public key comes from the blob, and a blob that this TPM
// cannot load fails (wrapping ErrForeign) at the first Sign.
func (d *Device) Signer(alg int, blob []byte) (crypto.Signer, error) {
	if alg != AlgES256 {
		return nil, fmt.Errorf("tpm: signer: COSE algorithm %d: %w", alg, ErrUnsupportedAlgorithm)
	}
	o, err := parseBlob(blob, kindES256)
	if err != nil {
		return nil, err
	}
	pub, err := ecdsaPublic(o.public)
	if err != nil {
		return nil, err
	}
	return &signer{d: d, o: o, pub: pub, id: sha256.Sum256(blob)}, nil
}

// ecdsaPublic extracts the P-256 point of an ECC public area.
func ecdsaPublic(p *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	pt, err := p.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("tpm: public area: %v: %w", err, ErrForeign)
	}
	if len(pt.X.Buffer) > 32 || len(pt.Y.Buffer) > 32 {
		return nil, fmt.Errorf("tpm: public area: oversized P-256 point: %w", ErrForeign)
	}
	// Uncompressed SEC 1 encoding; ParseUncompressedPublicKey checks that the
	// point is on the curve.
	enc := make([]byte, 65)
	enc[0] = 4
	copy(enc[33-len(pt.X.Buffer):33], pt.X.Buffer)
	copy(enc[65-len(pt.Y.Buffer):], pt.Y.Buffer)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), enc)
	if err != nil {
		return nil, fmt.Errorf("tpm: public area: %v: %w", err, ErrForeign)
	}
	return k, nil
}

// signer is a TPM-resident ES256 key.
type signer struct {
	d   *Device
	o   *object
	pub *ecdsa.PublicKey
	id  [32]byte
}

// Public returns the *ecdsa.PublicKey.
func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign signs a SHA-256 digest with TPM2_Sign and returns an ASN.1 DER
// ECDSA-Sig-Value, like ecdsa.SignASN1. rand is unused: the TPM draws the
// nonce. opts may be nil or must name crypto.SHA256.
//
// Cost: one TPM2_Sign when the key is one of the two cached ones; otherwise
// TPM2_Load and TPM2_Sign, preceded by a TPM2_FlushContext of the least
// recently used cached key when two are cached.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("tpm: sign: hash %v, want SHA-256", opts.HashFunc())
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("tpm: sign: digest is %d bytes, want %d (SHA-256)", len(digest), sha256.Size)
	}
	var r, ss big.Int
	err := s.d.run(func() error {
		h, loaded, err := s.d.signingKey(s)
		if err != nil {
			return err
		}
		if loaded {
			defer s.d.flushQuiet(h.Handle)
		}
		rsp, err := tpm2.Sign{
			// The salted session (EncryptIn) hides the digest and
			// authenticates the response, so the signature is the TPM's.
			KeyHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: s.d.sess},
			Digest:    tpm2.TPM2BDigest{Buffer: digest},
			InScheme: tpm2.TPMTSigScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
			},
			// A NULL ticket: the key is not restricted, so none is needed.
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(s.d.t)
		if err != nil {
			return fmt.Errorf("tpm: sign (TPM2_Sign): %w", err)
		}
		sig, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return fmt.Errorf("tpm: sign: %w", err)
		}
		r.SetBytes(sig.SignatureR.Buffer)
		ss.SetBytes(sig.SignatureS.Buffer)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct{ R, S *big.Int }{&r, &ss})
}

// signingKey returns a handle for s's key: a cached one, or a freshly
// loaded one that joins the cache as the most recently used (evicting the
// least recently used key if the cache is full). loaded says the caller must
// flush it (no caching). Called with d.mu held.
func (d *Device) signingKey(s *signer) (h tpm2.NamedHandle, loaded bool, err error) {
	if !d.cacheKeys {
		h, err = d.loadWithSlot(s.o, kindES256)
		return h, err == nil, err
	}
	for i, c := range d.cached {
		if c.id == s.id {
			// Move to the most recently used end.
			copy(d.cached[i:], d.cached[i+1:])
			d.cached[len(d.cached)-1] = c
			return c.h, false, nil
		}
	}
	if h, err = d.loadWithSlot(s.o, kindES256); err != nil {
		return h, false, err
	}
	d.cached = append(d.cached, cachedKey{id: s.id, h: h})
	return h, false, nil
}
