package ctap2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/keystore"
)

func retries(e *env) (uint64, bool) {
	m := e.must(cmdClientPIN, map[int]any{1: 2, 2: pinGetRetries})
	return m[3].(uint64), m[4].(bool)
}

func TestPINLifecycle(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(map[int]string{1: "protocol1", 2: "protocol2"}[v], func(t *testing.T) {
			e := newEnv(t)
			// getPINRetries works with or without a protocol (Chrome sends one).
			e.must(cmdClientPIN, map[int]any{2: pinGetRetries})
			if st, _, _ := e.token(v, "1234", permMC, "example.com"); st != ErrPINNotSet {
				t.Fatalf("token without PIN: %v", st)
			}
			if st := e.setPIN(v, "12"); st != ErrPINPolicyViolation {
				t.Fatalf("short PIN: %v", st)
			}
			if st := e.setPIN(v, strings.Repeat("9", 64)); st != ErrPINPolicyViolation {
				t.Fatalf("64-byte PIN: %v", st)
			}
			// Four code points, eight bytes: allowed (code points, not bytes, count).
			if st := e.setPIN(v, "ééé1"); st != StatusOK {
				t.Fatalf("setPIN: %v", st)
			}
			if st := e.setPIN(v, "5678"); st != ErrPINAuthInvalid {
				t.Fatalf("second setPIN: %v", st)
			}
			if st := e.changePIN(v, "ééé1", "123456"); st != StatusOK {
				t.Fatalf("changePIN: %v", st)
			}
			if st := e.changePIN(v, "wrong", "654321"); st != ErrPINInvalid {
				t.Fatalf("changePIN with wrong PIN: %v", st)
			}
			if n, _ := retries(e); n != 7 {
				t.Fatalf("retries %d after one wrong PIN", n)
			}
			st, tok, p := e.token(v, "123456", permMC|permGA, "example.com")
			if st != StatusOK {
				t.Fatalf("token: %v", st)
			}
			if n, _ := retries(e); n != 8 {
				t.Fatalf("retries %d after the right PIN", n)
			}
			// MakeCredential with pinUvAuthParam: UV flag; the token is then spent.
			mc := mcParams("example.com", []byte{1}, true)
			mc[8], mc[9] = p.Authenticate(tok, cdh), v
			m := e.must(cmdMakeCredential, mc)
			c := parseMC(t, m, "example.com")
			if c.authDat[32]&flagUV == 0 {
				t.Fatal("UV flag missing")
			}
			e.expect(ErrPINAuthInvalid, cmdMakeCredential, mc)
			// With a PIN set, discoverable credentials need a token...
			e.expect(ErrPUATRequired, cmdMakeCredential, mcParams("example.com", []byte{2}, true))
			// ...non-discoverable ones do not (makeCredUvNotRqd).
			e.must(cmdMakeCredential, mcParams("example.com", []byte{3}, false))
			// Zero-length pinUvAuthParam: touch, then PIN_INVALID because a PIN is set.
			z := mcParams("example.com", []byte{4}, false)
			z[8] = []byte{}
			e.expect(ErrPINInvalid, cmdMakeCredential, z)

			// GetAssertion with a token bound to another RP fails; the right RP works.
			_, tok, _ = e.token(v, "123456", permGA, "other.com")
			ga := map[int]any{1: "example.com", 2: cdh, 6: p.Authenticate(tok, cdh), 7: v}
			e.expect(ErrPINAuthInvalid, cmdGetAssertion, ga)
			_, tok, _ = e.token(v, "123456", permMC, "example.com")
			ga[6] = p.Authenticate(tok, cdh)
			e.expect(ErrPINAuthInvalid, cmdGetAssertion, ga) // lacks ga
			_, tok, _ = e.token(v, "123456", permGA, "example.com")
			ga[6] = p.Authenticate(tok, cdh)
			r := e.must(cmdGetAssertion, ga)
			if r[2].([]byte)[32]&flagUV == 0 {
				t.Fatal("UV flag missing in assertion")
			}
			// getPinToken (0x05): default mc|ga permissions, no RP; rejects permissions.
			_, tok, _ = e.token(v, "123456", 0, "")
			ga[6] = p.Authenticate(tok, cdh)
			e.must(cmdGetAssertion, ga)
			pl := e.platform(v)
			e.expect(ErrInvalidParameter, cmdClientPIN, map[int]any{1: v, 2: pinGetPinToken, 3: pl.keyAgr, 6: pl.enc(pinHash("123456")), 9: 1})
			// Permission checks.
			if st, _, _ := e.token(v, "123456", 0x08, ""); st != ErrUnauthorizedPermission {
				t.Fatalf("be permission: %v", st)
			}
			e.expect(ErrInvalidParameter, cmdClientPIN, map[int]any{1: v, 2: pinGetTokenUsingPINPrm, 3: pl.keyAgr, 6: pl.enc(pinHash("123456")), 9: 0})
			e.expect(ErrMissingParameter, cmdClientPIN, map[int]any{1: v, 2: pinGetTokenUsingPINPrm, 3: pl.keyAgr, 6: pl.enc(pinHash("123456"))})
		})
	}
}

