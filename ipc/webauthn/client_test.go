package webauthn_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	gowa "github.com/go-webauthn/webauthn/webauthn"

	"github.com/authd/authd/ipc"
	"github.com/authd/authd/ipc/webauthn"
)

// TestRegisterAndSignIn: registrations and sign-ins verified by go-webauthn,
// discoverable and not, with the response shape of PublicKeyCredential.toJSON().
func TestRegisterAndSignIn(t *testing.T) {
	e := newEnv(t, nil)
	u := newUser("alice@example.com")
	cred, m := e.register(u, gowa.WithExtensions(gowa.WithExtensionCredProps()))
	if m["type"] != "public-key" || m["authenticatorAttachment"] != "platform" || m["id"] != m["rawId"] {
		t.Fatalf("response: %v", m)
	}
	resp := m["response"].(map[string]any)
	if resp["publicKeyAlgorithm"] != float64(-7) || resp["publicKey"] == "" || resp["authenticatorData"] == "" {
		t.Fatalf("response.response: %v", resp)
	}
	if tr, _ := resp["transports"].([]any); len(tr) != 1 || tr[0] != "internal" {
		t.Fatalf("transports %v", resp["transports"])
	}
	// residentKey defaults to discouraged in go-webauthn's options.
	if got := m["clientExtensionResults"].(map[string]any)["credProps"]; got == nil || got.(map[string]any)["rk"] != false {
		t.Fatalf("credProps %v", got)
	}
	if cred.AttestationType != "none" {
		t.Fatalf("attestation type %q for conveyance none", cred.AttestationType)
	}
	last := cred.Authenticator.SignCount
	for range 2 {
		got, m := e.login(u, nil)
		if got.Authenticator.SignCount <= last {
			t.Fatal("sign count did not grow")
		}
		last = got.Authenticator.SignCount
		u.creds[0].Authenticator.SignCount = last
		if _, ok := m["response"].(map[string]any)["userHandle"]; ok {
			t.Fatal("userHandle for a non-discoverable credential")
		}
	}

	// Discoverable: credProps rk true, found without allowCredentials.
	v := newUser("bob@example.com")
	_, m = e.register(v, gowa.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		gowa.WithExtensions(gowa.WithExtensionCredProps()), gowa.WithConveyancePreference(protocol.PreferDirectAttestation))
	if got := m["clientExtensionResults"].(map[string]any)["credProps"].(map[string]any)["rk"]; got != true {
		t.Fatalf("credProps.rk %v", got)
	}
	_, m = e.login(nil, []*rpUser{v})
	if unb64(t, m["response"].(map[string]any)["userHandle"]) == nil {
		t.Fatal("no userHandle")
	}
}

// TestAttestationConveyance: none → fmt none; direct → packed self attestation.
func TestAttestationConveyance(t *testing.T) {
	e := newEnv(t, nil)
	cred, _ := e.register(newUser("a"), gowa.WithConveyancePreference(protocol.PreferDirectAttestation))
	if cred.AttestationType != "basic_surrogate" { // go-webauthn's name for packed self attestation
		t.Fatalf("direct: attestation type %q", cred.AttestationType)
	}
	cred, _ = e.register(newUser("b"), gowa.WithConveyancePreference(protocol.PreferNoAttestation))
	if cred.AttestationType != "none" {
		t.Fatalf("none: attestation type %q", cred.AttestationType)
	}
}

