package keystore

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults for Options.
const (
	DefaultMaxCredentials = 1000
	// DefaultCounterReserve is how many signature-counter values one durable
	// write reserves. An fsync costs milliseconds, a signature tens of
	// microseconds: at 4096 the write adds well under a microsecond per
	// assertion, and a crash makes a counter jump by at most 4096 of its 2^32
	// values (relying parties only require it to grow).
	DefaultCounterReserve = 4096
)

// DBFileName is the name of the database file inside the state directory.
const DBFileName = "authd.db"

// newDBFileName is where Wipe builds the replacement database before renaming
// it over DBFileName. A file left there by an interrupted Wipe is never
// loaded: Open removes it and Wipe replaces it.
const newDBFileName = DBFileName + ".new"

const (
	signerCacheSize = 128
	lockTimeout     = 100 * time.Millisecond

	dbMagic  = "authd-keystore"
	dbFormat = 1

	// minDBSize is the size of the smallest bbolt file (four 4 KiB pages).
	// Smaller files are refused before bbolt maps them.
	minDBSize = 4 * 4096
)

var (
	bucketMeta  = []byte("meta")
	bucketCreds = []byte("creds")
	bucketIDs   = []byte("ids")

	keyMagic  = []byte("magic")
	keyFormat = []byte("format")
	keyDEK    = []byte("dek")
	keyState  = []byte("state")
)

// Options tunes a Store. The zero value selects the defaults.
type Options struct {
	// MaxCredentials bounds the number of discoverable credentials
	// (default DefaultMaxCredentials). Non-discoverable credentials are not
	// counted.
	MaxCredentials int
	// Logger receives operational messages; never secrets. Default: discard.
	Logger *slog.Logger
	// Now is the clock for Created and LastUsed. Default: time.Now.
	Now func() time.Time
	// CounterReserve is how many signature counter values are reserved per
	// persisted write (default DefaultCounterReserve). 1 persists every value.
	CounterReserve uint32
	// PINGuard, if set, keeps the PIN instead of a stored PIN hash (see
	// SetPIN). A store opened with one moves a stored PIN hash into a new
	// guard.
	PINGuard PINGuard
}

// Store is authd's credential and state database. All methods are safe for
// concurrent use. Lookups are served from an in-memory index and do no disk
// I/O; writes are bbolt transactions (atomic and fsynced) and the index is
// updated only after a successful commit. Credentials returned are deep
// copies.
type Store struct {
	dir     string
	path    string
	db      *bolt.DB
	sealer  Sealer
	keys    KeyMaker
	log     *slog.Logger
	now     func() time.Time
	max     int
	reserve uint32
	cache   *signerCache
	guard   PINGuard // nil: the PIN hash is stored (sealed under the DEK)

	// wipeHook, if set (tests only), runs before each step of Wipe's
	// rebuild; an error it returns makes that step fail.
	wipeHook func(step string) error

	// wmu serialises writers: a writer holds it across building records,
	// the bbolt transaction and applying the result to the index. It also
	// guards dek and db (Wipe replaces db holding both wmu and mu).
	wmu sync.Mutex
	dek [32]byte

	// mu guards the index and state. NextCounter's fast path takes only mu.
	mu           sync.RWMutex
	closed       bool
	byID         map[string]*entry
	byRP         map[string][]*entry // newest Created first, then by ID
	discoverable int
	state        State
	pin          pinRecord // the PIN guard, when the PIN is kept by one
	sealedDEK    []byte    // the data key as stored (sealed by the Sealer)

	settings settingsCache // authenticatorConfig settings of db (extra.go)
}

// entry is one credential in the in-memory index.
type entry struct {
	c       *Credential // c.Counter is the last value handed out
	rpHash  [32]byte
	ceiling uint32 // persisted counter ceiling; c.Counter <= ceiling
	sealed  []byte // sealed secret part as stored, reused when only public fields change
	// lastUsedDirty records that c.LastUsed changed since it was persisted.
	lastUsedDirty bool
	saturated     bool // counter reached math.MaxUint32 and this was logged
}

// sentinelError carries its own message and unwraps to a sentinel.
type sentinelError struct {
	msg string
	err error
}

func (e *sentinelError) Error() string { return e.msg }
func (e *sentinelError) Unwrap() error { return e.err }

func corruptf(format string, args ...any) error {
	return &sentinelError{msg: "keystore: " + fmt.Sprintf(format, args...), err: ErrCorrupt}
}

