package uv

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMessage(t *testing.T) {
	tests := []struct {
		op, rp, user, want string
	}{
		{OpMakeCredential, "example.com", "user", `Create a passkey for "user" on example.com?`},
		{OpMakeCredential, "example.com", "", `Create a passkey on example.com?`},
		{OpGetAssertion, "example.com", "user", `Sign in to example.com as "user"?`},
		{OpGetAssertion, "example.com", "", `Sign in to example.com?`},
		{OpReset, "", "", `ERASE EVERY PASSKEY stored in authd and its PIN? This cannot be undone.`},
		{OpSelection, "", "", `Select authd as your authenticator?`},
		{OpCredentialExcluded, "example.com", "user", `You already have a passkey for example.com. Confirm to acknowledge.`},
		{OpGetAssertion, "", "", `Sign in to an unnamed website?`},
		{OpMakeCredential, "example.com", `a" on good.com and "b`, `Create a passkey for "a\" on good.com and \"b" on example.com?`},
		{OpMakeCredential, "bücher.example", "Zoë", `Create a passkey for "Zoë" on bücher.example?`},
		{"frobnicate", "example.com", "", `Allow authd operation "frobnicate" on example.com?`},
	}
	for _, tt := range tests {
		if got := Message(tt.op, tt.rp, tt.user); got != tt.want {
			t.Errorf("Message(%q, %q, %q) = %q, want %q", tt.op, tt.rp, tt.user, got, tt.want)
		}
	}
}

func TestMessageSanitises(t *testing.T) {
	rp := "evil.example\x1b]0;pwned\x07\x1b[2J\x1b[1;31m\u202egro.elpmaxe\r\nok"
	user := "victim\x1b[8m\x00\u009b31m\u200b\ufeff\u2028x\x9b"
	msg := Message(OpGetAssertion, rp, user)
	for _, bad := range []string{"\x1b", "\x07", "\x00", "\r", "\n", "\u009b", "\u202e", "\u200b", "\ufeff", "\u2028"} {
		if strings.Contains(msg, bad) {
			t.Errorf("Message kept %q: %q", bad, msg)
		}
	}
	// A raw 0x9b byte is CSI to an 8-bit terminal; as invalid UTF-8 it
	// becomes U+FFFD.
	if !utf8.ValidString(msg) {
		t.Errorf("Message is not valid UTF-8: %q", msg)
	}
	want := "Sign in to evil.example]0;pwned[2J[1;31mgro.elpmaxeok as \"victim[8m31mx\ufffd\"?"
	if msg != want {
		t.Errorf("Message = %q, want %q", msg, want)
	}
}

func TestSanitizeCapsLength(t *testing.T) {
	long := strings.Repeat("a", 1000)
	got := Message(OpMakeCredential, long, long)
	if n := utf8.RuneCountInString(got); n > maxRPIDRunes+maxUserRunes+64 {
		t.Errorf("Message is %d runes long", n)
	}
	if !strings.Contains(got, strings.Repeat("a", maxUserRunes)+`…"`) {
		t.Errorf("user name not cut at %d runes with an ellipsis: %q", maxUserRunes, got)
	}
	if got := Sanitize("ééé", 3); got != "ééé" {
		t.Errorf("Sanitize at the limit = %q", got)
	}
	if got := Sanitize("éééé", 3); got != "ééé…" {
		t.Errorf("Sanitize over the limit = %q", got)
	}
	// Removed characters do not count toward the limit.
	if got := Sanitize("\x1b\x1b\x1babc", 3); got != "abc" {
		t.Errorf("Sanitize = %q, want abc", got)
	}
}