// TestEdDSAAndAlgorithms: EdDSA when the RP prefers it; no supported
// algorithm → NotSupportedError; an empty list means ES256/RS256.
func TestEdDSAAndAlgorithms(t *testing.T) {
	e := newEnv(t, nil)
	_, m := e.register(newUser("a"), gowa.WithCredentialParameters([]protocol.CredentialParameter{{Type: "public-key", Algorithm: -8}, {Type: "public-key", Algorithm: -7}}))
	if alg := m["response"].(map[string]any)["publicKeyAlgorithm"]; alg != float64(-8) {
		t.Fatalf("alg %v", alg)
	}
	opts := creationJSON(t, func(o map[string]any) {
		o["pubKeyCredParams"] = []any{map[string]any{"type": "public-key", "alg": -257}}
	})
	_, err := e.c.Create(context.Background(), testOrigin, opts, ipc.Hints{})
	wantErr(t, err, ipc.NotSupportedError)
	opts = creationJSON(t, func(o map[string]any) { o["pubKeyCredParams"] = []any{} })
	out, err := e.c.Create(context.Background(), testOrigin, opts, ipc.Hints{})
	if err != nil {
		t.Fatal(err)
	}
	var m2 map[string]any
	json.Unmarshal(out, &m2)
	if alg := m2["response"].(map[string]any)["publicKeyAlgorithm"]; alg != float64(-7) {
		t.Fatalf("default alg %v", alg)
	}
}

// creationJSON is a minimal valid PublicKeyCredentialCreationOptionsJSON,
// modified by edit.
func creationJSON(t *testing.T, edit func(map[string]any)) []byte {
	o := map[string]any{
		"rp":               map[string]any{"id": testRPID, "name": "Example"},
		"user":             map[string]any{"id": b64([]byte("user-1")), "name": "u", "displayName": "U"},
		"challenge":        b64([]byte("0123456789abcdef")),
		"pubKeyCredParams": []any{map[string]any{"type": "public-key", "alg": -7}},
	}
	if edit != nil {
		edit(o)
	}
	return mustJSON(t, o)
}

func requestJSON(t *testing.T, edit func(map[string]any)) []byte {
	o := map[string]any{"rpId": testRPID, "challenge": b64([]byte("0123456789abcdef"))}
	if edit != nil {
		edit(o)
	}
	return mustJSON(t, o)
}

// TestUVRequiredWithPIN: userVerification required with a PIN set and no
// built-in UV: the client asks for the PIN (wrong, then right), gets a token
// and the RP sees UV.
func TestUVRequiredWithPIN(t *testing.T) {
	e := newEnv(t, nil)
	e.setPIN("1234")
	e.pin.answers = []string{"9999", "1234"}
	u := newUser("carol")
	cred, _ := e.register(u, gowa.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
		UserVerification: protocol.VerificationRequired, ResidentKey: protocol.ResidentKeyRequirementRequired}))
	if !cred.Flags.UserVerified {
		t.Fatal("UV flag not set")
	}
	if len(e.pin.asked) != 2 || e.pin.asked[0] != [2]int{1, 8} || e.pin.asked[1] != [2]int{2, 7} {
		t.Fatalf("PIN prompts (attempt, retries): %v", e.pin.asked)
	}
	e.pin.answers = []string{"1234"}
	got, _ := e.login(nil, []*rpUser{u}, gowa.WithUserVerification(protocol.VerificationRequired))
	if !got.Flags.UserVerified {
		t.Fatal("assertion without UV")
	}
	// Discouraged: no PIN prompt, no UV; a non-discoverable credential is fine.
	e.pin.asked = nil
	w := newUser("dave")
	cred, _ = e.register(w, gowa.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationDiscouraged}))
	if cred.Flags.UserVerified || len(e.pin.asked) != 0 {
		t.Fatalf("discouraged: UV %v, prompts %v", cred.Flags.UserVerified, e.pin.asked)
	}
	// Prompt cancelled → NotAllowedError.
	e.pin.answers = nil
	_, err := e.c.Get(context.Background(), testOrigin, requestJSON(t, func(o map[string]any) { o["userVerification"] = "required" }), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
}

// TestPINBlocked: three wrong PINs in a row → NotAllowedError.
func TestPINBlocked(t *testing.T) {
	e := newEnv(t, nil)
	e.setPIN("1234")
	e.pin.answers = []string{"1", "2", "3", "1234"}
	_, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) {
		o["authenticatorSelection"] = map[string]any{"userVerification": "required"}
	}), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
	if len(e.pin.asked) != 3 {
		t.Fatalf("asked %d times", len(e.pin.asked))
	}
}

