package pinuv

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
)

// pair returns matching authenticator and platform secrets for p.
func pair(t testing.TB, p Protocol) (auth, plat SharedSecret) {
	t.Helper()
	a, err := NewKeyAgreement(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKeyAgreement(nil)
	if err != nil {
		t.Fatal(err)
	}
	auth, err = a.Decapsulate(p, decodeKey(t, b.PublicKeyCOSE()))
	if err != nil {
		t.Fatal(err)
	}
	plat, err = b.Decapsulate(p, decodeKey(t, a.PublicKeyCOSE()))
	if err != nil {
		t.Fatal(err)
	}
	if auth.b != plat.b {
		t.Fatal("secrets differ")
	}
	return auth, plat
}

var protocols = []Protocol{V1, V2}

func TestByVersion(t *testing.T) {
	for _, v := range []int{1, 2} {
		p, ok := ByVersion(v)
		if !ok || p.Version() != v {
			t.Errorf("ByVersion(%d) = %v, %v", v, p, ok)
		}
	}
	for _, v := range []int{-1, 0, 3, 256} {
		if p, ok := ByVersion(v); ok || p != nil {
			t.Errorf("ByVersion(%d) = %v, %v", v, p, ok)
		}
	}
}

// Every ciphertext length 0..100: Decrypt never panics, fails exactly on
// impossible lengths, and valid ciphertexts round-trip through Encrypt.
func TestDecryptLengthSweep(t *testing.T) {
	for _, p := range protocols {
		ss, _ := pair(t, p)
		for n := 0; n <= 100; n++ {
			ct := make([]byte, n)
			rand.Read(ct)
			pt, err := ss.Decrypt(ct)
			valid := n%16 == 0
			ptLen := n
			if p.Version() == 2 {
				valid = valid && n >= 16
				ptLen = n - 16
			}
			if !valid {
				if !errors.Is(err, ErrDecrypt) || pt != nil {
					t.Errorf("v%d Decrypt(%d bytes) = %d bytes, %v; want ErrDecrypt", p.Version(), n, len(pt), err)
				}
				continue
			}
			if err != nil || len(pt) != ptLen {
				t.Errorf("v%d Decrypt(%d bytes) = %d bytes, %v", p.Version(), n, len(pt), err)
				continue
			}
			// Re-encrypt with the same IV: the ciphertext comes back.
			re := ss
			if p.Version() == 2 {
				re.p = ProtocolV2{Rand: bytes.NewReader(ct[:16])}
			}
			again, err := re.Encrypt(pt)
			if err != nil || !bytes.Equal(again, ct) {
				t.Errorf("v%d re-encrypt of %d bytes: %x %v", p.Version(), n, again, err)
			}
		}
	}
}

func TestEncryptLengthSweep(t *testing.T) {
	for _, p := range protocols {
		ss, plat := pair(t, p)
		overhead := 0
		if p.Version() == 2 {
			overhead = 16
		}
		for n := 0; n <= 100; n++ {
			pt := bytes.Repeat([]byte{byte(n)}, n)
			ct, err := ss.Encrypt(pt)
			if n%16 != 0 {
				if !errors.Is(err, ErrPlaintext) || ct != nil {
					t.Errorf("v%d Encrypt(%d bytes): %v", p.Version(), n, err)
				}
				continue
			}
			if err != nil || len(ct) != n+overhead {
				t.Fatalf("v%d Encrypt(%d bytes) = %d bytes, %v", p.Version(), n, len(ct), err)
			}
			back, err := plat.Decrypt(ct)
			if err != nil || !bytes.Equal(back, pt) {
				t.Errorf("v%d round trip of %d bytes: %v", p.Version(), n, err)
			}
		}
	}
}

func TestV2RandomIV(t *testing.T) {
	ss, _ := pair(t, V2)
	pt := make([]byte, 32)
	a, _ := ss.Encrypt(pt)
	b, _ := ss.Encrypt(pt)
	if bytes.Equal(a[:16], b[:16]) || bytes.Equal(a, b) {
		t.Fatal("two encryptions share an IV")
	}
	// A failing IV source fails Encrypt.
	ss.p = ProtocolV2{Rand: iotest.ErrReader(io.ErrUnexpectedEOF)}
	if ct, err := ss.Encrypt(pt); err == nil || ct != nil {
		t.Fatalf("Encrypt with a failing reader: %x %v", ct, err)
	}
	ss.p = ProtocolV2{Rand: bytes.NewReader(make([]byte, 15))}
	if _, err := ss.Encrypt(pt); err == nil {
		t.Fatal("Encrypt with a short reader succeeded")
	}
}

// Only the exact 16-byte (v1) or 32-byte (v2) MAC verifies: not a prefix, not
// an extension, not the other protocol's length, not a single flipped bit.
func TestVerifyLengths(t *testing.T) {
	msg := []byte("clientDataHash.................!")
	for _, p := range protocols {
		ss, _ := pair(t, p)
		var tok Token
		rand.Read(tok[:])
		for _, key := range [][]byte{ss.HMACKey(), tok[:]} {
			good := p.Authenticate(key, msg)
			want := 16 * p.Version()
			if len(good) != want {
				t.Fatalf("v%d MAC is %d bytes", p.Version(), len(good))
			}
			if !p.Verify(key, msg, good) {
				t.Fatalf("v%d good MAC rejected", p.Version())
			}
			full := hmacSHA256(key, msg)
			for n := 0; n <= 80; n++ {
				sig := make([]byte, n)
				copy(sig, full)
				if n > len(full) {
					copy(sig[len(full):], full)
				}
				if p.Verify(key, msg, sig) != (n == want) {
					t.Errorf("v%d Verify with a %d-byte sig = %v", p.Version(), n, !(n == want))
				}
			}
			if p.Verify(key, msg, nil) {
				t.Errorf("v%d nil sig verified", p.Version())
			}
			for i := range good {
				bad := bytes.Clone(good)
				bad[i] ^= 0x01
				if p.Verify(key, msg, bad) {
					t.Errorf("v%d MAC with byte %d flipped verified", p.Version(), i)
				}
			}
			if p.Verify(key, append(bytes.Clone(msg), 0), good) {
				t.Errorf("v%d MAC verified for another message", p.Version())
			}
		}
		if p.Verify(nil, msg, p.Authenticate(nil, msg)) || p.Verify([]byte{}, msg, p.Authenticate([]byte{}, msg)) {
			t.Errorf("v%d empty key verified", p.Version())
		}
		if !tok.Verify(p, msg, p.Authenticate(tok[:], msg)) || tok.Verify(nil, msg, nil) {
			t.Errorf("v%d Token.Verify", p.Version())
		}
	}
	// v2 truncates long keys to the HMAC half; v1 uses the whole key.
	k64 := make([]byte, 64)
	rand.Read(k64)
	if !bytes.Equal(V2.Authenticate(k64, msg), V2.Authenticate(k64[:32], msg)) {
		t.Error("v2 does not truncate the key")
	}
	if bytes.Equal(V1.Authenticate(k64, msg), V1.Authenticate(k64[:32], msg)) {
		t.Error("v1 truncates the key")
	}
}

func TestFixedSizeHelpers(t *testing.T) {
	for _, p := range protocols {
		ss, plat := pair(t, p)
		ivLen := 0
		if p.Version() == 2 {
			ivLen = 16
		}
		for n := 0; n <= 100; n++ {
			ct := make([]byte, n)
			h, err := ss.DecryptPINHash(ct)
			if ok := n == 16+ivLen; ok != (err == nil) || (!ok && !errors.Is(err, ErrDecrypt)) {
				t.Errorf("v%d DecryptPINHash(%d bytes): %x %v", p.Version(), n, h, err)
			}
			pin, err := ss.DecryptNewPIN(ct)
			switch {
			case n == 64+ivLen:
				if err != nil {
					t.Errorf("v%d DecryptNewPIN(%d bytes): %v", p.Version(), n, err)
				}
			case n%16 == 0 && n >= ivLen:
				if !errors.Is(err, ErrPadding) || pin != nil {
					t.Errorf("v%d DecryptNewPIN(%d bytes): %q %v; want ErrPadding", p.Version(), n, pin, err)
				}
			default:
				if !errors.Is(err, ErrDecrypt) || pin != nil {
					t.Errorf("v%d DecryptNewPIN(%d bytes): %q %v; want ErrDecrypt", p.Version(), n, pin, err)
				}
			}
		}
		// Round trips as a platform would send them.
		want := PINHash([]byte("correct horse"))
		enc, _ := plat.Encrypt(want[:])
		if got, err := ss.DecryptPINHash(enc); err != nil || !PINHashEqual(got, want) {
			t.Errorf("v%d pinHashEnc round trip: %v", p.Version(), err)
		}
		padded := make([]byte, 64)
		copy(padded, "héllo wörld")
		enc, _ = plat.Encrypt(padded)
		if pin, err := ss.DecryptNewPIN(enc); err != nil || string(pin) != "héllo wörld" {
			t.Errorf("v%d newPinEnc round trip: %q %v", p.Version(), pin, err)
		}
	}
}

func TestPINHash(t *testing.T) {
	h := PINHash([]byte("1234"))
	if hex.EncodeToString(h[:]) != "03ac674216f3e15c761ee1a5e255f067" {
		t.Fatalf("PINHash(1234) = %x", h)
	}
	other := PINHash([]byte("1235"))
	if !PINHashEqual(h, h) || PINHashEqual(h, other) {
		t.Fatal("PINHashEqual")
	}
}

func TestParsePaddedPIN(t *testing.T) {
	for n := 0; n <= 100; n++ {
		pin, err := ParsePaddedPIN(make([]byte, n))
		if n != 64 {
			if !errors.Is(err, ErrPadding) || pin != nil {
				t.Errorf("%d bytes: %q %v", n, pin, err)
			}
		} else if err != nil || pin == nil || len(pin) != 0 {
			t.Errorf("all zero: %q %v", pin, err)
		}
	}
	full := bytes.Repeat([]byte{'7'}, 64)
	if pin, err := ParsePaddedPIN(full); err != nil || !bytes.Equal(pin, full) {
		t.Errorf("unpadded: %q %v", pin, err)
	}
	in := make([]byte, 64)
	copy(in, "12\x0034") // an interior zero stays: only trailing zeros are padding
	pin, err := ParsePaddedPIN(in)
	if err != nil || string(pin) != "12\x0034" {
		t.Errorf("interior zero: %q %v", pin, err)
	}
	pin[0] = 'x'
	if in[0] != '1' {
		t.Error("result aliases the input")
	}
}

func TestProtocolMismatch(t *testing.T) {
	s1, _ := pair(t, V1)
	s2, _ := pair(t, V2)
	var zero SharedSecret
	ct := make([]byte, 32)
	for _, c := range []struct {
		p Protocol
		s *SharedSecret
	}{{V2, &s1}, {V1, &s2}, {V1, &zero}, {V2, &zero}, {V1, nil}, {V2, nil}} {
		if _, err := c.p.Encrypt(c.s, ct); !errors.Is(err, ErrProtocol) {
			t.Errorf("Encrypt v%d with %v: %v", c.p.Version(), c.s, err)
		}
		if _, err := c.p.Decrypt(c.s, ct); !errors.Is(err, ErrProtocol) {
			t.Errorf("Decrypt v%d with %v: %v", c.p.Version(), c.s, err)
		}
	}
	if zero.Version() != 0 || zero.Protocol() != nil || zero.HMACKey() != nil || zero.Authenticate(ct) != nil || zero.Verify(ct, ct[:16]) {
		t.Error("zero SharedSecret is usable")
	}
	if _, err := zero.Encrypt(ct); !errors.Is(err, ErrProtocol) {
		t.Error(err)
	}
	if _, err := zero.Decrypt(ct); !errors.Is(err, ErrProtocol) {
		t.Error(err)
	}
	if _, err := zero.DecryptPINHash(ct[:16]); !errors.Is(err, ErrProtocol) {
		t.Error(err)
	}
	s1.Clear()
	if s1 != zero {
		t.Error("Clear left data behind")
	}
}

func TestHMACKeyIsACopy(t *testing.T) {
	ss, _ := pair(t, V2)
	k := ss.HMACKey()
	k[0] ^= 0xff
	if bytes.Equal(ss.HMACKey(), k) {
		t.Fatal("HMACKey aliases the secret")
	}
}

func TestSecretsDoNotLeak(t *testing.T) {
	ss, _ := pair(t, V2)
	tok, err := NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok == (Token{}) {
		t.Fatal("zero token")
	}
	secrets := []string{hex.EncodeToString(ss.b[:8]), hex.EncodeToString(tok[:8])}
	type holder struct {
		S SharedSecret
		T Token
	}
	h := holder{ss, tok}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q"} {
		for _, v := range []any{ss, &ss, tok, &tok, h, &h} {
			out := strings.ToLower(fmt.Sprintf(f, v))
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("Sprintf(%q, %T) leaks: %s", f, v, out)
				}
			}
		}
	}
	for _, v := range []any{ss, tok, h, &h} {
		if b, err := json.Marshal(v); err == nil {
			t.Errorf("json.Marshal(%T) = %s", v, b)
		}
		if b, err := cbor.Marshal(v); err == nil {
			t.Errorf("cbor.Marshal(%T) = %x", v, b)
		}
	}
	tok.Clear()
	if tok != (Token{}) {
		t.Error("Token.Clear")
	}
}

