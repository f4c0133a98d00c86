package interop

// CTAP 2.1 extensions, authenticatorLargeBlobs and authenticatorConfig
// (issue 3) through python-fido2 0.9.1 (fido2_client.py ext-* phases) and
// libfido2 (fido2_sockdev.c), each test against a fresh daemon.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// withinResetWindow fails clearly (instead of with a NOT_ALLOWED from the
// reset) when the steps since the last start took too long for Reset.
func withinResetWindow(t *testing.T, d *daemon) {
	t.Helper()
	if since := time.Since(d.ready); since > resetWindow-time.Second {
		t.Fatalf("%v since authd started: too late for authenticatorReset (%v window)",
			since.Round(time.Millisecond), resetWindow)
	}
}

// TestExtHmacSecret: hmac-secret and hmac-secret-mc for both PIN protocols,
// without a PIN (no UV possible) and with one (UV and non-UV secrets), then
// the outputs must survive a restart.
func TestExtHmacSecret(t *testing.T) {
	t.Parallel()
	requirePython(t)
	d := newDaemon(t, "allow")
	dir := t.TempDir()
	const pin = "31415926"
	st := func(name string) string { return filepath.Join(dir, name+".json") }

	d.start(t)
	py(t, d, "ext-info")
	py(t, d, "ext-hmac", "--protocol", "1", "--state", st("nopin1"))
	py(t, d, "ext-hmac", "--protocol", "2", "--state", st("nopin2"))
	pyMust(t, d, "set-pin", "--protocol", "2", "--pin", pin)
	py(t, d, "ext-info", "--expect-pin", "set", "--protocol", "2", "--pin", pin)
	py(t, d, "ext-hmac", "--protocol", "1", "--pin", pin, "--state", st("pin1"))
	py(t, d, "ext-hmac", "--protocol", "2", "--pin", pin, "--state", st("pin2"))

	d.restart(t)
	for _, name := range []string{"nopin1", "nopin2", "pin1", "pin2"} {
		proto := name[len(name)-1:]
		py(t, d, "ext-hmac-persist", "--protocol", proto, "--pin", pin, "--state", st(name))
	}
	d.stop(t)
}

// TestExtCredProtect: credProtect levels and the cross-extension rules
// (outputs subset of inputs, unknown extensions, no CTAP 2.2 response keys,
// CBOR type errors), before and after a PIN is set.
func TestExtCredProtect(t *testing.T) {
	t.Parallel()
	requirePython(t)
	d := newDaemon(t, "allow")
	const pin = "27182818"

	d.start(t)
	py(t, d, "ext-errors", "--protocol", "1")
	pyMust(t, d, "set-pin", "--protocol", "1", "--pin", pin)
	for _, p := range []string{"1", "2"} {
		py(t, d, "ext-credprotect", "--protocol", p, "--pin", pin)
		py(t, d, "ext-errors", "--protocol", p, "--pin", pin)
	}
	d.stop(t)
}

// TestExtCredBlob: credBlob without a PIN and with one (both protocols).
func TestExtCredBlob(t *testing.T) {
	t.Parallel()
	requirePython(t)
	d := newDaemon(t, "allow")
	const pin = "16180339"

	d.start(t)
	py(t, d, "ext-credblob")
	pyMust(t, d, "set-pin", "--protocol", "2", "--pin", pin)
	py(t, d, "ext-credblob", "--protocol", "1", "--pin", pin)
	py(t, d, "ext-credblob", "--protocol", "2", "--pin", pin)
	d.stop(t)
}

