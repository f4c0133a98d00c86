package pinuv

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
)

// Known-answer vectors, re-derived by /work/shared/reference/vectors/verify_vectors.py:
//   - python-fido2 tests/test_ctap2.py TestClientPin (PIN/UV auth protocol 1).
//     There the private key is the platform's and the public key the device's;
//     decapsulation is symmetric, so the test runs KeyAgreement with the
//     platform's key and checks both the platform and the authenticator steps.
//   - W3C WebAuthn L3 index.bs "CTAP2 hmac-secret extension" test vectors
//     (#test-vectors-extensions-prf-ctap), protocols 2 and 1. The saltAuth
//     values are not published; they are the script's "info:" output.

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// coseP256 builds the key-agreement COSE_Key for a point, via the wire form.
func coseP256(t testing.TB, x, y []byte) cose.Key {
	t.Helper()
	b := append(unhex(t, "a501020338182001215820"), x...)
	b = append(append(b, 0x22, 0x58, 0x20), y...)
	var k cose.Key
	if err := cbor.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// decodeKey decodes a COSE_Key as a request decoder would.
func decodeKey(t testing.TB, b []byte) cose.Key {
	t.Helper()
	var k cose.Key
	if err := cbor.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func kaFromScalar(t testing.TB, d []byte) *KeyAgreement {
	t.Helper()
	priv, err := ecdh.P256().NewPrivateKey(d)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := NewKeyAgreementFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return ka
}

func eq(t testing.TB, name string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got  %x\n want %x", name, got, want)
	}
}

func TestPythonFido2ProtocolOne(t *testing.T) {
	const (
		ecPriv     = "7452E599FEE739D8A653F6A507343D12D382249108A651402520B72F24FE7684"
		devX       = "0501D5BC78DA9252560A26CB08FCC60CBE0B6D3B8E1D1FCEE514FAC0AF675168"
		devY       = "D551B3ED46F665731F95B4532939C25D91DB7EB844BD96D4ABD4083785F8DF47"
		ownX       = "44D78D7989B97E62EA993496C9EF6E8FD58B8B00715F9A89153DDD9C4657E47F"
		ownY       = "EC802EE7D22BD4E100F12E48537EB4E7E96ED3A47A0A3BD5F5EEAB65001664F9"
		shared     = "c42a039d548100dfba521e487debcbbb8b66bb7496f8b1862a7a395ed83e1a1c"
		pinHashEnc = "afe8327ce416da8ee3d057589c2ce1a9"
		tokenEnc   = "7A9F98E31B77BE90F9C64D12E9635040"
		token      = "aff12c6dcfbf9df52f7a09211e8865cd"
		setPinEnc  = "0222fc42c6dd76a274a7057858b9b29d98e8a722ec2dc6668476168c5320473cec9907b4cd76ce7943c96ba5683943211d84471e64d9c51e54763488cd66526a"
		setPinAuth = "7b40c084ccc5794194189ab57836475f"
		chgPinEnc  = "4280e14aac4fcbf02dd079985f0c0ffc9ea7d5f9c173fd1a4c843826f7590cb3c2d080c6923e2fe6d7a52c31ea1309d3fcca3dedae8a2ef14b6330cafc79339e"
		chgPinAuth = "fb97e92f3724d7c85e001d7f93e6490a"
	)
	ka := kaFromScalar(t, unhex(t, ecPriv))
	eq(t, "getPublicKey", ka.PublicKeyCOSE(),
		append(append(unhex(t, "a501020338182001215820"+ownX), 0x22, 0x58, 0x20), unhex(t, ownY)...))

	ss, err := ka.Decapsulate(V1, coseP256(t, unhex(t, devX), unhex(t, devY)))
	if err != nil {
		t.Fatal(err)
	}
	if ss.Version() != 1 {
		t.Fatalf("version %d", ss.Version())
	}
	eq(t, "sharedSecret", ss.b[:32], unhex(t, shared))
	eq(t, "zero tail", ss.b[32:], make([]byte, 32))
	eq(t, "HMACKey", ss.HMACKey(), unhex(t, shared))

	// pinHashEnc of "1234": platform encrypts, authenticator decrypts.
	h := PINHash([]byte("1234"))
	eq(t, "PINHash", h[:], sha([]byte("1234"))[:16])
	enc, err := ss.Encrypt(h[:])
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "pinHashEnc", enc, unhex(t, pinHashEnc))
	got, err := ss.DecryptPINHash(unhex(t, pinHashEnc))
	if err != nil || !PINHashEqual(got, h) {
		t.Fatalf("DecryptPINHash: %x %v", got, err)
	}

	// pinUvAuthToken: the authenticator encrypts, the platform decrypts.
	enc, err = ss.Encrypt(unhex(t, token))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "token encrypt", enc, unhex(t, tokenEnc))
	pt, err := ss.Decrypt(unhex(t, tokenEnc))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "token decrypt", pt, unhex(t, token))

	// setPIN: pinUvAuthParam = authenticate(sharedSecret, newPinEnc).
	padded := make([]byte, 64)
	copy(padded, "1234")
	enc, err = ss.Encrypt(padded)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "setPIN newPinEnc", enc, unhex(t, setPinEnc))
	eq(t, "setPIN param", ss.Authenticate(unhex(t, setPinEnc)), unhex(t, setPinAuth))
	if !ss.Verify(unhex(t, setPinEnc), unhex(t, setPinAuth)) ||
		!V1.Verify(ss.HMACKey(), unhex(t, setPinEnc), unhex(t, setPinAuth)) {
		t.Error("setPIN param does not verify")
	}
	pin, err := ss.DecryptNewPIN(unhex(t, setPinEnc))
	if err != nil || string(pin) != "1234" {
		t.Errorf("setPIN newPin %q %v", pin, err)
	}

	// changePIN: pinUvAuthParam = authenticate(sharedSecret, newPinEnc ‖ pinHashEnc).
	copy(padded, "4321")
	enc, err = ss.Encrypt(padded)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "changePIN newPinEnc", enc, unhex(t, chgPinEnc))
	msg := append(unhex(t, chgPinEnc), unhex(t, pinHashEnc)...)
	eq(t, "changePIN param", ss.Authenticate(msg), unhex(t, chgPinAuth))
	if !ss.Verify(msg, unhex(t, chgPinAuth)) {
		t.Error("changePIN param does not verify")
	}
	if ss.Verify(unhex(t, chgPinEnc), unhex(t, chgPinAuth)) {
		t.Error("changePIN param verifies over newPinEnc alone")
	}
	pin, err = ss.DecryptNewPIN(unhex(t, chgPinEnc))
	if err != nil || string(pin) != "4321" {
		t.Errorf("changePIN newPin %q %v", pin, err)
	}
}

