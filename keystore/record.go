package keystore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/authd/authd/internal/cbor"
	"golang.org/x/crypto/chacha20poly1305"
)

// On-disk formats. Every value is CTAP2 canonical CBOR with integer map keys;
// decoding is strict (internal/cbor.UnmarshalRecord) and unknown keys are
// ignored so that a newer minor revision can add fields without a version bump.
const (
	recordVersion = 1
	stateVersion  = 1

	credAD  = "authd-cred-v1"
	stateAD = "authd-state-v1"

	// maxIDLen bounds credential IDs (CTAP allows up to 1023 bytes in
	// practice; bbolt keys may be up to 32 KiB).
	maxIDLen = 1024
	// maxRPIDLen bounds RP IDs (a DNS name is at most 253 bytes).
	maxRPIDLen = 1024

	sealedOverhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
)

// record is the stored form of a Credential. Public fields are in clear so
// that the store can be inspected and indexed; Sealed holds the secret fields.
type record struct {
	Version      uint              `cbor:"1,keyasint"`
	ID           []byte            `cbor:"2,keyasint"`
	RPID         string            `cbor:"3,keyasint"`
	RPName       string            `cbor:"4,keyasint,omitempty"`
	Alg          int               `cbor:"5,keyasint"`
	PublicKey    []byte            `cbor:"6,keyasint,omitempty"`
	Created      int64             `cbor:"7,keyasint,omitempty"` // Unix nanoseconds, 0 = unset
	LastUsed     int64             `cbor:"8,keyasint,omitempty"` // Unix nanoseconds, 0 = never
	Ceiling      uint32            `cbor:"9,keyasint,omitempty"` // no counter value above it was handed out
	Discoverable bool              `cbor:"10,keyasint,omitempty"`
	CredProtect  uint8             `cbor:"11,keyasint,omitempty"`
	Protected    bool              `cbor:"12,keyasint,omitempty"`
	Attrs        map[string][]byte `cbor:"13,keyasint,omitempty"`
	// Sealed is nonce(24) ‖ XChaCha20-Poly1305(DEK, CBOR(secretRecord)),
	// AD = credAD ‖ uint16be(len(ID)) ‖ ID ‖ RPID.
	Sealed []byte `cbor:"14,keyasint"`
}

// secretRecord is the plaintext of record.Sealed.
type secretRecord struct {
	KeyBlob         []byte            `cbor:"1,keyasint"`
	UserID          []byte            `cbor:"2,keyasint,omitempty"`
	UserName        string            `cbor:"3,keyasint,omitempty"`
	UserDisplayName string            `cbor:"4,keyasint,omitempty"`
	Secrets         map[string][]byte `cbor:"5,keyasint,omitempty"`
}

// stateRecord is the stored form of State.
type stateRecord struct {
	Version uint        `cbor:"1,keyasint"`
	Public  statePublic `cbor:"2,keyasint"`
	// Sealed is nonce(24) ‖ XChaCha20-Poly1305(DEK, CBOR(stateSecret)),
	// AD = stateAD ‖ CBOR(Public), so the clear counters cannot be edited
	// without the DEK (though an old record can still be restored whole).
	Sealed []byte `cbor:"3,keyasint"`
}

type statePublic struct {
	PINSet         bool   `cbor:"1,keyasint"`
	PINRetries     int    `cbor:"2,keyasint"`
	PINFails       int    `cbor:"3,keyasint"`
	PINFailsBootID string `cbor:"4,keyasint"`
	ForcePINChange bool   `cbor:"5,keyasint"`
	MinPINLength   int    `cbor:"6,keyasint"`
	UVRetries      int    `cbor:"7,keyasint"`
}

// stateSecret is the plaintext of stateRecord.Sealed. A software store keeps
// the PIN hash (PINHash, 16 bytes); a store with a PINGuard keeps the guard
// blob and the salt its authValue is derived with instead, and no hash
// (PINHash empty).
type stateSecret struct {
	PINHash       []byte `cbor:"1,keyasint,omitempty"`
	PINCodePoints int    `cbor:"2,keyasint"`
	PINGuard      []byte `cbor:"3,keyasint,omitempty"`
	PINSalt       []byte `cbor:"4,keyasint,omitempty"`
}