// Open opens the store in dir, creating dir (mode 0700) and an empty
// database (DBFileName, mode 0600) if needed. dir must not be accessible to
// group or world. If another process (or another Store in this process) has
// the database open, Open fails within about 100 ms with an error wrapping
// ErrLocked. A file that is not an authd database, has an unknown format
// version, or holds a record that does not decode or decrypt yields an error
// wrapping ErrCorrupt; an existing file is then left untouched. If sealer
// cannot unseal the data key, the error wraps ErrSealed.
func Open(dir string, sealer Sealer, keys KeyMaker, opts Options) (*Store, error) {
	if sealer == nil || keys == nil {
		return nil, errors.New("keystore: Open needs a Sealer and a KeyMaker")
	}
	if opts.MaxCredentials < 0 {
		return nil, fmt.Errorf("keystore: MaxCredentials %d is negative", opts.MaxCredentials)
	}
	s := &Store{
		dir:     dir,
		path:    filepath.Join(dir, DBFileName),
		sealer:  sealer,
		keys:    keys,
		log:     opts.Logger,
		now:     opts.Now,
		max:     opts.MaxCredentials,
		reserve: opts.CounterReserve,
		cache:   newSignerCache(signerCacheSize),
		guard:   opts.PINGuard,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.max == 0 {
		s.max = DefaultMaxCredentials
	}
	if s.reserve == 0 {
		s.reserve = DefaultCounterReserve
	}
	if err := ensurePrivateDir(dir); err != nil {
		return nil, err
	}

	fi, err := os.Lstat(s.path)
	switch {
	case err == nil:
		if err := checkPrivateFile(s.path, fi); err != nil {
			return nil, err
		}
		// An existing non-empty file is validated read-only first, so that
		// nothing is ever written to a file that is not ours. (An empty file
		// is what an interrupted first start leaves behind.)
		if fi.Size() > 0 {
			if err := s.validateExisting(fi.Size()); err != nil {
				return nil, err
			}
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("keystore: %w", err)
	}

	if s.db, _, err = s.openBolt(s.path, false, false); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		s.db.Close()
		clear(s.dek[:])
		return nil, err
	}
	if err := s.migrate(); err != nil {
		s.db.Close()
		clear(s.dek[:])
		return nil, err
	}
	// We hold the lock, so no Wipe is running: a replacement database
	// left next to ours was abandoned by a crash.
	s.removeLeftover()
	return s, nil
}

// removeLeftover removes what an interrupted Wipe left at newDBFileName.
// Failing to is only logged: the file is never read, and Wipe replaces it.
func (s *Store) removeLeftover() {
	path := filepath.Join(s.dir, newDBFileName)
	switch err := os.Remove(path); {
	case err == nil:
		s.log.Info("keystore: removed the leftover of an interrupted reset", "path", path)
	case !errors.Is(err, fs.ErrNotExist):
		s.log.Warn("keystore: cannot remove the leftover of an interrupted reset", "path", path, "err", err)
	}
}

// openFileHook, if set (tests only), runs after openBolt opened a file and
// before bbolt locks it.
var openFileHook func(path string)

// openBolt opens and locks the bbolt database at path, mapping bbolt's errors
// to ours. create makes it create a new file (mode 0600), failing if path
// exists. It also returns the opened file, for fsync.
//
// Wipe renames a new, locked database over the old one and only then
// releases the old file's lock. A process that opened path just before such
// a rename could then lock the old, unlinked file and run on a ghost copy of
// the erased database. So once locked, the file must still be the one at
// path; if it is not, openBolt starts over (and then normally finds the new
// file locked: ErrLocked).
func (s *Store) openBolt(path string, readOnly, create bool) (*bolt.DB, *os.File, error) {
	for range 3 {
		db, f, err := s.openBoltOnce(path, readOnly, create)
		if err != nil {
			return nil, nil, err
		}
		ofi, err := f.Stat()
		if err != nil {
			db.Close()
			return nil, nil, fmt.Errorf("keystore: %w", err)
		}
		fi, err := os.Lstat(path)
		if err == nil && os.SameFile(fi, ofi) {
			return db, f, nil
		}
		db.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("keystore: %w", err)
		}
		s.log.Info("keystore: database file replaced while opening it; retrying", "path", path)
	}
	return nil, nil, &sentinelError{
		msg: fmt.Sprintf("keystore: state directory %s is in use by another authd (%s keeps being replaced)", s.dir, path),
		err: ErrLocked,
	}
}

func (s *Store) openBoltOnce(path string, readOnly, create bool) (db *bolt.DB, f *os.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			} else if f != nil {
				f.Close() // releases the lock if bbolt took it
			}
			db, f, err = nil, nil, corruptf("%s: damaged database (%v)", path, r)
		}
	}()
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		if create {
			flag |= os.O_CREATE | os.O_EXCL
		}
		file, err := os.OpenFile(name, flag, perm)
		if err == nil {
			f = file
			if openFileHook != nil {
				openFileHook(name)
			}
		}
		return file, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly, OpenFile: openFile})
	switch {
	case err == nil:
		return db, f, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, &sentinelError{
			msg: fmt.Sprintf("keystore: state directory %s is in use by another authd", s.dir),
			err: ErrLocked,
		}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return nil, nil, corruptf("%s is not an authd database (%v); refusing to touch it", path, err)
	default:
		return nil, nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
}

// view runs fn in a read transaction, turning a bbolt panic on a damaged
// file into ErrCorrupt.
func (s *Store) view(fn func(tx *bolt.Tx) error) error { return s.viewDB(s.db, fn) }