func TestClientPINErrors(t *testing.T) {
	e := newEnv(t)
	e.expect(ErrMissingParameter, cmdClientPIN, map[int]any{1: 2})
	e.expect(ErrInvalidSubcommand, cmdClientPIN, map[int]any{1: 2, 2: 0x42})
	e.expect(ErrInvalidSubcommand, cmdClientPIN, map[int]any{1: 2, 2: pinGetUVRetries})
	e.expect(ErrMissingParameter, cmdClientPIN, map[int]any{2: pinGetKeyAgreement})
	e.expect(ErrInvalidParameter, cmdClientPIN, map[int]any{1: 3, 2: pinGetKeyAgreement})
	e.expect(ErrMissingParameter, cmdClientPIN, map[int]any{1: 2, 2: pinSetPIN})
	pl := e.platform(2)
	newPinEnc := pl.enc(padPIN("1234"))
	// Bad MAC, off-curve key, wrong padding.
	e.expect(ErrPINAuthInvalid, cmdClientPIN, map[int]any{1: 2, 2: pinSetPIN, 3: pl.keyAgr, 4: make([]byte, 32), 5: newPinEnc})
	bad := map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)}
	e.expect(ErrInvalidParameter, cmdClientPIN, map[int]any{1: 2, 2: pinSetPIN, 3: bad, 4: pl.ss.Authenticate(newPinEnc), 5: newPinEnc})
	short := pl.enc(make([]byte, 32))
	e.expect(ErrInvalidParameter, cmdClientPIN, map[int]any{1: 2, 2: pinSetPIN, 3: pl.keyAgr, 4: pl.ss.Authenticate(short), 5: short})
	odd := []byte{1, 2, 3}
	e.expect(ErrInvalidParameter, cmdClientPIN, map[int]any{1: 2, 2: pinSetPIN, 3: pl.keyAgr, 4: pl.ss.Authenticate(odd), 5: odd})
	e.expect(ErrCBORUnexpectedType, cmdClientPIN, map[int]any{1: 2, 2: pinSetPIN, 3: "key", 4: []byte{1}, 5: []byte{1}})
	e.expect(ErrPINNotSet, cmdClientPIN, map[int]any{1: 2, 2: pinChangePIN, 3: pl.keyAgr, 4: []byte{1}, 5: []byte{1}, 6: []byte{1}})
}

