package webauthn_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	gowa "github.com/go-webauthn/webauthn/webauthn"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/ipc"
	"github.com/authd/authd/ipc/webauthn"
	"github.com/authd/authd/keystore"
)

const (
	testRPID   = "login.example.com"
	testOrigin = "https://login.example.com"
)

// presence approves, denies, or blocks until the context ends.
type presence struct {
	mu    sync.Mutex
	deny  error
	block bool
	calls int
}

func (p *presence) ConfirmPresence(ctx context.Context, op, rpID, user string) error {
	p.mu.Lock()
	p.calls++
	deny, block := p.deny, p.block
	p.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return deny
}

// verifier is a fake fingerprint reader.
type verifier struct {
	mu    sync.Mutex
	fail  bool
	calls int
}

func (v *verifier) Available(context.Context) bool { return true }
func (v *verifier) VerifyUser(ctx context.Context, op, rpID string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	if v.fail {
		return ctap2.ErrUVNoMatch
	}
	return nil
}

// pins is a fake PIN prompt answering from a script.
type pins struct {
	mu      sync.Mutex
	answers []string
	asked   [][2]int // attempt, retries
}

func (p *pins) PIN(ctx context.Context, attempt, retries int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, [2]int{attempt, retries})
	if len(p.answers) == 0 {
		return nil, errors.New("prompt cancelled")
	}
	a := p.answers[0]
	p.answers = p.answers[1:]
	return []byte(a), nil
}

type env struct {
	t   *testing.T
	a   *ctap2.Authenticator
	up  *presence
	c   *webauthn.Client
	rp  *gowa.WebAuthn
	pin *pins
}

func newEnv(t *testing.T, v ctap2.Verifier) *env {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	sealer, err := keystore.OpenSoftwareSealer(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := keystore.Open(dir, sealer, keystore.SoftwareKeys{}, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	up := &presence{}
	cfg := ctap2.Config{Store: store, State: store, Presence: up, BootID: "boot"}
	if v != nil {
		cfg.Verifier = v
	}
	a, err := ctap2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := gowa.New(&gowa.Config{RPID: testRPID, RPDisplayName: "Example", RPOrigins: []string{testOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	p := &pins{}
	return &env{t: t, a: a, up: up, rp: rp, pin: p, c: &webauthn.Client{Transport: a, UV: p}}
}

// setPIN sets the authenticator PIN over CTAP (clientPIN setPIN, protocol 2).
func (e *env) setPIN(pin string) {
	e.t.Helper()
	resp := e.a.ServeCTAP(context.Background(), append([]byte{0x06}, mustCBOR(e.t, map[int]any{1: 2, 2: 2})...), nil)
	if resp[0] != 0 {
		e.t.Fatalf("getKeyAgreement: 0x%02x", resp[0])
	}
	var ka struct {
		Key cose.Key `cbor:"1,keyasint"`
	}
	if err := cbor.UnmarshalRecord(resp[1:], &ka); err != nil {
		e.t.Fatal(err)
	}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	plat, _ := pinuv.NewKeyAgreementFromKey(priv)
	ss, err := plat.Decapsulate(pinuv.V2, ka.Key)
	if err != nil {
		e.t.Fatal(err)
	}
	padded := make([]byte, 64)
	copy(padded, pin)
	enc, err := ss.Encrypt(padded)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := mustCBOR(e.t, map[int]any{1: 2, 2: 3, 3: cbor.RawMessage(plat.PublicKeyCOSE()), 4: ss.Authenticate(enc), 5: enc})
	if resp := e.a.ServeCTAP(context.Background(), append([]byte{0x06}, msg...), nil); resp[0] != 0 {
		e.t.Fatalf("setPIN: 0x%02x", resp[0])
	}
}

func mustCBOR(t *testing.T, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rpUser is the relying party's account.
type rpUser struct {
	id    []byte
	name  string
	creds []gowa.Credential
}

func (u *rpUser) WebAuthnID() []byte                     { return u.id }
func (u *rpUser) WebAuthnName() string                   { return u.name }
func (u *rpUser) WebAuthnDisplayName() string            { return u.name }
func (u *rpUser) WebAuthnCredentials() []gowa.Credential { return u.creds }

func newUser(name string) *rpUser {
	id := make([]byte, 16)
	rand.Read(id)
	return &rpUser{id: id, name: name}
}

// register runs go-webauthn's BeginRegistration, Client.Create and
// go-webauthn's CreateCredential; it returns the credential and the response JSON.
func (e *env) register(u *rpUser, opts ...gowa.RegistrationOption) (*gowa.Credential, map[string]any) {
	e.t.Helper()
	creation, session, err := e.rp.BeginRegistration(u, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := e.c.Create(context.Background(), testOrigin, mustJSON(e.t, creation.Response), ipc.Hints{})
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(out)
	if err != nil {
		e.t.Fatalf("go-webauthn parse: %v\n%s", err, out)
	}
	cred, err := e.rp.CreateCredential(u, *session, parsed)
	if err != nil {
		e.t.Fatalf("go-webauthn rejects the registration: %v\n%s", details(err), out)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	u.creds = append(u.creds, *cred)
	return cred, m
}

// login runs BeginLogin (or BeginDiscoverableLogin when u is nil), Client.Get
// and go-webauthn's validation; it returns the credential and the response JSON.
func (e *env) login(u *rpUser, discoverable []*rpUser, opts ...gowa.LoginOption) (*gowa.Credential, map[string]any) {
	e.t.Helper()
	var assertion *protocol.CredentialAssertion
	var session *gowa.SessionData
	var err error
	if u != nil {
		assertion, session, err = e.rp.BeginLogin(u, opts...)
	} else {
		assertion, session, err = e.rp.BeginDiscoverableLogin(opts...)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := e.c.Get(context.Background(), testOrigin, mustJSON(e.t, assertion.Response), ipc.Hints{})
	if err != nil {
		e.t.Fatalf("Get: %v", err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(out)
	if err != nil {
		e.t.Fatalf("go-webauthn parse: %v\n%s", err, out)
	}
	var cred *gowa.Credential
	if u != nil {
		cred, err = e.rp.ValidateLogin(u, *session, parsed)
	} else {
		cred, err = e.rp.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (gowa.User, error) {
			for _, d := range discoverable {
				if bytes.Equal(d.id, userHandle) {
					return d, nil
				}
			}
			return nil, fmt.Errorf("unknown user handle %x", userHandle)
		}, *session, parsed)
	}
	if err != nil {
		e.t.Fatalf("go-webauthn rejects the assertion: %v\n%s", details(err), out)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	return cred, m
}

func details(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Error() + ": " + pe.Details + " " + pe.DevInfo
	}
	return err.Error()
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(t *testing.T, s any) []byte {
	t.Helper()
	str, _ := s.(string)
	b, err := base64.RawURLEncoding.DecodeString(str)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return b
}

// wantErr checks that err is an *ipc.Error with the given name.
func wantErr(t *testing.T, err error, name string) {
	t.Helper()
	var ie *ipc.Error
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T), want an *ipc.Error %s", err, err, name)
	}
	if ie.Name != name {
		t.Fatalf("error %v, want %s", err, name)
	}
}