// ivs is an IV source for ProtocolV2.Rand that yields the given IVs in order.
func ivs(list ...[]byte) *bytes.Reader { return bytes.NewReader(bytes.Join(list, nil)) }

func TestW3CHmacSecret(t *testing.T) {
	seed := []byte("WebAuthn PRF test vectors")
	n := func(b byte) []byte { return append(append([]byte(nil), seed...), b) }
	iv := func(b byte) []byte { return sha(n(b))[:16] }

	platPriv := sha(n(0x04))
	eq(t, "platform private key", platPriv, unhex(t, "0971bc7fb1be48270adcd3d9a5fc15d5fb0f335b3071ff36a54c007fa6c76514"))
	plat := kaFromScalar(t, platPriv)
	auth := kaFromScalar(t, sha(n(0x05)))
	eq(t, "authenticator getPublicKey", auth.PublicKeyCOSE(), append(append(
		unhex(t, "a501020338182001215820a30522c2de402b561965c3cf949a1cab020c6f6ea36fcf7e911ac1a0f1515300"),
		0x22, 0x58, 0x20), unhex(t, "9961a929abdb2f42e6566771887d41484d889e735e3248518a53112d2b915f00")...))

	credRandom := sha(n(0x06))
	eq(t, "CredRandom", credRandom, unhex(t, "437e065e723a98b2f08f39d8baf7c53ecb3c363c5e5104bdaaf5d5ca2e028154"))
	prfSalt := func(in []byte) []byte { return sha([]byte("WebAuthn PRF\x00"), in) }
	salt1, salt2 := prfSalt(n(0x02)), prfSalt(n(0x03))
	eq(t, "salt1", salt1, unhex(t, "527413ebb48293772df30f031c5ac4650c7de14bf9498671ae163447b6a772b3"))
	eq(t, "salt2", salt2, unhex(t, "d68ac03329a10ee5e0ec834492bb9a96a0e547baf563bf78ccbe8789b22e776b"))
	mac := func(salt []byte) []byte { m := hmac.New(sha256.New, credRandom); m.Write(salt); return m.Sum(nil) }
	out1, out2 := mac(salt1), mac(salt2)
	eq(t, "output1", out1, unhex(t, "3c33e07d202c3b029cc21f1722767021bf27d595933b3d2b6a1b9d5dddc77fae"))
	eq(t, "output2", out2, unhex(t, "a62a8773b19cda90d7ed4ef72a80a804320dbd3997e2f663805ad1fd3293d50b"))

	const (
		v2Shared = "0c63083de8170101d38bcf8bd72309568ddb4550867e23404b35d85712f7c20d8bc911ee23c06034cbc14290b9669bec07739053c5a416e313ef905c79955876"
		v1Shared = "23e5ed7157c25892b77732fb9c8a107e3518800db2af4142f9f4adfacb771d39"
	)
	tests := []struct {
		name            string
		version         int
		salts, outputs  []byte
		saltIV, outIV   []byte // v2 only
		shared          string
		saltEnc, outEnc string
		saltAuth        string // "" = not published; checked for consistency only
	}{
		{"v2 one salt", 2, salt1, out1, iv(0x07), iv(0x09), v2Shared,
			"23dde5e3462daf36559b85c4ac5f9656aa9bfd81c1dc2bf8533c8b9f3882854786b4f500e25b4e3d81f7fc7c74236229",
			"3bfaa48f7952330d63e35ff8cd5bca48d2a12823828915749287256ab146272f9fb437bf65691243c3f504bd7ea6d5e6",
			"8edf4c9d4770439b093d91df4e0788064a1f521c4041adb6338229b38b4f605c"},
		{"v2 two salts", 2, append(append([]byte(nil), salt1...), salt2...), append(append([]byte(nil), out1...), out2...), iv(0x08), iv(0x0a), v2Shared,
			"d9f4236403e0fe843a8e4e5be764d120904c198ad6e77b089876a3391961f183b0008b4ca66b91cd72aa35b6151ff981f6e5649f3c040e6615ad7dd8ae96ef23b229a5c97c3f0dcd8605eee166ce163a",
			"90ee52f739043bc17b3488a74306d7801debb5b61f18662c648a25b5b5678ede482cdaff99a537a44f064fcb10ce6e04dfd27619dc96a0daff8507e499296b1eecf0981f7c8518b277a7a3018f5ec6fb",
			""},
		{"v1 one salt", 1, salt1, out1, nil, nil, v1Shared,
			"ab8c878bb05d04700f077ed91845ec9c503c925cb12b327ddbeb4243c397f913",
			"15d4e4f3f04109b492b575c1b38c28585b6719cf8d61304215108d939f37ccfb",
			"3dccd36b39c6df11dd85837ce672a9bb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proto := func(iv []byte) Protocol {
				if tt.version == 1 {
					return V1
				}
				return ProtocolV2{Rand: ivs(iv)}
			}
			// Platform: decapsulate the authenticator's key, encrypt and MAC the salts.
			ssP, err := plat.Decapsulate(proto(tt.saltIV), decodeKey(t, auth.PublicKeyCOSE()))
			if err != nil {
				t.Fatal(err)
			}
			saltEnc, err := ssP.Encrypt(tt.salts)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "saltEnc", saltEnc, unhex(t, tt.saltEnc))
			saltAuth := ssP.Authenticate(saltEnc)
			if tt.saltAuth != "" {
				eq(t, "saltAuth", saltAuth, unhex(t, tt.saltAuth))
			}

			// Authenticator: decapsulate the platform's key, verify, decrypt,
			// compute and encrypt the outputs.
			ssA, err := auth.Decapsulate(proto(tt.outIV), decodeKey(t, plat.PublicKeyCOSE()))
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "shared secret", ssA.b[:32*tt.version], unhex(t, tt.shared))
			if ssA.b != ssP.b {
				t.Fatal("platform and authenticator derived different secrets")
			}
			if !ssA.Verify(saltEnc, saltAuth) {
				t.Fatal("saltAuth does not verify")
			}
			if !proto(nil).Verify(ssA.HMACKey(), saltEnc, saltAuth) {
				t.Fatal("saltAuth does not verify with Protocol.Verify(HMACKey)")
			}
			if tt.version == 2 && !V2.Verify(ssA.b[:], saltEnc, saltAuth) {
				t.Fatal("v2 Verify does not truncate a 64-byte key to its HMAC half")
			}
			salts, err := ssA.Decrypt(saltEnc)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "decrypted salts", salts, tt.salts)
			var outputs []byte
			for i := 0; i < len(salts); i += 32 {
				outputs = append(outputs, mac(salts[i:i+32])...)
			}
			eq(t, "outputs", outputs, tt.outputs)
			outEnc, err := ssA.Encrypt(outputs)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "output_enc", outEnc, unhex(t, tt.outEnc))

			// Platform decrypts the result.
			back, err := ssP.Decrypt(outEnc)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "platform decrypt", back, tt.outputs)
		})
	}
}

// The v2 KDF on its own, against the W3C shared secret.
func TestKDFDirect(t *testing.T) {
	seed := []byte("WebAuthn PRF test vectors")
	plat, _ := ecdh.P256().NewPrivateKey(sha(seed, []byte{4}))
	auth, _ := ecdh.P256().NewPrivateKey(sha(seed, []byte{5}))
	z, err := plat.ECDH(auth.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	s2 := V2.KDF(z)
	eq(t, "v2", s2.b[:], unhex(t, "0c63083de8170101d38bcf8bd72309568ddb4550867e23404b35d85712f7c20d8bc911ee23c06034cbc14290b9669bec07739053c5a416e313ef905c79955876"))
	s1 := V1.KDF(z)
	eq(t, "v1", s1.b[:32], unhex(t, "23e5ed7157c25892b77732fb9c8a107e3518800db2af4142f9f4adfacb771d39"))
	eq(t, "v1 AES key", s1.aesKey(), s1.b[:32])
	eq(t, "v2 AES key", s2.aesKey(), s2.b[32:])
	eq(t, "v2 HMAC key", s2.HMACKey(), s2.b[:32])
}