func (s *Store) viewDB(db *bolt.DB, fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = corruptf("%s: damaged database (%v)", s.path, r)
		}
	}()
	return db.View(fn)
}

// validateExisting checks, without writing, that the non-empty file at s.path
// is an authd database (or an empty bbolt file).
func (s *Store) validateExisting(size int64) error {
	if size < minDBSize {
		return corruptf("%s is not an authd database (%d bytes is too small); refusing to touch it", s.path, size)
	}
	db, _, err := s.openBolt(s.path, true, false)
	if err != nil {
		return err
	}
	defer db.Close()
	return s.viewDB(db, func(tx *bolt.Tx) error {
		if tx.Size() > size {
			return corruptf("%s is truncated (%d bytes, bbolt expects %d)", s.path, size, tx.Size())
		}
		_, err := s.classify(tx)
		return err
	})
}

// classify reports whether the database holds no buckets at all (a new
// file), and otherwise checks authd's magic and format version.
func (s *Store) classify(tx *bolt.Tx) (empty bool, err error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if name, _ := tx.Cursor().First(); name != nil {
			return false, corruptf("%s is a bbolt database but not authd's (no %q bucket); refusing to touch it", s.path, bucketMeta)
		}
		return true, nil
	}
	if m := meta.Get(keyMagic); !bytes.Equal(m, []byte(dbMagic)) {
		return false, corruptf("%s is a bbolt database but not authd's (bad magic); refusing to touch it", s.path)
	}
	f := meta.Get(keyFormat)
	if len(f) != 4 {
		return false, corruptf("%s: missing or malformed format version", s.path)
	}
	if v := binary.BigEndian.Uint32(f); v != dbFormat {
		return false, corruptf("%s has format version %d; this authd supports version %d", s.path, v, dbFormat)
	}
	return false, nil
}

// load initialises a new database if needed and builds the index.
func (s *Store) load() error {
	fi, err := os.Lstat(s.path)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if err := checkPrivateFile(s.path, fi); err != nil {
		return err
	}
	var empty bool
	if err := s.view(func(tx *bolt.Tx) (err error) {
		empty, err = s.classify(tx)
		return err
	}); err != nil {
		return err
	}
	if empty {
		if err := s.initialize(s.db, s.path); err != nil {
			return err
		}
		s.log.Info("keystore initialised", "path", s.path)
	}
	if err := s.view(s.loadTx); err != nil {
		return err
	}
	s.log.Info("keystore opened", "path", s.path, "credentials", len(s.byID),
		"discoverable", s.discoverable, "max_discoverable", s.max)
	return nil
}

