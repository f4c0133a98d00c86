package keystore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// env is a state directory with its master key.
type env struct {
	root   string // 0700 directory holding master.key and state/
	dir    string // the store's state directory
	sealer *SoftwareSealer
	// cachedDEK is the data key, kept by tests after the store is closed.
	cachedDEK []byte
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := privateDir(t)
	sealer, err := OpenSoftwareSealer(filepath.Join(root, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{root: root, dir: filepath.Join(root, "state"), sealer: sealer}
}

func (e *env) dbPath() string { return filepath.Join(e.dir, DBFileName) }

func (e *env) open(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(e.dir, e.sealer, SoftwareKeys{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// newCred makes a credential with a real ES256 key.
func newCred(t testing.TB, s *Store, rp, user string, discoverable bool) *Credential {
	t.Helper()
	blob, pub, err := s.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := pub.(*ecdsa.PublicKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return &Credential{
		ID:              randBytes(16),
		RPID:            rp,
		RPName:          "Name of " + rp,
		UserID:          []byte("uid:" + user),
		UserName:        user + "@" + rp,
		UserDisplayName: "Display " + user,
		Alg:             AlgES256,
		PublicKey:       pk,
		KeyBlob:         blob,
		Discoverable:    discoverable,
	}
}

func mustPut(t testing.TB, s *Store, c *Credential) {
	t.Helper()
	if err := s.Put(c); err != nil {
		t.Fatal(err)
	}
}

// sameCred compares credentials, times with Equal.
func sameCred(t *testing.T, got, want *Credential) {
	t.Helper()
	g, w := got.Clone(), want.Clone()
	if !g.Created.Equal(w.Created) || !g.LastUsed.Equal(w.LastUsed) {
		t.Fatalf("times differ: got %v/%v want %v/%v", g.Created, g.LastUsed, w.Created, w.LastUsed)
	}
	g.Created, g.LastUsed, w.Created, w.LastUsed = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("credential differs:\n got %+v\nwant %+v", g, w)
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestPutGetRoundTrip(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	c := newCred(t, s, "example.com", "alice", true)
	c.Created = time.Unix(1700000000, 123456789)
	c.LastUsed = time.Unix(1700000100, 5)
	c.CredProtect = 2
	c.Protected = true
	c.Secrets = map[string][]byte{"hmac-secret": randBytes(32), "hmac-secret-uv": randBytes(32)}
	c.Attrs = map[string][]byte{"credBlob": {1, 2, 3}}
	mustPut(t, s, c)

	got, err := s.Get(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameCred(t, got, c)

	// Copies are independent of the index.
	got.UserName = "mallory"
	got.KeyBlob[0] ^= 0xff
	got.Secrets["hmac-secret"][0] ^= 0xff
	c.UserID[0] ^= 0xff
	again, _ := s.Get(c.ID)
	if again.UserName != "alice@example.com" || bytes.Equal(again.KeyBlob, got.KeyBlob) ||
		bytes.Equal(again.Secrets["hmac-secret"], got.Secrets["hmac-secret"]) || bytes.Equal(again.UserID, c.UserID) {
		t.Fatal("mutating a returned or passed credential changed the store")
	}

	if _, err := s.Get(randBytes(16)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}

	// Created defaults to now.
	now := time.Unix(1800000000, 0)
	s.now = func() time.Time { return now }
	c2 := newCred(t, s, "example.com", "bob", false)
	mustPut(t, s, c2)
	got2, _ := s.Get(c2.ID)
	if !got2.Created.Equal(now) {
		t.Fatalf("Created = %v, want %v", got2.Created, now)
	}
	if c2.Created != (time.Time{}) {
		t.Fatal("Put modified its argument")
	}
}

func TestPutMovesRP(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	c := newCred(t, s, "old.example", "alice", true)
	mustPut(t, s, c)
	if _, err := s.NextCounter(c.ID); err != nil {
		t.Fatal(err)
	}
	moved := c.Clone()
	moved.RPID = "new.example"
	mustPut(t, s, moved)
	if l, _ := s.ByRP("old.example"); len(l) != 0 {
		t.Fatal("credential still listed under its old RP")
	}
	if rps, _ := s.RPs(); len(rps) != 1 || rps[0].ID != "new.example" {
		t.Fatalf("RPs = %+v", rps)
	}
	s.Close()
	s = e.open(t, Options{})
	got, err := s.Get(c.ID)
	if err != nil || got.RPID != "new.example" || got.Counter != 1 {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
}

func TestPutValidation(t *testing.T) {
	s := newEnv(t).open(t, Options{})
	good := newCred(t, s, "example.com", "alice", true)
	for name, mut := range map[string]func(*Credential){
		"no id":       func(c *Credential) { c.ID = nil },
		"long id":     func(c *Credential) { c.ID = make([]byte, maxIDLen+1) },
		"no rp":       func(c *Credential) { c.RPID = "" },
		"no key":      func(c *Credential) { c.KeyBlob = nil },
		"credProtect": func(c *Credential) { c.CredProtect = 4 },
	} {
		c := good.Clone()
		mut(c)
		if err := s.Put(c); err == nil {
			t.Errorf("%s: Put accepted an invalid credential", name)
		}
	}
	if err := s.Put(nil); err == nil {
		t.Error("Put(nil) accepted")
	}
	if n, _ := s.All(); len(n) != 0 {
		t.Fatalf("invalid credentials stored: %d", len(n))
	}
}

func TestReopenPersistence(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	var creds []*Credential
	for i, rp := range []string{"a.example", "b.example", "a.example", "c.example"} {
		c := newCred(t, s, rp, fmt.Sprintf("user%d", i), i != 3)
		c.Created = time.Unix(int64(1700000000+i), 0)
		c.Secrets = map[string][]byte{"k": {byte(i)}}
		mustPut(t, s, c)
		creds = append(creds, c)
	}
	if err := s.UpdateUser(creds[0].ID, "renamed", "Renamed User"); err != nil {
		t.Fatal(err)
	}
	creds[0].UserName, creds[0].UserDisplayName = "renamed", "Renamed User"
	if err := s.SetProtected(creds[1].ID, true); err != nil {
		t.Fatal(err)
	}
	creds[1].Protected = true
	if err := s.Delete(creds[2].ID); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.NextCounter(creds[3].ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpdateState(func(st *State) error {
		st.PINSet, st.PINCodePoints, st.PINRetries = true, 6, 7
		st.PINHash = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
		st.PINFailsBootID = "boot-1"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.All()
	state := s.State()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = e.open(t, Options{})
	after, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 || len(before) != 3 {
		t.Fatalf("credentials: %d before, %d after close, want 3", len(before), len(after))
	}
	for i := range before {
		sameCred(t, after[i], before[i])
	}
	if got, _ := s.Get(creds[0].ID); got.UserName != "renamed" || got.UserDisplayName != "Renamed User" {
		t.Fatalf("UpdateUser lost: %q %q", got.UserName, got.UserDisplayName)
	}
	if got, _ := s.Get(creds[1].ID); !got.Protected {
		t.Fatal("SetProtected lost")
	}
	if _, err := s.Get(creds[2].ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted credential came back")
	}
	if got, _ := s.Get(creds[3].ID); got.Counter != 3 {
		t.Fatalf("counter after clean reopen = %d, want 3", got.Counter)
	}
	if got := s.State(); got != state {
		t.Fatalf("state after reopen = %+v, want %+v", got, state)
	}
	if s.DiscoverableCount() != 2 {
		t.Fatalf("DiscoverableCount = %d, want 2", s.DiscoverableCount())
	}
}

func TestByRPAndRPs(t *testing.T) {
	s := newEnv(t).open(t, Options{})
	mk := func(rp, user string, disc bool, created int64) *Credential {
		c := newCred(t, s, rp, user, disc)
		c.RPName = rp + " " + user
		c.Created = time.Unix(created, 0)
		mustPut(t, s, c)
		return c
	}
	a1 := mk("a.example", "u1", true, 100)
	a2 := mk("a.example", "u2", true, 300)
	a3 := mk("a.example", "u3", false, 200)
	b1 := mk("b.example", "u1", false, 100)
	c1 := mk("c.example", "u1", true, 50)
	mk("0.example", "u1", false, 10)

	got, err := s.ByRP("a.example")
	if err != nil {
		t.Fatal(err)
	}
	if ids := credIDs(got); !reflect.DeepEqual(ids, credIDs([]*Credential{a2, a3, a1})) {
		t.Fatal("ByRP order is not newest first")
	}
	if got, err := s.ByRP("nobody.example"); err != nil || len(got) != 0 {
		t.Fatalf("ByRP(unknown) = %v, %v", got, err)
	}
	if got, _ := s.ByRP("b.example"); len(got) != 1 || !bytes.Equal(got[0].ID, b1.ID) {
		t.Fatal("ByRP(b) wrong")
	}

	rps, err := s.RPs()
	if err != nil {
		t.Fatal(err)
	}
	want := []RP{
		{ID: "a.example", Name: "a.example u2", Discoverable: 2},
		{ID: "c.example", Name: "c.example u1", Discoverable: 1},
	}
	if !reflect.DeepEqual(rps, want) {
		t.Fatalf("RPs = %+v, want %+v", rps, want)
	}

	all, _ := s.All()
	if len(all) != 6 || all[0].RPID != "0.example" || all[len(all)-1].RPID != "c.example" {
		t.Fatalf("All order wrong: %d", len(all))
	}
	_ = c1
	if s.DiscoverableCount() != 3 || s.MaxDiscoverable() != DefaultMaxCredentials {
		t.Fatalf("counts %d/%d", s.DiscoverableCount(), s.MaxDiscoverable())
	}

	if err := s.Delete(c1.ID); err != nil {
		t.Fatal(err)
	}
	if rps, _ := s.RPs(); len(rps) != 1 {
		t.Fatalf("RPs after delete = %+v", rps)
	}
}

func credIDs(cs []*Credential) [][]byte {
	var out [][]byte
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestNotFound(t *testing.T) {
	s := newEnv(t).open(t, Options{})
	id := randBytes(16)
	checks := map[string]error{
		"Delete":       s.Delete(id),
		"UpdateUser":   s.UpdateUser(id, "a", "b"),
		"SetProtected": s.SetProtected(id, true),
	}
	_, checks["Get"] = s.Get(id)
	_, checks["NextCounter"] = s.NextCounter(id)
	_, checks["Signer"] = s.Signer(&Credential{ID: id})
	for name, err := range checks {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
}

func TestResidentReplacement(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	old := newCred(t, s, "example.com", "alice", true)
	mustPut(t, s, old)
	other := newCred(t, s, "example.com", "bob", true)
	mustPut(t, s, other)
	elsewhere := newCred(t, s, "other.example", "alice", true)
	mustPut(t, s, elsewhere)
	nonRK := newCred(t, s, "example.com", "alice", false)
	mustPut(t, s, nonRK)
	if _, err := s.Get(old.ID); err != nil {
		t.Fatal("a non-discoverable credential replaced a discoverable one")
	}
	sg, err := s.Signer(old)
	if err != nil || !s.cache.has(old.ID) {
		t.Fatalf("Signer: %v", err)
	}

	repl := newCred(t, s, "example.com", "alice", true)
	mustPut(t, s, repl)
	if _, err := s.Get(old.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("same rp+user discoverable credential not replaced")
	}
	for _, c := range []*Credential{other, elsewhere, nonRK, repl} {
		if _, err := s.Get(c.ID); err != nil {
			t.Fatalf("%s/%s removed: %v", c.RPID, c.UserName, err)
		}
	}
	if s.DiscoverableCount() != 3 {
		t.Fatalf("DiscoverableCount = %d, want 3", s.DiscoverableCount())
	}
	if s.cache.has(old.ID) {
		t.Fatal("replaced credential's signer still cached")
	}
	// With its key blob, a credential that is not stored can still sign,
	// but its signer is not cached.
	if sg2, err := s.Signer(old); err != nil || sg2 == sg || s.cache.has(old.ID) {
		t.Fatalf("Signer(replaced): %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = e.open(t, Options{})
	if _, err := s.Get(old.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("replaced credential still on disk")
	}
	if s.DiscoverableCount() != 3 {
		t.Fatalf("DiscoverableCount after reopen = %d", s.DiscoverableCount())
	}
}

func TestFull(t *testing.T) {
	s := newEnv(t).open(t, Options{MaxCredentials: 3})
	var rks []*Credential
	for i := 0; i < 3; i++ {
		c := newCred(t, s, "example.com", fmt.Sprint("user", i), true)
		mustPut(t, s, c)
		rks = append(rks, c)
	}
	extra := newCred(t, s, "example.com", "user9", true)
	if err := s.Put(extra); !errors.Is(err, ErrFull) {
		t.Fatalf("4th discoverable credential: %v, want ErrFull", err)
	}
	if _, err := s.Get(extra.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("rejected credential stored")
	}
	// Non-discoverable credentials are not limited.
	mustPut(t, s, newCred(t, s, "example.com", "user9", false))
	// Replacing the same rp+user is fine when full.
	mustPut(t, s, newCred(t, s, "example.com", "user0", true))
	// So is replacing by ID.
	c := rks[1].Clone()
	c.RPName = "New name"
	mustPut(t, s, c)
	// And turning a non-discoverable credential discoverable is not.
	nrk := newCred(t, s, "x.example", "x", false)
	mustPut(t, s, nrk)
	nrk.Discoverable = true
	if err := s.Put(nrk); !errors.Is(err, ErrFull) {
		t.Fatalf("upgrade to discoverable when full: %v", err)
	}
	if s.DiscoverableCount() != 3 {
		t.Fatalf("DiscoverableCount = %d", s.DiscoverableCount())
	}
	if err := s.Delete(rks[2].ID); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, extra)
}

func TestCounters(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{CounterReserve: 5})
	c := newCred(t, s, "example.com", "alice", true)
	mustPut(t, s, c)
	for want := uint32(1); want <= 23; want++ {
		got, err := s.NextCounter(c.ID)
		if err != nil || got != want {
			t.Fatalf("NextCounter = %d, %v; want %d", got, err, want)
		}
	}
	got, _ := s.Get(c.ID)
	if got.Counter != 23 || got.LastUsed.IsZero() {
		t.Fatalf("Get: counter %d lastUsed %v", got.Counter, got.LastUsed)
	}
	lastUsed := got.LastUsed
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = e.open(t, Options{CounterReserve: 5})
	got, _ = s.Get(c.ID)
	if got.Counter != 23 || !got.LastUsed.Equal(lastUsed) {
		t.Fatalf("after clean reopen: counter %d lastUsed %v, want 23 %v", got.Counter, got.LastUsed, lastUsed)
	}
	if v, _ := s.NextCounter(c.ID); v != 24 {
		t.Fatalf("NextCounter after clean reopen = %d, want 24", v)
	}

	// Replacing a credential by ID never moves its counter back.
	c2 := c.Clone()
	c2.Counter = 0
	mustPut(t, s, c2)
	if v, _ := s.NextCounter(c.ID); v != 25 {
		t.Fatalf("NextCounter after Put by ID = %d, want 25", v)
	}
}

func TestCounterSaturates(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	c := newCred(t, s, "example.com", "alice", true)
	c.Counter = math.MaxUint32 - 2
	mustPut(t, s, c)
	for _, want := range []uint32{math.MaxUint32 - 1, math.MaxUint32, math.MaxUint32, math.MaxUint32} {
		if got, err := s.NextCounter(c.ID); err != nil || got != want {
			t.Fatalf("NextCounter = %d, %v; want %d", got, err, want)
		}
	}
	s.Close()
	s = e.open(t, Options{})
	if got, _ := s.NextCounter(c.ID); got != math.MaxUint32 {
		t.Fatalf("after reopen = %d", got)
	}
}

// TestCounterCrashCopy takes counters, copies the database file while the
// store is still open (what a power cut would leave), and opens the copy.
func TestCounterCrashCopy(t *testing.T) {
	for _, reserve := range []uint32{1, 7, 256} {
		t.Run(fmt.Sprint("reserve=", reserve), func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, Options{CounterReserve: reserve})
			c := newCred(t, s, "example.com", "alice", true)
			mustPut(t, s, c)
			// A clean close and reopen, so the counter starts at its exact value.
			s.Close()
			s = e.open(t, Options{CounterReserve: reserve})
			var maxGiven uint32
			for i := 0; i < 20; i++ {
				v, err := s.NextCounter(c.ID)
				if err != nil {
					t.Fatal(err)
				}
				if v <= maxGiven {
					t.Fatalf("counter went from %d to %d", maxGiven, v)
				}
				maxGiven = v
			}
			data, err := os.ReadFile(e.dbPath())
			if err != nil {
				t.Fatal(err)
			}
			crashed := &env{root: e.root, dir: filepath.Join(privateDir(t), "state"), sealer: e.sealer}
			if err := os.Mkdir(crashed.dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(crashed.dbPath(), data, 0o600); err != nil {
				t.Fatal(err)
			}
			s2 := crashed.open(t, Options{CounterReserve: reserve})
			next, err := s2.NextCounter(c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if next <= maxGiven || next > maxGiven+reserve {
				t.Fatalf("after crash: next counter %d, handed out up to %d (reserve %d)", next, maxGiven, reserve)
			}
		})
	}
}

// TestCounterCrashKill runs the store in a child process that is SIGKILLed
// after taking counters.
func TestCounterCrashKill(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{CounterReserve: 8})
	c := newCred(t, s, "example.com", "alice", true)
	mustPut(t, s, c)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	var maxGiven uint32
	for round := 0; round < 3; round++ {
		out, err := runCrashChild(t, e.root, c.ID, 21)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(out) {
			var v uint32
			if _, err := fmt.Sscan(f, &v); err != nil {
				t.Fatalf("child output %q", out)
			}
			if v <= maxGiven {
				t.Fatalf("round %d: counter %d repeated or went back (max so far %d)", round, v, maxGiven)
			}
			maxGiven = v
		}
	}
	s = e.open(t, Options{CounterReserve: 8})
	next, err := s.NextCounter(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if next <= maxGiven {
		t.Fatalf("after kill: next counter %d, handed out up to %d", next, maxGiven)
	}
	t.Logf("3 killed runs handed out up to %d; next after reopen %d", maxGiven, next)
}

func TestHelperCrashChild(t *testing.T) {
	root := os.Getenv("KEYSTORE_CRASH_ROOT")
	if root == "" {
		t.Skip("helper process for TestCounterCrashKill")
	}
	crashChild(root, os.Getenv("KEYSTORE_CRASH_ID"), os.Getenv("KEYSTORE_CRASH_N"))
}

func TestSecondOpenLocked(t *testing.T) {
	e := newEnv(t)
	e.open(t, Options{})
	start := time.Now()
	_, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), e.dir) || !strings.Contains(err.Error(), "in use by another authd") {
		t.Fatalf("message %q", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

func TestRefusesForeignFiles(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"random 64KiB": func(t *testing.T, path string) {
			os.WriteFile(path, randBytes(64<<10), 0o600)
		},
		"random 4KiB": func(t *testing.T, path string) {
			os.WriteFile(path, randBytes(4096), 0o600)
		},
		"random 100B": func(t *testing.T, path string) {
			os.WriteFile(path, randBytes(100), 0o600)
		},
		"text": func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 2000), 0o600)
		},
		"foreign bbolt": func(t *testing.T, path string) {
			boltFixture(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("settings"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			})
		},
		"bbolt with wrong magic": func(t *testing.T, path string) {
			boltFixture(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket(bucketMeta)
				if err != nil {
					return err
				}
				return b.Put(keyMagic, []byte("something else"))
			})
		},
		"future format": func(t *testing.T, path string) {
			boltFixture(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket(bucketMeta)
				if err != nil {
					return err
				}
				b.Put(keyMagic, []byte(dbMagic))
				return b.Put(keyFormat, binary.BigEndian.AppendUint32(nil, dbFormat+1))
			})
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			if err := os.Mkdir(e.dir, 0o700); err != nil {
				t.Fatal(err)
			}
			setup(t, e.dbPath())
			before := fileHash(t, e.dbPath())
			fi0, _ := os.Stat(e.dbPath())
			_, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			t.Log(err)
			if fileHash(t, e.dbPath()) != before {
				t.Fatal("file was modified")
			}
			if fi, _ := os.Stat(e.dbPath()); fi.Size() != fi0.Size() || !fi.ModTime().Equal(fi0.ModTime()) {
				t.Fatal("file was touched")
			}
			// Still refused (and still untouched) the second time.
			if _, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("second Open: %v", err)
			}
			if fileHash(t, e.dbPath()) != before {
				t.Fatal("file was modified")
			}
		})
	}
}

func boltFixture(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyFilesInitialised(t *testing.T) {
	for name, setup := range map[string]func(path string) error{
		"zero bytes":   func(path string) error { return os.WriteFile(path, nil, 0o600) },
		"empty bbolt":  func(path string) error { db, err := bolt.Open(path, 0o600, nil); db.Close(); return err },
		"missing file": func(string) error { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			os.Mkdir(e.dir, 0o700)
			if err := setup(e.dbPath()); err != nil {
				t.Fatal(err)
			}
			s := e.open(t, Options{})
			if s.State() != defaultState() {
				t.Fatalf("state %+v", s.State())
			}
			mustPut(t, s, newCred(t, s, "example.com", "alice", true))
		})
	}
}

func TestWrongSealer(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	mustPut(t, s, newCred(t, s, "example.com", "alice", true))
	s.Close()
	before := fileHash(t, e.dbPath())
	other, err := OpenSoftwareSealer(filepath.Join(privateDir(t), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(e.dir, other, SoftwareKeys{}, Options{})
	if !errors.Is(err, ErrSealed) {
		t.Fatalf("Open with another master key: %v, want ErrSealed", err)
	}
	if fileHash(t, e.dbPath()) != before {
		t.Fatal("file modified")
	}
	// The right sealer still works.
	e.open(t, Options{})
}

// editRecord rewrites one stored credential record with bbolt directly.
func editRecord(t *testing.T, path string, id []byte, edit func(data []byte) []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketIDs).Get(id)
		rb := tx.Bucket(bucketCreds).Bucket(h)
		return rb.Put(id, edit(bytes.Clone(rb.Get(id))))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptRecords(t *testing.T) {
	for name, edit := range map[string]func(t *testing.T, data []byte) []byte{
		"flipped ciphertext": func(t *testing.T, data []byte) []byte {
			data[len(data)-1] ^= 1
			return data
		},
		"future version": func(t *testing.T, data []byte) []byte {
			r, err := decodeRecord(data)
			if err != nil {
				t.Fatal(err)
			}
			r.Version = recordVersion + 1
			out, _ := encodeRecord(r)
			return out
		},
		"moved to another rp id": func(t *testing.T, data []byte) []byte {
			// The record claims another RP than the bucket it sits in.
			r, _ := decodeRecord(data)
			r.RPID = "evil.example"
			out, _ := encodeRecord(r)
			return out
		},
		"garbage": func(t *testing.T, data []byte) []byte { return []byte{0xa1, 0x01} },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, Options{})
			c := newCred(t, s, "example.com", "alice", true)
			mustPut(t, s, c)
			mustPut(t, s, newCred(t, s, "example.com", "bob", true))
			s.Close()
			editRecord(t, e.dbPath(), c.ID, func(d []byte) []byte { return edit(t, d) })
			before := fileHash(t, e.dbPath())
			_, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), hex.EncodeToString(c.ID)) {
				t.Fatalf("error %q does not name credential %x", err, c.ID)
			}
			if fileHash(t, e.dbPath()) != before {
				t.Fatal("file modified")
			}
		})
	}
}

func TestSealedRecordBinding(t *testing.T) {
	// A sealed part moved to another credential does not decrypt.
	e := newEnv(t)
	s := e.open(t, Options{})
	a := newCred(t, s, "example.com", "alice", true)
	b := newCred(t, s, "example.com", "bob", true)
	mustPut(t, s, a)
	mustPut(t, s, b)
	s.Close()
	var sealedB []byte
	db, _ := bolt.Open(e.dbPath(), 0o600, nil)
	db.View(func(tx *bolt.Tx) error {
		r, err := decodeRecord(tx.Bucket(bucketCreds).Bucket(tx.Bucket(bucketIDs).Get(b.ID)).Get(b.ID))
		if err != nil {
			t.Fatal(err)
		}
		sealedB = r.Sealed
		return nil
	})
	db.Close()
	editRecord(t, e.dbPath(), a.ID, func(d []byte) []byte {
		r, _ := decodeRecord(d)
		r.Sealed = sealedB
		out, _ := encodeRecord(r)
		return out
	})
	if _, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("swapped sealed part: %v", err)
	}
}

func TestFileModes(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	assertMode(t, e.dir, 0o700)
	assertMode(t, e.dbPath(), 0o600)
	assertMode(t, filepath.Join(e.root, "master.key"), 0o600)
	s.Close()

	if err := os.Chmod(e.dbPath(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{}); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("db mode 0644 accepted: %v", err)
	}
	os.Chmod(e.dbPath(), 0o600)
	for _, mode := range []os.FileMode{0o750, 0o701, 0o755} {
		os.Chmod(e.dir, mode)
		if _, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{}); err == nil {
			t.Fatalf("dir mode %#o accepted", mode)
		}
	}
	os.Chmod(e.dir, 0o700)
	e.open(t, Options{})

	// A fresh nested directory is created 0700.
	e2 := newEnv(t)
	e2.dir = filepath.Join(e2.root, "a", "b")
	e2.open(t, Options{})
	assertMode(t, e2.dir, 0o700)
}

func TestNoPlaintextOnDisk(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	c := newCred(t, s, "example.com", "zebediah.quux", true)
	c.UserID = []byte("UID-7f3a9c2e-user-handle")
	c.UserDisplayName = "Zebediah Q. Displayname"
	c.Secrets = map[string][]byte{"hmac-secret": []byte("HMAC-SECRET-0123456789abcdef0123")}
	mustPut(t, s, c)
	ed := newCred(t, s, "example.org", "edward.twentyfive", false)
	ed.Alg = AlgEdDSA
	ed.KeyBlob, _, _ = s.NewKey(AlgEdDSA)
	mustPut(t, s, ed)
	if err := s.UpdateUser(c.ID, "renamed.zebediah", "Renamed Zebediah"); err != nil {
		t.Fatal(err)
	}
	pinHash := [16]byte{0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0xc0, 0xde, 0xfa, 0xce, 0xb0, 0x0c, 0x55, 0xaa, 0x5a, 0xa5}
	if err := s.UpdateState(func(st *State) error {
		st.PINSet, st.PINHash = true, pinHash
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	check := func(when string) {
		data, err := os.ReadFile(e.dbPath())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("example.com")) {
			t.Fatal("test is broken: public rp id not found in the file")
		}
		for what, secret := range map[string][]byte{
			"user name":          []byte("zebediah.quux"),
			"renamed user name":  []byte("renamed.zebediah"),
			"display name":       []byte("Zebediah Q. Displayname"),
			"renamed display":    []byte("Renamed Zebediah"),
			"user id":            c.UserID,
			"ES256 private key":  c.KeyBlob,
			"EdDSA private seed": ed.KeyBlob,
			"EdDSA user":         []byte("edward.twentyfive"),
			"hmac secret":        c.Secrets["hmac-secret"],
			"PIN hash":           pinHash[:],
			"data key":           e.dekForTest(t, s),
		} {
			if bytes.Contains(data, secret) {
				t.Errorf("%s: %s found in clear in %s", when, what, DBFileName)
			}
		}
	}
	check("open")
	dek := e.dekForTest(t, s)
	s.Close()
	e.cachedDEK = dek
	check("closed")
}

// dekForTest returns a copy of the data key (to check it is not on disk).
func (e *env) dekForTest(t *testing.T, s *Store) []byte {
	if e.cachedDEK != nil {
		return e.cachedDEK
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return bytes.Clone(s.dek[:])
}

func sealedDEKOnDisk(t *testing.T, s *Store) []byte {
	var out []byte
	s.db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketMeta).Get(keyDEK))
		return nil
	})
	return out
}

