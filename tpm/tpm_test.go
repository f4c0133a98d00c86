package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

func digest(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func mustSigner(t *testing.T, d *Device, blob []byte) crypto.Signer {
	t.Helper()
	s, err := d.Signer(AlgES256, blob)
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	return s
}

func signVerify(t *testing.T, s crypto.Signer, msg string) {
	t.Helper()
	dg := digest(msg)
	sig, err := s.Sign(rand.Reader, dg, crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), dg, sig) {
		t.Fatalf("signature does not verify")
	}
}

// The seams the key store declares, restated: *Device must satisfy them.
var (
	_ interface {
		Seal(plaintext []byte) (blob []byte, err error)
		Unseal(blob []byte) (plaintext []byte, err error)
	} = (*Device)(nil)
	_ interface {
		NewKey(alg int) (blob []byte, pub crypto.PublicKey, err error)
		Signer(alg int, blob []byte) (crypto.Signer, error)
	} = (*Device)(nil)
)

func TestKeyRoundTrip(t *testing.T) {
	d := openDevice(t, startSwtpm(t))
	blob, pub, err := d.NewKey(AlgES256)
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	if !IsTPMBlob(blob) {
		t.Fatal("IsTPMBlob(new key) = false")
	}
	s := mustSigner(t, d, blob)
	if !s.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("Signer.Public differs from NewKey's public key")
	}
	for i := range 3 {
		signVerify(t, s, fmt.Sprint("message ", i))
	}
	// Two more keys, and back: exercises the two-key cache's eviction.
	blob2, _, err := d.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	blob3, _, err := d.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	s2, s3 := mustSigner(t, d, blob2), mustSigner(t, d, blob3)
	signVerify(t, s2, "other")
	signVerify(t, s, "again")
	signVerify(t, s3, "third")
	signVerify(t, s2, "evicted")
	signVerify(t, s, "again")

	// A signer made from a copy of the blob works too (cache keyed by content).
	signVerify(t, mustSigner(t, d, bytes.Clone(blob)), "copy")

	if _, err := s.Sign(rand.Reader, []byte("short"), crypto.SHA256); err == nil {
		t.Error("Sign accepted a 5-byte digest")
	}
	if _, err := s.Sign(rand.Reader, digest("x"), crypto.SHA384); err == nil {
		t.Error("Sign accepted SHA-384 opts")
	}
	if _, err := s.Sign(rand.Reader, digest("nil opts"), nil); err != nil {
		t.Errorf("Sign with nil opts: %v", err)
	}
}

func TestUnsupportedAlgorithm(t *testing.T) {
	d := openDevice(t, startSwtpm(t))
	if _, _, err := d.NewKey(-8); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("NewKey(EdDSA) = %v, want ErrUnsupportedAlgorithm", err)
	}
	blob, _, err := d.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Signer(-8, blob); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("Signer(EdDSA) = %v, want ErrUnsupportedAlgorithm", err)
	}
}

func TestSealRoundTrip(t *testing.T) {
	d := openDevice(t, startSwtpm(t))
	if _, err := d.Seal(nil); err == nil {
		t.Error("Seal(nothing) succeeded")
	}
	for _, n := range []int{1, 32, MaxSealSize} {
		secret := make([]byte, n)
		rand.Read(secret)
		blob, err := d.Seal(secret)
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", n, err)
		}
		if n >= 16 && bytes.Contains(blob, secret) {
			t.Fatalf("sealed blob contains the plaintext")
		}
		got, err := d.Unseal(blob)
		if err != nil {
			t.Fatalf("Unseal(%d bytes): %v", n, err)
		}
		if !bytes.Equal(got, secret) {
			t.Fatalf("Unseal = %x, want %x", got, secret)
		}
	}
	if _, err := d.Seal(make([]byte, MaxSealSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Seal(129 bytes) = %v, want ErrTooLarge", err)
	}
}

