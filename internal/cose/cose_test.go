package cose

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/authd/authd/internal/cbor"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// W3C WebAuthn Level 3 §6.5.1.1: the example EC2/ES256 credentialPublicKey.
const (
	w3cX   = "65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d"
	w3cY   = "1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c"
	w3cKey = "a5010203262001215820" + w3cX + "225820" + w3cY
)

func TestW3CExampleES256(t *testing.T) {
	want := unhex(t, w3cKey)
	if len(want) != 77 {
		t.Fatalf("example is %d bytes", len(want))
	}
	pub, alg, err := ParsePublicKey(want)
	if err != nil {
		t.Fatal(err)
	}
	if alg != AlgES256 {
		t.Fatalf("alg %d", alg)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("type %T", pub)
	}
	pt, _ := ec.Bytes()
	if !bytes.Equal(pt, unhex(t, "04"+w3cX+w3cY)) {
		t.Fatalf("point %x", pt)
	}
	got, err := EncodeES256(ec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodeES256:\n got %x\nwant %x", got, want)
	}
	alg, got, err = Encode(ec)
	if err != nil || alg != AlgES256 || !bytes.Equal(got, want) {
		t.Fatalf("Encode: %d %x %v", alg, got, err)
	}
}

func TestEncodeECDHP256(t *testing.T) {
	// The same point as the W3C example, in key-agreement form.
	pub, err := ecdh.P256().NewPublicKey(unhex(t, "04"+w3cX+w3cY))
	if err != nil {
		t.Fatal(err)
	}
	got, err := EncodeECDHP256(pub)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "a50102033818200121582"+"0"+w3cX+"225820"+w3cY)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	if len(got) != 78 {
		t.Fatalf("length %d", len(got))
	}
	var k Key
	if err := cbor.Unmarshal(got, &k); err != nil {
		t.Fatal(err)
	}
	if *k.Alg != AlgECDHESHKDF256 {
		t.Fatalf("alg %d", *k.Alg)
	}
	back, err := ParseECDHP256(k)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(pub) {
		t.Fatal("round trip changed the key")
	}
	// Re-encoding the decoded Key gives the same canonical bytes.
	again, err := cbor.Marshal(k)
	if err != nil || !bytes.Equal(again, got) {
		t.Fatalf("re-encode %x %v", again, err)
	}
	if _, err := EncodeECDHP256(nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("nil: %v", err)
	}
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, err := EncodeECDHP256(x.PublicKey()); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("X25519: %v", err)
	}
}

