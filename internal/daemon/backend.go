package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/ipc"
	"github.com/authd/authd/ipc/webauthn"
	"github.com/authd/authd/keystore"
	"github.com/authd/authd/tpm"
	"github.com/authd/authd/uv"
	"github.com/authd/authd/uv/pinentry"
)

// Backend serves the local API (ipc.Backend) from this daemon: management
// straight from the store, PIN and reset through the engine's local
// operations with authd's own prompts, and WebAuthn calls through the
// ipc/webauthn client speaking CTAP to the engine.
func (d *Daemon) Backend() ipc.Backend { return backend{d} }

type backend struct{ d *Daemon }

var _ ipc.Backend = backend{}

// apiError maps an engine error onto the API's error names.
func apiError(err error) error {
	if err == nil {
		return nil
	}
	var e *ipc.Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, pinentry.ErrCancelled) || errors.Is(err, context.Canceled) {
		return ipc.Errorf(ipc.AbortError, "cancelled")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ipc.Errorf(ipc.NotAllowedError, "timed out waiting for the user")
	}
	switch ctap2.StatusOf(err) {
	case ctap2.ErrPINInvalid:
		return ipc.Errorf(ipc.NotAllowedError, "wrong PIN")
	case ctap2.ErrPINBlocked:
		return ipc.Errorf(ipc.NotAllowedError, "the PIN is blocked: only a reset helps")
	case ctap2.ErrPINAuthBlocked:
		return ipc.Errorf(ipc.NotAllowedError, "too many wrong PINs: blocked until the next boot")
	case ctap2.ErrPINPolicyViolation:
		return ipc.Errorf(ipc.ConstraintError, "the PIN does not meet the policy (length)")
	case ctap2.ErrPINNotSet:
		return ipc.Errorf(ipc.InvalidStateError, "no PIN is set")
	case ctap2.ErrPINAuthInvalid:
		return ipc.Errorf(ipc.InvalidStateError, "a PIN is already set")
	case ctap2.ErrOperationDenied, ctap2.ErrUserActionTimeout:
		return ipc.Errorf(ipc.NotAllowedError, "the user declined or did not answer")
	case ctap2.ErrKeepaliveCancel:
		return ipc.Errorf(ipc.AbortError, "cancelled")
	}
	return ipc.Errorf(ipc.UnknownError, "%v", err)
}

func (b backend) ListCredentials(ctx context.Context, filter string) ([]ipc.CredentialInfo, error) {
	all, err := b.d.store.All()
	if err != nil {
		return nil, apiError(err)
	}
	f := strings.ToLower(filter)
	var out []ipc.CredentialInfo
	for _, c := range all {
		if f != "" && !strings.Contains(strings.ToLower(c.RPID+"\x00"+c.RPName+"\x00"+c.UserName+"\x00"+c.UserDisplayName), f) {
			continue
		}
		backend := keystore.BackendSoftware
		if tpm.IsTPMBlob(c.KeyBlob) {
			backend = keystore.BackendTPM
		}
		out = append(out, ipc.CredentialInfo{
			ID: c.ID, RPID: c.RPID, RPName: c.RPName, UserName: c.UserName, UserDisplayName: c.UserDisplayName,
			Created: c.Created, LastUsed: c.LastUsed, Discoverable: c.Discoverable, Backend: backend, Protected: c.Protected,
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].RPID != out[j].RPID {
			return out[i].RPID < out[j].RPID
		}
		return out[i].Created.Before(out[j].Created)
	})
	return out, nil
}

func (b backend) credential(id []byte) (*keystore.Credential, error) {
	if len(id) == 0 {
		return nil, ipc.Errorf(ipc.TypeError, "empty credential id")
	}
	c, err := b.d.store.Get(id)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, ipc.Errorf(ipc.NotAllowedError, "no passkey with id %s", base64.RawURLEncoding.EncodeToString(id))
	}
	return c, apiError(err)
}