// TestExtLargeBlobs: largeBlobKey and authenticatorLargeBlobs without a PIN
// and with one (lbw tokens, both protocols); after a restart libfido2 reads
// the blob python-fido2 wrote; Reset empties the array.
func TestExtLargeBlobs(t *testing.T) {
	t.Parallel()
	requirePython(t)
	d := newDaemon(t, "allow")
	dir := t.TempDir()
	const pin = "14142135"
	st := filepath.Join(dir, "lb.json")

	d.start(t)
	py(t, d, "ext-largeblob", "--fresh")
	pyMust(t, d, "set-pin", "--protocol", "1", "--pin", pin)
	py(t, d, "ext-largeblob", "--protocol", "1", "--pin", pin)
	py(t, d, "ext-largeblob", "--protocol", "2", "--pin", pin, "--state", st)

	d.restart(t)
	t.Run("libfido2 reads the python-fido2 blob", func(t *testing.T) {
		bin := requireSockdev(t)
		var s struct{ Key, Data string }
		b, err := os.ReadFile(st)
		if err != nil {
			t.Fatalf("ext-largeblob --state: %v", err)
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		sockdev(t, bin, d, []string{"largeblob-get: ok"}, "largeblob-get", "--key", s.Key,
			"--data", s.Data)
	})
	withinResetWindow(t, d)
	py(t, d, "reset")
	py(t, d, "ext-after-reset")
	d.stop(t)
}

// TestExtConfig: authenticatorConfig and the minPinLength extension, one
// daemon per PIN protocol: before a PIN exists (no auth; alwaysUv left on),
// with a PIN (auth errors, toggleAlwaysUv, setMinPINLength, forcePINChange),
// persistence across a restart, then Reset restores the defaults.
func TestExtConfig(t *testing.T) {
	t.Parallel()
	requirePython(t)
	for _, p := range []string{"1", "2"} {
		t.Run("protocol "+p, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t, "allow")
			const pin, newPin = "123456", "12345678"
			listed := "minpin-a-v" + p + ".example" // from ext-minpin

			d.start(t)
			py(t, d, "ext-minpin", "--protocol", p)
			py(t, d, "ext-config-nopin", "--protocol", p)
			pyMust(t, d, "set-pin", "--protocol", p, "--pin", pin)
			py(t, d, "ext-info", "--expect-pin", "set", "--expect-min-pin", "5",
				"--expect-always-uv", "true", "--protocol", p, "--pin", pin)
			out := pyMust(t, d, "ext-config", "--protocol", p, "--pin", pin, "--new-pin", newPin,
				"--leave-always-uv")
			if !strings.Contains(out, "\nPIN "+newPin+"\n") {
				t.Fatalf("ext-config did not leave the PIN at %s", newPin)
			}
			py(t, d, "ext-minpin", "--protocol", p, "--pin", newPin)
			py(t, d, "ext-info", "--expect-pin", "set", "--expect-min-pin", "7",
				"--expect-always-uv", "true", "--protocol", p, "--pin", newPin)

			// Settings persist; Reset (within 10 s of start) clears them.
			d.restart(t)
			py(t, d, "ext-info", "--expect-pin", "set", "--expect-min-pin", "7",
				"--expect-always-uv", "true")
			withinResetWindow(t, d)
			py(t, d, "reset")
			py(t, d, "ext-after-reset", "--rp", listed)
			py(t, d, "ext-info")
			d.stop(t)
		})
	}
}

var phaseClean = regexp.MustCompile(`(?m)^RESULT \S+ passed=[1-9]\d* failed=0 `)

// pyMust runs a phase later steps depend on and stops the test if that
// phase failed (mustPy also stops on any earlier, unrelated failure, which
// would hide the results of the remaining phases).
func pyMust(t *testing.T, d *daemon, phase string, args ...string) string {
	t.Helper()
	out := py(t, d, phase, args...)
	if !phaseClean.MatchString(out) {
		t.FailNow()
	}
	return out
}

var hmacLine = regexp.MustCompile(`(?m)^get-assert: \[0\] hmac-secret=([0-9a-f]*)$`)

// hmacOut returns the hmac-secret output fido2_sockdev printed.
func hmacOut(t *testing.T, out string) string {
	t.Helper()
	m := hmacLine.FindStringSubmatch(out)
	if m == nil || m[1] == "" {
		t.Errorf("no hmac-secret output in fido2_sockdev output")
		return ""
	}
	return m[1]
}