func TestRoundTrips(t *testing.T) {
	for range 20 {
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		alg, b, err := Encode(&ek.PublicKey)
		if err != nil || alg != AlgES256 || len(b) != 77 {
			t.Fatalf("ES256 encode: %d %d %v", alg, len(b), err)
		}
		pub, alg, err := ParsePublicKey(b)
		if err != nil || alg != AlgES256 || !pub.(*ecdsa.PublicKey).Equal(&ek.PublicKey) {
			t.Fatalf("ES256 round trip: %v", err)
		}

		edPub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		alg, b, err = Encode(edPub)
		if err != nil || alg != AlgEdDSA || len(b) != 42 {
			t.Fatalf("EdDSA encode: %d %d %v", alg, len(b), err)
		}
		if !bytes.Equal(b[:10], unhex(t, "a401010327200621582"+"0")) {
			t.Fatalf("EdDSA prefix %x", b[:10])
		}
		pub, alg, err = ParsePublicKey(b)
		if err != nil || alg != AlgEdDSA || !pub.(ed25519.PublicKey).Equal(edPub) {
			t.Fatalf("EdDSA round trip: %v", err)
		}

		dk, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err = EncodeECDHP256(dk.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		var k Key
		if err := cbor.Unmarshal(b, &k); err != nil {
			t.Fatal(err)
		}
		back, err := ParseECDHP256(k)
		if err != nil || !back.Equal(dk.PublicKey()) {
			t.Fatalf("ECDH round trip: %v", err)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := EncodeES256(&p384.PublicKey); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("P-384: %v", err)
	}
	if _, err := EncodeES256(nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("nil: %v", err)
	}
	if _, err := EncodeEdDSA(make([]byte, 31)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short Ed25519: %v", err)
	}
	if _, _, err := Encode("not a key"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("string: %v", err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	if _, _, err := Encode(edPriv); !errors.Is(err, ErrUnsupported) {
		t.Errorf("private key: %v", err)
	}
}

// mapKey encodes a COSE key given as a generic map, canonically.
func mapKey(t testing.TB, m map[int]any) []byte {
	t.Helper()
	b, err := cbor.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseECDHP256Errors(t *testing.T) {
	dk, _ := ecdh.P256().GenerateKey(rand.Reader)
	pt := dk.PublicKey().Bytes()
	x, y := pt[1:33], pt[33:]
	offY := append([]byte(nil), y...)
	offY[31] ^= 1
	good := func() map[int]any { return map[int]any{1: 2, 3: -25, -1: 1, -2: x, -3: y} }
	with := func(label int, v any) map[int]any {
		m := good()
		if v == nil {
			delete(m, label)
		} else {
			m[label] = v
		}
		return m
	}
	tests := []struct {
		name string
		m    map[int]any
		want error // nil: accepted
	}{
		{"good", good(), nil},
		{"alg absent", with(3, nil), nil},
		{"alg ES256", with(3, -7), nil},
		{"alg other", with(3, 5), nil},
		{"kty absent", with(1, nil), ErrMalformed},
		{"crv absent", with(-1, nil), ErrMalformed},
		{"x absent", with(-2, nil), ErrMalformed},
		{"y absent", with(-3, nil), ErrMalformed},
		{"kty OKP", with(1, 1), ErrInvalidKey},
		{"crv P-384", with(-1, 2), ErrInvalidKey},
		{"x short", with(-2, x[:31]), ErrInvalidKey},
		{"x empty", with(-2, []byte{}), ErrMalformed},
		{"y long", with(-3, append(append([]byte(nil), y...), 0)), ErrInvalidKey},
		{"x padded 33", with(-2, append([]byte{0}, x...)), ErrInvalidKey},
		{"off curve", with(-3, offY), ErrInvalidKey},
		{"identity", with(-3, make([]byte, 32)), ErrInvalidKey},
		{"zero point", func() map[int]any { m := with(-2, make([]byte, 32)); m[-3] = make([]byte, 32); return m }(), ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k Key
			if err := cbor.Unmarshal(mapKey(t, tt.m), &k); err != nil {
				t.Fatal(err)
			}
			pub, err := ParseECDHP256(k)
			if tt.want == nil {
				if err != nil || !pub.Equal(dk.PublicKey()) {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || pub != nil {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			other := ErrMalformed
			if tt.want == ErrMalformed {
				other = ErrInvalidKey
			}
			if errors.Is(err, other) {
				t.Fatalf("%v is both kinds", err)
			}
		})
	}
}

// A Key nested inside a request map: wrong member types fail the request decode
// with cbor.ErrType; a non-map fails too.
func TestKeyInRequest(t *testing.T) {
	type request struct {
		Protocol     uint64 `cbor:"1,keyasint"`
		KeyAgreement *Key   `cbor:"3,keyasint"`
	}
	dk, _ := ecdh.P256().GenerateKey(rand.Reader)
	pt := dk.PublicKey().Bytes()
	ok := map[int]any{1: 2, 2: 2, 3: map[int]any{1: 2, 3: -25, -1: 1, -2: pt[1:33], -3: pt[33:]}}
	var r request
	if err := cbor.Unmarshal(mapKey(t, ok), &r); err != nil {
		t.Fatal(err)
	}
	if r.KeyAgreement == nil {
		t.Fatal("key absent")
	}
	if pub, err := ParseECDHP256(*r.KeyAgreement); err != nil || !pub.Equal(dk.PublicKey()) {
		t.Fatalf("parse: %v", err)
	}
	bad := []struct {
		name string
		ka   any
		want error
	}{
		{"kty text", map[int]any{1: "EC2", -1: 1, -2: pt[1:33], -3: pt[33:]}, cbor.ErrType},
		{"crv bytes", map[int]any{1: 2, -1: []byte{1}, -2: pt[1:33], -3: pt[33:]}, cbor.ErrType},
		{"x int", map[int]any{1: 2, -1: 1, -2: 5, -3: pt[33:]}, cbor.ErrType},
		{"y text", map[int]any{1: 2, -1: 1, -2: pt[1:33], -3: "y"}, cbor.ErrType},
		{"alg text", map[int]any{1: 2, 3: "ECDH", -1: 1, -2: pt[1:33], -3: pt[33:]}, cbor.ErrType},
		{"x array", map[int]any{1: 2, -1: 1, -2: []int{1}, -3: pt[33:]}, cbor.ErrType},
		{"kty float", map[int]any{1: 2.0, -1: 1, -2: pt[1:33], -3: pt[33:]}, cbor.ErrType},
		{"kty bool", map[int]any{1: true, -1: 1, -2: pt[1:33], -3: pt[33:]}, cbor.ErrType},
		{"y array", map[int]any{1: 2, -1: 1, -2: pt[1:33], -3: []int{1, 2}}, cbor.ErrType},
		{"kty huge", map[int]any{1: uint64(1) << 63, -1: 1, -2: pt[1:33], -3: pt[33:]}, cbor.ErrType},
		{"not a map", []byte{1, 2}, cbor.ErrType},
		{"array", []int{1, 2}, cbor.ErrType},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var r request
			err := cbor.Unmarshal(mapKey(t, map[int]any{1: 2, 3: tt.ka}), &r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pt, _ := ek.PublicKey.Bytes()
	x, y := pt[1:33], pt[33:]
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	offY := append([]byte(nil), y...)
	offY[0] ^= 0x80
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"garbage", []byte{0xff}, ErrMalformed},
		{"trailing byte", append(mapKey(t, map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y}), 0), ErrMalformed},
		{"not canonical", unhex(t, "a5"+"0102"+"2001"+"0326"+"215820"+hex.EncodeToString(x)+"225820"+hex.EncodeToString(y)), ErrMalformed},
		{"duplicate label", unhex(t, "a6"+"0102"+"0102"+"0326"+"2001"+"215820"+hex.EncodeToString(x)+"225820"+hex.EncodeToString(y)), ErrMalformed},
		{"array", unhex(t, "820102"), ErrMalformed},
		{"kty text", mapKey(t, map[int]any{1: "EC2", 3: -7, -1: 1, -2: x, -3: y}), ErrMalformed},
		{"alg absent", mapKey(t, map[int]any{1: 2, -1: 1, -2: x, -3: y}), ErrMalformed},
		{"kty absent", mapKey(t, map[int]any{3: -7, -1: 1, -2: x, -3: y}), ErrMalformed},
		{"ES256 y absent", mapKey(t, map[int]any{1: 2, 3: -7, -1: 1, -2: x}), ErrMalformed},
		{"ES256 kty OKP", mapKey(t, map[int]any{1: 1, 3: -7, -1: 1, -2: x, -3: y}), ErrInvalidKey},
		{"ES256 crv Ed25519", mapKey(t, map[int]any{1: 2, 3: -7, -1: 6, -2: x, -3: y}), ErrInvalidKey},
		{"ES256 x short", mapKey(t, map[int]any{1: 2, 3: -7, -1: 1, -2: x[1:], -3: y}), ErrInvalidKey},
		{"ES256 off curve", mapKey(t, map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: offY}), ErrInvalidKey},
		{"EdDSA x absent", mapKey(t, map[int]any{1: 1, 3: -8, -1: 6}), ErrMalformed},
		{"EdDSA kty EC2", mapKey(t, map[int]any{1: 2, 3: -8, -1: 6, -2: []byte(edPub)}), ErrInvalidKey},
		{"EdDSA crv X25519", mapKey(t, map[int]any{1: 1, 3: -8, -1: 4, -2: []byte(edPub)}), ErrInvalidKey},
		{"EdDSA x long", mapKey(t, map[int]any{1: 1, 3: -8, -1: 6, -2: append([]byte(edPub), 0)}), ErrInvalidKey},
		{"EdDSA with y", mapKey(t, map[int]any{1: 1, 3: -8, -1: 6, -2: []byte(edPub), -3: y}), ErrInvalidKey},
		{"RS256", mapKey(t, map[int]any{1: 3, 3: -257}), ErrUnsupported},
		{"ECDH alg", mapKey(t, map[int]any{1: 2, 3: -25, -1: 1, -2: x, -3: y}), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, alg, err := ParsePublicKey(tt.in)
			if !errors.Is(err, tt.want) || pub != nil || alg != 0 {
				t.Fatalf("got %v (%T, %d), want %v", err, pub, alg, tt.want)
			}
		})
	}
}

// FuzzParse feeds arbitrary bytes to the decoders: no panic, and every
// accepted key re-encodes to a key that parses back to the same value.
func FuzzParse(f *testing.F) {
	f.Add(unhex(f, w3cKey))
	f.Add(unhex(f, "a50102033818200121582"+"0"+w3cX+"225820"+w3cY))
	edPub := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	if b, err := EncodeEdDSA(edPub); err == nil {
		f.Add(b)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, alg, err := ParsePublicKey(data)
		if err == nil {
			gotAlg, again, err := Encode(pub)
			if err != nil || gotAlg != alg {
				t.Fatalf("accepted %x but does not re-encode: %v", data, err)
			}
			back, _, err := ParsePublicKey(again)
			if err != nil || !back.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatalf("accepted %x; re-encoding %x does not parse back: %v", data, again, err)
			}
		}
		var k Key
		if cbor.Unmarshal(data, &k) == nil {
			if ek, err := ParseECDHP256(k); err == nil {
				if _, err := EncodeECDHP256(ek); err != nil {
					t.Fatalf("accepted key does not encode: %v", err)
				}
			}
		}
	})
}
