package webauthn

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/authd/authd/ipc"
)

// TestValidateRPID follows python-fido2's tests/test_rpid.py and the HTML
// "is a registrable domain suffix of or is equal to" algorithm.
func TestValidateRPID(t *testing.T) {
	for _, tc := range []struct {
		rpID, origin string
		ok           bool
	}{
		{"example.com", "https://register.example.com", true},
		{"example.com", "https://fido.example.com", true},
		{"example.com", "https://www.example.com:444", true},
		{"example.com", "http://example.com", false},
		{"example.com", "http://www.example.com", false},
		{"example.com", "https://example-test.com", false},
		{"companyA.hosting.example.com", "https://register.example.com", false},
		{"companyA.hosting.example.com", "https://companyB.hosting.example.com", false},
		{"example.com", "https://register.example.com.evil.net", false},
		{"xample.com", "https://example.com", false}, // label-aligned only
		{"co.uk", "https://foobar.co.uk", false},
		{"foobar.co.uk", "https://site.foobar.co.uk", true},
		{"appspot.com", "https://example.appspot.com", false},
		{"example.appspot.com", "https://example.appspot.com", true},
		// python-fido2 also tests *.bd, but the PSL in golang.org/x/net now
		// lists .bd's second-level domains explicitly; *.np and *.ck remain.
		{"example.np", "https://evil.example.np", false}, // *.np
		{"example.ck", "https://evil.example.ck", false},
		{"example.np", "https://example.np", false}, // a public suffix (*.np) never owns passkeys, even as its own host
		{"com", "https://com", false},
		{"", "https://github.io", false},
		{"www.ck", "https://sub.www.ck", true}, // !www.ck
		{"com", "https://example.com", false},
		{"localhost", "http://localhost", true},
		{"localhost", "http://example.localhost", true},
		{"example.localhost", "http://example.localhost", true},
		{"localhost", "http://localhost:8000", true},
		{"localhost", "https://localhost", true},
		{"localhost", "http://", false},
		{"127.0.0.1", "https://127.0.0.1", false},
		{"::1", "https://[::1]", false},
		{"example.com", "https://EXAMPLE.com", false}, // not a serialized origin
		{"example.com", "https://example.com/", false},
		{"example.com", "https://example.com:443", false},
		{"example.com", "https://user@example.com", false},
		{"", "https://login.example.com", true},
	} {
		got, err := ValidateRPID(tc.origin, tc.rpID)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateRPID(%q, %q) = %q, %v; want ok=%v", tc.origin, tc.rpID, got, err, tc.ok)
			continue
		}
		if err != nil && ipc.NameOf(err) != ipc.SecurityError {
			t.Errorf("ValidateRPID(%q, %q): %v, want SecurityError", tc.origin, tc.rpID, err)
		}
		if err == nil && tc.rpID == "" && got != "login.example.com" {
			t.Errorf("absent RP ID → %q", got)
		}
	}
	for _, o := range []string{"null", "", "file:///x", "data:text/plain,x", "about:blank"} {
		if _, err := ValidateRPID(o, "x"); ipc.NameOf(err) != ipc.NotAllowedError {
			t.Errorf("opaque origin %q: %v, want NotAllowedError", o, err)
		}
	}
}

// TestCCDToString checks the escaping of WebAuthn L3 §5.8.1.2 byte for byte.
func TestCCDToString(t *testing.T) {
	for in, want := range map[string]string{
		"abc":                `"abc"`,
		`a"b\c`:              `"a\"b\\c"`,
		"\x00\x1f\n\t":       `"\u0000\u001f\u000a\u0009"`,
		" !#[]~\x7f":         "\" !#[]~\x7f\"",
		"é€😀":                `"é€😀"`,
		"https://a.example/": `"https://a.example/"`,
		"<script>&'":         `"<script>&'"`,
	} {
		var b strings.Builder
		ccdToString(&b, in)
		if b.String() != want {
			t.Errorf("ccdToString(%q) = %s, want %s", in, b.String(), want)
		}
	}
	got := string(clientDataJSON(typeGet, []byte{0xfb, 0xff}, `https://a"b.example`, false, "https://top.example"))
	want := `{"type":"webauthn.get","challenge":"-_8","origin":"https://a\"b.example","crossOrigin":false}`
	if got != want {
		t.Errorf("clientDataJSON = %s, want %s", got, want)
	}
}

// TestPRFSalt: SHA-256("WebAuthn PRF" ‖ 0x00 ‖ input), a known answer
// (python3: hashlib.sha256(b"WebAuthn PRF\x00abc").hexdigest()).
func TestPRFSalt(t *testing.T) {
	const want = "425507dfa7404b2fc3743ff9673c78e7b3c2f9d298b533ae2d8277203f73f4b7"
	if got := hex.EncodeToString(prfSalt([]byte("abc"))); got != want {
		t.Fatalf("prf salt %s, want %s", got, want)
	}
}