// TestBlobFormat checks the framing, the public area, and that no 32-byte
// window of an ES256 blob is its private scalar (in either byte order).
func TestBlobFormat(t *testing.T) {
	d := openDevice(t, startSwtpm(t))
	blob, pub, err := d.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	if string(blob[:4]) != "ATPM" || blob[4] != 1 {
		t.Fatalf("blob header %q", blob[:5])
	}
	rest := blob[5:]
	pubLen := int(binary.BigEndian.Uint16(rest))
	pubArea, err := tpm2.Unmarshal[tpm2.TPMTPublic](rest[2 : 2+pubLen])
	if err != nil {
		t.Fatalf("TPM2B_PUBLIC: %v", err)
	}
	rest = rest[2+pubLen:]
	privLen := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+privLen {
		t.Fatalf("TPM2B_PRIVATE size %d, %d bytes left", privLen, len(rest)-2)
	}
	t.Logf("ES256 blob: %d bytes (public %d, private %d)", len(blob), pubLen, privLen)
	a := pubArea.ObjectAttributes
	if pubArea.Type != tpm2.TPMAlgECC || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin ||
		!a.UserWithAuth || !a.SignEncrypt || a.Restricted || a.Decrypt {
		t.Errorf("public area: type %#x attributes %+v", pubArea.Type, a)
	}
	// The private area starts with the outer integrity HMAC (TPM2B_DIGEST,
	// SHA-256), then the encrypted sensitive area: Part 1, 23.
	if hmacLen := binary.BigEndian.Uint16(rest[2:]); hmacLen != 32 {
		t.Errorf("private area integrity size %d, want 32", hmacLen)
	}
	ecPub := pub.(*ecdsa.PublicKey)
	c := elliptic.P256()
	for i := 0; i+32 <= len(blob); i++ {
		w := blob[i : i+32]
		for _, k := range [][]byte{w, reverse(w)} {
			x, y := c.ScalarBaseMult(k) //nolint:staticcheck // brute-force test only
			if x.Cmp(ecPub.X) == 0 && y.Cmp(ecPub.Y) == 0 {
				t.Fatalf("blob bytes %d..%d are the private scalar", i, i+32)
			}
		}
	}

	for _, b := range [][]byte{nil, []byte("ATPM"), make([]byte, 32), blob[:len(blob)-1], append(bytes.Clone(blob), 0)} {
		if IsTPMBlob(b) {
			t.Errorf("IsTPMBlob(%d bytes) = true", len(b))
		}
	}
	bad := bytes.Clone(blob)
	bad[4] = 2
	if IsTPMBlob(bad) {
		t.Error("IsTPMBlob(version 2) = true")
	}
}

func reverse(b []byte) []byte {
	r := make([]byte, len(b))
	for i := range b {
		r[len(b)-1-i] = b[i]
	}
	return r
}

