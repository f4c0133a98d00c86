// Package keystore persists authd's credentials and authenticator state.
//
// It owns the credential record, the authenticator state (PIN hash, retry
// counters, settings), at-rest encryption and transactional writes. How key
// material is protected is decided through two seams it declares, Sealer and
// KeyMaker; SoftwareSealer and SoftwareKeys are the fallback that needs no TPM.
// keystore imports no other authd package except internal helpers.
//
// Envelope encryption: a new database gets a random 256-bit data key (DEK),
// stored only as Sealer.Seal(DEK). Each credential record is CTAP2 canonical
// CBOR whose public fields (id, rp, algorithm, public key, times, counter
// ceiling, flags) are in clear and whose secret fields (key blob, user id,
// names, extension secrets) are one XChaCha20-Poly1305 ciphertext under the
// DEK, bound to the credential id and rp id. The state record likewise keeps
// its counters in clear (authenticated) and seals the PIN hash, or, with a
// PINGuard (a TPM), the guard blob and salt instead, and no hash at all.
//
// Optional seams for a TPM: PINGuard (Options), Resealer (on the Sealer:
// Open rotates the DEK and seals it anew, migrating a software store) and
// KeyBackend (on the KeyMaker: Backends counts credentials per backend).
//
// Wipe (authenticatorReset) does not delete records in place: bbolt keeps
// freed pages in the file, so the old sealed DEK and records would survive
// there, recoverable from a copy of the state directory while the master key
// is unchanged. Instead it builds a new database (new DEK, default state) in
// authd.db.new, fsyncs it and renames it over authd.db, so the file holds
// nothing of the old state.
//
// Signature counters are reserved: each record persists a counter ceiling,
// and values up to it are handed out from memory. When the reservation is
// used up, a new ceiling (CounterReserve values ahead) is written and fsynced
// before the next value is returned. A reopened store continues from the
// persisted ceiling, so a crash can make the counter jump but never repeat;
// Close persists the exact counters.
package keystore

import (
	"crypto"
	"errors"
	"time"
)

// COSE algorithm identifiers (IANA COSE Algorithms registry) supported by KeyMaker.
const (
	AlgES256 = -7
	AlgEdDSA = -8
)

// Sealer protects small secrets at rest. The software implementation encrypts
// under a master key file; the TPM implementation seals to the TPM.
// Unseal returns an error wrapping ErrSealed when the blob was not produced by
// this Sealer or was altered.
type Sealer interface {
	Seal(plaintext []byte) (blob []byte, err error)
	Unseal(blob []byte) (plaintext []byte, err error)
}

// KeyMaker creates credential key pairs and turns their stored blobs back into
// signers. A blob is opaque: a raw private key for SoftwareKeys, TPM public and
// private areas for a TPM. The store additionally encrypts blobs at rest.
// NewKey returns an error wrapping ErrUnsupportedAlgorithm for algorithms it
// cannot make.
type KeyMaker interface {
	NewKey(alg int) (blob []byte, pub crypto.PublicKey, err error)
	Signer(alg int, blob []byte) (crypto.Signer, error)
}

// Resealer is an optional interface of a Sealer. NeedsReseal reports whether
// a stored sealed data key should be sealed anew with Seal: for instance, it
// was sealed by the software fallback and a TPM is now available. Open then
// rotates the data key (see Store.migrate). NeedsReseal must not unseal.
type Resealer interface {
	NeedsReseal(sealed []byte) bool
}

// KeyBackend is an optional interface of a KeyMaker: Backend names where the
// key of a blob lives ("tpm", "software", ...). Store.Backends counts
// credentials by it; without it every key counts as "software".
type KeyBackend interface {
	Backend(alg int, blob []byte) string
}

// Sentinel errors.
var (
	ErrNotFound             = errors.New("keystore: not found")
	ErrFull                 = errors.New("keystore: credential storage full")
	ErrLocked               = errors.New("keystore: state directory in use by another authd")
	ErrCorrupt              = errors.New("keystore: corrupt or foreign state")
	ErrSealed               = errors.New("keystore: cannot unseal")
	ErrUnsupportedAlgorithm = errors.New("keystore: unsupported algorithm")
	// ErrClosed is returned by a Store's methods after Close.
	ErrClosed = errors.New("keystore: store closed")
)

// Credential is one stored credential, discoverable or not. Secret fields
// (KeyBlob, the user entity, extension secrets) are encrypted at rest.
type Credential struct {
	ID              []byte
	RPID            string
	RPName          string
	UserID          []byte
	UserName        string
	UserDisplayName string
	Alg             int
	PublicKey       []byte // COSE_Key, CTAP2 canonical CBOR
	KeyBlob         []byte // from KeyMaker.NewKey; secret
	Created         time.Time
	LastUsed        time.Time
	Counter         uint32 // last signature counter value handed out
	Discoverable    bool
	CredProtect     uint8 // 0 (unset) or 1..3
	Protected       bool  // user asked that it not be deleted casually (management API)
	// Secrets holds per-credential extension secrets (e.g. "hmac-secret-uv"); secret.
	Secrets map[string][]byte
	// Attrs holds non-secret extension data (e.g. "credBlob" length policy flags).
	Attrs map[string][]byte
}

// Clone returns a deep copy.
func (c *Credential) Clone() *Credential {
	if c == nil {
		return nil
	}
	d := *c
	d.ID = clone(c.ID)
	d.UserID = clone(c.UserID)
	d.PublicKey = clone(c.PublicKey)
	d.KeyBlob = clone(c.KeyBlob)
	d.Secrets = cloneMap(c.Secrets)
	d.Attrs = cloneMap(c.Attrs)
	return &d
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func cloneMap(m map[string][]byte) map[string][]byte {
	if m == nil {
		return nil
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = clone(v)
	}
	return out
}

// RP summarises one relying party for credential management.
type RP struct {
	ID           string
	Name         string
	Discoverable int // number of discoverable credentials
}

// State is the persistent authenticator state. PINHash is secret and sealed at rest.
type State struct {
	PINSet         bool
	PINHash        [16]byte // LEFT(SHA-256(PIN), 16)
	PINCodePoints  int
	PINRetries     int    // persistent retries left (max 8)
	PINFails       int    // consecutive wrong PINs within BootID
	PINFailsBootID string // kernel boot id the PINFails count belongs to
	ForcePINChange bool
	MinPINLength   int
	UVRetries      int
}
