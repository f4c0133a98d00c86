package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/internal/daemon"
	"github.com/authd/authd/ipc"
)

// approve confirms every presence request, as a user pressing "Allow".
type approve struct{}

func (approve) ConfirmPresence(context.Context, string, string, string) error { return nil }

// browser is the test's browser: a cookie jar for the site and authd's own
// WebAuthn client (the daemon's local API) as navigator.credentials.
type browser struct {
	t      *testing.T
	srv    *httptest.Server
	rp     *Server
	http   *http.Client
	b      ipc.Backend
	origin string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	d, err := daemon.New(daemon.Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: approve{}, BootID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	// The handler is made first so that its origin can name the port.
	var rp *Server
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rp.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	origin := "http://localhost:" + srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	rp, err = NewServer(Config{RPID: "localhost", RPName: "authd demo", Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, srv: srv, rp: rp, http: newClient(t), b: d.Backend(), origin: origin}
}

func newClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// post sends JSON as the page's script does and returns status and body.
func (br *browser) post(path string, body []byte) (int, []byte) {
	br.t.Helper()
	req, _ := http.NewRequest("POST", br.srv.URL+path, bytes.NewReader(body))
	req.Host = strings.TrimPrefix(br.origin, "http://") // as a browser at the origin
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", br.origin)
	resp, err := br.http.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		if json.Unmarshal(out, &e) != nil || e.Error == "" {
			br.t.Errorf("%s: error %d without a JSON error: %s", path, resp.StatusCode, out)
		}
	}
	return resp.StatusCode, out
}

func (br *browser) mustPost(path string, body []byte) []byte {
	br.t.Helper()
	code, out := br.post(path, body)
	if code != 200 {
		br.t.Fatalf("%s: %d %s", path, code, out)
	}
	return out
}

func userJSON(name string) []byte {
	b, _ := json.Marshal(map[string]string{"username": name})
	return b
}

func (br *browser) get(path string, accept string) (int, string) {
	br.t.Helper()
	req, _ := http.NewRequest("GET", br.srv.URL+path, nil)
	req.Host = strings.TrimPrefix(br.origin, "http://")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := br.http.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// create is navigator.credentials.create + toJSON: authd's client.
func (br *browser) create(options []byte) []byte {
	br.t.Helper()
	resp, err := br.b.MakeCredential(context.Background(), ipc.Peer{}, br.origin, options, ipc.Hints{})
	if err != nil {
		br.t.Fatalf("MakeCredential: %v", err)
	}
	return resp
}

func (br *browser) getAssertion(options []byte) []byte {
	br.t.Helper()
	resp, err := br.b.GetAssertion(context.Background(), ipc.Peer{}, br.origin, options, ipc.Hints{})
	if err != nil {
		br.t.Fatalf("GetAssertion: %v", err)
	}
	return resp
}

func (br *browser) register(name string) {
	br.t.Helper()
	opts := br.mustPost("/register/begin", userJSON(name))
	var o map[string]any
	json.Unmarshal(opts, &o)
	sel, _ := o["authenticatorSelection"].(map[string]any)
	if sel["residentKey"] != "required" || sel["userVerification"] != "preferred" || (o["attestation"] != nil && o["attestation"] != "none") {
		br.t.Fatalf("creation options %s", opts)
	}
	out := br.mustPost("/register/finish", br.create(opts))
	if !strings.Contains(string(out), `"user":"`+name+`"`) {
		br.t.Fatalf("register/finish: %s", out)
	}
}

// login signs in with username ("" = discoverable) and returns the user.
func (br *browser) login(name string) string {
	br.t.Helper()
	var body []byte
	if name != "" {
		body = userJSON(name)
	}
	opts := br.mustPost("/login/begin", body)
	var o map[string]any
	json.Unmarshal(opts, &o)
	allow, _ := o["allowCredentials"].([]any)
	if (name == "") != (len(allow) == 0) {
		br.t.Fatalf("request options for %q: %s", name, opts)
	}
	var res struct{ User string }
	json.Unmarshal(br.mustPost("/login/finish", br.getAssertion(opts)), &res)
	return res.User
}

type meJSON struct {
	User     string
	Passkeys []struct {
		ID        string
		SignCount uint32
		Created   string
	}
}

func (br *browser) me() (int, meJSON) {
	br.t.Helper()
	code, body := br.get("/me", "application/json")
	var m meJSON
	json.Unmarshal([]byte(body), &m)
	return code, m
}

func TestRegisterAndSignIn(t *testing.T) {
	br := newBrowser(t)
	code, page := br.get("/", "")
	if code != 200 || !strings.Contains(page, `id="status"`) || !strings.Contains(page, `id="user"`) || !strings.Contains(page, "Create a passkey") {
		t.Fatalf("GET /: %d %s", code, page)
	}
	if code, js := br.get("/static/app.js", ""); code != 200 || !strings.Contains(js, "parseCreationOptionsFromJSON") {
		t.Fatalf("app.js: %d", code)
	}
	if code, _ := br.me(); code != http.StatusUnauthorized {
		t.Fatalf("/me before sign-in: %d", code)
	}

	br.register("alice")
	code, m := br.me()
	if code != 200 || m.User != "alice" || len(m.Passkeys) != 1 || m.Passkeys[0].Created == "" {
		t.Fatalf("/me after registration: %d %+v", code, m)
	}
	br.mustPost("/logout", nil)
	if code, _ := br.me(); code != http.StatusUnauthorized {
		t.Fatalf("/me after logout: %d", code)
	}

	// Discoverable, then with a username (allowCredentials); the counter grows.
	if u := br.login(""); u != "alice" {
		t.Fatalf("discoverable sign-in as %q", u)
	}
	_, m = br.me()
	first := m.Passkeys[0].SignCount
	br.mustPost("/logout", nil)
	if u := br.login("alice"); u != "alice" {
		t.Fatalf("sign-in with username as %q", u)
	}
	_, m = br.me()
	if m.Passkeys[0].SignCount <= first && first != 0 {
		t.Fatalf("sign count %d after %d", m.Passkeys[0].SignCount, first)
	}
	code, html := br.get("/me", "")
	if code != 200 || !strings.Contains(html, `<span id="user">alice</span>`) || !strings.Contains(html, m.Passkeys[0].ID) || !strings.Contains(html, `id="passkeys"`) {
		t.Fatalf("signed-in page: %d %s", code, html)
	}

	// A second account on the same authenticator: discoverable sign-in
	// still lands on an account (authd asks which; the test picks the first).
	br.mustPost("/logout", nil)
	br.register("bob")
	if u := br.login("bob"); u != "bob" {
		t.Fatalf("bob signed in as %q", u)
	}
}

func TestRejections(t *testing.T) {
	br := newBrowser(t)
	br.register("alice")

	// Someone else cannot add a passkey to alice's account.
	other := &browser{t: t, srv: br.srv, rp: br.rp, http: newClient(t), b: br.b, origin: br.origin}
	if code, _ := other.post("/register/begin", userJSON("alice")); code != http.StatusConflict {
		t.Fatalf("register an existing name while signed out: %d", code)
	}
	// Signed in, alice may add one; the authenticator's existing passkey is excluded.
	opts := br.mustPost("/register/begin", userJSON("alice"))
	if !strings.Contains(string(opts), "excludeCredentials") {
		t.Fatalf("no exclusions: %s", opts)
	}
	if _, err := br.b.MakeCredential(context.Background(), ipc.Peer{}, br.origin, opts, ipc.Hints{}); ipc.NameOf(err) != ipc.InvalidStateError {
		t.Fatalf("excluded credential: %v", err)
	}

	for _, tc := range []struct{ path, body string }{
		{"/login/begin", `{"username":"nobody"}`},
		{"/login/begin", `not json`},
		{"/register/begin", `{}`},
		{"/register/finish", `{}`},
		{"/login/finish", `{}`},
	} {
		if code, out := br.post(tc.path, []byte(tc.body)); code < 400 || code >= 500 {
			t.Errorf("%s %s: %d %s", tc.path, tc.body, code, out)
		}
	}
	// Cross-origin POSTs are refused.
	req, _ := http.NewRequest("POST", br.srv.URL+"/login/begin", strings.NewReader(`{}`))
	req.Header.Set("Origin", "http://evil.localhost:1")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin: %v %v", resp, err)
	}

	// Tampered responses.
	tamper := func(name string, edit func(resp map[string]any)) {
		t.Run(name, func(t *testing.T) {
			br.t = t
			opts := br.mustPost("/login/begin", nil)
			var cred map[string]any
			json.Unmarshal(br.getAssertion(opts), &cred)
			edit(cred["response"].(map[string]any))
			body, _ := json.Marshal(cred)
			if code, out := br.post("/login/finish", body); code != http.StatusBadRequest {
				t.Fatalf("tampered response accepted: %d %s", code, out)
			}
			// The ceremony is used up: replaying the untampered one is refused too.
			if code, _ := br.post("/login/finish", body); code != http.StatusBadRequest {
				t.Fatal("ceremony reusable")
			}
		})
	}
	b64 := base64.RawURLEncoding
	tamper("challenge", func(r map[string]any) {
		raw, _ := b64.DecodeString(r["clientDataJSON"].(string))
		var cd map[string]any
		json.Unmarshal(raw, &cd)
		cd["challenge"] = b64.EncodeToString(bytes.Repeat([]byte{7}, 32))
		raw, _ = json.Marshal(cd)
		r["clientDataJSON"] = b64.EncodeToString(raw)
	})
	tamper("signature", func(r map[string]any) {
		sig, _ := b64.DecodeString(r["signature"].(string))
		sig[len(sig)-1] ^= 1
		r["signature"] = b64.EncodeToString(sig)
	})
	tamper("authenticatorData", func(r map[string]any) {
		ad, _ := b64.DecodeString(r["authenticatorData"].(string))
		ad[len(ad)-1] ^= 1 // the counter
		r["authenticatorData"] = b64.EncodeToString(ad)
	})
	br.t = t

	// A registration response with another challenge is rejected too.
	opts = other.mustPost("/register/begin", userJSON("carol"))
	resp := other.create(opts)
	_ = other.mustPost("/register/begin", userJSON("carol")) // a new challenge replaces the old
	if code, _ := other.post("/register/finish", resp); code != http.StatusBadRequest {
		t.Fatalf("stale registration accepted: %d", code)
	}

	// Clone detection: the stored counter is ahead of the authenticator's.
	br.rp.mu.Lock()
	for _, c := range br.rp.users["alice"].creds {
		c.Authenticator.SignCount = 1 << 30
	}
	br.rp.mu.Unlock()
	opts = br.mustPost("/login/begin", userJSON("alice"))
	if code, out := br.post("/login/finish", br.getAssertion(opts)); code != http.StatusForbidden || !strings.Contains(string(out), "cloned") {
		t.Fatalf("clone warning: %d %s", code, out)
	}
	br.rp.mu.Lock()
	warned := br.rp.users["alice"].creds[0].Authenticator.CloneWarning
	br.rp.mu.Unlock()
	if !warned {
		t.Fatal("clone warning not recorded")
	}
}

func TestPageRedirectsToOrigin(t *testing.T) {
	rp, err := NewServer(Config{RPID: "localhost", Origin: "http://localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	rp.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1:8080/", nil))
	if w.Code != http.StatusFound || w.Header().Get("Location") != "http://localhost:8080/" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	w = httptest.NewRecorder()
	rp.ServeHTTP(w, httptest.NewRequest("GET", "http://localhost:8080/me", nil))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `id="status"`) {
		t.Fatalf("/me signed out: %d %s", w.Code, w.Body)
	}
}
