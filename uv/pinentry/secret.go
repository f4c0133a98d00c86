package pinentry

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
)

// MaxSecretLen is the capacity of a Secret in bytes. CTAP 2.1 §6.5.5 caps a
// PIN at 63 bytes of UTF-8, so a longer answer is refused (ErrSecretTooLong)
// rather than truncated.
const MaxSecretLen = 64

// redacted is what every printing or marshalling of a Secret produces.
const redacted = "[REDACTED]"

// ErrSecretTooLong is returned by GetPIN when the entered PIN does not fit in
// a Secret.
var ErrSecretTooLong = errors.New("pinentry: PIN longer than 64 bytes")

// errMarshal is returned by the marshalling methods of Secret.
var errMarshal = errors.New("pinentry: a Secret cannot be marshalled")

// Secret holds a PIN in a fixed-size array, so that it is never moved or
// copied by a growing slice and can be wiped with Clear. It refuses to be
// printed (fmt, slog: "[REDACTED]") or marshalled (JSON, text, gob: an
// error). Hold it by pointer; a copied Secret is a second copy to clear.
type Secret struct {
	b [MaxSecretLen]byte
	n int
}

// Bytes returns the secret. The slice aliases the Secret: it is valid until
// Clear, and must not be retained or appended to.
func (s *Secret) Bytes() []byte { return s.b[:s.n:s.n] }

// Len returns the length of the secret in bytes.
func (s *Secret) Len() int { return s.n }

// Equal reports, in time independent of the contents, whether the secret is
// b.
func (s *Secret) Equal(b []byte) bool {
	return subtle.ConstantTimeCompare(s.b[:s.n], b) == 1
}

// Clear overwrites the secret with zeros and empties it. A nil Secret is
// ignored, so `defer pin.Clear()` is safe before the error check.
func (s *Secret) Clear() {
	if s == nil {
		return
	}
	clear(s.b[:])
	s.n = 0
}

// appendByte adds one byte, failing when the Secret is full.
func (s *Secret) appendByte(c byte) error {
	if s.n == len(s.b) {
		return ErrSecretTooLong
	}
	s.b[s.n] = c
	s.n++
	return nil
}

// The printing and marshalling methods have value receivers so that a Secret
// value, not only a pointer, is covered.

// String returns "[REDACTED]".
func (Secret) String() string { return redacted }

// GoString returns "[REDACTED]", for %#v.
func (Secret) GoString() string { return redacted }

// Format prints "[REDACTED]" for every verb (%v, %s, %x, %q, %d...).
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes slog print "[REDACTED]".
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON refuses.
func (Secret) MarshalJSON() ([]byte, error) { return nil, errMarshal }

// MarshalText refuses.
func (Secret) MarshalText() ([]byte, error) { return nil, errMarshal }

// MarshalBinary refuses.
func (Secret) MarshalBinary() ([]byte, error) { return nil, errMarshal }

// GobEncode refuses.
func (Secret) GobEncode() ([]byte, error) { return nil, errMarshal }