func TestWipe(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	var creds []*Credential
	for i := 0; i < 5; i++ {
		c := newCred(t, s, fmt.Sprintf("rp%d.example", i%2), fmt.Sprint("u", i), i%2 == 0)
		mustPut(t, s, c)
		creds = append(creds, c)
		if _, err := s.Signer(c); err != nil {
			t.Fatal(err)
		}
	}
	s.UpdateState(func(st *State) error {
		st.PINSet, st.PINRetries, st.PINHash = true, 3, [16]byte{1}
		return nil
	})
	oldDEK, oldSealed := e.dekForTest(t, s), sealedDEKOnDisk(t, s)
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.All(); len(all) != 0 {
		t.Fatalf("%d credentials after Wipe", len(all))
	}
	if rps, _ := s.RPs(); len(rps) != 0 || s.DiscoverableCount() != 0 {
		t.Fatal("RPs/count after Wipe")
	}
	if s.State() != defaultState() {
		t.Fatalf("state after Wipe: %+v", s.State())
	}
	if bytes.Equal(e.dekForTest(t, s), oldDEK) || bytes.Equal(sealedDEKOnDisk(t, s), oldSealed) {
		t.Fatal("data key not rotated")
	}
	if s.cache.len() != 0 {
		t.Fatal("signer cache not cleared")
	}
	if _, err := s.Signer(&Credential{ID: creds[0].ID}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Signer after Wipe: %v", err)
	}
	if _, err := s.NextCounter(creds[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("NextCounter after Wipe: %v", err)
	}
	c := newCred(t, s, "after.example", "u", true)
	mustPut(t, s, c)
	s.Close()

	s = e.open(t, Options{})
	if all, _ := s.All(); len(all) != 1 || !bytes.Equal(all[0].ID, c.ID) {
		t.Fatal("after reopen: wiped credentials back or new one lost")
	}
	if s.State() != defaultState() {
		t.Fatal("state after reopen")
	}
}

func TestUpdateState(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	if got := s.State(); got != (State{PINRetries: 8, MinPINLength: 4, UVRetries: 8}) {
		t.Fatalf("default state %+v", got)
	}
	boom := errors.New("boom")
	err := s.UpdateState(func(st *State) error {
		st.PINRetries = 0
		st.PINSet = true
		return boom
	})
	if err != boom {
		t.Fatalf("UpdateState returned %v, want fn's error", err)
	}
	if s.State() != defaultState() {
		t.Fatalf("state changed by failed update: %+v", s.State())
	}
	if err := s.UpdateState(func(st *State) error {
		st.PINRetries--
		st.PINFails = 2
		st.PINFailsBootID = "b"
		st.ForcePINChange = true
		st.MinPINLength = 6
		st.UVRetries = 5
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := State{PINRetries: 7, PINFails: 2, PINFailsBootID: "b", ForcePINChange: true, MinPINLength: 6, UVRetries: 5}
	if s.State() != want {
		t.Fatalf("state %+v", s.State())
	}
	s.UpdateState(func(st *State) error { st.MinPINLength = 99; return boom })
	s.Close()
	s = e.open(t, Options{})
	if s.State() != want {
		t.Fatalf("state after reopen %+v, want %+v", s.State(), want)
	}
}

func TestSignerCache(t *testing.T) {
	s := newEnv(t).open(t, Options{})
	c := newCred(t, s, "example.com", "alice", true)
	// Not stored yet (e.g. self attestation during MakeCredential).
	sg0, err := s.Signer(c)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, c)
	sg1, err := s.Signer(&Credential{ID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	sg2, _ := s.Signer(c)
	if sg1 != sg2 {
		t.Fatal("Signer not cached")
	}
	if !sg0.Public().(*ecdsa.PublicKey).Equal(sg1.Public()) {
		t.Fatal("signers for the same key differ")
	}
	d := sha256.Sum256([]byte("x"))
	sig, err := sg1.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(sg0.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature does not verify")
	}

	// Replacing by ID with a new key invalidates the cached signer.
	c2 := c.Clone()
	c2.KeyBlob, _, _ = s.NewKey(AlgES256)
	mustPut(t, s, c2)
	sg3, _ := s.Signer(&Credential{ID: c.ID})
	if sg3.Public().(*ecdsa.PublicKey).Equal(sg1.Public()) {
		t.Fatal("stale signer after replacing the key")
	}
	if err := s.Delete(c.ID); err != nil {
		t.Fatal(err)
	}
	if s.cache.len() != 0 {
		t.Fatal("cache entry survives Delete")
	}
	if _, err := s.Signer(&Credential{ID: c.ID}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Signer after Delete: %v", err)
	}

	// Bounded.
	for i := 0; i < signerCacheSize+10; i++ {
		c := newCred(t, s, "example.com", fmt.Sprint("u", i), false)
		mustPut(t, s, c)
		s.Signer(c)
	}
	if n := s.cache.len(); n != signerCacheSize {
		t.Fatalf("cache holds %d signers", n)
	}
}

func TestClosed(t *testing.T) {
	s := newEnv(t).open(t, Options{})
	c := newCred(t, s, "example.com", "alice", true)
	mustPut(t, s, c)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	errs := []error{s.Put(c), s.Delete(c.ID), s.UpdateUser(c.ID, "", ""), s.SetProtected(c.ID, true),
		s.Wipe(), s.UpdateState(func(*State) error { return nil })}
	_, err := s.Get(c.ID)
	errs = append(errs, err)
	_, err = s.NextCounter(c.ID)
	errs = append(errs, err)
	_, err = s.ByRP("example.com")
	errs = append(errs, err)
	_, err = s.All()
	errs = append(errs, err)
	_, err = s.RPs()
	errs = append(errs, err)
	_, err = s.Signer(c)
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call %d after Close: %v", i, err)
		}
	}
}

func TestConcurrent(t *testing.T) {
	s := newEnv(t).open(t, Options{CounterReserve: 3})
	c := newCred(t, s, "example.com", "alice", true)
	mustPut(t, s, c)
	const workers, per = 8, 50
	var mu sync.Mutex
	var seen []uint32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				v, err := s.NextCounter(c.ID)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen = append(seen, v)
				mu.Unlock()
				switch i % 5 {
				case 0:
					s.Get(c.ID)
				case 1:
					s.ByRP("example.com")
				case 2:
					s.Signer(c)
				case 3:
					s.SetProtected(c.ID, i%2 == 0)
				case 4:
					s.UpdateUser(c.ID, fmt.Sprint("n", i), "d")
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			o := newCred(t, s, "other.example", fmt.Sprint("u", i%4), true)
			if err := s.Put(o); err != nil {
				t.Error(err)
			}
			s.RPs()
			s.All()
		}
	}()
	wg.Wait()
	slices.Sort(seen)
	for i, v := range seen {
		if v != uint32(i+1) {
			t.Fatalf("counter values not 1..%d without gaps or repeats: seen[%d] = %d", len(seen), i, v)
		}
	}
	if got, _ := s.Get(c.ID); got.Counter != workers*per {
		t.Fatalf("final counter %d", got.Counter)
	}
}
