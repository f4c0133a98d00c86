package webauthn

import (
	"net"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/authd/authd/ipc"
)

// originInfo is a parsed, validated tuple origin.
type originInfo struct {
	serialized string // the origin as given (it must already be serialized)
	scheme     string
	host       string // the effective domain (lower-case ASCII)
}

// opaqueSchemes are schemes whose URLs have opaque origins (HTML §7.5
// "origin" of a URL): file, data, blob of an opaque URL, about, javascript.
var opaqueSchemes = map[string]bool{"file": true, "data": true, "about": true, "javascript": true, "blob": true}

// parseOrigin checks an origin the way WebAuthn L3 §5.1.3 steps 6–7 (and
// §5.1.4.1 steps 6–7) do: an opaque origin is NotAllowedError; an origin
// that is not a secure context (https, or http on localhost and
// *.localhost), is not the serialization of a tuple origin, or whose host is
// not a valid domain (an IP address) is SecurityError.
func parseOrigin(origin string) (*originInfo, error) {
	if origin == "" || origin == "null" {
		return nil, ipc.Errorf(ipc.NotAllowedError, "the caller's origin is opaque")
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme == "" {
		return nil, ipc.Errorf(ipc.SecurityError, "origin %q is not a valid origin", origin)
	}
	scheme := u.Scheme
	if opaqueSchemes[scheme] {
		return nil, ipc.Errorf(ipc.NotAllowedError, "origin %q is opaque", origin)
	}
	if u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, ipc.Errorf(ipc.SecurityError, "origin %q is not a serialized origin (scheme://host[:port])", origin)
	}
	host := u.Hostname()
	if host == "" {
		return nil, ipc.Errorf(ipc.SecurityError, "origin %q has no host", origin)
	}
	if net.ParseIP(strings.Trim(host, "[]")) != nil {
		return nil, ipc.Errorf(ipc.SecurityError, "origin %q: an IP address is not a valid domain for WebAuthn", origin)
	}
	if !validDomain(host) {
		return nil, ipc.Errorf(ipc.SecurityError, "origin %q: host %q is not a valid lower-case ASCII domain", origin, host)
	}
	// The serialization has no trailing slash and no default port.
	want := scheme + "://" + host
	if p := u.Port(); p != "" {
		if (scheme == "https" && p == "443") || (scheme == "http" && p == "80") {
			return nil, ipc.Errorf(ipc.SecurityError, "origin %q is not serialized (default port)", origin)
		}
		want += ":" + p
	}
	if origin != want {
		return nil, ipc.Errorf(ipc.SecurityError, "origin %q is not serialized (want %q)", origin, want)
	}
	switch {
	case scheme == "https":
	case scheme == "http" && isLocalhost(host):
	default:
		return nil, ipc.Errorf(ipc.SecurityError, "origin %q is not a secure context: WebAuthn needs https (or http://localhost)", origin)
	}
	return &originInfo{serialized: origin, scheme: scheme, host: host}, nil
}

func isLocalhost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// validDomain accepts lower-case ASCII host names (IDNs arrive as
// punycode in a serialized origin): labels of 1..63 letters, digits and
// hyphens, at most 253 characters, optionally with one trailing dot removed
// by the caller.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// isPublicSuffix reports whether d is a public suffix per the PSL (ICANN and
// private sections, wildcards and exceptions; an unlisted TLD is one by the
// default "*" rule). "localhost" is not: it is every *.localhost's registrable
// parent, as browsers and python-fido2 treat it.
func isPublicSuffix(d string) bool {
	if d == "localhost" {
		return false
	}
	ps, _ := publicsuffix.PublicSuffix(d)
	return ps == d
}

// ValidateRPID checks rpID against origin (WebAuthn L3 §5.1.3 steps 6–8,
// HTML "is a registrable domain suffix of or is equal to") and returns the RP
// ID to use: the origin's effective domain when rpID is "", else rpID, which
// must equal the host or be a label-aligned suffix of it that is not a public
// suffix. Errors are *ipc.Error: NotAllowedError for an opaque origin,
// SecurityError otherwise.
func ValidateRPID(origin, rpID string) (string, error) {
	o, err := parseOrigin(origin)
	if err != nil {
		return "", err
	}
	return o.rpID(rpID)
}

func (o *originInfo) rpID(rpID string) (string, error) {
	// Never a public suffix, not even when it is the origin's own host
	// ("https://com" or a bare "github.io" page cannot own passkeys).
	if rpID == "" || rpID == o.host {
		if isPublicSuffix(o.host) && net.ParseIP(strings.Trim(o.host, "[]")) == nil {
			return "", ipc.Errorf(ipc.SecurityError, "RP ID %q is a public suffix", o.host)
		}
		return o.host, nil
	}
	if net.ParseIP(strings.Trim(rpID, "[]")) != nil || !validDomain(rpID) {
		return "", ipc.Errorf(ipc.SecurityError, "RP ID %q is not a valid domain", rpID)
	}
	if !strings.HasSuffix(o.host, "."+rpID) {
		return "", ipc.Errorf(ipc.SecurityError, "RP ID %q is not %q or a parent domain of it", rpID, o.host)
	}
	if isPublicSuffix(rpID) {
		return "", ipc.Errorf(ipc.SecurityError, "RP ID %q is a public suffix", rpID)
	}
	return rpID, nil
}
