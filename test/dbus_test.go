package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/internal/daemon"
	dbusapi "github.com/authd/authd/ipc/dbus"
	"github.com/authd/authd/ipc/dbus/dbustest"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/godbus/dbus/v5"
)

// TestDBusPlatformAPI: a whole daemon serving org.authd.Authenticator1 on a
// private session bus. A registration and a sign-in through the D-Bus API
// are verified by go-webauthn; errors arrive with their WebAuthn names;
// authctl manages the passkey end to end.
func TestDBusPlatformAPI(t *testing.T) {
	bus := dbustest.NewBus(t)
	d, err := daemon.New(daemon.Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: approve{}, BootID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	srvConn := bus.Connect()
	srv, err := dbusapi.Start(srvConn, d.Backend(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	conn := bus.Connect()
	obj := conn.Object("org.authd.Authenticator1", "/org/authd/Authenticator1")
	call := func(method string, args ...any) (string, error) {
		var out string
		err := obj.Call("org.authd.Authenticator1."+method, 0, args...).Store(&out)
		return out, err
	}
	wa, err := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://login.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	u := &rpUser{id: []byte("dbus-user"), name: "carol@example.com"}
	creation, session, err := wa.BeginRegistration(u)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(creation.Response)
	hints := map[string]dbus.Variant{"timeout_ms": dbus.MakeVariant(uint32(60000))}
	resp, err := call("MakeCredential", "https://login.example.com", string(opts), hints)
	if err != nil {
		t.Fatalf("MakeCredential: %v", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes([]byte(resp))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := wa.CreateCredential(u, *session, parsed)
	if err != nil {
		t.Fatalf("go-webauthn rejects the registration: %v", errDetails(err))
	}
	u.creds = []webauthn.Credential{*cred}
	assertion, lsession, err := wa.BeginLogin(u)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ = json.Marshal(assertion.Response)
	resp, err = call("GetAssertion", "https://login.example.com", string(opts), map[string]dbus.Variant{})
	if err != nil {
		t.Fatalf("GetAssertion: %v", err)
	}
	pa, err := protocol.ParseCredentialRequestResponseBytes([]byte(resp))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wa.ValidateLogin(u, *lsession, pa); err != nil {
		t.Fatalf("go-webauthn rejects the assertion: %v", errDetails(err))
	}
	// Errors carry WebAuthn names.
	for _, c := range []struct {
		origin, options, want string
	}{
		{"https://evil.example.net", string(opts), "org.authd.Error.SecurityError"},
		{"http://login.example.com", string(opts), "org.authd.Error.SecurityError"},
		{"https://login.example.com", "{not json", "org.authd.Error.TypeError"},
	} {
		_, err := call("GetAssertion", c.origin, c.options, map[string]dbus.Variant{})
		if de, ok := err.(dbus.Error); !ok || de.Name != c.want {
			t.Errorf("GetAssertion(%s, %.12s): %v, want %s", c.origin, c.options, err, c.want)
		}
	}
	// Registering again with the credential excluded: InvalidStateError.
	creation, _, _ = wa.BeginRegistration(u, webauthn.WithExclusions(webauthn.Credentials(u.creds).CredentialDescriptors()))
	opts, _ = json.Marshal(creation.Response)
	if _, err := call("MakeCredential", "https://login.example.com", string(opts), map[string]dbus.Variant{}); err == nil || err.(dbus.Error).Name != "org.authd.Error.InvalidStateError" {
		t.Errorf("excluded credential: %v", err)
	}

	// authctl, the thin client, against the real daemon.
	bin := filepath.Join(t.TempDir(), "authctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/authctl").CombinedOutput(); err != nil {
		t.Fatalf("build authctl: %v\n%s", err, out)
	}
	authctl := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--bus", bus.Addr}, args...)...)
		cmd.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+bus.Addr)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := authctl("list", "example")
	if err != nil || !strings.Contains(out, "example.com") || !strings.Contains(out, "carol@example.com") {
		t.Fatalf("authctl list: %v\n%s", err, out)
	}
	var listed []map[string]any
	out, err = authctl("list", "--json")
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 {
		t.Fatalf("authctl list --json: %v\n%s", err, out)
	}
	id, _ := listed[0]["id"].(string)
	if id == "" {
		t.Fatalf("no id in %v", listed[0])
	}
	if out, err := authctl("protect", id); err != nil {
		t.Fatalf("authctl protect: %v\n%s", err, out)
	}
	if out, err := authctl("delete", id); err == nil || !strings.Contains(out, "unprotect") {
		t.Fatalf("authctl delete of a protected passkey: %v\n%s", err, out)
	}
	if out, err := authctl("unprotect", id); err != nil {
		t.Fatalf("authctl unprotect: %v\n%s", err, out)
	}
	if out, err := authctl("delete", id); err != nil {
		t.Fatalf("authctl delete: %v\n%s", err, out)
	}
	if out, _ := authctl("list"); strings.Contains(out, "carol@example.com") {
		t.Fatalf("deleted passkey still listed:\n%s", out)
	}
	if out, err := authctl("status"); err != nil || !strings.Contains(out, "software") {
		t.Fatalf("authctl status: %v\n%s", err, out)
	}
}
