package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/internal/swtpmtest"
	"github.com/authd/authd/keystore"
	"github.com/authd/authd/tpm"
	"github.com/google/go-tpm/tpm2"
	bolt "go.etcd.io/bbolt"
)

type approve struct{}

func (approve) ConfirmPresence(context.Context, string, string, string) error { return nil }

// logBuf collects a daemon's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start builds a daemon on dir with the TPM spec and closes it at the end
// of the test (before swtpm's leak check, when swtpm was started first).
func start(t *testing.T, dir, spec string) (*Daemon, *logBuf) {
	t.Helper()
	d, logs, err := tryStart(t, dir, spec)
	if err != nil {
		t.Fatalf("daemon.New(--tpm %s): %v\n%s", spec, err, logs)
	}
	return d, logs
}

func tryStart(t *testing.T, dir, spec string) (*Daemon, *logBuf, error) {
	t.Helper()
	logs := new(logBuf)
	d, err := New(Config{StateDir: dir, Presence: approve{}, BootID: "boot", TPM: spec,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		return nil, logs, err
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { d.Close() }) })
	return d, logs, nil
}

// call sends one CTAP2 command to the engine in process.
func call(t *testing.T, d *Daemon, cmd byte, params any) (byte, map[int]any) {
	t.Helper()
	b, err := cbor.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	resp := d.Authenticator().ServeCTAP(context.Background(), append([]byte{cmd}, b...), nil)
	if resp[0] != 0 || len(resp) == 1 {
		return resp[0], nil
	}
	var m map[int]any
	if err := cbor.UnmarshalRecord(resp[1:], &m); err != nil {
		t.Fatal(err)
	}
	return 0, m
}

type cred struct {
	id  []byte
	rp  string
	pub crypto.PublicKey
	alg int
}

func makeCred(t *testing.T, d *Daemon, rp string, alg int, rk bool) cred {
	t.Helper()
	cdh := sha256.Sum256([]byte("mc " + rp))
	st, m := call(t, d, 0x01, map[int]any{
		1: cdh[:],
		2: map[string]any{"id": rp},
		3: map[string]any{"id": []byte("user@" + rp), "name": "user"},
		4: []any{map[string]any{"alg": alg, "type": "public-key"}},
		7: map[string]bool{"rk": rk},
	})
	if st != 0 {
		t.Fatalf("makeCredential(%s, alg %d): status 0x%02x", rp, alg, st)
	}
	ad := m[2].([]byte)
	id := ad[55 : 55+(int(ad[53])<<8|int(ad[54]))]
	c, err := d.Store().Get(id)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := cose.ParsePublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return cred{id: id, rp: rp, pub: pub, alg: alg}
}