func (b backend) DeleteCredential(ctx context.Context, id []byte) error {
	c, err := b.credential(id)
	if err != nil {
		return err
	}
	if c.Protected {
		return ipc.Errorf(ipc.InvalidStateError, "the passkey for %s is protected: unprotect it first", c.RPID)
	}
	if err := b.d.store.Delete(c.ID); err != nil {
		return apiError(err)
	}
	b.d.log.Info("daemon: passkey deleted through the local API", "rp", c.RPID)
	return nil
}

func (b backend) SetProtected(ctx context.Context, id []byte, protected bool) error {
	if _, err := b.credential(id); err != nil {
		return err
	}
	return apiError(b.d.store.SetProtected(id, protected))
}

func (b backend) Status(ctx context.Context) (map[string]any, error) {
	st := b.d.Status()
	state := b.d.store.State()
	out := map[string]any{
		"version":          fmt.Sprintf("%d.%d.%d", b.d.cfg.Version[0], b.d.cfg.Version[1], b.d.cfg.Version[2]),
		"tpm":              st.TPM,
		"data_key":         st.DataKey,
		"pin_in_tpm":       st.PINInTPM,
		"pin_set":          state.PINSet,
		"pin_retries":      int32(state.PINRetries),
		"fingerprint":      b.d.fp != nil,
		"credentials":      int32(len(must(b.d.store.All()))),
		"discoverable":     int32(b.d.store.DiscoverableCount()),
		"backend_tpm":      int32(st.Backends[keystore.BackendTPM]),
		"backend_software": int32(st.Backends[keystore.BackendSoftware]),
	}
	if st.Warning != "" {
		out["warning"] = st.Warning
	}
	if st.UHID != "" {
		out["uhid"] = st.UHID
	} else {
		out["uhid_note"] = st.UHIDNote
	}
	return out, nil
}

func must[T any](v T, _ error) T { return v }

func (b backend) Capabilities(ctx context.Context) (map[string]bool, error) {
	uvPossible := b.d.store.State().PINSet || (b.d.fp != nil && b.d.fp.Available(ctx))
	return map[string]bool{
		// WebAuthn L3 §5.1.7 client capabilities: true only for what works.
		"userVerifyingPlatformAuthenticator": uvPossible,
		"passkeyPlatformAuthenticator":       uvPossible,
		"conditionalCreate":                  false,
		"conditionalGet":                     false,
		"hybridTransport":                    false,
		"relatedOrigins":                     false,
		"signalAllAcceptedCredentials":       false,
		"signalCurrentUserDetails":           false,
		"signalUnknownCredential":            false,
		"extension:credProps":                true,
		"extension:credProtect":              true,
		"extension:prf":                      true,
		"extension:minPinLength":             true,
		"extension:largeBlob":                true,
	}, nil
}

// askNewPIN asks for a new PIN twice until both entries match.
func (d *Daemon) askNewPIN(ctx context.Context, desc string) (*pinentry.Secret, error) {
	prog, err := d.pinentryProgram()
	if err != nil {
		return nil, err
	}
	p := pinentry.Prompt{Title: "authd", Description: desc, Prompt: "New PIN:", OK: "OK", Cancel: "Cancel"}
	for {
		first, err := prog.GetPIN(ctx, p)
		if err != nil {
			return nil, err
		}
		p2 := p
		p2.Prompt, p2.Error = "Repeat the PIN:", ""
		second, err := prog.GetPIN(ctx, p2)
		if err != nil {
			first.Clear()
			return nil, err
		}
		same := second.Equal(first.Bytes())
		second.Clear()
		if same {
			return first, nil
		}
		first.Clear()
		p.Error = "The two PINs differ; try again."
	}
}

func (d *Daemon) pinentryProgram() (pinentry.Program, error) {
	path, err := resolvePinentry(d.pinentryPath)
	if err != nil {
		return pinentry.Program{}, ipc.Errorf(ipc.NotSupportedError, "no pinentry program to ask for the PIN: %v", err)
	}
	return pinentry.Program{Path: path}, nil
}

func (b backend) SetPIN(ctx context.Context, peer ipc.Peer) error {
	pin, err := b.d.askNewPIN(ctx, fmt.Sprintf("Choose a PIN for your passkeys (at least %d characters).%s", b.d.store.State().MinPINLength, requestedBy(peer)))
	if err != nil {
		return apiError(err)
	}
	defer pin.Clear()
	return apiError(b.d.engine.SetPINLocal(ctx, pin.Bytes()))
}

