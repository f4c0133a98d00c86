package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// onDisk is what the database of a store holds, read through its handle.
type onDisk struct {
	sealedDEK []byte
	state     []byte
	ids       [][]byte // credential ids (stored in clear as keys)
	sealed    [][]byte // sealed secret part of every record
}

func readOnDisk(t *testing.T, s *Store) onDisk {
	t.Helper()
	var d onDisk
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		d.sealedDEK = bytes.Clone(meta.Get(keyDEK))
		d.state = bytes.Clone(meta.Get(keyState))
		creds := tx.Bucket(bucketCreds)
		return creds.ForEach(func(h, _ []byte) error {
			return creds.Bucket(h).ForEach(func(id, data []byte) error {
				r, err := decodeRecord(data)
				if err != nil {
					return err
				}
				d.ids = append(d.ids, bytes.Clone(id))
				d.sealed = append(d.sealed, bytes.Clone(r.Sealed))
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// secrets lists what must not survive a wipe, by description.
func (d onDisk) secrets() map[string][]byte {
	m := map[string][]byte{"sealed data key": d.sealedDEK, "sealed state": d.state}
	for i := range d.ids {
		m[fmt.Sprintf("record id %x", d.ids[i])] = d.ids[i]
		m[fmt.Sprintf("sealed record %x", d.ids[i])] = d.sealed[i]
	}
	return m
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// populate stores credentials with distinctive names, changes some of them
// (leaving old versions in bbolt's free pages) and sets a PIN.
func populate(t *testing.T, s *Store) []*Credential {
	t.Helper()
	var creds []*Credential
	for i := range 6 {
		c := newCred(t, s, fmt.Sprintf("wipe-rp-%d.example", i%3), fmt.Sprintf("purge-user-%d-qx7", i), i%2 == 0)
		c.UserID = []byte(fmt.Sprintf("PURGE-UID-%d-5e1d9a", i))
		mustPut(t, s, c)
		creds = append(creds, c)
	}
	if err := s.UpdateUser(creds[0].ID, "renamed-purge-user", "Renamed"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(creds[5].ID); err != nil {
		t.Fatal(err)
	}
	creds = creds[:5]
	for range 3 {
		if _, err := s.NextCounter(creds[1].ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpdateState(func(st *State) error {
		st.PINSet, st.PINRetries, st.PINHash = true, 5, [16]byte{0xa5, 0x5a, 1, 2, 3}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return creds
}

func TestWipePurgesFile(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{CounterReserve: 2})
	creds := populate(t, s)
	old := readOnDisk(t, s)
	if len(old.ids) != len(creds) {
		t.Fatalf("test is broken: %d records on disk", len(old.ids))
	}
	raw, err := os.ReadFile(e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	for what, b := range old.secrets() {
		if !bytes.Contains(raw, b) {
			t.Fatalf("test is broken: %s not found in the file before Wipe", what)
		}
	}

	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}

	checkFile := func(when string) {
		t.Helper()
		raw, err := os.ReadFile(e.dbPath())
		if err != nil {
			t.Fatal(err)
		}
		for what, b := range old.secrets() {
			if bytes.Contains(raw, b) {
				t.Errorf("%s: %s still in %s", when, what, DBFileName)
			}
		}
		for _, c := range creds {
			if bytes.Contains(raw, []byte(c.RPID)) {
				t.Errorf("%s: old rp id %s still in %s", when, c.RPID, DBFileName)
			}
		}
		if names := dirNames(t, e.dir); !slices.Equal(names, []string{DBFileName}) {
			t.Errorf("%s: state directory holds %v", when, names)
		}
		assertMode(t, e.dbPath(), 0o600)
	}
	checkFile("after Wipe")

	// (1) Empty and usable, counters restart, default state.
	if all, _ := s.All(); len(all) != 0 || s.DiscoverableCount() != 0 {
		t.Fatalf("%d credentials after Wipe", len(all))
	}
	if s.State() != defaultState() {
		t.Fatalf("state after Wipe: %+v", s.State())
	}
	for _, c := range creds {
		if _, err := s.Get(c.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old credential after Wipe: %v", err)
		}
	}
	if got := readOnDisk(t, s); bytes.Equal(got.sealedDEK, old.sealedDEK) || len(got.ids) != 0 {
		t.Fatal("new database holds the old data key or records")
	}
	c := newCred(t, s, "after.example", "newuser", true)
	mustPut(t, s, c)
	if got, err := s.Get(c.ID); err != nil || !bytes.Equal(got.UserID, c.UserID) {
		t.Fatalf("Get after Wipe: %v", err)
	}
	for want := uint32(1); want <= 5; want++ {
		if v, err := s.NextCounter(c.ID); err != nil || v != want {
			t.Fatalf("NextCounter after Wipe = %d, %v; want %d", v, err, want)
		}
	}
	if _, err := s.Signer(&Credential{ID: c.ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateState(func(st *State) error { st.MinPINLength = 6; return nil }); err != nil {
		t.Fatal(err)
	}
	// The new file is locked: still one authd per state directory.
	if _, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open after Wipe: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile("after Close")

	// (3) Reopen.
	s = e.open(t, Options{})
	all, _ := s.All()
	if len(all) != 1 || !bytes.Equal(all[0].ID, c.ID) || all[0].Counter != 5 {
		t.Fatalf("after reopen: %+v", all)
	}
	if s.State().MinPINLength != 6 || s.State().PINSet {
		t.Fatalf("state after reopen: %+v", s.State())
	}
}

func TestWipeTwice(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	populate(t, s)
	first := readOnDisk(t, s)
	for range 3 {
		if err := s.Wipe(); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ := os.ReadFile(e.dbPath())
	if bytes.Contains(raw, first.sealedDEK) {
		t.Fatal("first data key survives")
	}
	mustPut(t, s, newCred(t, s, "x.example", "u", true))
}

func TestLeftoverNewFileOnOpen(t *testing.T) {
	leftovers := map[string]func(t *testing.T, path string){
		"garbage": func(t *testing.T, path string) {
			if err := os.WriteFile(path, randBytes(64<<10), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"empty": func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"another store's database": func(t *testing.T, path string) {
			other := newEnv(t)
			s := other.open(t, Options{})
			mustPut(t, s, newCred(t, s, "intruder.example", "mallory", true))
			s.Close()
			data, err := os.ReadFile(other.dbPath())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, setup := range leftovers {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, Options{})
			c := newCred(t, s, "example.com", "alice", true)
			mustPut(t, s, c)
			s.Close()
			leftover := filepath.Join(e.dir, newDBFileName)
			setup(t, leftover)

			s = e.open(t, Options{})
			all, _ := s.All()
			if len(all) != 1 || !bytes.Equal(all[0].ID, c.ID) {
				t.Fatalf("Open with a leftover %s: %d credentials", newDBFileName, len(all))
			}
			if _, err := os.Lstat(leftover); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("leftover not removed: %v", err)
			}

			// And while the store is open, Wipe replaces it.
			setup(t, leftover)
			if err := s.Wipe(); err != nil {
				t.Fatal(err)
			}
			if all, _ := s.All(); len(all) != 0 {
				t.Fatal("not wiped")
			}
			if names := dirNames(t, e.dir); !slices.Equal(names, []string{DBFileName}) {
				t.Fatalf("state directory holds %v", names)
			}
			mustPut(t, s, newCred(t, s, "example.com", "bob", true))
			s.Close()
			s = e.open(t, Options{})
			if all, _ := s.All(); len(all) != 1 || all[0].UserName != "bob@example.com" {
				t.Fatalf("after reopen: %+v", all)
			}
		})
	}
}

func TestWipeLeftoverSymlink(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	mustPut(t, s, newCred(t, s, "example.com", "alice", true))
	target := filepath.Join(e.root, "victim")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(e.dir, newDBFileName)); err != nil {
		t.Fatal(err)
	}
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(target); err != nil || string(data) != "keep me" {
		t.Fatalf("symlink target touched: %q, %v", data, err)
	}
	if fi, err := os.Lstat(e.dbPath()); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("%s after Wipe: %v, %v", DBFileName, fi, err)
	}
}

// checkIntact asserts that a failed Wipe changed nothing.
func checkIntact(t *testing.T, e *env, s *Store, creds []*Credential, hash [32]byte, st State) {
	t.Helper()
	if fileHash(t, e.dbPath()) != hash {
		t.Fatalf("%s modified by a failed Wipe", DBFileName)
	}
	if names := dirNames(t, e.dir); !slices.Equal(names, []string{DBFileName}) {
		t.Fatalf("state directory holds %v", names)
	}
	if s.State() != st {
		t.Fatalf("state changed: %+v", s.State())
	}
	all, err := s.All()
	if err != nil || len(all) != len(creds) {
		t.Fatalf("%d credentials after a failed Wipe (%v), want %d", len(all), err, len(creds))
	}
	for _, c := range creds {
		got, err := s.Get(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.KeyBlob, c.KeyBlob) || !bytes.Equal(got.UserID, c.UserID) {
			t.Fatal("credential changed")
		}
	}
}

func TestWipeFailureKeepsOldData(t *testing.T) {
	boom := errors.New("injected failure")
	for _, step := range []string{"remove", "create", "initialise", "sync", "load", "rename"} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, Options{})
			creds := populate(t, s)
			counter, _ := s.Get(creds[1].ID)
			st := s.State()
			hash := fileHash(t, e.dbPath())
			var seen []string
			s.wipeHook = func(st string) error {
				seen = append(seen, st)
				if st == step {
					return boom
				}
				return nil
			}
			err := s.Wipe()
			if !errors.Is(err, boom) {
				t.Fatalf("Wipe: %v, want the injected failure", err)
			}
			t.Log(err)
			if seen[len(seen)-1] != step {
				t.Fatalf("steps %v", seen)
			}
			checkIntact(t, e, s, creds, hash, st)
			// Still fully usable on the old database.
			if v, err := s.NextCounter(creds[1].ID); err != nil || v != counter.Counter+1 {
				t.Fatalf("NextCounter = %d, %v; want %d", v, err, counter.Counter+1)
			}
			c := newCred(t, s, "later.example", "carol", true)
			mustPut(t, s, c)
			creds = append(creds, c)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = e.open(t, Options{})
			checkIntact(t, e, s, creds, fileHash(t, e.dbPath()), st)
			// Without the failure, Wipe works.
			if err := s.Wipe(); err != nil {
				t.Fatal(err)
			}
			if all, _ := s.All(); len(all) != 0 {
				t.Fatal("not wiped")
			}
		})
	}
}

// flakySealer fails Seal or Unseal on demand.
type flakySealer struct {
	Sealer
	failSeal, failUnseal bool
}

func (f *flakySealer) Seal(p []byte) ([]byte, error) {
	if f.failSeal {
		return nil, errors.New("seal failed")
	}
	return f.Sealer.Seal(p)
}

func (f *flakySealer) Unseal(b []byte) ([]byte, error) {
	if f.failUnseal {
		return nil, fmt.Errorf("unseal failed: %w", ErrSealed)
	}
	return f.Sealer.Unseal(b)
}

func TestWipeSealerFailure(t *testing.T) {
	for _, which := range []string{"seal", "unseal"} {
		t.Run(which, func(t *testing.T) {
			e := newEnv(t)
			fl := &flakySealer{Sealer: e.sealer}
			s, err := Open(e.dir, fl, SoftwareKeys{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			creds := populate(t, s)
			st, hash := s.State(), fileHash(t, e.dbPath())
			fl.failSeal, fl.failUnseal = which == "seal", which == "unseal"
			if err := s.Wipe(); err == nil {
				t.Fatal("Wipe succeeded with a failing sealer")
			} else {
				t.Log(err)
			}
			checkIntact(t, e, s, creds, hash, st)
			fl.failSeal, fl.failUnseal = false, false
			if err := s.Wipe(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWipeLeftoverDirectory(t *testing.T) {
	// A leftover that cannot be removed makes Wipe fail cleanly.
	e := newEnv(t)
	s := e.open(t, Options{})
	creds := populate(t, s)
	st, hash := s.State(), fileHash(t, e.dbPath())
	leftover := filepath.Join(e.dir, newDBFileName)
	if err := os.MkdirAll(filepath.Join(leftover, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Wipe(); err == nil {
		t.Fatal("Wipe succeeded")
	}
	if err := os.RemoveAll(leftover); err != nil {
		t.Fatal(err)
	}
	checkIntact(t, e, s, creds, hash, st)
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
}

func TestWipeConcurrent(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{CounterReserve: 2})
	var wg sync.WaitGroup
	var rounds atomic.Int64
	stop := make(chan struct{})
	ok := func(err error) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Error(err)
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := newCred(t, s, "concurrent.example", fmt.Sprint("u", w, "-", i%3), i%2 == 0)
				ok(s.Put(c))
				_, err := s.NextCounter(c.ID)
				ok(err)
				_, err = s.Get(c.ID)
				ok(err)
				_, err = s.Signer(&Credential{ID: c.ID})
				ok(err)
				ok(s.UpdateUser(c.ID, "n", "d"))
				ok(s.SetProtected(c.ID, true))
				_, err = s.ByRP(c.RPID)
				ok(err)
				_, err = s.RPs()
				ok(err)
				ok(s.UpdateState(func(st *State) error { st.UVRetries = 7; return nil }))
				s.State()
				s.DiscoverableCount()
				if i%4 == 3 {
					ok(s.Delete(c.ID))
				}
				rounds.Add(1)
			}
		}()
	}
	for range 5 {
		// Let the workers fill the store between wipes.
		for n := rounds.Load(); rounds.Load() < n+8; {
			time.Sleep(time.Millisecond)
		}
		if err := s.Wipe(); err != nil {
			t.Error(err)
		}
	}
	for n := rounds.Load(); rounds.Load() < n+8; {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	want, _ := s.All()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = e.open(t, Options{})
	got, _ := s.All()
	if len(got) != len(want) {
		t.Fatalf("after reopen %d credentials, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].ID, want[i].ID) || got[i].Counter != want[i].Counter {
			t.Fatalf("credential %d differs after reopen", i)
		}
	}
}

// setOpenFileHook installs openFileHook for one test.
func setOpenFileHook(t *testing.T, fn func(path string)) {
	t.Cleanup(func() { openFileHook = nil })
	openFileHook = fn
}

func TestOpenDuringWipe(t *testing.T) {
	// A second authd opens authd.db just before the first one's Wipe renames
	// a new database over it and releases the old file's lock. It must never
	// run on the old, unlinked file. Here the first authd wipes right after
	// each of the second one's opens, so without the check in openBolt the
	// second Open would lock (and load) an unlinked file.
	e := newEnv(t)
	s1 := e.open(t, Options{})
	populate(t, s1)
	calls := 0
	setOpenFileHook(t, func(path string) {
		if path != e.dbPath() {
			return // s1's new database
		}
		if calls++; calls <= 2 {
			if err := s1.Wipe(); err != nil {
				t.Error(err)
			}
		}
	})
	s2, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{})
	if err == nil {
		n, _ := s2.All()
		s2.Close()
		t.Fatalf("second Open succeeded during Wipe (on an unlinked file with %d credentials)", len(n))
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if all, _ := s1.All(); len(all) != 0 {
		t.Fatal("not wiped")
	}
	mustPut(t, s1, newCred(t, s1, "example.com", "alice", true))
}

func TestOpenRetriesReplacedFile(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, Options{})
	c := newCred(t, s, "example.com", "alice", true)
	mustPut(t, s, c)
	s.Close()
	replace := func() {
		data, err := os.ReadFile(e.dbPath())
		if err != nil {
			t.Fatal(err)
		}
		tmp := e.dbPath() + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, e.dbPath()); err != nil {
			t.Fatal(err)
		}
	}

	// Replaced once: the retry opens the new file.
	calls := 0
	setOpenFileHook(t, func(path string) {
		if calls++; calls == 1 {
			replace()
		}
	})
	s = e.open(t, Options{})
	if all, _ := s.All(); len(all) != 1 || !bytes.Equal(all[0].ID, c.ID) {
		t.Fatal("credential lost")
	}
	if calls != 3 {
		t.Fatalf("%d opens, want 3 (validation, its retry, the real open)", calls)
	}
	s.Close()

	// Replaced every time: give up.
	setOpenFileHook(t, func(string) { replace() })
	if _, err := Open(e.dir, e.sealer, SoftwareKeys{}, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open: %v, want ErrLocked", err)
	}
}
