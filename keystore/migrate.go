package keystore

import (
	"bytes"
	"crypto/rand"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// migrate runs once when a store is opened, after it is loaded:
//
//   - When the Sealer is a Resealer that wants the stored data key sealed
//     anew (a store made by the software fallback, opened with a TPM), the
//     data key is rotated (rekey).
//   - When the store has a PINGuard and a PIN hash is stored, the hash is
//     moved into a new guard (migratePIN).
//
// Each step is one durable transaction, so a crash leaves the store before
// or after the step, and the next Open resumes.
func (s *Store) migrate() error {
	if r, ok := s.sealer.(Resealer); ok && r.NeedsReseal(s.sealedDEK) {
		if err := s.rekey(); err != nil {
			return err
		}
	}
	return s.migratePIN()
}

// rekey replaces the data key with a new one sealed by the Sealer and
// re-encrypts the state record and every credential's secret part under it,
// all in one transaction. The new sealed key is unsealed once before it is
// committed, so a Sealer that cannot read back what it sealed changes
// nothing.
//
// A new key rather than the old one sealed anew: whoever had a copy of the
// old sealed key and what unsealed it (the software master key file) must
// not be able to read what is stored from now on.
func (s *Store) rekey() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var dek [32]byte
	defer clear(dek[:])
	if _, err := rand.Read(dek[:]); err != nil {
		return fmt.Errorf("keystore: generate data key: %w", err)
	}
	sealed, err := s.sealer.Seal(dek[:])
	if err != nil {
		return fmt.Errorf("keystore: re-seal the data key: %w", err)
	}
	pt, err := s.sealer.Unseal(clone(sealed))
	if err != nil {
		return fmt.Errorf("keystore: re-seal the data key: the new sealed key does not unseal: %w", err)
	}
	same := bytes.Equal(pt, dek[:])
	clear(pt)
	if !same {
		return fmt.Errorf("keystore: re-seal the data key: the new sealed key unseals to another key: %w", ErrSealed)
	}

	s.mu.RLock()
	st, pin := s.state, s.pin
	entries := make([]*entry, 0, len(s.byID))
	for _, e := range s.byID {
		entries = append(entries, e)
	}
	s.mu.RUnlock()
	stData, err := encodeState(&dek, &st, pin)
	if err != nil {
		return fmt.Errorf("keystore: re-seal: encode state: %w", err)
	}
	secrets := make([][]byte, len(entries))
	records := make([][]byte, len(entries))
	for i, e := range entries {
		if secrets[i], err = sealSecrets(&dek, e.c); err != nil {
			return fmt.Errorf("keystore: re-seal credential %x: %w", e.c.ID, err)
		}
		if records[i], err = encodeRecord(newRecord(e.c, e.ceiling, secrets[i])); err != nil {
			return fmt.Errorf("keystore: re-seal credential %x: %w", e.c.ID, err)
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := s.rekeyMeta(meta, &dek); err != nil {
			return err
		}
		if err := meta.Put(keyDEK, sealed); err != nil {
			return err
		}
		if err := meta.Put(keyState, stData); err != nil {
			return err
		}
		for i, e := range entries {
			if err := putRecord(tx, e.rpHash, e.c.ID, records[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keystore: re-seal the data key: %w", err)
	}
	s.mu.Lock()
	s.dek = dek
	s.sealedDEK = sealed
	for i, e := range entries {
		e.sealed = secrets[i]
	}
	s.mu.Unlock()
	s.log.Info("keystore: data key rotated and sealed by the new sealer", "path", s.path, "credentials", len(entries))
	return nil
}

// rekeyMeta re-encrypts under dek the meta values sealed under the current
// data key, other than the state record (re-encoded by rekey). Every meta key
// must be known here: an unknown one fails the transaction (and so Open),
// rather than leaving a value that no key can open.
func (s *Store) rekeyMeta(meta *bolt.Bucket, dek *[32]byte) error {
	var reseal [][2][]byte
	err := meta.ForEach(func(k, v []byte) error {
		switch string(k) {
		case string(keyMagic), string(keyFormat), string(keyDEK), string(keyState), string(keySettings):
			return nil // clear, or handled by rekey
		case string(keyLargeBlob):
			pt, err := open(&s.dek, v, largeBlobAD)
			if err != nil {
				return corruptf("%s: large-blob array: %v", s.path, err)
			}
			ct, err := seal(dek, pt, largeBlobAD)
			clear(pt)
			if err != nil {
				return err
			}
			reseal = append(reseal, [2][]byte{clone(k), ct})
			return nil
		default:
			return fmt.Errorf("keystore: re-seal the data key: meta key %q is unknown to rekey", k)
		}
	})
	if err != nil {
		return err
	}
	for _, kv := range reseal {
		if err := meta.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// SealedDataKey returns a copy of the data key as stored, sealed by the
// Sealer (for status reports and tests: which sealer made it).
func (s *Store) SealedDataKey() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return clone(s.sealedDEK)
}

// Backends counts the stored credentials by the backend that holds their
// keys, as the KeyMaker names it (KeyBackend); a KeyMaker without names
// counts everything as BackendSoftware.
func (s *Store) Backends() map[string]int {
	kb, _ := s.keys.(KeyBackend)
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int)
	for _, e := range s.byID {
		b := BackendSoftware
		if kb != nil {
			b = kb.Backend(e.c.Alg, e.c.KeyBlob)
		}
		out[b]++
	}
	return out
}