// TestUVRequiredWithoutPIN: nothing to verify with → NotAllowedError.
func TestUVRequiredWithoutPIN(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) {
		o["authenticatorSelection"] = map[string]any{"userVerification": "required"}
	}), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
}

// TestBuiltInUV: the fingerprint first; when it fails, the PIN.
func TestBuiltInUV(t *testing.T) {
	v := &verifier{}
	e := newEnv(t, v)
	e.setPIN("1234")
	sel := gowa.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired})
	cred, _ := e.register(newUser("a"), sel)
	if !cred.Flags.UserVerified || v.calls == 0 || len(e.pin.asked) != 0 {
		t.Fatalf("UV %v, fingerprint calls %d, PIN prompts %v", cred.Flags.UserVerified, v.calls, e.pin.asked)
	}
	v.fail = true
	e.pin.answers = []string{"1234"}
	cred, _ = e.register(newUser("b"), sel)
	if !cred.Flags.UserVerified || len(e.pin.asked) != 1 {
		t.Fatalf("fallback: UV %v, PIN prompts %v", cred.Flags.UserVerified, e.pin.asked)
	}
}

// TestPRF: prf at create (enabled, and results through hmac-secret-mc), at
// get (same salt → same output, other salt → other output), evalByCredential.
func TestPRF(t *testing.T) {
	e := newEnv(t, nil)
	u := newUser("prf")
	salt := []byte("salt one")
	_, m := e.register(u, gowa.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		gowa.WithExtensions(gowa.WithExtensionPRF(protocol.PRFValues{First: salt})))
	prf := m["clientExtensionResults"].(map[string]any)["prf"].(map[string]any)
	if prf["enabled"] != true {
		t.Fatalf("prf at create: %v", prf)
	}
	createFirst, _ := prf["results"].(map[string]any)["first"].(string)
	eval := func(opts ...gowa.LoginOption) map[string]any {
		_, m := e.login(u, nil, opts...)
		return m["clientExtensionResults"].(map[string]any)["prf"].(map[string]any)["results"].(map[string]any)
	}
	r1 := eval(gowa.WithAssertionExtensions(gowa.WithExtensionPRF(protocol.PRFValues{First: salt, Second: []byte("two")})))
	r2 := eval(gowa.WithAssertionExtensions(gowa.WithExtensionPRF(protocol.PRFValues{First: salt})))
	r3 := eval(gowa.WithAssertionExtensions(gowa.WithExtensionPRF(protocol.PRFValues{First: []byte("other")})))
	if r1["first"] == nil || r1["first"] != r2["first"] || r1["second"] == nil || r2["second"] != nil || r3["first"] == r1["first"] {
		t.Fatalf("prf results: %v %v %v", r1, r2, r3)
	}
	// Without UV at create and at get the hmac-secret without-UV secret is
	// used both times, so the create-time result matches.
	if createFirst != r2["first"] {
		t.Fatalf("prf at create %v, at get %v", createFirst, r2["first"])
	}
	id := u.creds[0].ID
	r4 := eval(gowa.WithAssertionExtensions(gowa.WithExtensionPRFByCredential(map[string]protocol.PRFValues{b64(id): {First: []byte("other")}}, nil)))
	if r4["first"] != r3["first"] {
		t.Fatalf("evalByCredential %v, eval %v", r4, r3)
	}
	// evalByCredential without allowCredentials → NotSupportedError.
	_, err := e.c.Get(context.Background(), testOrigin, requestJSON(t, func(o map[string]any) {
		o["extensions"] = map[string]any{"prf": map[string]any{"evalByCredential": map[string]any{b64(id): map[string]any{"first": b64(salt)}}}}
	}), ipc.Hints{})
	wantErr(t, err, ipc.NotSupportedError)
}