func (b backend) ChangePIN(ctx context.Context, peer ipc.Peer) error {
	prog, err := b.d.pinentryProgram()
	if err != nil {
		return err
	}
	old, err := prog.GetPIN(ctx, pinentry.Prompt{Title: "authd", Description: "Enter your current passkey PIN." + requestedBy(peer), Prompt: "Current PIN:"})
	if err != nil {
		return apiError(err)
	}
	defer old.Clear()
	pin, err := b.d.askNewPIN(ctx, "Choose a new PIN for your passkeys.")
	if err != nil {
		return apiError(err)
	}
	defer pin.Clear()
	if bytes.Equal(old.Bytes(), pin.Bytes()) && !b.d.store.State().ForcePINChange {
		return nil
	}
	return apiError(b.d.engine.ChangePINLocal(ctx, old.Bytes(), pin.Bytes()))
}

func (b backend) Reset(ctx context.Context, peer ipc.Peer) error {
	b.d.log.Warn("daemon: reset requested through the local API", "pid", peer.PID, "exe", peer.Exe)
	return apiError(b.d.engine.ResetLocal(ctx))
}

func requestedBy(p ipc.Peer) string {
	if p.Exe == "" {
		return ""
	}
	return " (requested by " + p.Exe + ")"
}

// pinAsker is the WebAuthn client's UserVerifier: authd's own pinentry prompt.
type pinAsker struct {
	d    *Daemon
	peer ipc.Peer
}

func (p pinAsker) PIN(ctx context.Context, attempt, retries int) ([]byte, error) {
	prog, err := p.d.pinentryProgram()
	if err != nil {
		return nil, err
	}
	pr := pinentry.Prompt{Title: "authd", Prompt: "PIN:", OK: "Unlock", Cancel: "Cancel",
		Description: "Enter your passkey PIN to continue." + requestedBy(p.peer)}
	if attempt > 1 {
		pr.Error = fmt.Sprintf("Wrong PIN (%d tries left before the PIN is blocked)", retries)
	}
	s, err := prog.GetPIN(ctx, pr)
	if err != nil {
		return nil, err
	}
	defer s.Clear()
	return append([]byte(nil), s.Bytes()...), nil
}

func (b backend) client(peer ipc.Peer) *webauthn.Client {
	return &webauthn.Client{
		Transport: b.d.engine,
		UV:        pinAsker{d: b.d, peer: peer},
		Accounts:  accountChooser{presence: b.d.cfg.Presence, log: b.d.log, names: b.d.storedNames},
		Logger:    b.d.log,
	}
}

// alternativeError is apiError, except that a request the user sent to
// another device in authd's prompt fails with UseAnotherDevice, so that the
// client (the browser extension) hands it to the platform's own WebAuthn.
func alternativeError(err error, alt *uv.AlternativeChoice) error {
	if err != nil && alt.Chosen() {
		return ipc.Errorf(ipc.UseAnotherDevice, "the user chose another device")
	}
	return apiError(err)
}

func (b backend) MakeCredential(ctx context.Context, peer ipc.Peer, origin string, options []byte, hints ipc.Hints) ([]byte, error) {
	b.d.log.Info("daemon: passkey creation requested", "origin", origin, "pid", peer.PID, "exe", peer.Exe)
	ctx = uv.WithRequester(ctx, peer.Exe)
	ctx, alt := uv.WithAlternative(ctx)
	out, err := b.client(peer).Create(ctx, origin, options, hints)
	return out, alternativeError(err, alt)
}

func (b backend) GetAssertion(ctx context.Context, peer ipc.Peer, origin string, options []byte, hints ipc.Hints) ([]byte, error) {
	b.d.log.Info("daemon: sign-in requested", "origin", origin, "pid", peer.PID, "exe", peer.Exe)
	ctx = uv.WithRequester(ctx, peer.Exe)
	ctx, alt := uv.WithAlternative(ctx)
	out, err := b.client(peer).Get(ctx, origin, options, hints)
	return out, alternativeError(err, alt)
}
