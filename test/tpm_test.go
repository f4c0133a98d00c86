package test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/internal/daemon"
	"github.com/authd/authd/internal/swtpmtest"
	"github.com/authd/authd/internal/unixsock"
	"github.com/authd/authd/keystore"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"
)

// startDaemonCfg is startDaemon with a configuration (TPM, boot id, state
// directory, logger); cfg.Presence defaults to approve.
func startDaemonCfg(tb testing.TB, cfg daemon.Config) *daemonT {
	tb.Helper()
	if cfg.Presence == nil {
		cfg.Presence = approve{}
	}
	if cfg.BootID == "" {
		cfg.BootID = "test-boot"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(tb.TempDir(), "state")
	}
	d, err := daemon.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(tb.TempDir(), "run", "ctaphid.sock")
	ln, err := unixsock.Listen(sock)
	if err != nil {
		d.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.ServeCTAPHID(ctx, ln) }()
	dt := &daemonT{d: d, sock: sock}
	var once sync.Once
	dt.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("serve: %v", err)
			}
			if err := d.Close(); err != nil {
				tb.Errorf("close: %v", err)
			}
		})
	}
	tb.Cleanup(dt.stop)
	return dt
}

// TestGoWebAuthnTPM: the go-webauthn ceremonies of TestGoWebAuthnRelyingParty
// against a daemon with --tpm swtpm:…; ES256 keys are TPM keys, EdDSA keys
// software keys under the TPM-sealed data key.
func TestGoWebAuthnTPM(t *testing.T) {
	sw := swtpmtest.Start(t)
	dt := startDaemonCfg(t, daemon.Config{TPM: sw.Spec()})
	wa := newRP(t)
	for i, tc := range []struct {
		alg    int
		rk     bool
		format string
	}{
		{int(webauthncose.AlgES256), false, ""},
		{int(webauthncose.AlgES256), true, "packed"},
		{int(webauthncose.AlgEdDSA), true, ""},
		{int(webauthncose.AlgES256), true, "none"},
	} {
		t.Run(fmt.Sprintf("alg%d-rk%v-%s", tc.alg, tc.rk, tc.format), func(t *testing.T) {
			u := &rpUser{id: []byte(fmt.Sprintf("tpm-user-%d", i)), name: fmt.Sprintf("tpm%d@example.com", i)}
			cred := register(t, wa, dt, u, tc.rk, tc.alg, tc.format)
			u.creds = []webauthn.Credential{*cred}
			last := cred.Authenticator.SignCount
			for range 3 {
				got := login(t, wa, dt, u, false)
				if got.Authenticator.SignCount <= last || got.Authenticator.CloneWarning {
					t.Fatalf("sign count %d after %d", got.Authenticator.SignCount, last)
				}
				last = got.Authenticator.SignCount
				u.creds[0].Authenticator.SignCount = last
			}
			if tc.rk {
				login(t, wa, dt, u, true)
			}
		})
	}
	st := dt.d.Status()
	if st.Backends[keystore.BackendTPM] != 3 || st.Backends[keystore.BackendSoftware] != 1 || st.DataKey != keystore.BackendTPM {
		t.Fatalf("Status = %+v", st)
	}
}

// pinPlatform is a platform's side of PIN/UV auth protocol 2 over CTAPHID.
type pinPlatform struct {
	tb     testing.TB
	c      *ctaphid.Client
	ss     pinuv.SharedSecret
	keyAgr map[int]any
}

