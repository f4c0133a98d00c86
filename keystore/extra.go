package keystore

import (
	"fmt"
	"sync"

	"github.com/authd/authd/internal/cbor"
	bolt "go.etcd.io/bbolt"
)

// Settings is authenticatorConfig state (CTAP 2.1 §6.11) beyond State.
type Settings struct {
	AlwaysUV          bool     `cbor:"1,keyasint,omitempty"`
	MinPINLengthRPIDs []string `cbor:"2,keyasint,omitempty"`
	// FingerNames are bio-enrollment friendly names, by template ID (the
	// fingerprint service keeps the prints; authd keeps the names).
	FingerNames map[string]string `cbor:"3,keyasint,omitempty"`
}

var (
	keySettings  = []byte("settings")
	keyLargeBlob = []byte("largeblob")
)

// emptyLargeBlobArray is the initial serialized large-blob array: CBOR [] and
// LEFT(SHA-256(h'80'), 16) (CTAP 2.1 §6.10.2).
var emptyLargeBlobArray = []byte{0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c}

// getMeta reads one meta key under the read lock.
func (s *Store) getMeta(op string, key []byte) (data []byte, dek [32]byte, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, dek, errClosed(op)
	}
	err = s.viewDB(s.db, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(key); v != nil {
			data = append([]byte(nil), v...)
		}
		return nil
	})
	return data, s.dek, err
}

// putMeta writes one meta key durably; the caller holds wmu.
func (s *Store) putMeta(op string, key, value []byte) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return errClosed(op)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(key, value) }); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	return nil
}

// settingsCache keeps the decoded settings of one database file: every
// getAssertion consults alwaysUv, and a read transaction plus a CBOR decode
// per sign-in would be work done again and again on the hot path. Wipe and
// rekey open a new *bolt.DB, which invalidates the entry by itself.
type settingsCache struct {
	mu  sync.Mutex
	db  *bolt.DB
	st  Settings
	gen uint64 // bumped by every UpdateSettings; a read that raced one is not cached
}

// Settings returns the authenticatorConfig settings (defaults when never set).
func (s *Store) Settings() (Settings, error) {
	s.mu.RLock()
	db, closed := s.db, s.closed
	s.mu.RUnlock()
	if closed {
		return Settings{}, errClosed("Settings")
	}
	s.settings.mu.Lock()
	if s.settings.db != nil && s.settings.db == db {
		st := s.settings.st.clone()
		s.settings.mu.Unlock()
		return st, nil
	}
	gen := s.settings.gen
	s.settings.mu.Unlock()
	data, _, err := s.getMeta("Settings", keySettings)
	var st Settings
	if err != nil {
		return st, err
	}
	if data != nil {
		if err := cbor.UnmarshalRecord(data, &st); err != nil {
			return Settings{}, fmt.Errorf("keystore: settings: %w: %v", ErrCorrupt, err)
		}
	}
	s.settings.mu.Lock()
	if s.settings.gen == gen {
		s.settings.db, s.settings.st = db, st.clone()
	}
	s.settings.mu.Unlock()
	return st, nil
}

func (st Settings) clone() Settings {
	st.MinPINLengthRPIDs = append([]string(nil), st.MinPINLengthRPIDs...)
	if st.FingerNames != nil {
		names := make(map[string]string, len(st.FingerNames))
		for k, v := range st.FingerNames {
			names[k] = v
		}
		st.FingerNames = names
	}
	return st
}

// UpdateSettings applies fn to a copy of the settings and stores the result
// durably; if fn fails nothing changes.
func (s *Store) UpdateSettings(fn func(*Settings) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.Settings()
	if err != nil {
		return err
	}
	if err := fn(&st); err != nil {
		return err
	}
	data, err := cbor.Marshal(&st)
	if err != nil {
		return err
	}
	err = s.putMeta("UpdateSettings", keySettings, data)
	s.settings.mu.Lock()
	s.settings.db = nil // re-read after the write, whatever its outcome
	s.settings.gen++
	s.settings.mu.Unlock()
	return err
}

var largeBlobAD = []byte("authd-largeblob-v1")

// LargeBlobArray returns the serialized large-blob array (CTAP 2.1 §6.10),
// the 17-byte empty array when none was ever written. It is stored sealed
// under the data key.
func (s *Store) LargeBlobArray() ([]byte, error) {
	data, dek, err := s.getMeta("LargeBlobArray", keyLargeBlob)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return append([]byte(nil), emptyLargeBlobArray...), nil
	}
	pt, err := open(&dek, data, largeBlobAD)
	if err != nil {
		return nil, fmt.Errorf("keystore: large-blob array: %w", err)
	}
	return pt, nil
}

// SetLargeBlobArray replaces the serialized large-blob array in one durable
// transaction: a crash leaves the old array or the new one.
func (s *Store) SetLargeBlobArray(array []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	sealed, err := seal(&s.dek, array, largeBlobAD)
	if err != nil {
		return err
	}
	return s.putMeta("SetLargeBlobArray", keyLargeBlob, sealed)
}