// pinRecord is a PIN kept by a PINGuard: the guard blob and the salt of the
// authValue derivation (see pinAuthValue). The zero value means none.
type pinRecord struct {
	guard []byte
	salt  []byte
}

// defaultState is the state of a new or reset authenticator.
func defaultState() State {
	return State{PINRetries: 8, MinPINLength: 4, UVRetries: 8}
}

func rpHash(rpID string) [32]byte { return sha256.Sum256([]byte(rpID)) }

func encodeTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func decodeTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// credAAD returns the additional data binding a sealed blob to its
// credential: the ID is length-prefixed so that (ID, RPID) pairs cannot be
// re-split.
func credAAD(id []byte, rpID string) []byte {
	ad := make([]byte, 0, len(credAD)+2+len(id)+len(rpID))
	ad = append(ad, credAD...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(id)))
	ad = append(ad, id...)
	return append(ad, rpID...)
}

// seal encrypts plaintext under dek with a random nonce: nonce ‖ ct.
func seal(dek *[32]byte, plaintext, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(dek[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, plaintext, ad), nil
}

func open(dek *[32]byte, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < sealedOverhead {
		return nil, errors.New("sealed field too short")
	}
	aead, err := chacha20poly1305.NewX(dek[:])
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, errors.New("sealed field fails authentication (wrong data key or altered record)")
	}
	return pt, nil
}

// encodeRecord returns the canonical CBOR of r.
func encodeRecord(r *record) ([]byte, error) { return cbor.Marshal(r) }

// decodeRecord strictly decodes and validates the structure of a stored
// credential record. It does not decrypt. It must not panic on any input.
func decodeRecord(data []byte) (*record, error) {
	r := new(record)
	if err := cbor.UnmarshalRecord(data, r); err != nil {
		return nil, err
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("unknown record format version %d", r.Version)
	}
	if len(r.ID) == 0 || len(r.ID) > maxIDLen {
		return nil, fmt.Errorf("credential id length %d out of range", len(r.ID))
	}
	if r.RPID == "" || len(r.RPID) > maxRPIDLen {
		return nil, fmt.Errorf("rp id length %d out of range", len(r.RPID))
	}
	if r.CredProtect > 3 {
		return nil, fmt.Errorf("credProtect %d out of range", r.CredProtect)
	}
	if len(r.Sealed) < sealedOverhead {
		return nil, errors.New("sealed field missing or too short")
	}
	return r, nil
}

// sealSecrets encrypts the secret fields of c under dek.
func sealSecrets(dek *[32]byte, c *Credential) ([]byte, error) {
	pt, err := cbor.Marshal(&secretRecord{
		KeyBlob:         c.KeyBlob,
		UserID:          c.UserID,
		UserName:        c.UserName,
		UserDisplayName: c.UserDisplayName,
		Secrets:         c.Secrets,
	})
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return seal(dek, pt, credAAD(c.ID, c.RPID))
}

// newRecord builds the stored form of c with the given ceiling and an
// already sealed secret part.
func newRecord(c *Credential, ceiling uint32, sealed []byte) *record {
	return &record{
		Version:      recordVersion,
		ID:           c.ID,
		RPID:         c.RPID,
		RPName:       c.RPName,
		Alg:          c.Alg,
		PublicKey:    c.PublicKey,
		Created:      encodeTime(c.Created),
		LastUsed:     encodeTime(c.LastUsed),
		Ceiling:      ceiling,
		Discoverable: c.Discoverable,
		CredProtect:  c.CredProtect,
		Protected:    c.Protected,
		Attrs:        c.Attrs,
		Sealed:       sealed,
	}
}

// openRecord decrypts r's secret part and returns the credential with
// Counter set to the persisted ceiling.
func openRecord(dek *[32]byte, r *record) (*Credential, error) {
	pt, err := open(dek, r.Sealed, credAAD(r.ID, r.RPID))
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	var sec secretRecord
	if err := cbor.UnmarshalRecord(pt, &sec); err != nil {
		return nil, fmt.Errorf("sealed part: %w", err)
	}
	if len(sec.KeyBlob) == 0 {
		return nil, errors.New("sealed part has no key blob")
	}
	return &Credential{
		ID:              clone(r.ID),
		RPID:            r.RPID,
		RPName:          r.RPName,
		UserID:          sec.UserID,
		UserName:        sec.UserName,
		UserDisplayName: sec.UserDisplayName,
		Alg:             r.Alg,
		PublicKey:       clone(r.PublicKey),
		KeyBlob:         sec.KeyBlob,
		Created:         decodeTime(r.Created),
		LastUsed:        decodeTime(r.LastUsed),
		Counter:         r.Ceiling,
		Discoverable:    r.Discoverable,
		CredProtect:     r.CredProtect,
		Protected:       r.Protected,
		Secrets:         sec.Secrets,
		Attrs:           cloneMap(r.Attrs),
	}, nil
}