// TestPINRetries: 3 consecutive wrong PINs block until a new boot (a daemon
// restart is not enough); 8 in total block the PIN until reset.
func TestPINRetries(t *testing.T) {
	e := newEnv(t)
	if e.setPIN(2, "1234") != StatusOK {
		t.Fatal("setPIN")
	}
	for i := 0; i < 2; i++ {
		if st, _, _ := e.token(2, "0000", permMC, "x"); st != ErrPINInvalid {
			t.Fatalf("wrong PIN %d: %v", i, st)
		}
	}
	if st, _, _ := e.token(2, "0000", permMC, "x"); st != ErrPINAuthBlocked {
		t.Fatalf("third wrong PIN: %v", st)
	}
	n, blocked := retries(e)
	if n != 5 || !blocked {
		t.Fatalf("retries %d powerCycleState %v", n, blocked)
	}
	// Blocked: even the right PIN is refused and the counter is not decremented.
	if st, _, _ := e.token(2, "1234", permMC, "x"); st != ErrPINAuthBlocked {
		t.Fatalf("right PIN while blocked: %v", st)
	}
	if n, _ := retries(e); n != 5 {
		t.Fatalf("retries decremented while blocked: %d", n)
	}
	// Restarting the daemon in the same boot does not help.
	e.restart(e.boot)
	if st, _, _ := e.token(2, "1234", permMC, "x"); st != ErrPINAuthBlocked {
		t.Fatalf("after restart, same boot: %v", st)
	}
	// A new boot does; retries persist.
	e.restart("boot-2")
	if n, blocked := retries(e); n != 5 || blocked {
		t.Fatalf("new boot: retries %d blocked %v", n, blocked)
	}
	if st, _, _ := e.token(2, "1234", permMC, "x"); st != StatusOK {
		t.Fatalf("right PIN in new boot: %v", st)
	}
	// Eight wrong PINs in total (across boots) block the PIN for good.
	wrong := 0
	for boot := 3; wrong < 8; boot++ {
		e.restart("boot-" + string(rune('0'+boot)))
		for i := 0; i < 3 && wrong < 8; i++ {
			st, _, _ := e.token(2, "0000", permMC, "x")
			wrong++
			if wrong == 8 && st != ErrPINBlocked {
				t.Fatalf("eighth wrong PIN: %v", st)
			}
		}
	}
	e.restart("boot-z")
	if st, _, _ := e.token(2, "1234", permMC, "x"); st != ErrPINBlocked {
		t.Fatalf("right PIN after blocking: %v", st)
	}
	if st := e.changePIN(2, "1234", "5678"); st != ErrPINBlocked {
		t.Fatalf("changePIN after blocking: %v", st)
	}
}

func TestForcePINChange(t *testing.T) {
	e := newEnv(t)
	if e.setPIN(1, "1234") != StatusOK {
		t.Fatal("setPIN")
	}
	if err := e.store.UpdateState(func(s *keystore.State) error { s.ForcePINChange = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.token(1, "1234", permMC, "x"); st != ErrPINPolicyViolation {
		t.Fatalf("0x09 with forcePINChange: %v", st)
	}
	if st, _, _ := e.token(1, "1234", 0, ""); st != ErrPINInvalid {
		t.Fatalf("0x05 with forcePINChange: %v", st)
	}
	if e.must(cmdGetInfo, nil)[12] != true {
		t.Fatal("getInfo forcePINChange")
	}
	if st := e.changePIN(1, "1234", "1234"); st != ErrPINPolicyViolation {
		t.Fatalf("same PIN: %v", st)
	}
	if st := e.changePIN(1, "1234", "4321"); st != StatusOK {
		t.Fatalf("changePIN: %v", st)
	}
	if st, _, _ := e.token(1, "4321", permMC, "x"); st != StatusOK {
		t.Fatalf("token after change: %v", st)
	}
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	e.setPIN(2, "1234")
	_, tok, p := e.token(2, "1234", permGA, "example.com")
	e.must(cmdMakeCredential, mcParams("example.com", []byte{1}, false))
	e.clk.advance(31 * time.Second) // unused past the initial usage limit
	e.expect(ErrPINAuthInvalid, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 6: p.Authenticate(tok, cdh), 7: 2})
	// A token for protocol 2 does not verify under protocol 1.
	_, tok, _ = e.token(2, "1234", permGA, "example.com")
	e.expect(ErrPINAuthInvalid, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 6: pinuv.V1.Authenticate(tok, cdh), 7: 1})
}

