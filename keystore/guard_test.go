package keystore

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/authd/authd/internal/cbor"
	bolt "go.etcd.io/bbolt"
)

// fakeGuard stands in for the TPM's PIN guard: a blob is "guard:" ‖ n ‖
// SHA-256(authValue), and lockout can be switched on.
type fakeGuard struct {
	mu      sync.Mutex
	n       int
	checks  int
	wrong   int
	lockout bool
	values  [][]byte // every authValue it was given
}

func (g *fakeGuard) NewPINGuard(av []byte) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	g.values = append(g.values, bytes.Clone(av))
	h := sha256.Sum256(av)
	return append([]byte(fmt.Sprintf("guard:%d:", g.n)), h[:]...), nil
}

func (g *fakeGuard) CheckPIN(blob, av []byte) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.checks++
	g.values = append(g.values, bytes.Clone(av))
	if g.lockout {
		return false, fmt.Errorf("fake: %w", ErrPINLockout)
	}
	h := sha256.Sum256(av)
	ok := bytes.HasSuffix(blob, h[:])
	if !ok {
		g.wrong++
	}
	return ok, nil
}

// rawSecretState decrypts the stored state record with the store's DEK.
func rawSecretState(t *testing.T, s *Store) stateSecret {
	t.Helper()
	var data []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		data = clone(tx.Bucket(bucketMeta).Get(keyState))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var r stateRecord
	if err := cbor.UnmarshalRecord(data, &r); err != nil {
		t.Fatal(err)
	}
	ad, err := stateAAD(&r.Public)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := open(&s.dek, r.Sealed, ad)
	if err != nil {
		t.Fatal(err)
	}
	var sec stateSecret
	if err := cbor.UnmarshalRecord(pt, &sec); err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestPINGuardSetVerify(t *testing.T) {
	e := newEnv(t)
	g := &fakeGuard{}
	s := e.open(t, Options{PINGuard: g})
	hash := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if err := s.SetPIN(hash, func(st *State) error { st.PINCodePoints = 6; return nil }); err != nil {
		t.Fatal(err)
	}
	if !s.PINGuarded() {
		t.Fatal("PIN not guarded")
	}
	if st := s.State(); !st.PINSet || st.PINHash != ([16]byte{}) || st.PINCodePoints != 6 {
		t.Fatalf("state after SetPIN: %+v", st)
	}
	sec := rawSecretState(t, s)
	if len(sec.PINHash) != 0 || len(sec.PINGuard) == 0 || len(sec.PINSalt) != pinSaltSize {
		t.Fatalf("stored state secret: hash %x guard %d bytes salt %d bytes", sec.PINHash, len(sec.PINGuard), len(sec.PINSalt))
	}
	// The guard gets a derived value, never the hash itself.
	if bytes.Contains(g.values[0], hash[:]) || len(g.values[0]) != 32 {
		t.Fatalf("authValue %x is not a 32-byte derivation", g.values[0])
	}
	if ok, err := s.VerifyPIN(hash); !ok || err != nil {
		t.Fatalf("VerifyPIN(right) = %v, %v", ok, err)
	}
	wrong := hash
	wrong[0] ^= 1
	if ok, err := s.VerifyPIN(wrong); ok || err != nil {
		t.Fatalf("VerifyPIN(wrong) = %v, %v", ok, err)
	}
	if g.checks != 2 || g.wrong != 1 {
		t.Fatalf("guard saw %d checks, %d wrong", g.checks, g.wrong)
	}
	g.lockout = true
	if ok, err := s.VerifyPIN(hash); ok || !errors.Is(err, ErrPINLockout) {
		t.Fatalf("VerifyPIN in lockout = %v, %v; want ErrPINLockout", ok, err)
	}
	g.lockout = false

	// UpdateState keeps the guard and never stores a hash.
	if err := s.UpdateState(func(st *State) error { st.PINRetries = 5; st.PINHash = hash; return nil }); err != nil {
		t.Fatal(err)
	}
	if sec := rawSecretState(t, s); len(sec.PINHash) != 0 || len(sec.PINGuard) == 0 {
		t.Fatal("UpdateState stored a PIN hash next to the guard")
	}

	// Changing the PIN makes a new guard with a new salt.
	old := rawSecretState(t, s)
	hash2 := [16]byte{9}
	if err := s.SetPIN(hash2, nil); err != nil {
		t.Fatal(err)
	}
	now := rawSecretState(t, s)
	if bytes.Equal(old.PINGuard, now.PINGuard) || bytes.Equal(old.PINSalt, now.PINSalt) {
		t.Fatal("SetPIN kept the old guard or salt")
	}
	if ok, _ := s.VerifyPIN(hash); ok {
		t.Fatal("old PIN still verifies")
	}

	// Persisted: a reopened store verifies through the guard.
	s.Close()
	s = e.open(t, Options{PINGuard: g})
	if !s.PINGuarded() || s.State().PINRetries != 5 {
		t.Fatalf("reopened: guarded %v, state %+v", s.PINGuarded(), s.State())
	}
	if ok, err := s.VerifyPIN(hash2); !ok || err != nil {
		t.Fatalf("VerifyPIN after reopen = %v, %v", ok, err)
	}
	// Opened without the guard, the PIN cannot be checked (and is not
	// silently accepted or compared with a zero hash).
	s.Close()
	s = e.open(t, Options{})
	if ok, err := s.VerifyPIN([16]byte{}); ok || err == nil {
		t.Fatalf("VerifyPIN without a guard = %v, %v; want an error", ok, err)
	}
	s.Close()

	// Wipe drops the guard.
	s = e.open(t, Options{PINGuard: g})
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
	if s.PINGuarded() || s.State() != defaultState() {
		t.Fatal("Wipe kept the PIN guard")
	}
}

// TestPINGuardMigration: a PIN set by a software store moves into a guard
// when the store is opened with one, and the hash is gone.
func TestPINGuardMigration(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	hash := [16]byte{0xaa, 0xbb}
	if err := s.SetPIN(hash, nil); err != nil {
		t.Fatal(err)
	}
	if sec := rawSecretState(t, s); !bytes.Equal(sec.PINHash, hash[:]) || sec.PINGuard != nil {
		t.Fatal("software store does not keep the hash")
	}
	s.Close()
	g := &fakeGuard{}
	s = e.open(t, Options{PINGuard: g})
	if !s.PINGuarded() || g.n != 1 {
		t.Fatalf("not migrated: guarded %v, guards made %d", s.PINGuarded(), g.n)
	}
	if sec := rawSecretState(t, s); len(sec.PINHash) != 0 {
		t.Fatal("PIN hash still stored after migration")
	}
	if ok, err := s.VerifyPIN(hash); !ok || err != nil {
		t.Fatalf("VerifyPIN after migration = %v, %v", ok, err)
	}
	s.Close()
	s = e.open(t, Options{PINGuard: g})
	if g.n != 1 {
		t.Fatal("migrated twice")
	}
}

// resealer is a sealer that wants blobs of its inner "old" sealer sealed
// again with its own: "NEW!" ‖ software blob.
type resealer struct {
	old, new *SoftwareSealer
	failSeal bool
}

func (r *resealer) Seal(pt []byte) ([]byte, error) {
	if r.failSeal {
		return nil, errors.New("seal refused")
	}
	b, err := r.new.Seal(pt)
	return append([]byte("NEW!"), b...), err
}

func (r *resealer) Unseal(b []byte) ([]byte, error) {
	if bytes.HasPrefix(b, []byte("NEW!")) {
		return r.new.Unseal(b[4:])
	}
	if r.old == nil {
		return nil, fmt.Errorf("no old sealer: %w", ErrSealed)
	}
	return r.old.Unseal(b)
}

func (r *resealer) NeedsReseal(b []byte) bool { return !bytes.HasPrefix(b, []byte("NEW!")) }

func TestResealRotatesDataKey(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	c1 := newCred(t, s, "a.example", "alice", true)
	c2 := newCred(t, s, "b.example", "bob", false)
	mustPut(t, s, c1)
	mustPut(t, s, c2)
	hash := [16]byte{7}
	if err := s.SetPIN(hash, nil); err != nil {
		t.Fatal(err)
	}
	lb := append([]byte{0x81, 0x01}, bytes.Repeat([]byte{0x42}, 16)...)
	if err := s.SetLargeBlobArray(lb); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSettings(func(st *Settings) error { st.AlwaysUV = true; return nil }); err != nil {
		t.Fatal(err)
	}
	oldDEK := s.dek
	s.Close()

	newSealer, err := OpenSoftwareSealer(privateDir(t) + "/new.key")
	if err != nil {
		t.Fatal(err)
	}
	// A Seal that fails leaves the store as it was.
	r := &resealer{old: e.sealer, new: newSealer, failSeal: true}
	before := fileHash(t, e.dbPath())
	if _, err := Open(e.dir, r, SoftwareKeys{}, Options{}); err == nil {
		t.Fatal("Open with a failing re-seal succeeded")
	}
	if fileHash(t, e.dbPath()) != before {
		t.Fatal("a failed re-seal changed the database")
	}

	r.failSeal = false
	s2, err := Open(e.dir, r, SoftwareKeys{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(s2.SealedDataKey(), []byte("NEW!")) || s2.dek == oldDEK {
		t.Fatal("data key not rotated and re-sealed")
	}
	for _, c := range []*Credential{c1, c2} {
		got, err := s2.Get(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.KeyBlob, c.KeyBlob) || got.UserName != c.UserName {
			t.Fatal("credential changed by the re-seal")
		}
	}
	if ok, err := s2.VerifyPIN(hash); !ok || err != nil {
		t.Fatalf("PIN after re-seal: %v %v", ok, err)
	}
	if got, err := s2.LargeBlobArray(); err != nil || !bytes.Equal(got, lb) {
		t.Fatalf("large-blob array after re-seal: %x, %v", got, err)
	}
	if st, err := s2.Settings(); err != nil || !st.AlwaysUV {
		t.Fatalf("settings after re-seal: %+v, %v", st, err)
	}
	s2.Close()

	// The old sealer is no longer needed.
	r.old = nil
	s3, err := Open(e.dir, r, SoftwareKeys{}, Options{})
	if err != nil {
		t.Fatalf("reopen with the new sealer only: %v", err)
	}
	if n := len(s3.byID); n != 2 {
		t.Fatalf("%d credentials after re-seal", n)
	}
	sg, err := s3.Signer(c1)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := sg.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	s3.Close()
	// And the old one alone can no longer open it.
	if _, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{}); !errors.Is(err, ErrSealed) {
		t.Fatalf("old sealer after re-seal: %v, want ErrSealed", err)
	}
}

type namedKeys struct{ SoftwareKeys }

func (namedKeys) Backend(alg int, _ []byte) string {
	if alg == AlgES256 {
		return BackendTPM
	}
	return BackendSoftware
}

func TestBackends(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	mustPut(t, s, newCred(t, s, "a.example", "a", true))
	mustPut(t, s, newCred(t, s, "b.example", "b", false))
	if got := s.Backends(); len(got) != 1 || got[BackendSoftware] != 2 {
		t.Fatalf("Backends = %v", got)
	}
	s.Close()
	s2, err := Open(e.dir, e.sealer, namedKeys{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	blob, _, err := s2.NewKey(AlgEdDSA)
	if err != nil {
		t.Fatal(err)
	}
	c := newCred(t, s2, "c.example", "c", true)
	c.Alg, c.KeyBlob = AlgEdDSA, blob
	mustPut(t, s2, c)
	if got := s2.Backends(); got[BackendTPM] != 2 || got[BackendSoftware] != 1 {
		t.Fatalf("Backends = %v", got)
	}
}

// TestResealUnknownMetaKey: a meta value rekey does not know (it might be
// sealed under the old data key) makes the re-seal fail without changes.
func TestResealUnknownMetaKey(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("future"), []byte{1}) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	newSealer, err := OpenSoftwareSealer(privateDir(t) + "/new.key")
	if err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, e.dbPath())
	_, err = Open(e.dir, &resealer{old: e.sealer, new: newSealer}, SoftwareKeys{}, Options{})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("future")) {
		t.Fatalf("Open = %v, want an error naming the unknown key", err)
	}
	if fileHash(t, e.dbPath()) != before {
		t.Fatal("a failed re-seal changed the database")
	}
}
