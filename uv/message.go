package uv

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Display limits, in runes. An RP ID is a DNS name (at most 253 bytes); CTAP
// lets authenticators truncate user names to 64 bytes. Anything longer is
// either abuse or useless on a prompt.
const (
	maxRPIDRunes = 128
	maxUserRunes = 64
)

// Message returns the question put to the user for op. rpID and userName come
// from remote websites, so they are sanitised (see Sanitize) before display.
// Reset's message states plainly that every passkey will be erased.
func Message(op, rpID, userName string) string {
	rp := Sanitize(rpID, maxRPIDRunes)
	if rp == "" {
		rp = "an unnamed website"
	}
	user := Sanitize(userName, maxUserRunes)
	switch op {
	case OpMakeCredential:
		if user == "" {
			return fmt.Sprintf("Create a passkey on %s?", rp)
		}
		return fmt.Sprintf("Create a passkey for %s on %s?", quote(user), rp)
	case OpGetAssertion:
		if user == "" {
			return fmt.Sprintf("Sign in to %s?", rp)
		}
		return fmt.Sprintf("Sign in to %s as %s?", rp, quote(user))
	case OpReset:
		return "ERASE EVERY PASSKEY stored in authd and its PIN? This cannot be undone."
	case OpSelection:
		return "Select authd as your authenticator?"
	case OpCredentialExcluded:
		return fmt.Sprintf("You already have a passkey for %s. Confirm to acknowledge.", rp)
	default:
		return fmt.Sprintf("Allow authd operation %s on %s?", quote(Sanitize(op, 32)), rp)
	}
}

// quote wraps s in double quotes, escaping quotes and backslashes inside it so
// that a user name cannot fake the end of the quoted part of the sentence.
// Unlike strconv.Quote it leaves printable non-ASCII text readable.
func quote(s string) string {
	return strconv.Quote(s)
}

// Sanitize makes untrusted text safe to show on a terminal or in a dialog:
// invalid UTF-8 becomes U+FFFD, control characters (C0, C1, including ESC
// and so every terminal escape sequence's introducer), format characters
// (bidi overrides, zero-width characters) and line/paragraph separators are
// removed, and the result is capped at maxRunes runes, "…" marking a cut.
func Sanitize(s string, maxRunes int) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if unsafeRune(r) {
			continue
		}
		if n == maxRunes {
			b.WriteString("…")
			break
		}
		b.WriteRune(r) // writes U+FFFD for invalid UTF-8
		n++
	}
	return strings.TrimSpace(b.String())
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