func TestCredentialManagement(t *testing.T) {
	for _, cmd := range []byte{cmdCredentialManagement, cmdCredMgmtPreview} {
		e := newEnv(t)
		e.setPIN(2, "1234")
		_, tok, p := e.token(2, "1234", permMC, "a.example")
		mk := func(rp string, uid byte) []byte {
			_, tok, _ := e.token(2, "1234", permMC, rp)
			m := mcParams(rp, []byte{uid}, true)
			m[8], m[9] = p.Authenticate(tok, cdh), 2
			e.clk.advance(time.Second)
			return parseMC(t, e.must(cmdMakeCredential, m), rp).id
		}
		mk("a.example", 1)
		idA2 := mk("a.example", 2)
		mk("b.example", 1)
		e.must(cmdMakeCredential, mcParams("c.example", []byte{1}, false)) // not discoverable: not listed

		auth := func(tok []byte, sub byte, params any) map[int]any {
			msg := []byte{sub}
			req := map[int]any{1: sub, 3: 2}
			if params != nil {
				raw := mustCBOR(t, params)
				msg = append(msg, raw...)
				req[2] = params
			}
			req[4] = p.Authenticate(tok, msg)
			return req
		}
		e.expect(ErrPUATRequired, cmd, map[int]any{1: cmGetCredsMetadata})
		e.expect(ErrPINAuthInvalid, cmd, auth(tok, cmGetCredsMetadata, nil)) // lacks cm
		_, tok, _ = e.token(2, "1234", permCM, "")
		m := e.must(cmd, auth(tok, cmGetCredsMetadata, nil))
		if m[1] != uint64(3) || m[2] != uint64(997) {
			t.Fatalf("metadata %v", m)
		}
		m = e.must(cmd, auth(tok, cmEnumerateRPsBegin, nil))
		if m[5] != uint64(2) {
			t.Fatalf("totalRPs %v", m[5])
		}
		rps := []string{m[3].(map[any]any)["id"].(string)}
		rps = append(rps, e.must(cmd, map[int]any{1: cmEnumerateRPsNext})[3].(map[any]any)["id"].(string))
		if !(rps[0] == "a.example" && rps[1] == "b.example" || rps[0] == "b.example" && rps[1] == "a.example") {
			t.Fatalf("rps %v", rps)
		}
		e.expect(ErrNotAllowed, cmd, map[int]any{1: cmEnumerateRPsNext})
		h := sha256.Sum256([]byte("a.example"))
		params := map[int]any{1: h[:]}
		m = e.must(cmd, auth(tok, cmEnumerateCredsBegin, params))
		if m[9] != uint64(2) || m[10] != uint64(1) || m[8] == nil {
			t.Fatalf("enumerateCredentials %v", m)
		}
		if u := m[6].(map[any]any); u["name"] != "alice@a.example" {
			t.Fatalf("user %v", u)
		}
		e.must(cmd, map[int]any{1: cmEnumerateCredsNext})
		e.expect(ErrNotAllowed, cmd, map[int]any{1: cmEnumerateCredsNext})
		e.expect(ErrMissingParameter, cmd, auth(tok, cmEnumerateCredsBegin, nil))
		none := sha256.Sum256([]byte("none.example"))
		e.expect(ErrNoCredentials, cmd, auth(tok, cmEnumerateCredsBegin, map[int]any{1: none[:]}))
		// updateUserInformation: user.id must match.
		desc := map[string]any{"id": idA2, "type": "public-key"}
		e.expect(ErrInvalidParameter, cmd, auth(tok, cmUpdateUserInformation, map[int]any{2: desc, 3: map[string]any{"id": []byte{9}, "name": "x"}}))
		e.must(cmd, auth(tok, cmUpdateUserInformation, map[int]any{2: desc, 3: map[string]any{"id": []byte{2}, "name": "bob", "displayName": "Bob"}}))
		c, _ := e.store.Get(idA2)
		if c.UserName != "bob" || c.UserDisplayName != "Bob" {
			t.Fatalf("updated user %q %q", c.UserName, c.UserDisplayName)
		}
		// deleteCredential.
		e.must(cmd, auth(tok, cmDeleteCredential, map[int]any{2: desc}))
		e.expect(ErrNoCredentials, cmd, auth(tok, cmDeleteCredential, map[int]any{2: desc}))
		if e.store.DiscoverableCount() != 2 {
			t.Fatalf("count %d after delete", e.store.DiscoverableCount())
		}
		// A token bound to an RP cannot list everything.
		_, tok, _ = e.token(2, "1234", permCM, "b.example")
		e.expect(ErrPINAuthInvalid, cmd, auth(tok, cmGetCredsMetadata, nil))
		e.expect(ErrPINAuthInvalid, cmd, auth(tok, cmEnumerateCredsBegin, params))
		// Bound to an RP without credentials: the answer is NO_CREDENTIALS.
		_, tok, _ = e.token(2, "1234", permCM, "none.example")
		e.expect(ErrNoCredentials, cmd, auth(tok, cmEnumerateCredsBegin, map[int]any{1: none[:]}))
		e.expect(ErrInvalidSubcommand, cmd, map[int]any{1: 0x33})
		// A wrong MAC.
		bad := auth(tok, cmGetCredsMetadata, nil)
		bad[4] = bytes.Repeat([]byte{1}, 32)
		e.expect(ErrPINAuthInvalid, cmd, bad)
	}
}