// initialize writes a new data key (sealed), default state and empty buckets
// into db, the empty bbolt database at path, in one transaction.
func (s *Store) initialize(db *bolt.DB, path string) error {
	var dek [32]byte
	defer clear(dek[:])
	if _, err := rand.Read(dek[:]); err != nil {
		return fmt.Errorf("keystore: generate data key: %w", err)
	}
	sealedDEK, err := s.sealer.Seal(dek[:])
	if err != nil {
		return fmt.Errorf("keystore: seal data key: %w", err)
	}
	st := defaultState()
	stData, err := encodeState(&dek, &st, pinRecord{})
	if err != nil {
		return fmt.Errorf("keystore: encode state: %w", err)
	}
	var format [4]byte
	binary.BigEndian.PutUint32(format[:], dbFormat)
	err = db.Update(func(tx *bolt.Tx) error {
		if name, _ := tx.Cursor().First(); name != nil {
			return corruptf("%s changed while being initialised", path)
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketCreds); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketIDs); err != nil {
			return err
		}
		for _, kv := range [][2][]byte{
			{keyMagic, []byte(dbMagic)},
			{keyFormat, format[:]},
			{keyDEK, sealedDEK},
			{keyState, stData},
		} {
			if err := meta.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keystore: initialise %s: %w", path, err)
	}
	return nil
}

// loadTx reads the data key, the state and every credential.
func (s *Store) loadTx(tx *bolt.Tx) error {
	if _, err := s.classify(tx); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	sealedDEK := meta.Get(keyDEK)
	if sealedDEK == nil {
		return corruptf("%s: data key missing", s.path)
	}
	dek, err := s.sealer.Unseal(clone(sealedDEK))
	if err != nil {
		return fmt.Errorf("keystore: %s: cannot unseal the data key (different master key or TPM?): %w", s.path, err)
	}
	if len(dek) != len(s.dek) {
		clear(dek)
		return corruptf("%s: data key is %d bytes, want %d", s.path, len(dek), len(s.dek))
	}
	copy(s.dek[:], dek)
	clear(dek)
	s.sealedDEK = clone(sealedDEK)

	stData := meta.Get(keyState)
	if stData == nil {
		return corruptf("%s: state record missing", s.path)
	}
	if s.state, s.pin, err = decodeState(&s.dek, stData); err != nil {
		return corruptf("%s: state record: %v", s.path, err)
	}

	creds, ids := tx.Bucket(bucketCreds), tx.Bucket(bucketIDs)
	if creds == nil || ids == nil {
		return corruptf("%s: credential buckets missing", s.path)
	}
	s.byID = make(map[string]*entry)
	s.byRP = make(map[string][]*entry)
	s.discoverable = 0
	err = creds.ForEach(func(h, v []byte) error {
		rb := creds.Bucket(h)
		if v != nil || rb == nil || len(h) != 32 {
			return corruptf("%s: unexpected key %x in %q", s.path, h, bucketCreds)
		}
		return rb.ForEach(func(id, data []byte) error {
			if data == nil {
				return corruptf("%s: credential %x: unexpected nested bucket", s.path, id)
			}
			rec, err := decodeRecord(data)
			if err != nil {
				return corruptf("%s: credential %x: %v", s.path, id, err)
			}
			rh := rpHash(rec.RPID)
			switch {
			case !bytes.Equal(rec.ID, id):
				return corruptf("%s: credential %x: record holds id %x", s.path, id, rec.ID)
			case !bytes.Equal(rh[:], h):
				return corruptf("%s: credential %x: stored under the wrong relying party", s.path, id)
			case !bytes.Equal(ids.Get(id), h):
				return corruptf("%s: credential %x: id index entry missing or wrong", s.path, id)
			case s.byID[string(id)] != nil:
				return corruptf("%s: credential %x: stored twice", s.path, id)
			}
			c, err := openRecord(&s.dek, rec)
			if err != nil {
				return corruptf("%s: credential %x: %v", s.path, id, err)
			}
			s.indexLocked(&entry{c: c, rpHash: rh, ceiling: rec.Ceiling, sealed: clone(rec.Sealed)}, false)
			return nil
		})
	})
	if err != nil {
		return err
	}
	if n := ids.Stats().KeyN; n != len(s.byID) {
		return corruptf("%s: id index has %d entries for %d credentials", s.path, n, len(s.byID))
	}
	for _, l := range s.byRP {
		sortEntries(l)
	}
	return nil
}

// sortEntries orders newest Created first, then by ID, for a stable order.
func sortEntries(l []*entry) {
	slices.SortFunc(l, compareEntries)
}

func compareEntries(a, b *entry) int {
	if c := b.c.Created.Compare(a.c.Created); c != 0 {
		return c
	}
	return bytes.Compare(a.c.ID, b.c.ID)
}

// indexLocked adds e to the index; sorted keeps its RP list ordered.
func (s *Store) indexLocked(e *entry, sorted bool) {
	s.byID[string(e.c.ID)] = e
	l := s.byRP[e.c.RPID]
	if sorted {
		i, _ := slices.BinarySearchFunc(l, e, compareEntries)
		l = slices.Insert(l, i, e)
	} else {
		l = append(l, e)
	}
	s.byRP[e.c.RPID] = l
	if e.c.Discoverable {
		s.discoverable++
	}
}

func (s *Store) unindexLocked(e *entry) {
	delete(s.byID, string(e.c.ID))
	l := slices.DeleteFunc(s.byRP[e.c.RPID], func(x *entry) bool { return x == e })
	if len(l) == 0 {
		delete(s.byRP, e.c.RPID)
	} else {
		s.byRP[e.c.RPID] = l
	}
	if e.c.Discoverable {
		s.discoverable--
	}
}

// putRecord writes a record and its id index entry.
func putRecord(tx *bolt.Tx, h [32]byte, id, data []byte) error {
	rb, err := tx.Bucket(bucketCreds).CreateBucketIfNotExists(h[:])
	if err != nil {
		return err
	}
	if err := rb.Put(id, data); err != nil {
		return err
	}
	return tx.Bucket(bucketIDs).Put(id, h[:])
}

// deleteRecord removes a record, its id index entry and an emptied RP bucket.
func deleteRecord(tx *bolt.Tx, h [32]byte, id []byte) error {
	creds := tx.Bucket(bucketCreds)
	if rb := creds.Bucket(h[:]); rb != nil {
		if err := rb.Delete(id); err != nil {
			return err
		}
		if k, _ := rb.Cursor().First(); k == nil {
			if err := creds.DeleteBucket(h[:]); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketIDs).Delete(id)
}

func errClosed(op string) error { return fmt.Errorf("keystore: %s: %w", op, ErrClosed) }

func errNotFound(op string, id []byte) error {
	return fmt.Errorf("keystore: %s: credential %x: %w", op, id, ErrNotFound)
}

// satAdd returns a+b saturated at math.MaxUint32.
func satAdd(a, b uint32) uint32 {
	if a > math.MaxUint32-b {
		return math.MaxUint32
	}
	return a + b
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// NewKey creates a key pair through the store's KeyMaker.
func (s *Store) NewKey(alg int) (blob []byte, pub crypto.PublicKey, err error) {
	return s.keys.NewKey(alg)
}

// Signer returns a signer for c's private key. For a stored credential the
// stored key blob is used (c.KeyBlob is ignored) and the signer is cached, so
// repeated calls return the same object. For a credential not (yet) in the
// store, c.Alg and c.KeyBlob are used and nothing is cached; without a
// KeyBlob the error wraps ErrNotFound.
func (s *Store) Signer(c *Credential) (crypto.Signer, error) {
	if c == nil {
		return nil, errors.New("keystore: Signer: nil credential")
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, errClosed("Signer")
	}
	e := s.byID[string(c.ID)]
	var alg int
	var blob []byte
	if e != nil {
		alg, blob = e.c.Alg, e.c.KeyBlob
	}
	s.mu.RUnlock()
	if e == nil {
		if len(c.KeyBlob) == 0 {
			return nil, errNotFound("Signer", c.ID)
		}
		return s.keys.Signer(c.Alg, c.KeyBlob)
	}
	if sg := s.cache.get(c.ID, e); sg != nil {
		return sg, nil
	}
	sg, err := s.keys.Signer(alg, blob)
	if err != nil {
		return nil, fmt.Errorf("keystore: signer for credential %x: %w", c.ID, err)
	}
	s.cache.put(c.ID, e, sg)
	return sg, nil
}

func validateCredential(c *Credential) error {
	switch {
	case c == nil:
		return errors.New("nil credential")
	case len(c.ID) == 0 || len(c.ID) > maxIDLen:
		return fmt.Errorf("credential id length %d out of range 1..%d", len(c.ID), maxIDLen)
	case c.RPID == "" || len(c.RPID) > maxRPIDLen:
		return fmt.Errorf("rp id length %d out of range 1..%d", len(c.RPID), maxRPIDLen)
	case len(c.KeyBlob) == 0:
		return errors.New("credential has no key blob")
	case c.CredProtect > 3:
		return fmt.Errorf("credProtect %d out of range", c.CredProtect)
	}
	return nil
}

// Put inserts c, or replaces the credential with the same ID. When c is
// discoverable, any other discoverable credential of the same RPID and UserID
// is deleted in the same transaction (CTAP: a new resident credential for the
// same rp and user overwrites the old one). It fails with ErrFull if this
// would push the number of discoverable credentials above MaxDiscoverable.
//
// The stored copy gets Created = now when c.Created is zero. Its counter is
// max(c.Counter, the replaced credential's counter), so replacing a
// credential never lets its signature counter go backwards, and a counter
// reservation starting there is persisted with it. c is not modified.
func (s *Store) Put(c *Credential) error {
	if err := validateCredential(c); err != nil {
		return fmt.Errorf("keystore: Put: %w", err)
	}
	c = c.Clone()
	if c.Created.IsZero() {
		c.Created = s.now()
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()

	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed("Put")
	}
	old := s.byID[string(c.ID)]
	var replaced []*entry
	if c.Discoverable {
		for _, e := range s.byRP[c.RPID] {
			if e != old && e.c.Discoverable && bytes.Equal(e.c.UserID, c.UserID) {
				replaced = append(replaced, e)
			}
		}
	}
	count := s.discoverable - len(replaced)
	if old != nil && old.c.Discoverable {
		count--
	}
	if c.Discoverable {
		count++
	}
	if c.Discoverable && count > s.max && count > s.discoverable {
		s.mu.RUnlock()
		return fmt.Errorf("keystore: Put: %d discoverable credentials stored: %w", s.discoverable, ErrFull)
	}
	ceiling := satAdd(c.Counter, s.reserve)
	if old != nil {
		c.Counter = max(c.Counter, old.c.Counter)
		c.LastUsed = later(c.LastUsed, old.c.LastUsed)
		ceiling = max(satAdd(c.Counter, s.reserve), old.ceiling)
	}
	s.mu.RUnlock()

	sealed, err := sealSecrets(&s.dek, c)
	if err != nil {
		return fmt.Errorf("keystore: Put: seal: %w", err)
	}
	data, err := encodeRecord(newRecord(c, ceiling, sealed))
	if err != nil {
		return fmt.Errorf("keystore: Put: encode: %w", err)
	}
	h := rpHash(c.RPID)
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, e := range replaced {
			if err := deleteRecord(tx, e.rpHash, e.c.ID); err != nil {
				return err
			}
		}
		if old != nil && old.rpHash != h {
			if err := deleteRecord(tx, old.rpHash, old.c.ID); err != nil {
				return err
			}
		}
		return putRecord(tx, h, c.ID, data)
	})
	if err != nil {
		return fmt.Errorf("keystore: Put: %w", err)
	}

	ne := &entry{c: c, rpHash: h, ceiling: ceiling, sealed: sealed}
	s.mu.Lock()
	for _, e := range replaced {
		s.unindexLocked(e)
	}
	if old != nil {
		// NextCounter may have advanced old (within old.ceiling <= ceiling).
		ne.c.Counter = max(ne.c.Counter, old.c.Counter)
		if old.c.LastUsed.After(ne.c.LastUsed) {
			ne.c.LastUsed, ne.lastUsedDirty = old.c.LastUsed, true
		}
		ne.saturated = old.saturated
		s.unindexLocked(old)
	}
	s.indexLocked(ne, true)
	s.mu.Unlock()

	for _, e := range replaced {
		s.cache.drop(e.c.ID)
		s.log.Info("discoverable credential replaced", "rp", c.RPID)
	}
	if old != nil {
		s.cache.drop(c.ID)
	}
	return nil
}

// Get returns the credential with the given ID or an error wrapping ErrNotFound.
func (s *Store) Get(id []byte) (*Credential, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed("Get")
	}
	e := s.byID[string(id)]
	if e == nil {
		return nil, errNotFound("Get", id)
	}
	return e.c.Clone(), nil
}