// TestExtLibfido2 drives the extensions, large blobs and authenticatorConfig
// through libfido2: FIDO_EXT_HMAC_SECRET, FIDO_EXT_CRED_PROTECT,
// FIDO_EXT_CRED_BLOB, FIDO_EXT_LARGEBLOB_KEY, FIDO_EXT_MINPINLEN,
// fido_dev_largeblob_set/get/remove/set_array, fido_dev_toggle_always_uv,
// fido_dev_set_pin_minlen(_rpid), fido_dev_force_pin_change.
func TestExtLibfido2(t *testing.T) {
	t.Parallel()
	bin := requireSockdev(t)
	d := newDaemon(t, "allow")
	dir := t.TempDir()
	f := func(name string) string { return filepath.Join(dir, name) }
	c := func(want []string, args ...string) string { return sockdev(t, bin, d, want, args...) }
	const salt = "0101010101010101010101010101010101010101010101010101010101010101"
	const salt2 = salt + "0202020202020202020202020202020202020202020202020202020202020202"
	const blob1 = "a large blob written by libfido2 for the first credential (fido_dev_largeblob_set)"
	const blob2 = "another large blob, for the second credential; both live in one serialized array"

	d.start(t)
	c([]string{"info: version FIDO_2_0\n", "info: version FIDO_2_1\n",
		"info: extension credBlob\n", "info: extension credProtect\n",
		"info: extension hmac-secret\n", "info: extension hmac-secret-mc\n",
		"info: extension largeBlobKey\n", "info: extension minPinLength\n",
		"info: option largeBlobs=true", "info: option authnrCfg=true",
		"info: option setMinPINLength=true", "info: option alwaysUv=false",
		"info: option makeCredUvNotRqd=true", "info: maxcredbloblen 32\n",
		"info: maxlargeblob 8192\n", "info: minpinlen 4\n", "info: maxrpid_minpinlen 8\n",
		"info: new_pin_required 0\n", "info: supports_cred_prot=1"}, "info")
	c([]string{"set-pin-minlen: ok minlen=5"}, "set-pin-minlen", "--len", "5") // no PIN yet: no auth
	c([]string{"info: minpinlen 5\n", "info: new_pin_required 0\n"}, "info")

	// hmac-secret without a PIN: no UV.
	c([]string{"make-cred: ok type=es256 rk=1"}, "make-cred", "--rk", "--hmac-secret",
		"--rp", "lf.example", "--user", "hs", "--cred", f("hs"))
	h0 := hmacOut(t, c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("hs"),
		"--hmac-salt", salt))
	if again := hmacOut(t, c(nil, "get-assert", "--cred", f("hs"), "--hmac-salt", salt)); again != h0 {
		t.Errorf("hmac-secret output not stable: %s then %s", h0, again)
	}
	h0two := hmacOut(t, c(nil, "get-assert", "--cred", f("hs"), "--hmac-salt", salt2))
	if !strings.HasPrefix(h0two, h0) || len(h0two) != 128 {
		t.Errorf("two salts: output %s does not start with the one-salt output %s", h0two, h0)
	}

	// credBlob and largeBlobKey.
	c([]string{"make-cred: largeblob-key="}, "make-cred", "--rk", "--cred-blob", "blob via libfido2",
		"--large-blob-key", "--rp", "lf.example", "--user", "cb", "--cred", f("cb"))
	c([]string{"get-assert: [0] cred-blob=blob via libfido2", "get-assert: [0] largeblob-key="},
		"get-assert", "--cred", f("cb"), "--cred-blob", "blob via libfido2", "--large-blob-key")
	c([]string{"get-assert: [0] cred-blob=\n"}, "get-assert", "--cred", f("hs"), "--cred-blob", "")

	// With a PIN: UV changes the hmac-secret output.
	const pin = "123456"
	c([]string{"set-pin: ok"}, "set-pin", "--pin", pin)
	h1 := hmacOut(t, c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--pin", pin,
		"--cred", f("hs"), "--hmac-salt", salt))
	if h1 == h0 {
		t.Errorf("hmac-secret output with UV equals the one without UV (%s)", h1)
	}
	if again := hmacOut(t, c(nil, "get-assert", "--pin", pin, "--cred", f("hs"), "--hmac-salt",
		salt)); again != h1 {
		t.Errorf("hmac-secret output with UV not stable: %s then %s", h1, again)
	}
	if again := hmacOut(t, c(nil, "get-assert", "--cred", f("hs"), "--hmac-salt", salt)); again != h0 {
		t.Errorf("hmac-secret output without UV changed after setPIN: %s then %s", h0, again)
	}

	// credProtect.
	c([]string{"make-cred: cred-protect=3"}, "make-cred", "--rk", "--pin", pin, "--cred-protect", "3",
		"--rp", "lf3.example", "--user", "p3", "--cred", f("p3"))
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_NO_CREDENTIALS"}, "get-assert",
		"--cred", f("p3"), "--expect", "FIDO_ERR_NO_CREDENTIALS")
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--pin", pin, "--cred", f("p3"))
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_NO_CREDENTIALS"}, "get-assert",
		"--discoverable", "--rp", "lf3.example", "--cred", f("p3"), "--expect",
		"FIDO_ERR_NO_CREDENTIALS")
	c([]string{"get-assert: ok count=1"}, "get-assert", "--discoverable", "--pin", pin,
		"--rp", "lf3.example", "--cred", f("p3"))
	c([]string{"make-cred: ok"}, "make-cred", "--exclude", f("p3"), "--rp", "lf3.example")
	c([]string{"expected-error: fido_dev_make_cred FIDO_ERR_CREDENTIAL_EXCLUDED"}, "make-cred",
		"--pin", pin, "--exclude", f("p3"), "--rp", "lf3.example", "--expect",
		"FIDO_ERR_CREDENTIAL_EXCLUDED")
	c([]string{"make-cred: cred-protect=2"}, "make-cred", "--rk", "--pin", pin, "--cred-protect", "2",
		"--rp", "lf2.example", "--user", "p2", "--cred", f("p2"))
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("p2"))
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_NO_CREDENTIALS"}, "get-assert",
		"--discoverable", "--rp", "lf2.example", "--cred", f("p2"), "--expect",
		"FIDO_ERR_NO_CREDENTIALS")

	// Large blobs.
	c([]string{"make-cred: largeblob-key="}, "make-cred", "--rk", "--pin", pin, "--large-blob-key",
		"--rp", "lf.example", "--user", "lb2", "--cred", f("lb2"))
	c([]string{"largeblob-set: ok"}, "largeblob-set", "--cred", f("cb"), "--data", blob1, "--pin", pin)
	c([]string{"largeblob-set: ok"}, "largeblob-set", "--cred", f("lb2"), "--data", blob2, "--pin", pin)
	c([]string{"largeblob-get: ok"}, "largeblob-get", "--cred", f("cb"), "--data", blob1)
	c([]string{"largeblob-get: ok"}, "largeblob-get", "--cred", f("lb2"), "--data", blob2)
	c([]string{"largeblob-remove: ok"}, "largeblob-remove", "--cred", f("cb"), "--pin", pin)
	c([]string{"expected-error: fido_dev_largeblob_get FIDO_ERR_NOTFOUND"}, "largeblob-get",
		"--cred", f("cb"), "--expect", "FIDO_ERR_NOTFOUND")
	c([]string{"largeblob-get: ok"}, "largeblob-get", "--cred", f("lb2"), "--data", blob2)
	c([]string{"largeblob-array: get ok 8176 bytes"}, "largeblob-array", "--size", "8192", "--pin", pin)
	c([]string{"expected-error: fido_dev_largeblob_set_array FIDO_ERR_LARGEBLOB_STORAGE_FULL"},
		"largeblob-array", "--size", "8193", "--pin", pin, "--expect", "FIDO_ERR_LARGEBLOB_STORAGE_FULL")
	c([]string{"expected-error: fido_dev_largeblob_get FIDO_ERR_NOTFOUND"}, "largeblob-get",
		"--cred", f("lb2"), "--expect", "FIDO_ERR_NOTFOUND")
	c([]string{"largeblob-array: get ok 284 bytes"}, "largeblob-array", "--size", "300", "--pin", pin)
	c([]string{"largeblob-set: ok"}, "largeblob-set", "--cred", f("lb2"), "--data", blob2, "--pin", pin)

	// alwaysUv.
	c([]string{"toggle-always-uv: ok alwaysUv=1"}, "toggle-always-uv", "--pin", pin)
	c([]string{"info: option alwaysUv=true", "info: option makeCredUvNotRqd=false"}, "info")
	c([]string{"expected-error: fido_dev_make_cred FIDO_ERR_PIN_REQUIRED"}, "make-cred",
		"--rp", "auv.example", "--expect", "FIDO_ERR_PIN_REQUIRED")
	c([]string{"make-cred: ok"}, "make-cred", "--rp", "auv.example", "--pin", pin)
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_PIN_REQUIRED"}, "get-assert",
		"--cred", f("hs"), "--expect", "FIDO_ERR_PIN_REQUIRED")
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--pin", pin, "--cred", f("hs"))
	c([]string{"expected-error: fido_dev_toggle_always_uv FIDO_ERR_PIN_REQUIRED"},
		"toggle-always-uv", "--expect", "FIDO_ERR_PIN_REQUIRED")
	c([]string{"toggle-always-uv: ok alwaysUv=0"}, "toggle-always-uv", "--pin", pin)
	c([]string{"verify=FIDO_ERR_SUCCESS"}, "get-assert", "--cred", f("hs"))

	// Minimum PIN length, minPinLengthRPIDs, forced PIN change.
	c([]string{"set-pin-minlen: ok minlen=5"}, "set-pin-minlen", "--len", "5", "--pin", pin)
	c([]string{"info: minpinlen 5\n", "info: new_pin_required 0\n"}, "info")
	c([]string{"expected-error: fido_dev_set_pin_minlen FIDO_ERR_PIN_POLICY_VIOLATION"},
		"set-pin-minlen", "--len", "4", "--pin", pin, "--expect", "FIDO_ERR_PIN_POLICY_VIOLATION")
	c([]string{"set-pin-minlen: ok minlen=7"}, "set-pin-minlen", "--len", "7", "--pin", pin)
	c([]string{"info: minpinlen 7\n", "info: new_pin_required 1\n"}, "info")
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_PIN_POLICY_VIOLATION"}, "get-assert",
		"--pin", pin, "--cred", f("hs"), "--expect", "FIDO_ERR_PIN_POLICY_VIOLATION")
	c([]string{"expected-error: fido_dev_set_pin(change) FIDO_ERR_PIN_POLICY_VIOLATION"}, "change-pin",
		"--pin", pin, "--new-pin", "654321", "--expect", "FIDO_ERR_PIN_POLICY_VIOLATION")
	const pin2 = "12345678"
	c([]string{"change-pin: ok"}, "change-pin", "--pin", pin, "--new-pin", pin2)
	c([]string{"info: new_pin_required 0\n"}, "info")
	c([]string{"set-pin-minlen: ok rpids=2"}, "set-pin-minlen", "--rpid", "lf.example",
		"--rpid", "mpl.example", "--pin", pin2)
	c([]string{"make-cred: pin-minlen=7"}, "make-cred", "--rp", "mpl.example", "--min-pin-len", "7",
		"--pin", pin2)
	c([]string{"set-pin-minlen: ok force"}, "set-pin-minlen", "--force", "--pin", pin2)
	c([]string{"info: new_pin_required 1\n", "info: minpinlen 7\n"}, "info")
	c([]string{"expected-error: fido_dev_get_assert FIDO_ERR_PIN_POLICY_VIOLATION"}, "get-assert",
		"--pin", pin2, "--cred", f("hs"), "--expect", "FIDO_ERR_PIN_POLICY_VIOLATION")
	const pin3 = "87654321"
	c([]string{"change-pin: ok"}, "change-pin", "--pin", pin2, "--new-pin", pin3)
	c([]string{"info: new_pin_required 0\n"}, "info")

	// Restart: secrets, blobs and settings persist; Reset clears them.
	d.restart(t)
	if got := hmacOut(t, c(nil, "get-assert", "--cred", f("hs"), "--hmac-salt", salt)); got != h0 {
		t.Errorf("after restart: hmac-secret output without UV %s, want %s", got, h0)
	}
	if got := hmacOut(t, c(nil, "get-assert", "--pin", pin3, "--cred", f("hs"), "--hmac-salt",
		salt)); got != h1 {
		t.Errorf("after restart: hmac-secret output with UV %s, want %s", got, h1)
	}
	c([]string{"largeblob-get: ok"}, "largeblob-get", "--cred", f("lb2"), "--data", blob2)
	c([]string{"info: minpinlen 7\n"}, "info")
	withinResetWindow(t, d)
	c([]string{"reset: ok"}, "reset")
	c([]string{"info: minpinlen 4\n", "info: option alwaysUv=false", "info: option clientPin=false",
		"info: new_pin_required 0\n"}, "info")
	c([]string{"expected-error: fido_dev_largeblob_get FIDO_ERR_NOTFOUND"}, "largeblob-get",
		"--cred", f("lb2"), "--expect", "FIDO_ERR_NOTFOUND")
	d.stop(t)
}
