package daemon

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/authd/authd/ipc"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

type rpUser struct {
	id    []byte
	creds []webauthn.Credential
}

func (u *rpUser) WebAuthnID() []byte                         { return u.id }
func (u *rpUser) WebAuthnName() string                       { return "alice" }
func (u *rpUser) WebAuthnDisplayName() string                { return "Alice" }
func (u *rpUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// TestBackend drives the local API's Backend as ipc/dbus does: a WebAuthn
// registration and sign-in verified by go-webauthn, then management, PIN and
// reset through authd's own prompts.
func TestBackend(t *testing.T) {
	prog := fakePinentry(t, "2468", "2468", "2468", "1357", "1357")
	d, err := New(Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: approveAll{}, BootID: "b", Pinentry: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := d.Backend()
	ctx := context.Background()
	peer := ipc.Peer{UID: 1000, PID: 1, Exe: "firefox"}

	wa, err := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	u := &rpUser{id: []byte("user-1")}
	creation, session, err := wa.BeginRegistration(u, webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(creation.Response)
	resp, err := b.MakeCredential(ctx, peer, "https://example.com", opts, ipc.Hints{})
	if err != nil {
		t.Fatalf("MakeCredential: %v", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(resp)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := wa.CreateCredential(u, *session, parsed)
	if err != nil {
		t.Fatalf("go-webauthn rejects the registration: %v", err)
	}
	u.creds = []webauthn.Credential{*cred}
	assertion, lsession, err := wa.BeginLogin(u)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ = json.Marshal(assertion.Response)
	resp, err = b.GetAssertion(ctx, peer, "https://example.com", opts, ipc.Hints{})
	if err != nil {
		t.Fatalf("GetAssertion: %v", err)
	}
	pa, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wa.ValidateLogin(u, *lsession, pa); err != nil {
		t.Fatalf("go-webauthn rejects the assertion: %v", err)
	}
	// A wrong origin is a SecurityError.
	if _, err := b.GetAssertion(ctx, peer, "https://evil.example.net", opts, ipc.Hints{}); ipc.NameOf(err) != ipc.SecurityError {
		t.Fatalf("foreign origin: %v", err)
	}

	// Management.
	list, err := b.ListCredentials(ctx, "EXAMPLE")
	if err != nil || len(list) != 1 || list[0].UserName != "alice" || !list[0].Discoverable || list[0].Backend != "software" {
		t.Fatalf("list %+v %v", list, err)
	}
	if l, _ := b.ListCredentials(ctx, "nothing-matches"); len(l) != 0 {
		t.Fatal("filter")
	}
	id := list[0].ID
	if err := b.SetProtected(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteCredential(ctx, id); ipc.NameOf(err) != ipc.InvalidStateError {
		t.Fatalf("delete protected: %v", err)
	}
	if err := b.DeleteCredential(ctx, []byte("nope")); ipc.NameOf(err) != ipc.NotAllowedError {
		t.Fatalf("delete unknown: %v", err)
	}

	// PIN: set (asked twice), then change (current, new, repeat).
	if err := b.SetPIN(ctx, peer); err != nil {
		t.Fatalf("SetPIN: %v", err)
	}
	if err := b.ChangePIN(ctx, peer); err != nil {
		t.Fatalf("ChangePIN: %v", err)
	}
	if err := d.engine.VerifyPIN(ctx, []byte("1357")); err != nil {
		t.Fatalf("new PIN: %v", err)
	}
	st, _ := b.Status(ctx)
	if st["pin_set"] != true || st["credentials"] != int32(1) {
		t.Fatalf("status %v", st)
	}
	caps, _ := b.Capabilities(ctx)
	if !caps["userVerifyingPlatformAuthenticator"] || !caps["extension:prf"] {
		t.Fatalf("capabilities %v", caps)
	}
	if err := b.SetProtected(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteCredential(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := b.Reset(ctx, peer); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if d.store.State().PINSet {
		t.Fatal("PIN survived reset")
	}
}