// ByRP returns every credential (discoverable or not) of rpID, newest Created
// first. No credentials is an empty result, not an error.
func (s *Store) ByRP(rpID string) ([]*Credential, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed("ByRP")
	}
	l := s.byRP[rpID]
	out := make([]*Credential, len(l))
	for i, e := range l {
		out[i] = e.c.Clone()
	}
	return out, nil
}

// RPs summarises the relying parties having at least one discoverable
// credential, ordered by RP ID. Name is the RPName of the newest
// discoverable credential.
func (s *Store) RPs() ([]RP, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed("RPs")
	}
	var out []RP
	for id, l := range s.byRP {
		rp := RP{ID: id}
		for _, e := range l {
			if e.c.Discoverable {
				if rp.Discoverable == 0 {
					rp.Name = e.c.RPName
				}
				rp.Discoverable++
			}
		}
		if rp.Discoverable > 0 {
			out = append(out, rp)
		}
	}
	slices.SortFunc(out, func(a, b RP) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// All returns every credential, ordered by RP ID and then as ByRP.
func (s *Store) All() ([]*Credential, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed("All")
	}
	rps := make([]string, 0, len(s.byRP))
	for id := range s.byRP {
		rps = append(rps, id)
	}
	slices.Sort(rps)
	out := make([]*Credential, 0, len(s.byID))
	for _, id := range rps {
		for _, e := range s.byRP[id] {
			out = append(out, e.c.Clone())
		}
	}
	return out, nil
}