// assert runs getAssertion for c and returns the status; a successful
// signature is verified with c's public key.
func assert(t *testing.T, d *Daemon, c cred) byte {
	t.Helper()
	cdh := sha256.Sum256(append([]byte("ga "), c.id...))
	st, m := call(t, d, 0x02, map[int]any{1: c.rp, 2: cdh[:],
		3: []any{map[string]any{"type": "public-key", "id": c.id}}})
	if st != 0 {
		return st
	}
	msg := append(append([]byte{}, m[2].([]byte)...), cdh[:]...)
	sig := m[3].([]byte)
	var ok bool
	switch k := c.pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(k, h[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	}
	if !ok {
		t.Fatalf("assertion signature for %x (alg %d) does not verify", c.id, c.alg)
	}
	return 0
}

func mustAssert(t *testing.T, d *Daemon, c cred) {
	t.Helper()
	if st := assert(t, d, c); st != 0 {
		t.Fatalf("getAssertion(%s, alg %d): status 0x%02x", c.rp, c.alg, st)
	}
}

// rawDB reads the stored sealed data key and every meta value from a
// closed store's database.
func storedDEK(t *testing.T, dir string) []byte {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, keystore.DBFileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var dek []byte
	db.View(func(tx *bolt.Tx) error {
		dek = bytes.Clone(tx.Bucket([]byte("meta")).Get([]byte("dek")))
		return nil
	})
	return dek
}

// parseTPMBlob checks, with go-tpm and independently of package tpm, that
// blob is "ATPM" ‖ 1 ‖ TPM2B_PUBLIC ‖ TPM2B_PRIVATE and nothing else, and
// returns the public area.
func parseTPMBlob(t *testing.T, blob []byte) *tpm2.TPMTPublic {
	t.Helper()
	if len(blob) < 5 || string(blob[:4]) != "ATPM" || blob[4] != 1 {
		t.Fatalf("blob %x… is not an authd TPM blob", blob[:min(len(blob), 8)])
	}
	rest := blob[5:]
	next := func() []byte {
		if len(rest) < 2 {
			t.Fatal("truncated TPM blob")
		}
		n := 2 + (int(rest[0])<<8 | int(rest[1]))
		if len(rest) < n {
			t.Fatal("truncated TPM blob")
		}
		b := rest[:n]
		rest = rest[n:]
		return b
	}
	pubB, privB := next(), next()
	if len(rest) != 0 {
		t.Fatalf("%d bytes after TPM2B_PRIVATE", len(rest))
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pubB)
	if err != nil {
		t.Fatalf("TPM2B_PUBLIC: %v", err)
	}
	if _, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](privB); err != nil {
		t.Fatalf("TPM2B_PRIVATE: %v", err)
	}
	p, err := pub.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// grepDir fails t if any file under dir contains needle.
func grepDir(t *testing.T, dir string, needle []byte, what string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, needle) {
			t.Errorf("%s found in %s", what, path)
		}
		return nil
	})
}

// stateDir returns a state directory path (authd creates it 0700).
func stateDir(t *testing.T) string { return filepath.Join(t.TempDir(), "state") }

