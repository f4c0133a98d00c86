package uv

import (
	"context"
	"sync/atomic"
)

// AlternativeLabel is the label of the "use another device" answer that
// presence prompts offer when the context allows it (WithAlternative).
const AlternativeLabel = "Use another device"

// AlternativeChoice records that the user chose, in authd's presence prompt,
// to use another authenticator (a phone by QR code, a security key) instead
// of authd. It is safe for concurrent use.
type AlternativeChoice struct{ chosen atomic.Bool }

// Choose records the choice. A nil *AlternativeChoice ignores it.
func (a *AlternativeChoice) Choose() {
	if a != nil {
		a.chosen.Store(true)
	}
}

// Chosen reports whether the user chose another device.
func (a *AlternativeChoice) Chosen() bool { return a != nil && a.chosen.Load() }

type alternativeKey struct{}

// WithAlternative returns a context under which presence prompts also offer
// "Use another device", and the record of that choice. Only callers that can
// hand the request to another authenticator set it (the local API, for the
// browser extension, which then uses the browser's own WebAuthn); requests
// without it (CTAPHID) are asked exactly as before.
//
// A prompt whose user picks "Use another device" calls Choose and declines
// the request: its error wraps ErrDeclined.
func WithAlternative(ctx context.Context) (context.Context, *AlternativeChoice) {
	a := &AlternativeChoice{}
	return context.WithValue(ctx, alternativeKey{}, a), a
}

// Alternative returns the choice set by WithAlternative, or nil when ctx
// does not allow another device.
func Alternative(ctx context.Context) *AlternativeChoice {
	a, _ := ctx.Value(alternativeKey{}).(*AlternativeChoice)
	return a
}
