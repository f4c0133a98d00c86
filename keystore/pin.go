package keystore

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
)

// ErrPINLockout reports that the PIN could not be checked because the
// protecting hardware (the TPM's dictionary-attack logic) refuses attempts
// for now. No guess was consumed.
var ErrPINLockout = errors.New("keystore: PIN checks are locked out by the TPM")

// PINGuard keeps the PIN in hardware (Options.PINGuard; the TPM's PIN guard
// satisfies it through the daemon). NewPINGuard makes an object whose
// authorization is authValue; CheckPIN tries authValue against it and
// returns (false, nil) for a wrong value, which the hardware counts towards
// its dictionary-attack protection. CheckPIN returns an error wrapping
// ErrPINLockout when the hardware refuses to check at all (lockout).
type PINGuard interface {
	NewPINGuard(authValue []byte) (blob []byte, err error)
	CheckPIN(blob, authValue []byte) (ok bool, err error)
}

const (
	// pinSaltSize is the size of the salt each PIN guard's authValue is
	// derived with.
	pinSaltSize = 32
	// pinAuthInfo is the HKDF info of the authValue derivation.
	pinAuthInfo = "authd PIN guard authValue v1"
)

// pinAuthValue derives a PIN guard's authValue from the PIN hash:
// HKDF-SHA256(secret = LEFT(SHA-256(PIN), 16), salt, info = pinAuthInfo),
// 32 bytes. The salt is random per guard and stored with it under the DEK,
// so equal PINs give unrelated authValues in different stores and the hash
// itself is never handed to the hardware.
func pinAuthValue(salt []byte, hash *[16]byte) ([]byte, error) {
	return hkdf.Key(sha256.New, hash[:], salt, pinAuthInfo, 32)
}

// newPINRecord creates a guard for hash with a fresh salt.
func (s *Store) newPINRecord(hash *[16]byte) (pinRecord, error) {
	salt := make([]byte, pinSaltSize)
	if _, err := rand.Read(salt); err != nil {
		return pinRecord{}, fmt.Errorf("keystore: PIN guard salt: %w", err)
	}
	av, err := pinAuthValue(salt, hash)
	if err != nil {
		return pinRecord{}, fmt.Errorf("keystore: PIN guard authValue: %w", err)
	}
	defer clear(av)
	blob, err := s.guard.NewPINGuard(av)
	if err != nil {
		return pinRecord{}, fmt.Errorf("keystore: create PIN guard: %w", err)
	}
	return pinRecord{guard: blob, salt: salt}, nil
}

// SetPIN stores a new PIN, given as LEFT(SHA-256(PIN), 16) (CTAP 2.1
// §6.5.5.5), and applies fn to the rest of the state in the same durable
// write. The software store keeps the hash sealed under the data key. A store
// with a PINGuard keeps instead a new guard object whose authValue derives
// from the hash (see pinAuthValue) and does not store the hash at all; the
// previous guard is dropped from the state record.
func (s *Store) SetPIN(hash [16]byte, fn func(*State) error) error {
	var pin *pinRecord
	if s.guard != nil {
		p, err := s.newPINRecord(&hash)
		if err != nil {
			return err
		}
		pin = &p
		clear(hash[:])
	}
	return s.updateState(func(st *State) error {
		st.PINSet = true
		st.PINHash = hash
		if fn != nil {
			return fn(st)
		}
		return nil
	}, pin)
}

// VerifyPIN reports whether hash matches the stored PIN. A software store
// compares in constant time; a store with a PIN guard asks the guard, whose
// hardware counts a wrong PIN. It does not touch the retry counters, which
// the engine decrements before calling it. It returns an error wrapping
// ErrPINLockout when the check could not be made.
func (s *Store) VerifyPIN(hash [16]byte) (bool, error) {
	s.mu.RLock()
	closed, st, pin := s.closed, s.state, s.pin
	s.mu.RUnlock()
	if closed {
		return false, errClosed("VerifyPIN")
	}
	if !st.PINSet {
		return false, nil
	}
	if pin.guard == nil {
		return subtle.ConstantTimeCompare(hash[:], st.PINHash[:]) == 1, nil
	}
	if s.guard == nil {
		return false, errors.New("keystore: VerifyPIN: the PIN is kept by a hardware PIN guard, but none is configured")
	}
	av, err := pinAuthValue(pin.salt, &hash)
	if err != nil {
		return false, fmt.Errorf("keystore: VerifyPIN: %w", err)
	}
	defer clear(av)
	ok, err := s.guard.CheckPIN(pin.guard, av)
	if err != nil {
		return false, fmt.Errorf("keystore: VerifyPIN: %w", err)
	}
	return ok, nil
}

// PINGuarded reports whether the PIN is kept by a PIN guard (and no PIN hash
// is stored).
func (s *Store) PINGuarded() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pin.guard != nil
}

// migratePIN moves a PIN hash stored by a software store into a new guard,
// when the store now has a PINGuard: one durable write replaces the hash by
// the guard.
func (s *Store) migratePIN() error {
	s.mu.RLock()
	st, pin := s.state, s.pin
	s.mu.RUnlock()
	if s.guard == nil || !st.PINSet || pin.guard != nil {
		return nil
	}
	p, err := s.newPINRecord(&st.PINHash)
	if err != nil {
		return err
	}
	if err := s.updateState(func(*State) error { return nil }, &p); err != nil {
		return err
	}
	s.log.Info("keystore: PIN moved into the hardware PIN guard; the PIN hash is no longer stored")
	return nil
}