// TestKindsDoNotMix: a blob of one kind is refused as another before it
// reaches the TPM (unsealing a PIN guard would count as a DA failure).
func TestKindsDoNotMix(t *testing.T) {
	d := openDevice(t, startSwtpm(t))
	key, _, err := d.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := d.Seal([]byte("dek"))
	if err != nil {
		t.Fatal(err)
	}
	guard, err := d.NewPINGuard(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Unseal(key); !errors.Is(err, ErrForeign) {
		t.Errorf("Unseal(key) = %v", err)
	}
	if _, err := d.Unseal(guard); !errors.Is(err, ErrForeign) {
		t.Errorf("Unseal(guard) = %v", err)
	}
	if _, err := d.Signer(AlgES256, sealed); !errors.Is(err, ErrForeign) {
		t.Errorf("Signer(sealed) = %v", err)
	}
	if _, err := d.CheckPIN(sealed, []byte{1}); !errors.Is(err, ErrForeign) {
		t.Errorf("CheckPIN(sealed) = %v", err)
	}
	if _, _, _, n, err := d.DAParameters(); err != nil || n != 0 {
		t.Errorf("DA counter %d (%v) after refused blobs, want 0", n, err)
	}
}

// TestCommandsPerSign counts TPM commands through a CountingTransport.
func TestCommandsPerSign(t *testing.T) {
	sw := startSwtpm(t)
	ct := NewCountingTransport(sw.raw())
	d, err := New(ct)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := ct.Count(tpm2.TPMCCCreatePrimary); got != 1 {
		t.Errorf("New sent %d CreatePrimary, want 1", got)
	}
	b1, _, _ := d.NewKey(AlgES256)
	b2, _, _ := d.NewKey(AlgES256)
	b3, _, _ := d.NewKey(AlgES256)
	s1, s2, s3 := mustSigner(t, d, b1), mustSigner(t, d, b2), mustSigner(t, d, b3)

	measure := func(name string, s crypto.Signer, want int) {
		t.Helper()
		ct.Reset()
		signVerify(t, s, name)
		// A fresh swtpm answers its first ECDSA sign with TPM_RC_RETRY; a
		// resend is not a new operation.
		n := ct.Total() - ct.Retried()
		t.Logf("%s: %d commands", name, n)
		if n != want || n > 3 {
			t.Errorf("%s: %d TPM commands, want %d (at most 3)", name, n, want)
		}
		if ct.Count(tpm2.TPMCCCreatePrimary) != 0 {
			t.Errorf("%s: CreatePrimary on the signing path", name)
		}
	}
	// The cache is an LRU of two keys.
	measure("first use (Load, Sign)", s1, 2)
	measure("cached (Sign)", s1, 1)
	measure("second key, free slot (Load, Sign)", s2, 2)
	for i := range 2 {
		measure(fmt.Sprint("alternating, key 1 (Sign) ", i), s1, 1)
		measure(fmt.Sprint("alternating, key 2 (Sign) ", i), s2, 1)
	}
	// s1 is the least recently used: s3 evicts it.
	measure("third key (Flush LRU, Load, Sign)", s3, 3)
	measure("most recent of the other two (Sign)", s2, 1)
	measure("evicted key (Flush LRU, Load, Sign)", s1, 3)
	measure("kept key (Sign)", s2, 1)
	for i := range 2 {
		for j, s := range []crypto.Signer{s3, s1, s2} {
			measure(fmt.Sprintf("rotating among 3, key %d (Flush, Load, Sign) %d", j+1, i), s, 3)
		}
	}
	assertDeviceHandles(t, sw, d)

	// With two keys cached every slot is full: what needs one more object
	// (TPM2_Create, TPM2_Load) evicts the least recently used key first.
	count := func(name string, want int, f func() error) {
		t.Helper()
		ct.Reset()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := ct.Total() - ct.Retried(); n != want {
			t.Errorf("%s: %d TPM commands, want %d", name, n, want)
		}
	}
	fill := func() {
		t.Helper()
		signVerify(t, s1, "fill")
		signVerify(t, s2, "fill")
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.cached) != maxCachedKeys {
			t.Fatalf("%d keys cached, want %d", len(d.cached), maxCachedKeys)
		}
	}
	var sealed, guard []byte
	fill()
	count("Seal, cache full (Flush, Create)", 2, func() (err error) { sealed, err = d.Seal(make([]byte, 32)); return })
	fill()
	count("Unseal, cache full", 5, func() error { _, err := d.Unseal(sealed); return err })
	fill()
	count("NewKey, cache full (Flush, Create)", 2, func() error { _, _, err := d.NewKey(AlgES256); return err })
	fill()
	count("NewPINGuard, cache full (Flush, Create)", 2, func() (err error) { guard, err = d.NewPINGuard([]byte("pin")); return })
	fill()
	count("CheckPIN(right), cache full", 5, func() error { _, err := d.CheckPIN(guard, []byte("pin")); return err })
	measure("kept key after CheckPIN (Sign)", s2, 1)
	measure("evicted key after CheckPIN (Load, Sign)", s1, 2)
	assertDeviceHandles(t, sw, d)

	d.mu.Lock()
	d.cacheKeys = false
	d.resetLocked() // drop the cached key
	d.mu.Unlock()
	signVerify(t, s1, "setup") // recreates SRK and session
	measure("uncached (Load, Sign, Flush)", s1, 3)

	count("Seal", 1, func() (err error) { sealed, err = d.Seal(make([]byte, 32)); return })
	count("Unseal", 4, func() error { _, err := d.Unseal(sealed); return err })
	count("NewKey", 1, func() error { _, _, err := d.NewKey(AlgES256); return err })
	count("NewPINGuard", 1, func() (err error) { guard, err = d.NewPINGuard([]byte("pin")); return })
	count("CheckPIN(right)", 4, func() error { _, err := d.CheckPIN(guard, []byte("pin")); return err })
	count("CheckPIN(wrong)", 5, func() error { _, err := d.CheckPIN(guard, []byte("nip")); return err })
	resetDALockout(t, ct)
}

