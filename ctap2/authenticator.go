package ctap2

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/keystore"
)

// CredentialStore persists credentials. *keystore.Store satisfies it.
// Get returns an error wrapping keystore.ErrNotFound for unknown IDs; Put
// returns one wrapping keystore.ErrFull when no discoverable slot is left
// (→ CTAP2_ERR_KEY_STORE_FULL). NextCounter never returns the same value twice
// for a credential, even across a crash.
type CredentialStore interface {
	NewKey(alg int) (blob []byte, pub crypto.PublicKey, err error)
	Signer(c *keystore.Credential) (crypto.Signer, error)
	Put(c *keystore.Credential) error
	Get(id []byte) (*keystore.Credential, error)
	ByRP(rpID string) ([]*keystore.Credential, error)
	RPs() ([]keystore.RP, error)
	Delete(id []byte) error
	UpdateUser(id []byte, name, displayName string) error
	NextCounter(id []byte) (uint32, error)
	DiscoverableCount() int
	MaxDiscoverable() int
}

// StateStore persists the authenticator state (PIN, retry counters). UpdateState
// applies fn to a copy and makes the result durable before returning; if fn or
// the write fails nothing changes. Wipe erases every credential and resets the
// state (authenticatorReset).
//
// SetPIN stores a PIN hash (LEFT(SHA-256(PIN), 16)) and applies fn in the same
// write; VerifyPIN compares a hash with the stored PIN (an error wrapping
// keystore.ErrPINLockout means the check could not be made). The engine never
// reads the stored hash itself, so a store may keep it in hardware.
type StateStore interface {
	State() keystore.State
	UpdateState(fn func(*keystore.State) error) error
	SetPIN(hash [16]byte, fn func(*keystore.State) error) error
	VerifyPIN(hash [16]byte) (bool, error)
	Wipe() error
	// Settings and the large-blob array (authenticatorConfig, authenticatorLargeBlobs).
	Settings() (keystore.Settings, error)
	UpdateSettings(fn func(*keystore.Settings) error) error
	LargeBlobArray() ([]byte, error)
	SetLargeBlobArray(array []byte) error
}

// Presence confirms that the user is present and consents to op
// ("makeCredential", "getAssertion", "reset", "selection",
// "credentialExcluded"). It returns nil if the user approved, ctx.Err() if ctx
// was cancelled or timed out, and any other error if the user declined.
type Presence interface {
	ConfirmPresence(ctx context.Context, op, rpID, userName string) error
}

// Keepalive statuses reported through ServeCTAP's keepalive callback
// (CTAP 2.1 §11.2.9.2.1; duplicated in ctaphid rather than imported).
const (
	StatusProcessing = 1
	StatusUPNeeded   = 2
)

// AAGUID identifies authd (all installations; it names the model, not the
// device): 423d550c-fabc-4805-8865-a5da23c97180.
var AAGUID = [16]byte{0x42, 0x3d, 0x55, 0x0c, 0xfa, 0xbc, 0x48, 0x05, 0x88, 0x65, 0xa5, 0xda, 0x23, 0xc9, 0x71, 0x80}

// Config configures an Authenticator.
type Config struct {
	Store    CredentialStore
	State    StateStore
	Presence Presence
	// Verifier is built-in user verification (a fingerprint); nil when the
	// machine offers none (getInfo then omits "uv").
	Verifier Verifier
	// BioEnroller manages fingerprint enrollments for
	// authenticatorBioEnrollment; nil when not offered.
	BioEnroller BioEnroller
	// BootID identifies the current kernel boot; consecutive wrong PINs
	// (PIN_AUTH_BLOCKED) are remembered until it changes.
	BootID string
	Logger *slog.Logger
	// Now and Rand default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
	// PresenceTimeout bounds each wait for the user (default 30 s).
	PresenceTimeout time.Duration
	// FirmwareVersion is reported in getInfo (0x0E).
	FirmwareVersion int
}

// Authenticator is the CTAP2 engine. It serves one request at a time.
type Authenticator struct {
	cfg      Config
	log      *slog.Logger
	powerUp  time.Time
	busy     chan struct{} // one-slot semaphore: a second request gets CHANNEL_BUSY
	mu       sync.Mutex    // guards the fields below
	ka       *pinuv.KeyAgreement
	token    tokenState
	next     *assertionState
	credMgmt *credMgmtState
	// largeBlobWrite is an authenticatorLargeBlobs write in progress.
	largeBlobWrite *largeBlobWrite
	// bioEnrolling is the template ID of the enrollment in progress.
	bioEnrolling []byte
}

// Timing constants (CTAP 2.1 §6.2.2, §6.5.2.1, §6.6).
const (
	nextAssertionWindow = 30 * time.Second
	resetWindow         = 10 * time.Second
	maxMsgSize          = 7609
	maxPINRetries       = 8
	maxConsecutiveFails = 3
	maxCredIDLength     = 64
	maxCredsInList      = 64
	credentialIDLength  = 32
)

