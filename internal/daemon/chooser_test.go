package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/authd/authd/ipc"
	"github.com/authd/authd/ipc/webauthn"
	"github.com/authd/authd/uv"
)

// choosingPresence approves every presence check and picks item pick of
// every choice, recording what it was shown.
type choosingPresence struct {
	pick int
	err  error

	mu     sync.Mutex
	titles []string
	items  [][]string
}

func (*choosingPresence) ConfirmPresence(context.Context, string, string, string) error { return nil }

func (p *choosingPresence) Choose(ctx context.Context, title, body string, items []string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.titles = append(p.titles, title)
	p.items = append(p.items, slices.Clone(items))
	return p.pick, p.err
}

var _ uv.Chooser = (*choosingPresence)(nil)

var b64 = base64.RawURLEncoding

// register creates a discoverable credential for user on example.com.
func register(t *testing.T, b ipc.Backend, user []byte, name, display string) {
	t.Helper()
	opts := fmt.Sprintf(`{"rp":{"id":"example.com","name":"Example"},
		"user":{"id":%q,"name":%q,"displayName":%q},
		"challenge":%q,
		"pubKeyCredParams":[{"type":"public-key","alg":-7}],
		"authenticatorSelection":{"residentKey":"required","userVerification":"discouraged"}}`,
		b64.EncodeToString(user), name, display, b64.EncodeToString([]byte("0123456789abcdef")))
	if _, err := b.MakeCredential(t.Context(), ipc.Peer{Exe: "firefox"}, "https://example.com", []byte(opts), ipc.Hints{}); err != nil {
		t.Fatalf("MakeCredential for %s: %v", name, err)
	}
}

// discoverableLogin signs in to example.com without allowCredentials and
// returns the response's userHandle.
func discoverableLogin(t *testing.T, b ipc.Backend) ([]byte, error) {
	t.Helper()
	opts := fmt.Sprintf(`{"challenge":%q,"rpId":"example.com","userVerification":"discouraged"}`,
		b64.EncodeToString([]byte("fedcba9876543210")))
	resp, err := b.GetAssertion(t.Context(), ipc.Peer{Exe: "firefox"}, "https://example.com", []byte(opts), ipc.Hints{})
	if err != nil {
		return nil, err
	}
	var r struct {
		Response struct {
			UserHandle string `json:"userHandle"`
		} `json:"response"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatalf("response %s: %v", resp, err)
	}
	h, err := b64.DecodeString(r.Response.UserHandle)
	if err != nil {
		t.Fatalf("userHandle %q: %v", r.Response.UserHandle, err)
	}
	return h, nil
}

func newChooserDaemon(t *testing.T, p any) (*Daemon, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{StateDir: filepath.Join(t.TempDir(), "state"), BootID: "b", Logger: log}
	switch p := p.(type) {
	case *choosingPresence:
		cfg.Presence = p
	case approveAll:
		cfg.Presence = p
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, &logs
}

// TestAccountChooser: two discoverable passkeys for one RP; the presence
// method is asked which account to use and the assertion is for the one it
// picked.
func TestAccountChooser(t *testing.T) {
	p := &choosingPresence{pick: 1}
	d, _ := newChooserDaemon(t, p)
	b := d.Backend()
	users := map[string][]byte{"alice (Alice Liddell)": []byte("user-alice"), "bob (Bob)": []byte("user-bob")}
	register(t, b, users["alice (Alice Liddell)"], "alice", "Alice Liddell")
	register(t, b, users["bob (Bob)"], "bob", "Bob")

	handle, err := discoverableLogin(t, b)
	if err != nil {
		t.Fatalf("GetAssertion: %v", err)
	}
	if len(p.items) != 1 {
		t.Fatalf("%d choices shown, want 1", len(p.items))
	}
	items := p.items[0]
	if len(items) != 2 || items[0] == items[1] || users[items[0]] == nil || users[items[1]] == nil {
		t.Fatalf("items %q", items)
	}
	if p.titles[0] != "Choose an account for example.com" {
		t.Errorf("title %q", p.titles[0])
	}
	if want := users[items[1]]; !bytes.Equal(handle, want) {
		t.Fatalf("userHandle %q, want %q: the second account, %s", handle, want, items[1])
	}

	// Picking the first gives the other user.
	p.pick = 0
	handle, err = discoverableLogin(t, b)
	if err != nil || !bytes.Equal(handle, users[items[0]]) {
		t.Fatalf("first account: %q, %v; want %q", handle, err, users[items[0]])
	}

	// A declined choice fails the sign-in with NotAllowedError.
	p.err = fmt.Errorf("%w: cancelled", uv.ErrDeclined)
	if _, err := discoverableLogin(t, b); ipc.NameOf(err) != ipc.NotAllowedError {
		t.Fatalf("declined choice: %v, want NotAllowedError", err)
	}
	// So does an index out of range.
	p.err, p.pick = nil, 2
	if _, err := discoverableLogin(t, b); ipc.NameOf(err) != ipc.NotAllowedError {
		t.Fatalf("out-of-range choice: %v, want NotAllowedError", err)
	}
}

// TestAccountChooserFallback: a presence method that cannot show a choice
// gets the first account, with a debug line.
func TestAccountChooserFallback(t *testing.T) {
	d, logs := newChooserDaemon(t, approveAll{})
	b := d.Backend()
	register(t, b, []byte("user-alice"), "alice", "Alice")
	register(t, b, []byte("user-bob"), "bob", "Bob")
	handle, err := discoverableLogin(t, b)
	if err != nil {
		t.Fatalf("GetAssertion: %v", err)
	}
	if !bytes.Equal(handle, []byte("user-alice")) && !bytes.Equal(handle, []byte("user-bob")) {
		t.Fatalf("userHandle %q", handle)
	}
	if !strings.Contains(logs.String(), "first account was used") {
		t.Errorf("no debug line; logs:\n%s", logs)
	}
}

func TestAccountLabel(t *testing.T) {
	for _, tt := range []struct {
		acc  webauthn.Account
		want string
	}{
		{webauthn.Account{Name: "alice", DisplayName: "Alice"}, "alice (Alice)"},
		{webauthn.Account{Name: "alice", DisplayName: "alice"}, "alice"},
		{webauthn.Account{Name: "alice"}, "alice"},
		{webauthn.Account{DisplayName: "Alice"}, "Alice"},
		{webauthn.Account{}, "account 3"},
	} {
		if got := accountLabel(tt.acc, 2); got != tt.want {
			t.Errorf("accountLabel(%+v) = %q, want %q", tt.acc, got, tt.want)
		}
	}
}