// DiscoverableCount returns the number of discoverable credentials stored.
func (s *Store) DiscoverableCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.discoverable
}

// MaxDiscoverable returns the discoverable credential limit.
func (s *Store) MaxDiscoverable() int { return s.max }

// Delete removes the credential with the given ID.
func (s *Store) Delete(id []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed("Delete")
	}
	e := s.byID[string(id)]
	s.mu.RUnlock()
	if e == nil {
		return errNotFound("Delete", id)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return deleteRecord(tx, e.rpHash, e.c.ID) }); err != nil {
		return fmt.Errorf("keystore: Delete: %w", err)
	}
	s.mu.Lock()
	s.unindexLocked(e)
	s.mu.Unlock()
	s.cache.drop(id)
	return nil
}

// UpdateUser replaces the user name and display name of a credential.
func (s *Store) UpdateUser(id []byte, name, displayName string) error {
	return s.modify("UpdateUser", id, true, func(c *Credential) {
		c.UserName, c.UserDisplayName = name, displayName
	})
}

// SetProtected sets the Protected flag of a credential.
func (s *Store) SetProtected(id []byte, p bool) error {
	return s.modify("SetProtected", id, false, func(c *Credential) { c.Protected = p })
}

// modify persists fn's change to a credential's non-counter fields; reseal
// says whether fn touches secret fields.
func (s *Store) modify(op string, id []byte, reseal bool, fn func(*Credential)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed(op)
	}
	e := s.byID[string(id)]
	var c *Credential
	if e != nil {
		c = e.c.Clone()
	}
	s.mu.RUnlock()
	if e == nil {
		return errNotFound(op, id)
	}
	fn(c)
	sealed := e.sealed
	if reseal {
		var err error
		if sealed, err = sealSecrets(&s.dek, c); err != nil {
			return fmt.Errorf("keystore: %s: seal: %w", op, err)
		}
	}
	data, err := encodeRecord(newRecord(c, e.ceiling, sealed))
	if err != nil {
		return fmt.Errorf("keystore: %s: encode: %w", op, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return putRecord(tx, e.rpHash, c.ID, data) }); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	s.mu.Lock()
	// Keep what NextCounter changed meanwhile.
	c.Counter, c.LastUsed = e.c.Counter, e.c.LastUsed
	e.c, e.sealed = c, sealed
	s.mu.Unlock()
	return nil
}