// New returns an engine; its "power-up" (Reset window, key agreement key) is now.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Store == nil || cfg.State == nil || cfg.Presence == nil {
		return nil, errors.New("ctap2: Store, State and Presence are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PresenceTimeout == 0 {
		cfg.PresenceTimeout = 30 * time.Second
	}
	ka, err := pinuv.NewKeyAgreement(cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("ctap2: key agreement key: %w", err)
	}
	return &Authenticator{
		cfg:     cfg,
		log:     cfg.Logger,
		powerUp: cfg.Now(),
		busy:    make(chan struct{}, 1),
		ka:      ka,
	}, nil
}

// statusError is a StatusCode with the reason it was chosen, for the log.
type statusError struct {
	code   StatusCode
	reason string
}

func (e *statusError) Error() string { return e.code.Error() + ": " + e.reason }
func (e *statusError) Unwrap() error { return e.code }

// fail returns code annotated with a reason for the log line.
func fail(code StatusCode, format string, args ...any) error {
	return &statusError{code: code, reason: fmt.Sprintf(format, args...)}
}

// StatusOf maps an error to the status code sent on the wire. Context
// cancellation is CTAP2_ERR_KEEPALIVE_CANCEL, an expired deadline
// CTAP2_ERR_USER_ACTION_TIMEOUT, and anything unknown CTAP1_ERR_OTHER.
func StatusOf(err error) StatusCode {
	var sc StatusCode
	switch {
	case err == nil:
		return StatusOK
	case errors.As(err, &sc):
		return sc
	case errors.Is(err, context.Canceled):
		return ErrKeepaliveCancel
	case errors.Is(err, context.DeadlineExceeded):
		return ErrUserActionTimeout
	}
	return ErrOther
}

var commandNames = map[byte]string{
	cmdMakeCredential: "makeCredential", cmdGetAssertion: "getAssertion", cmdGetInfo: "getInfo",
	cmdClientPIN: "clientPIN", cmdReset: "reset", cmdGetNextAssertion: "getNextAssertion",
	cmdCredentialManagement: "credentialManagement", cmdSelection: "selection",
	cmdLargeBlobs: "largeBlobs", cmdConfig: "config",
	cmdBioEnrollment: "bioEnrollment", cmdBioEnrollmentPreview: "bioEnrollment(preview)",
	cmdCredMgmtPreview: "credentialManagement(preview)",
}

// ServeCTAP handles one CTAP2 message (command byte ‖ CBOR parameters) and
// returns status byte ‖ CBOR response. It never panics on any input and never
// returns internal error text. keepalive may be nil.
func (a *Authenticator) ServeCTAP(ctx context.Context, msg []byte, keepalive func(status byte)) (resp []byte) {
	if keepalive == nil {
		keepalive = func(byte) {}
	}
	select {
	case a.busy <- struct{}{}:
		defer func() { <-a.busy }()
	default:
		return []byte{byte(ErrChannelBusy)}
	}
	if len(msg) == 0 {
		a.log.Warn("ctap2: empty message", "status", ErrInvalidLength.Name())
		return []byte{byte(ErrInvalidLength)}
	}
	cmd := msg[0]
	name, known := commandNames[cmd]
	if !known {
		name = fmt.Sprintf("0x%02x", cmd)
	}
	defer func() {
		if r := recover(); r != nil {
			// A bug, never expected; keep serving rather than crash the daemon.
			a.log.Error("ctap2: internal error", "cmd", name, "panic", fmt.Sprint(r))
			resp = []byte{byte(ErrOther)}
		}
	}()
	var out any
	var err error
	if len(msg) > maxMsgSize {
		err = fail(ErrRequestTooLarge, "message of %d bytes exceeds maxMsgSize %d", len(msg), maxMsgSize)
	} else {
		out, err = a.dispatch(ctx, cmd, msg[1:], keepalive)
	}
	if err != nil {
		code := StatusOf(err)
		level := slog.LevelInfo
		if code == ErrOther {
			level = slog.LevelError
		}
		a.log.Log(ctx, level, "ctap2: request failed", "cmd", name, "status", code.Name(), "reason", err.Error())
		return []byte{byte(code)}
	}
	if out == nil {
		return []byte{byte(StatusOK)}
	}
	if app, ok := out.(interface{ appendCBOR([]byte) []byte }); ok {
		return app.appendCBOR(make([]byte, 1, 256)) // status byte 0, then the body
	}
	body, err := cbor.Marshal(out)
	if err != nil {
		a.log.Error("ctap2: encoding response", "cmd", name, "err", err)
		return []byte{byte(ErrOther)}
	}
	return append([]byte{byte(StatusOK)}, body...)
}