// encodeState encodes st, with pin's guard in place of the PIN hash when pin
// holds one (the hash is then not stored at all).
func encodeState(dek *[32]byte, st *State, pin pinRecord) ([]byte, error) {
	pub := statePublic{
		PINSet:         st.PINSet,
		PINRetries:     st.PINRetries,
		PINFails:       st.PINFails,
		PINFailsBootID: st.PINFailsBootID,
		ForcePINChange: st.ForcePINChange,
		MinPINLength:   st.MinPINLength,
		UVRetries:      st.UVRetries,
	}
	ad, err := stateAAD(&pub)
	if err != nil {
		return nil, err
	}
	sec := stateSecret{PINCodePoints: st.PINCodePoints}
	var hash [16]byte
	defer clear(hash[:])
	if pin.guard != nil {
		sec.PINGuard, sec.PINSalt = pin.guard, pin.salt
	} else {
		copy(hash[:], st.PINHash[:])
		sec.PINHash = hash[:]
	}
	pt, err := cbor.Marshal(&sec)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	sealed, err := seal(dek, pt, ad)
	if err != nil {
		return nil, err
	}
	return cbor.Marshal(&stateRecord{Version: stateVersion, Public: pub, Sealed: sealed})
}

func stateAAD(pub *statePublic) ([]byte, error) {
	b, err := cbor.Marshal(pub)
	if err != nil {
		return nil, err
	}
	return append([]byte(stateAD), b...), nil
}

func decodeState(dek *[32]byte, data []byte) (State, pinRecord, error) {
	var r stateRecord
	if err := cbor.UnmarshalRecord(data, &r); err != nil {
		return State{}, pinRecord{}, err
	}
	if r.Version != stateVersion {
		return State{}, pinRecord{}, fmt.Errorf("unknown state format version %d", r.Version)
	}
	ad, err := stateAAD(&r.Public)
	if err != nil {
		return State{}, pinRecord{}, err
	}
	pt, err := open(dek, r.Sealed, ad)
	if err != nil {
		return State{}, pinRecord{}, err
	}
	defer clear(pt)
	var sec stateSecret
	if err := cbor.UnmarshalRecord(pt, &sec); err != nil {
		return State{}, pinRecord{}, fmt.Errorf("sealed part: %w", err)
	}
	var pin pinRecord
	switch {
	case sec.PINGuard != nil:
		if len(sec.PINHash) != 0 {
			return State{}, pinRecord{}, errors.New("state holds both a PIN guard and a PIN hash")
		}
		if len(sec.PINSalt) != pinSaltSize {
			return State{}, pinRecord{}, fmt.Errorf("PIN guard salt is %d bytes, want %d", len(sec.PINSalt), pinSaltSize)
		}
		if !r.Public.PINSet {
			return State{}, pinRecord{}, errors.New("state holds a PIN guard but no PIN is set")
		}
		pin = pinRecord{guard: sec.PINGuard, salt: sec.PINSalt}
	case len(sec.PINHash) != 16:
		return State{}, pinRecord{}, fmt.Errorf("PIN hash is %d bytes, want 16", len(sec.PINHash))
	}
	st := State{
		PINSet:         r.Public.PINSet,
		PINCodePoints:  sec.PINCodePoints,
		PINRetries:     r.Public.PINRetries,
		PINFails:       r.Public.PINFails,
		PINFailsBootID: r.Public.PINFailsBootID,
		ForcePINChange: r.Public.ForcePINChange,
		MinPINLength:   r.Public.MinPINLength,
		UVRetries:      r.Public.UVRetries,
	}
	copy(st.PINHash[:], sec.PINHash)
	clear(sec.PINHash)
	return st, pin, nil
}