// NextCounter returns the credential's next signature counter value (1 for a
// new credential, then strictly increasing) and sets its LastUsed to now.
// Values come from memory within the persisted reservation; only when a
// reservation is used up is a new ceiling written (one fsync per
// CounterReserve values). At math.MaxUint32 the counter saturates: that value
// is returned again (logged once per credential), which relying parties may
// treat as a cloned authenticator.
func (s *Store) NextCounter(id []byte) (uint32, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, errClosed("NextCounter")
	}
	e := s.byID[string(id)]
	if e == nil {
		s.mu.Unlock()
		return 0, errNotFound("NextCounter", id)
	}
	v, ok := s.takeLocked(e)
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	return s.raiseCeiling(id)
}

// takeLocked hands out the next counter value of e if it is within the
// reservation (or saturated).
func (s *Store) takeLocked(e *entry) (uint32, bool) {
	switch {
	case e.c.Counter < e.ceiling:
		e.c.Counter++
	case e.c.Counter == math.MaxUint32:
		if !e.saturated {
			e.saturated = true
			s.log.Warn("signature counter saturated at its maximum; it will repeat",
				"rp", e.c.RPID, "credential", fmt.Sprintf("%x", e.c.ID))
		}
	default:
		return 0, false
	}
	e.c.LastUsed = s.now()
	e.lastUsedDirty = true
	return e.c.Counter, true
}

// raiseCeiling persists a new reservation for a credential whose reservation
// is used up, then hands out the next value.
func (s *Store) raiseCeiling(id []byte) (uint32, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, errClosed("NextCounter")
	}
	e := s.byID[string(id)]
	if e == nil {
		s.mu.Unlock()
		return 0, errNotFound("NextCounter", id)
	}
	// Another caller may have raised it while we waited for wmu.
	if v, ok := s.takeLocked(e); ok {
		s.mu.Unlock()
		return v, nil
	}
	ceiling := satAdd(e.c.Counter+1, s.reserve-1)
	c := e.c.Clone()
	c.LastUsed = s.now()
	s.mu.Unlock()

	data, err := encodeRecord(newRecord(c, ceiling, e.sealed))
	if err != nil {
		return 0, fmt.Errorf("keystore: NextCounter: encode: %w", err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return putRecord(tx, e.rpHash, c.ID, data) }); err != nil {
		return 0, fmt.Errorf("keystore: NextCounter: persist counter reservation: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Writers hold wmu, so e is still indexed and its counter still equals
	// the old ceiling.
	e.ceiling = ceiling
	v, _ := s.takeLocked(e)
	return v, nil
}

// State returns a copy of the authenticator state.
func (s *Store) State() State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.state
}

// UpdateState applies fn to a copy of the state and persists the result
// (fsynced) before it becomes visible. If fn returns an error, nothing
// changes and that error is returned as is. fn runs with the store's write
// lock held: it must not call the Store's writing methods.
func (s *Store) UpdateState(fn func(*State) error) error {
	return s.updateState(fn, nil)
}

// updateState is UpdateState; a non-nil pin replaces the PIN guard in the
// same write. While the PIN is kept by a guard, State.PINHash stays zero.
func (s *Store) updateState(fn func(*State) error, pin *pinRecord) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed("UpdateState")
	}
	st, newPIN := s.state, s.pin
	s.mu.RUnlock()
	if pin != nil {
		newPIN = *pin
	}
	if err := fn(&st); err != nil {
		return err
	}
	if newPIN.guard != nil {
		st.PINHash = [16]byte{}
	}
	data, err := encodeState(&s.dek, &st, newPIN)
	if err != nil {
		return fmt.Errorf("keystore: UpdateState: encode: %w", err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyState, data) }); err != nil {
		return fmt.Errorf("keystore: UpdateState: %w", err)
	}
	s.mu.Lock()
	s.state, s.pin = st, newPIN
	s.mu.Unlock()
	return nil
}