// TestObjectMemory: when the TPM has fewer free slots than a Device assumes
// (another client holds one), a TPM_RC_OBJECT_MEMORY answer evicts a cached
// key and the command is retried once; nothing leaks.
func TestObjectMemory(t *testing.T) {
	sw := startSwtpm(t)
	ct := NewCountingTransport(sw.raw())
	d, err := New(ct)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b1, _, _ := d.NewKey(AlgES256)
	b2, _, _ := d.NewKey(AlgES256)
	sealed, err := d.Seal([]byte("dek"))
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := mustSigner(t, d, b1), mustSigner(t, d, b2)
	signVerify(t, s1, "one cached")
	// Another client takes the third slot.
	other, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(sw.raw())
	if err != nil {
		t.Fatal(err)
	}
	ct.Reset()
	signVerify(t, s2, "slots full") // Load (OBJECT_MEMORY), Flush s1, Load, Sign
	if n := ct.Total() - ct.Retried(); n != 4 || ct.Count(tpm2.TPMCCLoad) != 2 {
		t.Errorf("Sign with the TPM's slots full: %d commands (%d Load), want 4 (2)", n, ct.Count(tpm2.TPMCCLoad))
	}
	d.mu.Lock()
	if !d.ready || len(d.cached) != 1 || d.cached[0].id != s2.(*signer).id {
		t.Errorf("after the retry: ready=%v, %d keys cached, want s2's", d.ready, len(d.cached))
	}
	d.mu.Unlock()
	// Unseal: Load (OBJECT_MEMORY), Flush s2, Load, StartAuthSession, Unseal, Flush.
	if got, err := d.Unseal(sealed); err != nil || string(got) != "dek" {
		t.Fatalf("Unseal with the TPM's slots full: %q, %v", got, err)
	}
	if _, err := (tpm2.FlushContext{FlushHandle: other.ObjectHandle}).Execute(sw.raw()); err != nil {
		t.Fatal(err)
	}
	signVerify(t, s1, "slot free again")
	signVerify(t, s2, "slot free again")
	assertDeviceHandles(t, sw, d)
}