// lockedOut is a store whose PIN check is refused by the hardware.
type lockedOut struct{ *keystore.Store }

func (lockedOut) VerifyPIN([16]byte) (bool, error) { return false, keystore.ErrPINLockout }

// TestPINHardwareLockout: when the TPM refuses PIN checks, the answer is
// PIN_AUTH_BLOCKED and no retry is consumed.
func TestPINHardwareLockout(t *testing.T) {
	e := newEnv(t)
	e.setPIN(2, "1234")
	e.a.cfg.State = lockedOut{e.store}
	if st, _, _ := e.token(2, "1234", permMC, "x"); st != ErrPINAuthBlocked {
		t.Fatalf("token during lockout: %v", st)
	}
	if n, _ := retries(e); n != 8 {
		t.Fatalf("retries %d after a lockout refusal, want 8", n)
	}
}

// TestVerifyPINDirect: authd's own PIN prompt shares clientPIN's counters.
func TestVerifyPINDirect(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.a.VerifyPIN(ctx, []byte("1234")); StatusOf(err) != ErrPINNotSet {
		t.Fatalf("no PIN: %v", err)
	}
	e.setPIN(2, "1234")
	if err := e.a.VerifyPIN(ctx, []byte("1234")); err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	if err := e.a.VerifyPIN(ctx, []byte("0000")); StatusOf(err) != ErrPINInvalid {
		t.Fatalf("wrong PIN: %v", err)
	}
	if n, _ := retries(e); n != 7 {
		t.Fatalf("retries %d", n)
	}
	// Two more wrong PINs through clientPIN: the third consecutive failure blocks both paths.
	e.token(2, "0000", permMC, "x")
	if st, _, _ := e.token(2, "0000", permMC, "x"); st != ErrPINAuthBlocked {
		t.Fatalf("third wrong PIN: %v", st)
	}
	if err := e.a.VerifyPIN(ctx, []byte("1234")); StatusOf(err) != ErrPINAuthBlocked {
		t.Fatalf("after blocking: %v", err)
	}
}