// Wipe implements authenticatorReset: afterwards the store holds no
// credential, the state is the default and a new data key is in use.
//
// Deleting records inside the database would not be enough: bbolt keeps
// freed pages in the file, so the old sealed data key and sealed records
// would stay in authd.db, and a copy of the state directory (with an
// unchanged software master key) could still recover the erased passkeys.
// So Wipe builds a new database from scratch next to the old one
// (newDBFileName: fresh data key sealed by the Sealer, default state),
// locks and fsyncs it, renames it over DBFileName, fsyncs the directory, and
// only then switches the store to it and closes the old file. At every
// point DBFileName is either the complete old or the complete new database.
// The state directory stays locked throughout: the new file is locked before
// the rename and the old one unlocked after it. A process that opened the
// old file just before the rename could lock it once it is unlinked and
// released; openBolt detects that and starts over (a bbolt tool or an authd
// without that check could end up on the unlinked old file, which then no
// longer affects authd.db).
//
// If any step before the rename fails, nothing has changed: the old
// database stays in use and an error is returned. If syncing the directory
// after the rename fails, the store has been wiped and the error is
// returned anyway, as a crash could still bring the old database back;
// calling Wipe again is safe.
//
// This purges the old state from the database file, not from the storage
// device: the file system frees the old file's blocks without overwriting
// them, and other hard links to authd.db or backups keep the old data.
func (s *Store) Wipe() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return errClosed("Wipe")
	}
	newPath := filepath.Join(s.dir, newDBFileName)
	db, fresh, err := s.buildFresh(newPath)
	if err != nil {
		return wipeFailed(err)
	}
	defer clear(fresh.dek[:])
	if err = s.wipeStep("rename"); err == nil {
		err = os.Rename(newPath, s.path)
	}
	if err != nil {
		db.Close()
		os.Remove(newPath)
		return wipeFailed(err)
	}

	// DBFileName now is the new database: switch to it whatever happens.
	syncErr := syncDir(s.dir)
	s.mu.Lock()
	old := s.db
	s.db = db
	s.dek = fresh.dek
	s.byID, s.byRP, s.discoverable, s.state = fresh.byID, fresh.byRP, fresh.discoverable, fresh.state
	s.pin, s.sealedDEK = fresh.pin, fresh.sealedDEK
	s.mu.Unlock()
	s.cache.clear()
	if err := old.Close(); err != nil {
		s.log.Warn("keystore: closing the replaced database", "err", err)
	}
	if syncErr != nil {
		s.log.Error("keystore wiped, but the reset may not survive a crash", "dir", s.dir, "err", syncErr)
		return fmt.Errorf("keystore: Wipe: store wiped, but syncing %s failed, so a crash may undo it: %w", s.dir, syncErr)
	}
	s.log.Info("keystore wiped")
	return nil
}

// buildFresh creates a new database at path, initialised like a new store's,
// fsyncs it and loads it as Open would (which also checks that the new data
// key unseals). On success db holds the file's lock and fresh holds the new
// data key, index and state; on failure path is removed.
func (s *Store) buildFresh(path string) (db *bolt.DB, fresh *Store, err error) {
	defer func() {
		if err == nil {
			return
		}
		if db != nil {
			db.Close()
		}
		if fresh != nil {
			clear(fresh.dek[:])
		}
		os.Remove(path)
	}()
	// A leftover of an interrupted Wipe: never read, just replaced.
	if err = s.wipeStep("remove"); err != nil {
		return nil, nil, err
	}
	if err = os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("remove leftover: %w", err)
	}
	if err = s.wipeStep("create"); err != nil {
		return nil, nil, err
	}
	db, f, err := s.openBolt(path, false, true)
	if err != nil {
		return nil, nil, err
	}
	if err = s.wipeStep("initialise"); err != nil {
		return db, nil, err
	}
	if err = s.initialize(db, path); err != nil {
		return db, nil, err
	}
	if err = s.wipeStep("sync"); err != nil {
		return db, nil, err
	}
	if err = f.Sync(); err != nil {
		return db, nil, fmt.Errorf("sync %s: %w", path, err)
	}
	if err = s.wipeStep("load"); err != nil {
		return db, nil, err
	}
	fresh = &Store{dir: s.dir, path: path, sealer: s.sealer}
	if err = fresh.viewDB(db, fresh.loadTx); err != nil {
		return db, fresh, err
	}
	if len(fresh.byID) != 0 || fresh.state != defaultState() || fresh.pin.guard != nil {
		return db, fresh, corruptf("%s: not empty after initialisation", path)
	}
	return db, fresh, nil
}

// wipeFailed reports a Wipe that changed nothing.
func wipeFailed(err error) error {
	return &sentinelError{
		msg: "keystore: Wipe failed, nothing was erased: " + strings.TrimPrefix(err.Error(), "keystore: "),
		err: err,
	}
}

func (s *Store) wipeStep(step string) error {
	if s.wipeHook == nil {
		return nil
	}
	if err := s.wipeHook(step); err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	return nil
}

// Close persists every credential's exact counter (as its ceiling) and last
// use time, then closes the database. Further calls fail with ErrClosed;
// Close itself is idempotent.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true

	type write struct {
		h        [32]byte
		id, data []byte
	}
	var writes []write
	var errs []error
	for _, e := range s.byID {
		if e.ceiling == e.c.Counter && !e.lastUsedDirty {
			continue
		}
		data, err := encodeRecord(newRecord(e.c, e.c.Counter, e.sealed))
		if err != nil {
			errs = append(errs, fmt.Errorf("keystore: Close: encode credential %x: %w", e.c.ID, err))
			continue
		}
		writes = append(writes, write{e.rpHash, e.c.ID, data})
	}
	if len(writes) > 0 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, w := range writes {
				if err := putRecord(tx, w.h, w.id, w.data); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// The persisted ceilings still cover every value handed out.
			errs = append(errs, fmt.Errorf("keystore: Close: persist counters: %w", err))
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("keystore: Close: %w", err))
	}
	clear(s.dek[:])
	s.byID, s.byRP, s.discoverable, s.state = nil, nil, 0, State{}
	s.pin = pinRecord{}
	s.cache.clear()
	return errors.Join(errs...)
}