// TestExcludedCredential: excludeCredentials naming an existing credential → InvalidStateError.
func TestExcludedCredential(t *testing.T) {
	e := newEnv(t, nil)
	u := newUser("x")
	cred, _ := e.register(u)
	_, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) {
		o["excludeCredentials"] = []any{map[string]any{"type": "public-key", "id": b64(cred.ID)}}
	}), ipc.Hints{})
	wantErr(t, err, ipc.InvalidStateError)
}

// TestNoCredentials: nothing matches → NotAllowedError.
func TestNoCredentials(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.c.Get(context.Background(), testOrigin, requestJSON(t, nil), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
	_, err = e.c.Get(context.Background(), testOrigin, requestJSON(t, func(o map[string]any) {
		o["allowCredentials"] = []any{map[string]any{"type": "public-key", "id": b64(make([]byte, 32))}}
	}), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
}

// TestCancelTimeoutDeny: the caller's cancellation → AbortError; the timeout
// → NotAllowedError; the user declining → NotAllowedError.
func TestCancelTimeoutDeny(t *testing.T) {
	e := newEnv(t, nil)
	e.up.block = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, err := e.c.Create(ctx, testOrigin, creationJSON(t, nil), ipc.Hints{})
	wantErr(t, err, ipc.AbortError)

	_, err = e.c.Create(context.Background(), testOrigin, creationJSON(t, nil), ipc.Hints{Timeout: 100 * time.Millisecond})
	wantErr(t, err, ipc.NotAllowedError)
	if !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timeout message: %v", err)
	}

	e.up.block = false
	e.up.deny = errDeclined
	_, err = e.c.Create(context.Background(), testOrigin, creationJSON(t, nil), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
}

var errDeclined = &declined{}

type declined struct{}

func (*declined) Error() string { return "user declined" }

// TestMultipleAccounts: several discoverable credentials; the chooser picks.
func TestMultipleAccounts(t *testing.T) {
	e := newEnv(t, nil)
	rk := gowa.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired)
	a, b := newUser("a"), newUser("b")
	e.register(a, rk)
	e.register(b, rk)
	_, m := e.login(nil, []*rpUser{a, b})
	first := unb64(t, m["response"].(map[string]any)["userHandle"])
	ch := &chooser{pick: 1}
	e.c.Accounts = ch
	_, m = e.login(nil, []*rpUser{a, b})
	second := unb64(t, m["response"].(map[string]any)["userHandle"])
	if len(ch.seen) != 2 || string(first) == string(second) || string(ch.seen[1].UserID) != string(second) {
		t.Fatalf("accounts %v, first %x, second %x", ch.seen, first, second)
	}
}

type chooser struct {
	pick int
	seen []webauthn.Account
}

func (c *chooser) ChooseAccount(ctx context.Context, rpID string, accounts []webauthn.Account) (int, error) {
	c.seen = accounts
	return c.pick, nil
}

// TestMalformedOptions: TypeError for bad JSON and bad members.
func TestMalformedOptions(t *testing.T) {
	e := newEnv(t, nil)
	for name, opts := range map[string][]byte{
		"not json":      []byte("{"),
		"empty":         nil,
		"array":         []byte("[]"),
		"no challenge":  creationJSON(t, func(o map[string]any) { delete(o, "challenge") }),
		"no rp":         creationJSON(t, func(o map[string]any) { delete(o, "rp") }),
		"no user":       creationJSON(t, func(o map[string]any) { delete(o, "user") }),
		"no params":     creationJSON(t, func(o map[string]any) { delete(o, "pubKeyCredParams") }),
		"bad base64":    creationJSON(t, func(o map[string]any) { o["challenge"] = "***" }),
		"empty user.id": creationJSON(t, func(o map[string]any) { o["user"].(map[string]any)["id"] = "" }),
		"long user.id":  creationJSON(t, func(o map[string]any) { o["user"].(map[string]any)["id"] = b64(make([]byte, 65)) }),
		"wrong type":    creationJSON(t, func(o map[string]any) { o["challenge"] = 5 }),
		"param no alg":  creationJSON(t, func(o map[string]any) { o["pubKeyCredParams"] = []any{map[string]any{"type": "public-key"}} }),
		"exclude no id": creationJSON(t, func(o map[string]any) { o["excludeCredentials"] = []any{map[string]any{"type": "public-key"}} }),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.c.Create(context.Background(), testOrigin, opts, ipc.Hints{})
			wantErr(t, err, ipc.TypeError)
		})
	}
	_, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) {
		o["user"].(map[string]any)["id"] = b64(make([]byte, 64))
	}), ipc.Hints{})
	if err != nil {
		t.Fatalf("64-byte user.id: %v", err)
	}
	for name, opts := range map[string][]byte{
		"not json":     []byte(`{"challenge":`),
		"no challenge": requestJSON(t, func(o map[string]any) { delete(o, "challenge") }),
		"allow bad id": requestJSON(t, func(o map[string]any) { o["allowCredentials"] = []any{map[string]any{"type": "public-key", "id": "!"}} }),
	} {
		t.Run("get "+name, func(t *testing.T) {
			_, err := e.c.Get(context.Background(), testOrigin, opts, ipc.Hints{})
			wantErr(t, err, ipc.TypeError)
		})
	}
}

