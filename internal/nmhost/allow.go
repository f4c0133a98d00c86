package nmhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// HostName is the native-messaging host name: the manifests are
// <HostName>.json and the extension calls connectNative(HostName).
const HostName = "org.authd.nmhost"

// DefaultExtensionID is the Chromium extension ID of authd's browser
// extension. Chromium derives it from the "key" (the SPKI public key) in the
// extension's manifest.json: the first 32 hex digits of SHA-256(key DER),
// mapped 0-9a-f → a-p. It is the ID pinned by the "key" in
// browser/extension/manifest.json.
const DefaultExtensionID = "okpgeddokidegbjehdpldcghndcghafp"

// DefaultFirefoxID is the extension's browser_specific_settings.gecko.id.
const DefaultFirefoxID = "passkeys@authd.org"

// BuiltinExtensionIDs and BuiltinFirefoxIDs are allowed in addition to the
// config file. They can be set at build time, comma-separated:
//
//	go build -ldflags "-X github.com/authd/authd/internal/nmhost.BuiltinExtensionIDs=ID1,ID2" ./cmd/authd-nmhost
var (
	BuiltinExtensionIDs = DefaultExtensionID
	BuiltinFirefoxIDs   = DefaultFirefoxID
)

var chromeIDRe = regexp.MustCompile(`^[a-p]{32}$`)

// ValidExtensionID reports whether id looks like a Chromium extension ID.
func ValidExtensionID(id string) bool { return chromeIDRe.MatchString(id) }

// Config is the host's config file, written by `authctl browser install`.
type Config struct {
	// AllowedOrigins are Chromium extension origins, chrome-extension://ID/.
	AllowedOrigins []string `json:"allowed_origins"`
	// AllowedExtensions are Firefox extension IDs.
	AllowedExtensions []string `json:"allowed_extensions"`
}

// ConfigPath is $XDG_CONFIG_HOME/authd/nmhost.json (default ~/.config).
func ConfigPath(getenv func(string) string) (string, error) {
	dir := getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(dir) {
		home := getenv("HOME")
		if !filepath.IsAbs(home) {
			return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "authd", "nmhost.json"), nil
}

// LoadConfig reads the config file; a missing file is an empty Config.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %v", path, err)
	}
	return c, nil
}

// ChromeOrigin is the origin Chromium passes for extension id.
func ChromeOrigin(id string) string { return "chrome-extension://" + id + "/" }

// CheckCaller decides whether the browser's arguments name an allowed
// extension. Chromium starts the host as `host chrome-extension://ID/`
// (plus --parent-window=N on Windows); Firefox as `host MANIFEST-PATH
// EXTENSION-ID`. It returns a description of the caller for logs.
func CheckCaller(args []string, c Config) (string, error) {
	if len(args) < 1 || args[0] == "" {
		return "", errors.New("no caller: native-messaging hosts are started by the browser with the calling extension's origin as the first argument")
	}
	if strings.HasPrefix(args[0], "chrome-extension://") {
		origin := args[0]
		if !strings.HasSuffix(origin, "/") {
			origin += "/"
		}
		allowed := append([]string(nil), c.AllowedOrigins...)
		for _, id := range strings.Split(BuiltinExtensionIDs, ",") {
			if id = strings.TrimSpace(id); id != "" {
				allowed = append(allowed, ChromeOrigin(id))
			}
		}
		for _, a := range allowed {
			if a == origin {
				return origin, nil
			}
		}
		return "", fmt.Errorf("extension %s is not allowed to use authd (allowed: %s); run `authctl browser install --extension-id ID` to allow it", args[0], strings.Join(allowed, " "))
	}
	if len(args) >= 2 && args[1] != "" && !strings.HasPrefix(args[1], "--") {
		id := args[1]
		allowed := append([]string(nil), c.AllowedExtensions...)
		for _, b := range strings.Split(BuiltinFirefoxIDs, ",") {
			if b = strings.TrimSpace(b); b != "" {
				allowed = append(allowed, b)
			}
		}
		for _, a := range allowed {
			if a == id {
				return "firefox:" + id, nil
			}
		}
		return "", fmt.Errorf("Firefox extension %q is not allowed to use authd (allowed: %s); run `authctl browser install --firefox-id ID` to allow it", id, strings.Join(allowed, " "))
	}
	return "", fmt.Errorf("unrecognised caller %q: expected chrome-extension://ID/ (Chromium) or MANIFEST-PATH EXTENSION-ID (Firefox)", args[0])
}
