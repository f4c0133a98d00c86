package ctap2

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/keystore"
)

// presence is a scriptable Presence.
type presence struct {
	mu     sync.Mutex
	answer error         // nil approves
	block  chan struct{} // when non-nil, wait for it or ctx
	ops    []string
}

func (p *presence) ConfirmPresence(ctx context.Context, op, rpID, user string) error {
	p.mu.Lock()
	p.ops = append(p.ops, op)
	answer, block := p.answer, p.block
	p.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return answer
}

func (p *presence) set(err error) { p.mu.Lock(); p.answer = err; p.mu.Unlock() }

func (p *presence) lastOp() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ops) == 0 {
		return ""
	}
	return p.ops[len(p.ops)-1]
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	t     testing.TB
	dir   string
	store *keystore.Store
	a     *Authenticator
	up    *presence
	clk   *clock
	boot  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, dir: filepath.Join(t.TempDir(), "state"), up: &presence{}, clk: &clock{t: time.Unix(1_800_000_000, 0)}, boot: "boot-1"}
	e.open()
	t.Cleanup(func() { e.store.Close() })
	return e
}

// open (re)opens the store and builds a fresh engine: a daemon restart.
func (e *env) open() {
	e.t.Helper()
	sealer, err := keystore.OpenSoftwareSealer(filepath.Join(e.dir, "master.key"))
	if err != nil {
		e.t.Fatal(err)
	}
	if e.store, err = keystore.Open(e.dir, sealer, keystore.SoftwareKeys{}, keystore.Options{}); err != nil {
		e.t.Fatal(err)
	}
	if e.a, err = New(Config{Store: e.store, State: e.store, Presence: e.up, BootID: e.boot, Now: e.clk.Now}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) restart(boot string) {
	e.t.Helper()
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.boot = boot
	e.open()
}

// call sends cmd with params (a Go value encoded canonically, raw bytes, or nil).
func (e *env) call(cmd byte, params any) (StatusCode, map[int]any) {
	e.t.Helper()
	return e.callCtx(context.Background(), cmd, params)
}

func (e *env) callCtx(ctx context.Context, cmd byte, params any) (StatusCode, map[int]any) {
	e.t.Helper()
	msg := []byte{cmd}
	switch p := params.(type) {
	case nil:
	case []byte:
		msg = append(msg, p...)
	default:
		b, err := cbor.Marshal(p)
		if err != nil {
			e.t.Fatal(err)
		}
		msg = append(msg, b...)
	}
	resp := e.a.ServeCTAP(ctx, msg, nil)
	if len(resp) == 0 {
		e.t.Fatal("empty response")
	}
	st := StatusCode(resp[0])
	if st != StatusOK {
		if len(resp) != 1 {
			e.t.Fatalf("error response with a body: %x", resp)
		}
		return st, nil
	}
	if len(resp) == 1 {
		return st, nil
	}
	var m map[int]any
	if err := cbor.UnmarshalRecord(resp[1:], &m); err != nil {
		e.t.Fatalf("response is not canonical CBOR: %v (%x)", err, resp[1:])
	}
	return st, m
}

func (e *env) must(cmd byte, params any) map[int]any {
	e.t.Helper()
	st, m := e.call(cmd, params)
	if st != StatusOK {
		e.t.Fatalf("cmd 0x%02x: status %v", cmd, st)
	}
	return m
}

func (e *env) expect(want StatusCode, cmd byte, params any) {
	e.t.Helper()
	if st, _ := e.call(cmd, params); st != want {
		e.t.Fatalf("cmd 0x%02x: status %v, want %v", cmd, st, want)
	}
}

var cdh = bytes.Repeat([]byte{0xcd}, 32)

func mcParams(rpID string, userID []byte, rk bool, algs ...int) map[int]any {
	if len(algs) == 0 {
		algs = []int{-7}
	}
	var params []any
	for _, a := range algs {
		params = append(params, map[string]any{"alg": a, "type": "public-key"})
	}
	m := map[int]any{
		1: cdh,
		2: map[string]any{"id": rpID, "name": "RP " + rpID},
		3: map[string]any{"id": userID, "name": "alice@" + rpID, "displayName": "Alice"},
		4: params,
	}
	if rk {
		m[7] = map[string]bool{"rk": true}
	}
	return m
}

type made struct {
	id      []byte
	pub     any
	alg     int
	authDat []byte
	cose    []byte
}

// parseMC checks a makeCredential response and returns the credential.
func parseMC(t testing.TB, m map[int]any, rpID string) made {
	t.Helper()
	ad := m[2].([]byte)
	rpHash := sha256.Sum256([]byte(rpID))
	if !bytes.Equal(ad[:32], rpHash[:]) {
		t.Fatal("rpIdHash mismatch")
	}
	if ad[32]&flagAT == 0 || ad[32]&flagUP == 0 {
		t.Fatalf("flags %02x lack AT/UP", ad[32])
	}
	if !bytes.Equal(ad[37:53], AAGUID[:]) {
		t.Fatal("aaguid mismatch")
	}
	n := int(binary.BigEndian.Uint16(ad[53:55]))
	id := ad[55 : 55+n]
	coseKey := ad[55+n:]
	coseKey = coseKey[:coseLen(t, coseKey)] // extension outputs may follow
	pub, alg, err := cose.ParsePublicKey(coseKey)
	if err != nil {
		t.Fatalf("credential public key: %v", err)
	}
	if m[1] == "packed" {
		stmt := m[3].(map[any]any)
		if stmt["alg"] != int64(alg) {
			t.Fatalf("attStmt alg %v, key alg %d", stmt["alg"], alg)
		}
		verifySig(t, made{pub: pub, cose: coseKey}, ad, cdh, stmt["sig"].([]byte))
	}
	rpVerifyAttestation(t, rpID, m)
	return made{id: append([]byte(nil), id...), pub: pub, alg: alg, authDat: ad, cose: append([]byte(nil), coseKey...)}
}

// verifySig checks a signature over authData ‖ clientDataHash with crypto/*
// and with go-webauthn, an independent relying-party implementation.
func verifySig(t testing.TB, c made, ad, hash, sig []byte) {
	t.Helper()
	msg := append(append([]byte{}, ad...), hash...)
	rpVerifySignature(t, c.cose, msg, sig)
	switch k := c.pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(k, d[:], sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			t.Fatal("Ed25519 signature does not verify")
		}
	default:
		t.Fatalf("unexpected key %T", c.pub)
	}
}