// TestBinding: blobs from one TPM (one owner seed) do not load in another.
func TestBinding(t *testing.T) {
	a := openDevice(t, startSwtpm(t))
	swB := startSwtpm(t)
	b := openDevice(t, swB)

	key, _, err := a.NewKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := a.Seal([]byte("data key"))
	if err != nil {
		t.Fatal(err)
	}
	guard, err := a.NewPINGuard([]byte("pin"))
	if err != nil {
		t.Fatal(err)
	}

	_, err = b.Unseal(sealed)
	if !errors.Is(err, ErrForeign) {
		t.Fatalf("Unseal on B = %v, want ErrForeign", err)
	}
	var f1 tpm2.TPMFmt1Error
	if !errors.As(err, &f1) {
		t.Errorf("Unseal error %v does not expose the TPM response code", err)
	}
	t.Logf("foreign Unseal: %v", err)
	s := mustSigner(t, b, key) // parses; the TPM is not asked yet
	if _, err := s.Sign(rand.Reader, digest("x"), crypto.SHA256); !errors.Is(err, ErrForeign) {
		t.Errorf("Sign on B = %v, want ErrForeign", err)
	}
	if _, err := b.CheckPIN(guard, []byte("pin")); !errors.Is(err, ErrForeign) {
		t.Errorf("CheckPIN on B = %v, want ErrForeign", err)
	}
	// A foreign blob leaves B working, with nothing but its SRK loaded.
	b.mu.Lock()
	if !b.ready || len(b.cached) != 0 {
		t.Errorf("B after foreign blobs: ready=%v cached=%v", b.ready, b.cached)
	}
	b.mu.Unlock()
	assertDeviceHandles(t, swB, b)
	if _, err := b.Seal([]byte("ok")); err != nil {
		t.Errorf("B after foreign blobs: %v", err)
	}

	// An altered blob is foreign too.
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 1
	if _, err := a.Unseal(bad); !errors.Is(err, ErrForeign) {
		t.Errorf("Unseal(altered) = %v, want ErrForeign", err)
	}
	if got, err := a.Unseal(sealed); err != nil || string(got) != "data key" {
		t.Errorf("A's own blob: %q, %v", got, err)
	}
}

// TestRestart: the TPM restarts under an open Device. The operation in
// flight fails; the next one recreates the SRK and session and succeeds;
// old blobs keep working, with the same Device and after reopening.
func TestRestart(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		name := "unixio"
		if tcp {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) {
			sw := startSwtpmState(t, t.TempDir(), tcp)
			d := openDevice(t, sw)
			key, _, err := d.NewKey(AlgES256)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := d.Seal([]byte("dek"))
			if err != nil {
				t.Fatal(err)
			}
			key2, _, err := d.NewKey(AlgES256)
			if err != nil {
				t.Fatal(err)
			}
			s, s2 := mustSigner(t, d, key), mustSigner(t, d, key2)
			signVerify(t, s2, "before")
			signVerify(t, s, "before") // both keys cached

			sw.restart()
			if _, err := s.Sign(rand.Reader, digest("in flight"), crypto.SHA256); err == nil {
				t.Fatal("Sign right after the restart succeeded; want the in-flight failure")
			} else {
				t.Logf("in flight: %v", err)
			}
			signVerify(t, s, "after restart")
			signVerify(t, s2, "after restart")
			if !tcp {
				assertDeviceHandles(t, sw, d)
			}
			if got, err := d.Unseal(sealed); err != nil || string(got) != "dek" {
				t.Fatalf("Unseal after restart: %q, %v", got, err)
			}

			// The TPM is down for a while: a clear error, then recovery.
			sw.stop()
			_, err = d.Seal([]byte("x"))
			if err == nil {
				t.Fatal("Seal with swtpm stopped succeeded")
			}
			if tcp {
				// The kept connection fails first; the redial says why.
				t.Logf("first Seal after the TCP stop: %v", err)
				_, err = d.Seal([]byte("x"))
			}
			if !errors.Is(err, ErrNoDevice) {
				t.Errorf("Seal with swtpm stopped = %v, want ErrNoDevice", err)
			}
			sw.start()
			if _, err := d.Seal([]byte("x")); err != nil {
				t.Fatalf("Seal after restart: %v", err)
			}
			signVerify(t, s, "after stop/start")

			// Reopening (a daemon restart) re-derives the same SRK.
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d2 := openDevice(t, sw)
			signVerify(t, mustSigner(t, d2, key), "reopened")
			if got, err := d2.Unseal(sealed); err != nil || string(got) != "dek" {
				t.Fatalf("Unseal after reopening: %q, %v", got, err)
			}
			if _, err := s.Sign(rand.Reader, digest("closed"), crypto.SHA256); !errors.Is(err, ErrClosed) {
				t.Errorf("Sign on a closed Device = %v, want ErrClosed", err)
			}
		})
	}
}