func newPINPlatform(tb testing.TB, c *ctaphid.Client) *pinPlatform {
	tb.Helper()
	st, m := ctap(tb, c, 0x06, map[int]any{1: 2, 2: 2})
	if st != 0 {
		tb.Fatalf("getKeyAgreement: 0x%02x", st)
	}
	raw, err := cbor.Marshal(m[1])
	if err != nil {
		tb.Fatal(err)
	}
	var authKey cose.Key
	if err := cbor.Unmarshal(raw, &authKey); err != nil {
		tb.Fatal(err)
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ka, err := pinuv.NewKeyAgreementFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	p, _ := pinuv.ByVersion(2)
	ss, err := ka.Decapsulate(p, authKey)
	if err != nil {
		tb.Fatal(err)
	}
	pub := priv.PublicKey().Bytes()
	return &pinPlatform{tb: tb, c: c, ss: ss, keyAgr: map[int]any{1: 2, 3: -25, -1: 1, -2: pub[1:33], -3: pub[33:]}}
}

func (p *pinPlatform) enc(b []byte) []byte {
	out, err := p.ss.Encrypt(b)
	if err != nil {
		p.tb.Fatal(err)
	}
	return out
}

func setPIN(tb testing.TB, c *ctaphid.Client, pin string) byte {
	p := newPINPlatform(tb, c)
	padded := make([]byte, 64)
	copy(padded, pin)
	newPinEnc := p.enc(padded)
	st, _ := ctap(tb, c, 0x06, map[int]any{1: 2, 2: 3, 3: p.keyAgr, 4: p.ss.Authenticate(newPinEnc), 5: newPinEnc})
	return st
}

// pinToken asks for a pinUvAuthToken (getPinUvAuthTokenUsingPinWithPermissions,
// mc|ga) and returns the status.
func pinToken(tb testing.TB, c *ctaphid.Client, pin string) byte {
	p := newPINPlatform(tb, c)
	h := sha256.Sum256([]byte(pin))
	st, _ := ctap(tb, c, 0x06, map[int]any{1: 2, 2: 9, 3: p.keyAgr, 6: p.enc(h[:16]), 9: 3, 10: "pin.example"})
	return st
}

func pinRetries(tb testing.TB, c *ctaphid.Client) int {
	tb.Helper()
	st, m := ctap(tb, c, 0x06, map[int]any{1: 2, 2: 1})
	if st != 0 {
		tb.Fatalf("getPINRetries: 0x%02x", st)
	}
	return int(m[3].(uint64))
}

const (
	statusPINInvalid     = 0x31
	statusPINAuthBlocked = 0x34
)

// TestTPMPINLockout runs wrong-PIN sequences against a daemon whose PIN is
// checked by the TPM, with DA parameters set through the lockout hierarchy,
// and checks how CTAP's counters (8 retries; 3 consecutive → blocked until
// reboot) and the TPM's (MAX_AUTH_FAIL; one failure forgiven per
// LOCKOUT_INTERVAL; a correct PIN resets nothing) combine, as ARCHITECTURE.md
// documents.
func TestTPMPINLockout(t *testing.T) {
	const pin, wrong = "2468", "1357"
	type step struct {
		pin     string
		status  byte
		retries int    // CTAP pinRetries afterwards
		da      uint32 // TPM lockout counter afterwards
	}
	run := func(t *testing.T, sw *swtpmtest.TPM, c *ctaphid.Client, steps []step) {
		t.Helper()
		for i, s := range steps {
			if st := pinToken(t, c, s.pin); st != s.status {
				t.Fatalf("step %d (%s PIN): status 0x%02x, want 0x%02x", i+1, map[bool]string{true: "right", false: "wrong"}[s.pin == pin], st, s.status)
			}
			if r := pinRetries(t, c); r != s.retries {
				t.Fatalf("step %d: pinRetries %d, want %d", i+1, r, s.retries)
			}
			if da := sw.DA().Counter; da != s.da {
				t.Fatalf("step %d: TPM lockout counter %d, want %d", i+1, da, s.da)
			}
		}
	}

	// The TPM allows fewer failures than CTAP's 3 in a row: the TPM's
	// lockout answers PIN_AUTH_BLOCKED first and spends no CTAP retry; once
	// the TPM forgives a failure (after LOCKOUT_INTERVAL) the PIN works.
	t.Run("tpm-first", func(t *testing.T) {
		sw := swtpmtest.Start(t)
		sw.SetDA(2, 2, 2)
		logs := new(syncLog)
		dt := startDaemonCfg(t, daemon.Config{TPM: sw.Spec(), Logger: logs.logger()})
		if !strings.Contains(logs.String(), "fewer wrong PINs than CTAP") {
			t.Errorf("no warning about MAX_AUTH_FAIL < 3:\n%s", logs)
		}
		c := dt.client(t)
		if st := setPIN(t, c, pin); st != 0 {
			t.Fatalf("setPIN: 0x%02x", st)
		}
		start := time.Now()
		run(t, sw, c, []step{
			{wrong, statusPINInvalid, 7, 1},
			{wrong, statusPINInvalid, 6, 2}, // the TPM is now locked out
			{wrong, statusPINAuthBlocked, 6, 2},
			{pin, statusPINAuthBlocked, 6, 2}, // even the right PIN
		})
		if time.Since(start) > 1500*time.Millisecond {
			t.Skip("too slow to test the 2 s recovery reliably")
		}
		if !strings.Contains(logs.String(), "TPM dictionary-attack lockout") {
			t.Errorf("lockout not logged:\n%s", logs)
		}
		time.Sleep(2500 * time.Millisecond) // one failure forgiven
		run(t, sw, c, []step{{pin, 0, 8, 1}})
	})

	// The TPM allows more: CTAP's 3 consecutive wrong PINs block first (the
	// TPM is not asked then); after a reboot the PIN works, but the TPM
	// still counts the earlier failures and locks out after 2 more.
	t.Run("ctap-first", func(t *testing.T) {
		sw := swtpmtest.Start(t)
		sw.SetDA(5, 1000, 1000)
		dir := filepath.Join(t.TempDir(), "state")
		dt := startDaemonCfg(t, daemon.Config{TPM: sw.Spec(), StateDir: dir, BootID: "boot-1"})
		c := dt.client(t)
		if st := setPIN(t, c, pin); st != 0 {
			t.Fatalf("setPIN: 0x%02x", st)
		}
		run(t, sw, c, []step{
			{wrong, statusPINInvalid, 7, 1},
			{wrong, statusPINInvalid, 6, 2},
			{wrong, statusPINAuthBlocked, 5, 3}, // CTAP: 3 in a row
			{pin, statusPINAuthBlocked, 5, 3},   // refused before the TPM is asked
		})
		dt.stop()
		dt = startDaemonCfg(t, daemon.Config{TPM: sw.Spec(), StateDir: dir, BootID: "boot-1"})
		c = dt.client(t)
		run(t, sw, c, []step{{pin, statusPINAuthBlocked, 5, 3}}) // a daemon restart is no reboot
		dt.stop()
		dt = startDaemonCfg(t, daemon.Config{TPM: sw.Spec(), StateDir: dir, BootID: "boot-2"})
		c = dt.client(t)
		run(t, sw, c, []step{
			{pin, 0, 8, 3}, // a correct PIN resets CTAP's counters, not the TPM's
			{wrong, statusPINInvalid, 7, 4},
			{wrong, statusPINInvalid, 6, 5},     // TPM locked out now
			{pin, statusPINAuthBlocked, 6, 5},   // no CTAP retry spent
			{wrong, statusPINAuthBlocked, 6, 5}, // nor for a wrong one
		})
		sw.ResetLockout() // the lockout hierarchy's owner recovers it
		run(t, sw, c, []step{{pin, 0, 8, 0}})
	})
}

// syncLog collects a daemon's log lines.
type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestTPMRestartUnderDaemon: swtpm restarts while the daemon serves the
// socket; the next assertion fails with a CTAP error, the one after succeeds.
func TestTPMRestartUnderDaemon(t *testing.T) {
	sw := swtpmtest.Start(t)
	dt := startDaemonCfg(t, daemon.Config{TPM: sw.Spec()})
	msg := gaMessage(t, dt)
	c := dt.client(t)
	callGA := func() byte {
		_, resp, err := c.Call(context.Background(), ctaphid.CmdCBOR, msg)
		if err != nil {
			t.Fatal(err)
		}
		return resp[0]
	}
	if st := callGA(); st != 0 {
		t.Fatalf("getAssertion: 0x%02x", st)
	}
	sw.Restart()
	if st := callGA(); st == 0 {
		t.Fatal("getAssertion right after the TPM restart succeeded")
	} else {
		t.Logf("after the restart: 0x%02x", st)
	}
	if st := callGA(); st != 0 {
		t.Fatalf("getAssertion after recovery: 0x%02x", st)
	}
}