// platform is the client side of a PIN/UV auth protocol.
type platform struct {
	t      testing.TB
	p      pinuv.Protocol
	ss     pinuv.SharedSecret
	keyAgr map[int]any
}

func (e *env) platform(version int) *platform {
	e.t.Helper()
	p, _ := pinuv.ByVersion(version)
	m := e.must(cmdClientPIN, map[int]any{1: version, 2: pinGetKeyAgreement})
	raw, err := cbor.Marshal(m[1])
	if err != nil {
		e.t.Fatal(err)
	}
	var authKey cose.Key
	if err := cbor.Unmarshal(raw, &authKey); err != nil {
		e.t.Fatal(err)
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	ka, err := pinuv.NewKeyAgreementFromKey(priv)
	if err != nil {
		e.t.Fatal(err)
	}
	ss, err := ka.Decapsulate(p, authKey)
	if err != nil {
		e.t.Fatal(err)
	}
	pubBytes := priv.PublicKey().Bytes()
	return &platform{t: e.t, p: p, ss: ss, keyAgr: map[int]any{1: 2, 3: -25, -1: 1, -2: pubBytes[1:33], -3: pubBytes[33:]}}
}

func (pl *platform) enc(b []byte) []byte {
	out, err := pl.ss.Encrypt(b)
	if err != nil {
		pl.t.Fatal(err)
	}
	return out
}

func padPIN(pin string) []byte {
	b := make([]byte, 64)
	copy(b, pin)
	return b
}

func pinHash(pin string) []byte {
	h := sha256.Sum256([]byte(pin))
	return h[:16]
}

func (e *env) setPIN(version int, pin string) StatusCode {
	pl := e.platform(version)
	newPinEnc := pl.enc(padPIN(pin))
	st, _ := e.call(cmdClientPIN, map[int]any{1: version, 2: pinSetPIN, 3: pl.keyAgr, 4: pl.ss.Authenticate(newPinEnc), 5: newPinEnc})
	return st
}

func (e *env) changePIN(version int, oldPIN, newPIN string) StatusCode {
	pl := e.platform(version)
	newPinEnc := pl.enc(padPIN(newPIN))
	hashEnc := pl.enc(pinHash(oldPIN))
	st, _ := e.call(cmdClientPIN, map[int]any{1: version, 2: pinChangePIN, 3: pl.keyAgr,
		4: pl.ss.Authenticate(append(append([]byte{}, newPinEnc...), hashEnc...)), 5: newPinEnc, 6: hashEnc})
	return st
}

// token obtains a pinUvAuthToken with subcommand 0x09 (or 0x05 when perms is 0).
func (e *env) token(version int, pin string, perms int, rpID string) (StatusCode, []byte, pinuv.Protocol) {
	pl := e.platform(version)
	req := map[int]any{1: version, 2: pinGetTokenUsingPINPrm, 3: pl.keyAgr, 6: pl.enc(pinHash(pin)), 9: perms}
	if perms == 0 {
		req[2] = pinGetPinToken
		delete(req, 9)
	}
	if rpID != "" {
		req[10] = rpID
	}
	st, m := e.call(cmdClientPIN, req)
	if st != StatusOK {
		return st, nil, pl.p
	}
	tok, err := pl.ss.Decrypt(m[2].([]byte))
	if err != nil || len(tok) != 32 {
		e.t.Fatalf("token decrypt: %v (%d bytes)", err, len(tok))
	}
	return st, tok, pl.p
}

func errorsIsCtx(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