func TestPINGuard(t *testing.T) {
	sw := startSwtpm(t)
	d := openDevice(t, sw)
	// Values with zero bytes inside and at the end (see pinAuth).
	right := bytes.Repeat([]byte{0xA5}, 32)
	right[3], right[31] = 0, 0
	wrong := bytes.Clone(right)
	wrong[0] ^= 1
	guard, err := d.NewPINGuard(right)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.CheckPIN(guard, right); !ok || err != nil {
		t.Fatalf("CheckPIN(right) = %v, %v", ok, err)
	}
	if ok, err := d.CheckPIN(guard, wrong); ok || err != nil {
		t.Fatalf("CheckPIN(wrong) = %v, %v", ok, err)
	}
	maxTries, _, _, counter, err := d.DAParameters()
	if err != nil {
		t.Fatal(err)
	}
	if counter != 1 {
		t.Errorf("DA counter after one wrong PIN = %d, want 1", counter)
	}
	t.Logf("swtpm default maxTries=%d", maxTries)
	assertDeviceHandles(t, sw, d)
	if ok, err := d.CheckPIN(guard, right); !ok || err != nil {
		t.Fatalf("CheckPIN(right) after a wrong one = %v, %v", ok, err)
	}
	// The correct PIN does not reset the TPM's counter.
	if _, _, _, counter, _ := d.DAParameters(); counter != 1 {
		t.Errorf("DA counter after the right PIN = %d, want still 1", counter)
	}
	if _, err := d.NewPINGuard(nil); err == nil {
		t.Error("NewPINGuard(empty) succeeded")
	}
	if _, err := d.NewPINGuard(make([]byte, 33)); err == nil {
		t.Error("NewPINGuard(33 bytes) succeeded")
	}
	resetDALockout(t, sw.raw())
}

// TestLockout tunes the DA parameters through the lockout hierarchy and runs
// into the lockout.
func TestLockout(t *testing.T) {
	sw := startSwtpm(t)
	raw := sw.raw()
	setDAParameters(t, raw, 5, 1000, 1000)
	d := openDevice(t, sw)
	maxTries, interval, recovery, counter, err := d.DAParameters()
	if err != nil {
		t.Fatal(err)
	}
	if maxTries != 5 || interval != 1000 || recovery != 1000 || counter != 0 {
		t.Fatalf("DAParameters = %d, %d, %d, %d; want 5, 1000, 1000, 0", maxTries, interval, recovery, counter)
	}
	right, wrong := []byte("right-pin-derived"), []byte("wrong-pin-derived")
	guard, err := d.NewPINGuard(right)
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := d.NewKey(AlgES256)
	s := mustSigner(t, d, key)
	sealed, _ := d.Seal([]byte("dek"))
	for i := 1; i <= 5; i++ {
		if ok, err := d.CheckPIN(guard, wrong); ok || err != nil {
			t.Fatalf("wrong PIN #%d: %v, %v", i, ok, err)
		}
		if _, _, _, c, _ := d.DAParameters(); c != uint32(i) {
			t.Errorf("counter after %d wrong PINs = %d", i, c)
		}
	}
	for _, pin := range [][]byte{wrong, right} {
		ok, err := d.CheckPIN(guard, pin)
		if ok || !errors.Is(err, ErrLockout) || !errors.Is(err, tpm2.TPMRCLockout) {
			t.Fatalf("CheckPIN(%s) in lockout = %v, %v; want ErrLockout", pin, ok, err)
		}
	}
	if _, _, _, c, _ := d.DAParameters(); c != 5 {
		t.Errorf("counter in lockout = %d, want 5", c)
	}
	// noDA objects keep working during the lockout.
	signVerify(t, s, "during lockout")
	if got, err := d.Unseal(sealed); err != nil || string(got) != "dek" {
		t.Errorf("Unseal during lockout: %q, %v", got, err)
	}
	if _, err := d.NewPINGuard(right); err != nil {
		t.Errorf("NewPINGuard during lockout: %v", err)
	}
	resetDALockout(t, raw)
	if ok, err := d.CheckPIN(guard, right); !ok || err != nil {
		t.Fatalf("CheckPIN(right) after DictionaryAttackLockReset = %v, %v", ok, err)
	}
}

