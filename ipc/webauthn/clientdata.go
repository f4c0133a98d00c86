package webauthn

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Client data types (WebAuthn L3 §5.8.1).
const (
	typeCreate = "webauthn.create"
	typeGet    = "webauthn.get"
)

// clientDataJSON serialises CollectedClientData exactly as WebAuthn L3
// §5.8.1.1 "Serialization" prescribes, member order and escaping included:
// {"type":…,"challenge":…,"origin":…,"crossOrigin":true|false[,"topOrigin":…]}.
// topOrigin is written only when crossOrigin is true.
func clientDataJSON(typ string, challenge []byte, origin string, crossOrigin bool, topOrigin string) []byte {
	var b strings.Builder
	b.WriteString(`{"type":`)
	ccdToString(&b, typ)
	b.WriteString(`,"challenge":`)
	ccdToString(&b, base64.RawURLEncoding.EncodeToString(challenge))
	b.WriteString(`,"origin":`)
	ccdToString(&b, origin)
	b.WriteString(`,"crossOrigin":`)
	if crossOrigin {
		b.WriteString("true")
		if topOrigin != "" {
			b.WriteString(`,"topOrigin":`)
			ccdToString(&b, topOrigin)
		}
	} else {
		b.WriteString("false")
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// ccdToString is CCDToString (WebAuthn L3 §5.8.1.2): U+0020, U+0021,
// U+0023–U+005B and U+005D–U+10FFFF literally (UTF-8), '"' and '\' escaped
// with a backslash, every other code point as \u and four lower-case hex
// digits.
func ccdToString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == 0x20 || r == 0x21 || (r >= 0x23 && r <= 0x5b) || r >= 0x5d:
			b.WriteRune(r)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteString(`\u`)
			b.WriteByte(hex[r>>12&0xf])
			b.WriteByte(hex[r>>8&0xf])
			b.WriteByte(hex[r>>4&0xf])
			b.WriteByte(hex[r&0xf])
		}
	}
	b.WriteByte('"')
}

func hashClientData(cdj []byte) []byte {
	h := sha256.Sum256(cdj)
	return h[:]
}
