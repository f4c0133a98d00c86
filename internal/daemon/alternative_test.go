package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/authd/authd/ipc"
	"github.com/authd/authd/uv"
)

// otherPresence picks "use another device" when the request allows it and
// other is set; otherwise it declines (or approves, with approve set).
type otherPresence struct {
	other, approve atomic.Bool
	offered        atomic.Int32 // requests that allowed another device
}

func (p *otherPresence) ConfirmPresence(ctx context.Context, op, rpID, user string) error {
	alt := uv.Alternative(ctx)
	if alt != nil {
		p.offered.Add(1)
	}
	if alt != nil && p.other.Load() {
		alt.Choose()
		return fmt.Errorf("%w: the user chose another device", uv.ErrDeclined)
	}
	if p.approve.Load() {
		return nil
	}
	return fmt.Errorf("%w: no", uv.ErrDeclined)
}

// TestBackendUseAnotherDevice: the local API's requests let the prompt offer
// "use another device", and choosing it fails them with UseAnotherDevice
// (while a plain refusal stays NotAllowedError).
func TestBackendUseAnotherDevice(t *testing.T) {
	p := &otherPresence{}
	d, err := New(Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: p, BootID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := d.Backend()
	ctx := context.Background()
	peer := ipc.Peer{UID: 1000, PID: 1, Exe: "chromium"}
	wa, err := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	u := &rpUser{id: []byte("user-1")}
	creation, _, err := wa.BeginRegistration(u, webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(creation.Response)

	if _, err := b.MakeCredential(ctx, peer, "https://example.com", opts, ipc.Hints{}); ipc.NameOf(err) != ipc.NotAllowedError {
		t.Fatalf("declined MakeCredential = %v, want NotAllowedError", err)
	}
	p.other.Store(true)
	if _, err := b.MakeCredential(ctx, peer, "https://example.com", opts, ipc.Hints{}); ipc.NameOf(err) != ipc.UseAnotherDevice {
		t.Fatalf("MakeCredential with another device chosen = %v, want UseAnotherDevice", err)
	}

	// Register one passkey, then the same choice on sign-in.
	p.other.Store(false)
	p.approve.Store(true)
	resp, err := b.MakeCredential(ctx, peer, "https://example.com", opts, ipc.Hints{})
	if err != nil {
		t.Fatalf("MakeCredential: %v (%s)", err, resp)
	}
	p.approve.Store(false)
	p.other.Store(true)
	assertion, _, err := wa.BeginDiscoverableLogin()
	if err != nil {
		t.Fatal(err)
	}
	opts, _ = json.Marshal(assertion.Response)
	if _, err := b.GetAssertion(ctx, peer, "https://example.com", opts, ipc.Hints{}); ipc.NameOf(err) != ipc.UseAnotherDevice {
		t.Fatalf("GetAssertion with another device chosen = %v, want UseAnotherDevice", err)
	}
	if n := p.offered.Load(); n < 4 {
		t.Fatalf("another device was offered to %d prompts, want every local API request (4)", n)
	}
}