// TestOriginErrors: origin and RP ID errors at the API, by name.
func TestOriginErrors(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		origin, rpID, want string
	}{
		{"http://login.example.com", testRPID, ipc.SecurityError},
		{"https://evil.example.net", testRPID, ipc.SecurityError},
		{"https://login.example.com", "com", ipc.SecurityError},
		{"https://login.example.com", "", ipc.SecurityError}, // present but empty
		{"null", testRPID, ipc.NotAllowedError},
		{"file:///etc/passwd", testRPID, ipc.NotAllowedError},
		{"https://127.0.0.1", "127.0.0.1", ipc.SecurityError},
		{"https://login.example.com/path", testRPID, ipc.SecurityError},
		{"ftp://login.example.com", testRPID, ipc.SecurityError},
	} {
		opts := creationJSON(t, func(o map[string]any) { o["rp"].(map[string]any)["id"] = tc.rpID })
		_, err := e.c.Create(context.Background(), tc.origin, opts, ipc.Hints{})
		wantErr(t, err, tc.want)
		_, err = e.c.Get(context.Background(), tc.origin, requestJSON(t, func(o map[string]any) { o["rpId"] = tc.rpID }), ipc.Hints{})
		wantErr(t, err, tc.want)
	}
	// A parent domain and localhost work.
	if _, err := e.c.Create(context.Background(), "https://login.example.com:8443", creationJSON(t, func(o map[string]any) { o["rp"].(map[string]any)["id"] = "example.com" }), ipc.Hints{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Create(context.Background(), "http://localhost:8080", creationJSON(t, func(o map[string]any) { delete(o["rp"].(map[string]any), "id") }), ipc.Hints{}); err != nil {
		t.Fatal(err)
	}
}

// TestClientDataJSON: the clientDataJSON in a response is byte-exact, with
// crossOrigin/topOrigin from the top_origin hint.
func TestClientDataJSON(t *testing.T) {
	e := newEnv(t, nil)
	out, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, nil), ipc.Hints{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	got := string(unb64(t, m["response"].(map[string]any)["clientDataJSON"]))
	want := `{"type":"webauthn.create","challenge":"MDEyMzQ1Njc4OWFiY2RlZg","origin":"https://login.example.com","crossOrigin":false}`
	if got != want {
		t.Fatalf("clientDataJSON\n got %s\nwant %s", got, want)
	}
	out, err = e.c.Get(context.Background(), testOrigin, requestJSON(t, func(o map[string]any) {
		o["allowCredentials"] = []any{map[string]any{"type": "public-key", "id": m["id"]}}
	}), ipc.Hints{TopOrigin: "https://top.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(out, &m)
	got = string(unb64(t, m["response"].(map[string]any)["clientDataJSON"]))
	want = `{"type":"webauthn.get","challenge":"MDEyMzQ1Njc4OWFiY2RlZg","origin":"https://login.example.com","crossOrigin":true,"topOrigin":"https://top.example.org"}`
	if got != want {
		t.Fatalf("clientDataJSON\n got %s\nwant %s", got, want)
	}
	_, err = e.c.Get(context.Background(), testOrigin, requestJSON(t, nil), ipc.Hints{TopOrigin: "http://top.example.org"})
	wantErr(t, err, ipc.SecurityError)
}

// TestCredProtect: credentialProtectionPolicy reaches the authenticator
// (userVerificationRequired: not usable without UV).
func TestCredProtect(t *testing.T) {
	e := newEnv(t, nil)
	e.setPIN("1234")
	e.pin.answers = []string{"1234"}
	u := newUser("cp")
	e.register(u, gowa.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		gowa.WithExtensions(gowa.WithExtensionCredentialProtectionPolicy(protocol.CredentialProtectionPolicyUserVerificationRequired, true)))
	_, err := e.c.Get(context.Background(), testOrigin, requestJSON(t, func(o map[string]any) { o["userVerification"] = "discouraged" }), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
	e.pin.answers = []string{"1234"}
	e.login(nil, []*rpUser{u}, gowa.WithUserVerification(protocol.VerificationRequired))
}

// TestLongLists: exclude and allow lists longer than the authenticator's
// maxCredentialCountInList (64) are probed in chunks; evalByCredential with
// several allowed credentials picks the salts of the one found.
func TestLongLists(t *testing.T) {
	e := newEnv(t, nil)
	u := newUser("long")
	cred, _ := e.register(u, gowa.WithExtensions(gowa.WithExtensionPRFSupport()))
	var list []any
	for i := range 100 {
		id := make([]byte, 32)
		id[0] = byte(i)
		list = append(list, map[string]any{"type": "public-key", "id": b64(id)})
	}
	withCred := append(append([]any{}, list...), map[string]any{"type": "public-key", "id": b64(cred.ID)})
	_, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) { o["excludeCredentials"] = withCred }), ipc.Hints{})
	wantErr(t, err, ipc.InvalidStateError)
	if _, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) { o["excludeCredentials"] = list }), ipc.Hints{}); err != nil {
		t.Fatalf("100 unknown excluded credentials: %v", err)
	}
	_, err = e.c.Get(context.Background(), testOrigin, requestJSON(t, func(o map[string]any) { o["allowCredentials"] = list }), ipc.Hints{})
	wantErr(t, err, ipc.NotAllowedError)
	salt := b64([]byte("salt"))
	get := func(allow []any, byCred map[string]any) map[string]any {
		out, err := e.c.Get(context.Background(), testOrigin, requestJSON(t, func(o map[string]any) {
			o["allowCredentials"] = allow
			o["extensions"] = map[string]any{"prf": map[string]any{"evalByCredential": byCred}}
		}), ipc.Hints{})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(out, &m)
		if m["id"] != b64(cred.ID) {
			t.Fatalf("credential %v", m["id"])
		}
		return m["clientExtensionResults"].(map[string]any)["prf"].(map[string]any)
	}
	one := get([]any{map[string]any{"type": "public-key", "id": b64(cred.ID)}}, map[string]any{b64(cred.ID): map[string]any{"first": salt}})
	many := get(withCred, map[string]any{b64(cred.ID): map[string]any{"first": salt}, list[0].(map[string]any)["id"].(string): map[string]any{"first": b64([]byte("x"))}})
	if one["results"] == nil || one["results"].(map[string]any)["first"] != many["results"].(map[string]any)["first"] {
		t.Fatalf("prf by credential: %v vs %v", one, many)
	}
}