func TestCheckTPMSpec(t *testing.T) {
	for _, s := range []string{"", "auto", "none", "required", "/dev/tpmrm0", "swtpm:/run/s.sock", "tcp:127.0.0.1:2321"} {
		if err := CheckTPMSpec(s); err != nil {
			t.Errorf("CheckTPMSpec(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"yes", "swtpm:", "tcp:", "tpmrm0", "mssim:x"} {
		if err := CheckTPMSpec(s); err == nil {
			t.Errorf("CheckTPMSpec(%q) accepted", s)
		}
	}
}

// TestSoftwareMode: --tpm none uses master.key and says nothing alarming.
func TestSoftwareMode(t *testing.T) {
	dir := stateDir(t)
	d, logs := start(t, dir, TPMNone)
	c := makeCred(t, d, "soft.example", keystore.AlgES256, true)
	mustAssert(t, d, c)
	st := d.Status()
	if st.TPM != TPMNone || st.Warning != "" || st.DataKey != keystore.BackendSoftware || st.DA != nil ||
		st.Backends[keystore.BackendSoftware] != 1 {
		t.Fatalf("Status = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings in --tpm none:\n%s", logs)
	}
}

// TestAutoWithoutTPM: auto on a machine without /dev/tpmrm0 falls back to
// software with exactly one warning, also reported by Status.
func TestAutoWithoutTPM(t *testing.T) {
	if _, err := os.Stat(tpm.DefaultDevice); err == nil {
		t.Skip("this machine has a TPM")
	}
	d, logs := start(t, stateDir(t), TPMAuto)
	st := d.Status()
	if st.TPM != TPMNone || !strings.Contains(st.Warning, "no TPM found") {
		t.Fatalf("Status = %+v", st)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "--tpm required") {
		t.Errorf("the warning does not say how to require a TPM:\n%s", logs)
	}
}

// TestTPMMode: ES256 keys in the TPM, EdDSA keys under the TPM-sealed data
// key, the PIN in the TPM guard; nothing on disk is usable without the TPM.
func TestTPMMode(t *testing.T) {
	sw := swtpmtest.Start(t)
	dir := stateDir(t)
	d, logs := start(t, dir, sw.Spec())
	es := makeCred(t, d, "tpm.example", keystore.AlgES256, true)
	ed := makeCred(t, d, "tpm.example", keystore.AlgEdDSA, false)
	for range 3 {
		mustAssert(t, d, es)
		mustAssert(t, d, ed)
	}
	pin := sha256.Sum256([]byte("123456"))
	var hash [16]byte
	copy(hash[:], pin[:16])
	if err := d.Store().SetPIN(hash, nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.Store().VerifyPIN(hash); !ok || err != nil {
		t.Fatalf("VerifyPIN = %v, %v", ok, err)
	}
	st := d.Status()
	if st.TPM != sw.Spec() || st.DataKey != keystore.BackendTPM || !st.PINInTPM || st.DA == nil ||
		st.Backends[keystore.BackendTPM] != 1 || st.Backends[keystore.BackendSoftware] != 1 {
		t.Fatalf("Status = %+v (%s)", st, st.DAError)
	}
	for _, want := range []string{"using the TPM", "TPM dictionary-attack parameters", "max_tries=3"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	all, err := d.Store().All()
	if err != nil {
		t.Fatal(err)
	}
	var edSeed []byte
	for _, c := range all {
		switch c.Alg {
		case keystore.AlgES256:
			p := parseTPMBlob(t, c.KeyBlob)
			if p.Type != tpm2.TPMAlgECC || !p.ObjectAttributes.FixedTPM || !p.ObjectAttributes.SensitiveDataOrigin {
				t.Errorf("ES256 key's public area: %+v", p)
			}
		case keystore.AlgEdDSA:
			edSeed = c.KeyBlob
		}
	}
	d.Close()

	// On disk: no master key, a TPM-sealed data key, neither the PIN hash
	// nor the software key's seed in clear.
	if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("master.key exists in TPM mode: %v", err)
	}
	p := parseTPMBlob(t, storedDEK(t, dir))
	if p.Type != tpm2.TPMAlgKeyedHash || !p.ObjectAttributes.FixedTPM {
		t.Errorf("sealed data key's public area: %+v", p)
	}
	grepDir(t, dir, hash[:], "the PIN hash")
	grepDir(t, dir, edSeed, "the EdDSA seed")

	// Restarting (same TPM) keeps everything working.
	d2, _ := start(t, dir, sw.Spec())
	mustAssert(t, d2, es)
	mustAssert(t, d2, ed)
	if ok, err := d2.Store().VerifyPIN(hash); !ok || err != nil {
		t.Fatalf("VerifyPIN after restart = %v, %v", ok, err)
	}
}

// TestBinding: a state directory made with one TPM does not open with
// another TPM (nor without one), changes nothing there, and keeps working
// with its own TPM after that TPM restarts.
func TestBinding(t *testing.T) {
	swA := swtpmtest.Start(t)
	swB := swtpmtest.Start(t)
	dir := stateDir(t)
	d, _ := start(t, dir, swA.Spec())
	c := makeCred(t, d, "bound.example", keystore.AlgES256, true)
	ed := makeCred(t, d, "bound2.example", keystore.AlgEdDSA, true)
	mustAssert(t, d, c)
	d.Close()

	// A copy of the state directory is as useless as the original.
	cp := stateDir(t)
	if err := os.Mkdir(cp, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{keystore.DBFileName} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db := func(dir string) []byte {
		b, _ := os.ReadFile(filepath.Join(dir, keystore.DBFileName))
		return b
	}
	for _, state := range []string{dir, cp} {
		before := db(state)
		_, _, err := tryStart(t, state, swB.Spec())
		if !errors.Is(err, keystore.ErrSealed) || !strings.Contains(err.Error(), "another TPM") {
			t.Fatalf("open with another TPM: %v; want ErrSealed saying so", err)
		}
		t.Logf("other TPM: %v", err)
		_, _, err = tryStart(t, state, TPMNone)
		if !errors.Is(err, keystore.ErrSealed) || !strings.Contains(err.Error(), "sealed by a TPM") {
			t.Fatalf("open without a TPM: %v; want ErrSealed saying so", err)
		}
		t.Logf("no TPM: %v", err)
		if !bytes.Equal(before, db(state)) {
			t.Fatal("a refused open changed the database")
		}
		if _, err := os.Stat(filepath.Join(state, MasterKeyFile)); err == nil {
			t.Fatal("a refused open created master.key")
		}
	}

	swA.Restart()
	d2, _ := start(t, dir, swA.Spec())
	mustAssert(t, d2, c)
	mustAssert(t, d2, ed)
}

// TestMixedStore: a store made without a TPM is migrated when a TPM is
// used: the data key is rotated and sealed by the TPM, master.key goes, the
// PIN hash moves into the TPM guard, old software keys keep signing and
// new ES256 keys are TPM keys.
func TestMixedStore(t *testing.T) {
	sw := swtpmtest.Start(t)
	dir := stateDir(t)
	d, _ := start(t, dir, TPMNone)
	oldES := makeCred(t, d, "old.example", keystore.AlgES256, true)
	oldED := makeCred(t, d, "old.example", keystore.AlgEdDSA, false)
	d.Close()
	if tpm.IsTPMBlob(storedDEK(t, dir)) {
		t.Fatal("software store has a TPM-sealed data key")
	}

	d2, logs := start(t, dir, sw.Spec())
	mustAssert(t, d2, oldES)
	mustAssert(t, d2, oldED)
	newES := makeCred(t, d2, "new.example", keystore.AlgES256, true)
	mustAssert(t, d2, newES)
	c, _ := d2.Store().Get(newES.id)
	parseTPMBlob(t, c.KeyBlob)
	st := d2.Status()
	if st.Backends[keystore.BackendTPM] != 1 || st.Backends[keystore.BackendSoftware] != 2 ||
		st.DataKey != keystore.BackendTPM {
		t.Fatalf("Status after migration = %+v", st)
	}
	if !strings.Contains(logs.String(), "tpm=0 software=2 data_key_sealed_by=tpm") {
		t.Errorf("backend counts not logged:\n%s", logs)
	}
	d2.Close()
	if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("master.key kept after migration: %v", err)
	}
	parseTPMBlob(t, storedDEK(t, dir))

	// From now on the TPM is needed.
	if _, _, err := tryStart(t, dir, TPMNone); !errors.Is(err, keystore.ErrSealed) {
		t.Fatalf("migrated store without the TPM: %v", err)
	}
	d3, _ := start(t, dir, sw.Spec())
	for _, c := range []cred{oldES, oldED, newES} {
		mustAssert(t, d3, c)
	}
}

// TestPINMigration: a PIN set without a TPM moves into the TPM's PIN guard
// at the first start with a TPM; its hash is no longer stored.
func TestPINMigration(t *testing.T) {
	sw := swtpmtest.Start(t)
	dir := stateDir(t)
	d, _ := start(t, dir, TPMNone)
	hash := [16]byte{0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0x01}
	if err := d.Store().SetPIN(hash, nil); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2, logs := start(t, dir, sw.Spec())
	if !d2.Status().PINInTPM || !strings.Contains(logs.String(), "PIN moved into the hardware PIN guard") {
		t.Fatalf("PIN not migrated:\n%s", logs)
	}
	if ok, err := d2.Store().VerifyPIN(hash); !ok || err != nil {
		t.Fatalf("migrated PIN: %v, %v", ok, err)
	}
	wrong := hash
	wrong[15]++
	if ok, err := d2.Store().VerifyPIN(wrong); ok || err != nil {
		t.Fatalf("wrong PIN: %v, %v", ok, err)
	}
	if c := sw.DA().Counter; c != 1 {
		t.Errorf("TPM DA counter after one wrong PIN = %d, want 1", c)
	}
	d2.Close()
	grepDir(t, dir, hash[:], "the PIN hash")
	sw.ResetLockout()
}

// TestSwtpmRestartUnderDaemon: the TPM restarts while the daemon runs. The
// next TPM operation fails with a CTAP error, the one after succeeds.
func TestSwtpmRestartUnderDaemon(t *testing.T) {
	sw := swtpmtest.Start(t)
	d, logs := start(t, stateDir(t), sw.Spec())
	c := makeCred(t, d, "restart.example", keystore.AlgES256, true)
	mustAssert(t, d, c)
	sw.Restart()
	if st := assert(t, d, c); st == 0 {
		t.Fatal("assertion right after the TPM restarted succeeded; want the in-flight failure")
	} else {
		t.Logf("in flight: status 0x%02x", st)
	}
	mustAssert(t, d, c)
	c2 := makeCred(t, d, "restart.example", keystore.AlgES256, false)
	mustAssert(t, d, c2)

	// The TPM is gone for a while: CTAP errors, no hang; back: it works.
	sw.Stop()
	if st := assert(t, d, c); st == 0 {
		t.Fatal("assertion with the TPM stopped succeeded")
	}
	sw.Start()
	mustAssert(t, d, c)
	if strings.Contains(logs.String(), "panic") {
		t.Fatal(logs)
	}
}

// TestTPMDeviceErrors: explicit TPMs that cannot be opened stop the daemon
// with a clear error; nothing is created.
func TestTPMDeviceErrors(t *testing.T) {
	dir := stateDir(t)
	for _, spec := range []string{"/nonexistent/tpmrm0", "swtpm:/nonexistent/swtpm.sock", "tcp:127.0.0.1:1", "bogus"} {
		_, _, err := tryStart(t, filepath.Join(dir, "state"), spec)
		if err == nil {
			t.Fatalf("--tpm %s: started", spec)
		}
		t.Logf("--tpm %s: %v", spec, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", keystore.DBFileName)); err == nil {
		t.Fatal("a failed start created a store")
	}
	if _, err := os.Stat(tpm.DefaultDevice); err != nil {
		if _, _, err := tryStart(t, filepath.Join(dir, "state"), TPMRequired); !errors.Is(err, tpm.ErrNoDevice) {
			t.Fatalf("--tpm required without a TPM: %v", err)
		}
	}
}

func TestTPMHint(t *testing.T) {
	if h := tpmHint(fmt.Errorf("open: %w", fs.ErrPermission)); !strings.Contains(h, "tss") {
		t.Errorf("permission hint %q", h)
	}
	if h := tpmHint(fmt.Errorf("x: %w", tpm.ErrOwnerAuth)); !strings.Contains(h, "owner") {
		t.Errorf("owner hint %q", h)
	}
	if h := tpmHint(errors.New("other")); h != "" {
		t.Errorf("hint for another error: %q", h)
	}
}

// TestMasterKeyGone: a software store whose master.key is gone is refused
// with a clear error, in both modes, and no new key file appears.
func TestMasterKeyGone(t *testing.T) {
	sw := swtpmtest.Start(t)
	dir := stateDir(t)
	d, _ := start(t, dir, TPMNone)
	makeCred(t, d, "gone.example", keystore.AlgES256, true)
	d.Close()
	mk := filepath.Join(dir, MasterKeyFile)
	if err := os.Remove(mk); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{TPMNone, sw.Spec()} {
		_, _, err := tryStart(t, dir, spec)
		if !errors.Is(err, keystore.ErrSealed) || !strings.Contains(err.Error(), "gone") {
			t.Fatalf("--tpm %s without master.key: %v", spec, err)
		}
		if _, err := os.Stat(mk); err == nil {
			t.Fatalf("--tpm %s created a new master.key", spec)
		}
	}
}
