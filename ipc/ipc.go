// Package ipc is authd's local platform API contract: the operations the
// session D-Bus service (ipc/dbus) and authctl expose, their argument and
// result types, and the WebAuthn error names they fail with. It imports no
// other authd package; internal/daemon implements Backend.
package ipc

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Peer is the process calling the API, as the bus reported it.
type Peer struct {
	UID uint32
	PID uint32
	Exe string // executable name, "" when unknown (shown in prompts, logged)
}

// Hints are the optional a{sv} hints of MakeCredential/GetAssertion.
type Hints struct {
	TopOrigin    string        // top_origin: the top-level origin for cross-origin iframes
	Timeout      time.Duration // timeout_ms
	ParentWindow string        // parent_window (xdg-foreign style handle)
}

// CredentialInfo describes one stored passkey for management.
type CredentialInfo struct {
	ID              []byte
	RPID            string
	RPName          string
	UserName        string
	UserDisplayName string
	Created         time.Time
	LastUsed        time.Time
	Discoverable    bool
	Backend         string // "tpm" or "software"
	Protected       bool
}

// Backend is what the local API serves. Every method returns nil or an
// *Error (wrapped errors are mapped to UnknownError at the boundary).
// MakeCredential and GetAssertion take WebAuthn L3
// PublicKeyCredentialCreationOptionsJSON / PublicKeyCredentialRequestOptionsJSON
// and return RegistrationResponseJSON / AuthenticationResponseJSON.
// Cancellation of ctx (caller disconnected, Cancel()) ends them with AbortError.
type Backend interface {
	MakeCredential(ctx context.Context, peer Peer, origin string, options []byte, hints Hints) ([]byte, error)
	GetAssertion(ctx context.Context, peer Peer, origin string, options []byte, hints Hints) ([]byte, error)
	Capabilities(ctx context.Context) (map[string]bool, error)
	ListCredentials(ctx context.Context, filter string) ([]CredentialInfo, error)
	DeleteCredential(ctx context.Context, id []byte) error
	SetProtected(ctx context.Context, id []byte, protected bool) error
	Status(ctx context.Context) (map[string]any, error)
	// SetPIN, ChangePIN and Reset collect PINs and confirmations with authd's
	// own prompts: PINs never travel as API arguments.
	SetPIN(ctx context.Context, peer Peer) error
	ChangePIN(ctx context.Context, peer Peer) error
	Reset(ctx context.Context, peer Peer) error
}

// WebAuthn error names (DOMException names, WebAuthn L3 §5.1.3, §5.1.4).
const (
	NotAllowedError   = "NotAllowedError"
	InvalidStateError = "InvalidStateError"
	SecurityError     = "SecurityError"
	NotSupportedError = "NotSupportedError"
	ConstraintError   = "ConstraintError"
	AbortError        = "AbortError"
	TypeError         = "TypeError"
	UnknownError      = "UnknownError"
)

// UseAnotherDevice is not a DOMException: the user chose another
// authenticator in authd's prompt; the client should use the platform's own
// WebAuthn (phone by QR code, security key) with the original request. Only
// MakeCredential and GetAssertion return it.
const UseAnotherDevice = "UseAnotherDevice"

// Error is an API error: a DOMException name and a human message. On D-Bus
// it is the error org.authd.Error.<Name>.
type Error struct {
	Name    string
	Message string
}

func (e *Error) Error() string { return e.Name + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(name, format string, args ...any) *Error {
	return &Error{Name: name, Message: fmt.Sprintf(format, args...)}
}

// NameOf returns the DOMException name for err (UnknownError for errors that
// carry none).
func NameOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Name
	}
	return UnknownError
}