func TestNewToken(t *testing.T) {
	src := bytes.Repeat([]byte{0xab}, 40)
	tok, err := NewToken(bytes.NewReader(src))
	if err != nil || !bytes.Equal(tok[:], src[:32]) {
		t.Fatalf("%x %v", tok[:], err)
	}
	if _, err := NewToken(bytes.NewReader(src[:31])); err == nil {
		t.Fatal("short reader")
	}
	a, _ := NewToken(nil)
	b, _ := NewToken(nil)
	if a == b {
		t.Fatal("two random tokens are equal")
	}
}

func TestKeyAgreementGeneration(t *testing.T) {
	// A deterministic reader gives a deterministic key; invalid scalars
	// (0, ≥ n) are skipped.
	valid := bytes.Repeat([]byte{0x11}, 32)
	over := bytes.Repeat([]byte{0xff}, 32) // ≥ n
	zero := make([]byte, 32)
	ka, err := NewKeyAgreement(bytes.NewReader(bytes.Join([][]byte{over, zero, valid}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ecdh.P256().NewPrivateKey(valid)
	wantCOSE, _ := cose.EncodeECDHP256(want.PublicKey())
	if !bytes.Equal(ka.PublicKeyCOSE(), wantCOSE) {
		t.Fatal("key does not come from the reader")
	}
	// Regenerate draws from the same reader; when it fails the old key stays.
	before := ka.PublicKeyCOSE()
	if err := ka.Regenerate(); err == nil {
		t.Fatal("Regenerate from an exhausted reader succeeded")
	}
	if !bytes.Equal(ka.PublicKeyCOSE(), before) {
		t.Fatal("failed Regenerate changed the key")
	}
	if _, err := NewKeyAgreement(bytes.NewReader(bytes.Repeat(over, maxKeyTries+1))); err == nil {
		t.Fatal("accepted a reader yielding only invalid scalars")
	}
	if _, err := NewKeyAgreement(iotest.ErrReader(io.ErrClosedPipe)); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("reader error: %v", err)
	}

	// Default source: distinct keys, and Regenerate changes the key.
	a, _ := NewKeyAgreement(nil)
	b, _ := NewKeyAgreement(nil)
	pa := a.PublicKeyCOSE()
	if bytes.Equal(pa, b.PublicKeyCOSE()) {
		t.Fatal("two keys are equal")
	}
	if len(pa) != 78 || !bytes.HasPrefix(pa, []byte{0xa5, 0x01, 0x02, 0x03, 0x38, 0x18, 0x20, 0x01, 0x21, 0x58, 0x20}) {
		t.Fatalf("getPublicKey %x", pa)
	}
	pa[0] = 0
	if a.PublicKeyCOSE()[0] != 0xa5 {
		t.Fatal("PublicKeyCOSE aliases internal state")
	}
	old := a.PublicKeyCOSE()
	peer := decodeKey(t, b.PublicKeyCOSE())
	s1, _ := a.Decapsulate(V2, peer)
	if err := a.Regenerate(); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(old, a.PublicKeyCOSE()) {
		t.Fatal("Regenerate kept the key")
	}
	s2, _ := a.Decapsulate(V2, peer)
	if s1.b == s2.b {
		t.Fatal("Regenerate kept the shared secret")
	}

	if _, err := NewKeyAgreementFromKey(nil); err == nil {
		t.Fatal("nil key accepted")
	}
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, err := NewKeyAgreementFromKey(x); err == nil {
		t.Fatal("X25519 key accepted")
	}
	var z KeyAgreement
	if _, err := z.Decapsulate(V1, peer); err == nil {
		t.Fatal("zero KeyAgreement decapsulated")
	}
}

func TestDecapsulateErrors(t *testing.T) {
	ka, _ := NewKeyAgreement(nil)
	peerKA, _ := NewKeyAgreement(nil)
	good := decodeKey(t, peerKA.PublicKeyCOSE())
	mod := func(f func(k *cose.Key)) cose.Key {
		k := good
		f(&k)
		return k
	}
	two, onePtr := 2, 1
	offY := []byte(good.Y)
	offY[31] ^= 1
	tests := []struct {
		name string
		key  cose.Key
		kind error // cose.ErrMalformed or cose.ErrInvalidKey
	}{
		{"missing y", mod(func(k *cose.Key) { k.Y = "" }), cose.ErrMalformed},
		{"missing kty", mod(func(k *cose.Key) { k.Kty = nil }), cose.ErrMalformed},
		{"empty key", cose.Key{}, cose.ErrMalformed},
		{"kty OKP", mod(func(k *cose.Key) { k.Kty = &onePtr }), cose.ErrInvalidKey},
		{"crv P-384", mod(func(k *cose.Key) { k.Crv = &two }), cose.ErrInvalidKey},
		{"x short", mod(func(k *cose.Key) { k.X = k.X[1:] }), cose.ErrInvalidKey},
		{"off curve", mod(func(k *cose.Key) { k.Y = cbor.ByteString(offY) }), cose.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range protocols {
				ss, err := ka.Decapsulate(p, tt.key)
				if !errors.Is(err, ErrInvalidKey) || !errors.Is(err, tt.kind) {
					t.Fatalf("v%d: %v; want ErrInvalidKey and %v", p.Version(), err, tt.kind)
				}
				if ss.Version() != 0 {
					t.Fatal("returned a usable secret")
				}
			}
		})
	}
	if _, err := ka.Decapsulate(nil, good); !errors.Is(err, ErrProtocol) {
		t.Fatalf("nil protocol: %v", err)
	}
	// alg is not checked.
	alg := -7
	if _, err := ka.Decapsulate(V2, mod(func(k *cose.Key) { k.Alg = &alg })); err != nil {
		t.Fatalf("alg -7: %v", err)
	}
	if _, err := ka.Decapsulate(V2, mod(func(k *cose.Key) { k.Alg = nil })); err != nil {
		t.Fatalf("alg absent: %v", err)
	}
}

// The engine may call these concurrently; run under -race.
func TestKeyAgreementConcurrent(t *testing.T) {
	ka, _ := NewKeyAgreement(nil)
	peerKA, _ := NewKeyAgreement(nil)
	peer := decodeKey(t, peerKA.PublicKeyCOSE())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				switch i % 3 {
				case 0:
					if err := ka.Regenerate(); err != nil {
						t.Error(err)
					}
				case 1:
					if _, err := ka.Decapsulate(V2, peer); err != nil {
						t.Error(err)
					}
				case 2:
					decodeKey(t, ka.PublicKeyCOSE())
				}
			}
		})
	}
	wg.Wait()
}

// FuzzDecrypt: arbitrary ciphertexts never panic, and the length contract holds.
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add(make([]byte, 15), true)
	f.Add(make([]byte, 16), true)
	f.Add(make([]byte, 33), false)
	f.Add(make([]byte, 80), true)
	seed := bytes.Repeat([]byte{7}, 32)
	s1, s2 := V1.KDF(seed), V2.KDF(seed)
	f.Fuzz(func(t *testing.T, ct []byte, v2 bool) {
		ss := &s1
		if v2 {
			ss = &s2
		}
		pt, err := ss.Decrypt(ct)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) || pt != nil {
				t.Fatalf("error %v with %d bytes", err, len(pt))
			}
			return
		}
		want := len(ct)
		if v2 {
			want -= 16
		}
		if len(pt) != want || len(pt)%16 != 0 {
			t.Fatalf("%d-byte ciphertext gave %d bytes", len(ct), len(pt))
		}
		ss.DecryptPINHash(ct)
		ss.DecryptNewPIN(ct)
	})
}