// TestOwnerPassword: an owner hierarchy with a password gives a clear error.
func TestOwnerPassword(t *testing.T) {
	sw := startSwtpm(t)
	raw := sw.raw()
	change := func(old, new string) {
		t.Helper()
		_, err := tpm2.HierarchyChangeAuth{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth([]byte(old))},
			NewAuth:    tpm2.TPM2BAuth{Buffer: []byte(new)},
		}.Execute(raw)
		if err != nil {
			t.Fatalf("HierarchyChangeAuth: %v", err)
		}
	}
	change("", "owner secret")
	_, err := Open(sw.spec())
	if !errors.Is(err, ErrOwnerAuth) || !strings.Contains(err.Error(), "owner hierarchy") {
		t.Fatalf("Open with an owner password = %v, want ErrOwnerAuth", err)
	}
	t.Logf("owner password: %v", err)
	change("owner secret", "")
	openDevice(t, sw)
}

func TestOpenErrors(t *testing.T) {
	for _, spec := range []string{"/nonexistent/tpmrm0", "swtpm:/nonexistent.sock", "tcp:127.0.0.1:1", "/dev/null"} {
		if _, err := Open(spec); !errors.Is(err, ErrNoDevice) {
			t.Errorf("Open(%q) = %v, want ErrNoDevice", spec, err)
		}
	}
	if _, err := os.Stat(DefaultDevice); err != nil {
		if _, err := Open(""); !errors.Is(err, ErrNoDevice) {
			t.Errorf("Open(\"\") without %s = %v, want ErrNoDevice", DefaultDevice, err)
		}
	}
	if _, err := Open("tcp:nonsense"); err == nil {
		t.Error("Open(tcp:nonsense) succeeded")
	}
}

// faultTransport answers the first n commands with code cc with rc, without
// passing them to the TPM.
type faultTransport struct {
	t  transport.TPM
	cc tpm2.TPMCC
	rc tpm2.TPMRC

	mu sync.Mutex
	n  int
}

func (f *faultTransport) Send(cmd []byte) ([]byte, error) {
	f.mu.Lock()
	fault := f.n > 0 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) == f.cc
	if fault {
		f.n--
	}
	f.mu.Unlock()
	if !fault {
		return f.t.Send(cmd)
	}
	rsp := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTNoSessions))
	rsp = binary.BigEndian.AppendUint32(rsp, hdrSize)
	return binary.BigEndian.AppendUint32(rsp, uint32(f.rc)), nil
}

func (f *faultTransport) arm(rc tpm2.TPMRC, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rc, f.n = rc, n
}