func (a *Authenticator) dispatch(ctx context.Context, cmd byte, params []byte, keepalive func(byte)) (any, error) {
	a.mu.Lock()
	// Stateful sequences end when any other command arrives (CTAP 2.1 §6.2.2, §6.8).
	if cmd != cmdGetNextAssertion {
		a.dropNextLocked()
	}
	if cmd != cmdLargeBlobs {
		a.largeBlobWrite = nil
	}
	if cmd != cmdCredentialManagement && cmd != cmdCredMgmtPreview {
		a.credMgmt = nil
	}
	a.mu.Unlock()
	switch cmd {
	case cmdGetInfo:
		if len(params) != 0 {
			return nil, fail(ErrInvalidLength, "getInfo takes no parameters")
		}
		return a.getInfo()
	case cmdMakeCredential:
		var req makeCredentialRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.makeCredential(ctx, &req, keepalive)
	case cmdGetAssertion:
		var req getAssertionRequest
		if err := decodeGetAssertion(params, &req); err != nil {
			return nil, err
		}
		return a.getAssertion(ctx, &req, keepalive)
	case cmdGetNextAssertion:
		if len(params) != 0 {
			return nil, fail(ErrInvalidLength, "getNextAssertion takes no parameters")
		}
		return a.getNextAssertion()
	case cmdClientPIN:
		var req clientPINRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.clientPIN(ctx, &req, keepalive)
	case cmdReset:
		if len(params) != 0 {
			return nil, fail(ErrInvalidLength, "reset takes no parameters")
		}
		return nil, a.reset(ctx, keepalive)
	case cmdSelection:
		if len(params) != 0 {
			return nil, fail(ErrInvalidLength, "selection takes no parameters")
		}
		return nil, a.selection(ctx, keepalive)
	case cmdCredentialManagement, cmdCredMgmtPreview:
		var req credMgmtRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.credentialManagement(&req)
	case cmdBioEnrollment, cmdBioEnrollmentPreview:
		var req bioRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.bioEnrollment(ctx, &req, keepalive)
	case cmdLargeBlobs:
		var req largeBlobsRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.largeBlobs(&req)
	case cmdConfig:
		var req configRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.config(&req)
	}
	return nil, fail(ErrInvalidCommand, "unknown command")
}

// decode strictly decodes request parameters, mapping failures to
// CTAP2_ERR_INVALID_CBOR / CTAP2_ERR_CBOR_UNEXPECTED_TYPE / MISSING_PARAMETER.
func decode(params []byte, v any) error {
	if len(params) == 0 {
		return fail(ErrMissingParameter, "no parameters")
	}
	if err := cbor.Unmarshal(params, v); err != nil {
		if errors.Is(err, cbor.ErrType) {
			return fail(ErrCBORUnexpectedType, "%v", err)
		}
		return fail(ErrInvalidCBOR, "%v", err)
	}
	return nil
}

// confirm asks the user for presence, reporting UPNEEDED while waiting.
// timeoutCode is returned when the wait times out; a cancelled ctx yields
// KEEPALIVE_CANCEL and a refusal OPERATION_DENIED.
func (a *Authenticator) confirm(ctx context.Context, keepalive func(byte), op, rpID, user string, timeoutCode StatusCode) error {
	keepalive(StatusUPNeeded)
	defer keepalive(StatusProcessing)
	wctx := &lazyDeadline{Context: ctx, deadline: time.Now().Add(a.cfg.PresenceTimeout)} // a real timer, not cfg.Now
	defer wctx.stop()
	err := a.cfg.Presence.ConfirmPresence(wctx, op, rpID, user)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fail(ErrKeepaliveCancel, "%s cancelled while waiting for the user", op)
	case errors.Is(err, context.DeadlineExceeded) || wctx.Err() != nil:
		// The prompt's own timeout counts as a timeout too.
		return fail(timeoutCode, "%s: user presence timed out", op)
	}
	return fail(ErrOperationDenied, "%s: user declined: %v", op, err)
}

// Idle blocks until no request is being served, or ctx is done, and keeps
// new requests out (they get CTAP1_ERR_CHANNEL_BUSY) until release is
// called. The daemon uses it to let a cancelled operation finish before the
// store closes.
func (a *Authenticator) Idle(ctx context.Context) (release func(), err error) {
	select {
	case a.busy <- struct{}{}:
		return func() { <-a.busy }, nil
	case <-ctx.Done():
		return func() {}, ctx.Err()
	}
}

// lazyDeadline is ctx with a deadline whose timer is armed only when the
// Presence implementation waits on Done or asks Err: a prompt shown to a
// person needs it, a policy that answers at once (the hot path of every
// sign-in with --presence allow or a cached decision) does not pay for it.
type lazyDeadline struct {
	context.Context
	deadline time.Time
	once     sync.Once
	inner    context.Context
	cancel   context.CancelFunc
}

func (c *lazyDeadline) arm() {
	c.once.Do(func() { c.inner, c.cancel = context.WithDeadline(c.Context, c.deadline) })
}

func (c *lazyDeadline) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *lazyDeadline) Done() <-chan struct{}       { c.arm(); return c.inner.Done() }
func (c *lazyDeadline) Err() error                  { c.arm(); return c.inner.Err() }

func (c *lazyDeadline) stop() {
	c.once.Do(func() {}) // after this, arm is a no-op
	if c.cancel != nil {
		c.cancel()
	}
}
