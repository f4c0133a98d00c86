package keystore

import (
	"crypto/subtle"
	"errors"
)

// ErrPINLockout reports that the PIN could not be checked because the
// protecting hardware (the TPM's dictionary-attack logic) refuses attempts
// for now. No guess was consumed.
var ErrPINLockout = errors.New("keystore: PIN checks are locked out by the TPM")

// SetPIN stores a new PIN, given as LEFT(SHA-256(PIN), 16) (CTAP 2.1
// §6.5.5.5), and applies fn to the rest of the state in the same durable
// write. The software store keeps the hash sealed under the data key; a TPM
// store keeps instead an object whose authorisation derives from it.
func (s *Store) SetPIN(hash [16]byte, fn func(*State) error) error {
	return s.UpdateState(func(st *State) error {
		st.PINSet = true
		st.PINHash = hash
		if fn != nil {
			return fn(st)
		}
		return nil
	})
}

// VerifyPIN reports whether hash matches the stored PIN, comparing in
// constant time. It does not touch the retry counters, which the engine
// decrements before calling it. It returns an error wrapping ErrPINLockout
// when the check could not be made.
func (s *Store) VerifyPIN(hash [16]byte) (bool, error) {
	st := s.State()
	if !st.PINSet {
		return false, nil
	}
	return subtle.ConstantTimeCompare(hash[:], st.PINHash[:]) == 1, nil
}