func TestRetry(t *testing.T) {
	sw := startSwtpm(t)
	ft := &faultTransport{t: sw.raw(), cc: tpm2.TPMCCSign}
	ct := NewCountingTransport(ft)
	d, err := New(ct)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var sleeps []time.Duration
	d.t.(*retrying).sleep = func(dur time.Duration) { sleeps = append(sleeps, dur) }
	key, _, _ := d.NewKey(AlgES256)
	s := mustSigner(t, d, key)
	signVerify(t, s, "warm up") // swtpm's own first-sign RETRY

	for _, rc := range []tpm2.TPMRC{tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting} {
		sleeps = nil
		ft.arm(rc, 3)
		ct.Reset()
		signVerify(t, s, "retried")
		if got := ct.Count(tpm2.TPMCCSign); got != 4 || ct.Retried() != 3 {
			t.Errorf("%v: Sign sent %d times (%d retried), want 4 (3)", rc, got, ct.Retried())
		}
		if want := []time.Duration{2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond}; fmt.Sprint(sleeps) != fmt.Sprint(want) {
			t.Errorf("%v: back-off %v, want %v", rc, sleeps, want)
		}
	}

	// A TPM that stays busy: the error says so, and the Device is still usable.
	sleeps = nil
	ft.arm(tpm2.TPMRCRetry, 1000)
	_, err = s.Sign(rand.Reader, digest("busy"), crypto.SHA256)
	if !errors.Is(err, tpm2.TPMRCRetry) {
		t.Fatalf("Sign with a TPM that never stops asking to retry = %v", err)
	}
	if len(sleeps) != maxRetries {
		t.Errorf("%d retries, want %d", len(sleeps), maxRetries)
	}
	ft.arm(0, 0)
	ct.Reset()
	signVerify(t, s, "recovered")
	if ct.Count(tpm2.TPMCCCreatePrimary) != 0 {
		t.Error("RETRY exhaustion reset the Device; the TPM state was fine")
	}

	// Other errors are not retried.
	ft.arm(tpm2.TPMRCFailure, 1)
	ct.Reset()
	if _, err := s.Sign(rand.Reader, digest("fail"), crypto.SHA256); !errors.Is(err, tpm2.TPMRCFailure) {
		t.Fatalf("Sign = %v, want TPM_RC_FAILURE", err)
	}
	if ct.Count(tpm2.TPMCCSign) != 1 {
		t.Errorf("TPM_RC_FAILURE was resent")
	}
	signVerify(t, s, "after failure") // reset and set up again
}

// TestConcurrent signs, seals and checks PINs from several goroutines.
func TestConcurrent(t *testing.T) {
	d := openDevice(t, startSwtpm(t))
	var signers []crypto.Signer
	for range 3 {
		b, _, err := d.NewKey(AlgES256)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, mustSigner(t, d, b))
	}
	guard, err := d.NewPINGuard([]byte("pin"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 6 {
		wg.Go(func() {
			for i := range 5 {
				s := signers[(g+i)%len(signers)]
				dg := digest(fmt.Sprint(g, i))
				sig, err := s.Sign(rand.Reader, dg, crypto.SHA256)
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), dg, sig) {
					errs <- errors.New("bad signature")
				}
				if g%3 == 0 {
					secret := []byte(fmt.Sprint("secret ", g, i))
					b, err := d.Seal(secret)
					if err != nil {
						errs <- err
						return
					}
					if got, err := d.Unseal(b); err != nil || !bytes.Equal(got, secret) {
						errs <- fmt.Errorf("unseal: %q, %v", got, err)
					}
				}
				if g%3 == 1 {
					if ok, err := d.CheckPIN(guard, []byte("pin")); !ok || err != nil {
						errs <- fmt.Errorf("CheckPIN: %v, %v", ok, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestKeepsState(t *testing.T) {
	param := tpm2.TPMRC(0x1DF) // TPM_RC_INTEGRITY, parameter 1
	for _, c := range []struct {
		err  error
		keep bool
	}{
		{fmt.Errorf("x: %w", param), true},
		{tpm2.TPMRCLockout, true},
		{tpm2.TPMRCRetry, true},
		{tpm2.TPMRCInitialize, false},
		{tpm2.TPMRC(0x18B), false}, // TPM_RC_HANDLE, handle 1
		{tpm2.TPMRC(0x910), false}, // TPM_RC_REFERENCE_H0
		{errors.New("connection refused"), false},
	} {
		if got := keepsState(c.err); got != c.keep {
			t.Errorf("keepsState(%v) = %v, want %v", c.err, got, c.keep)
		}
	}
}

// TestImports keeps the package a leaf: it must not import keystore, ctap2
// or any other authd package (ARCHITECTURE.md).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/authd/authd/") && p != "github.com/authd/authd/tpm" {
			t.Errorf("tpm depends on %s", p)
		}
	}
}
