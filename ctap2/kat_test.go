package ctap2

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/keystore"
)

// TestHMACSecretW3CVectors runs the W3C WebAuthn "CTAP2 hmac-secret
// extension" test vectors (WebAuthn L3 §16, #test-vectors-extensions-prf-ctap;
// derivations in ../shared/reference/vectors/verify_vectors.py) through the
// engine's own hmac-secret processing, for PIN/UV auth protocols 1 and 2.
func TestHMACSecretW3CVectors(t *testing.T) {
	seed := []byte("WebAuthn PRF test vectors")
	sha := func(parts ...[]byte) []byte {
		h := sha256.New()
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	n := func(b byte) []byte { return append(append([]byte(nil), seed...), b) }
	unhex := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	key := func(scalar []byte) *ecdh.PrivateKey {
		k, err := ecdh.P256().NewPrivateKey(scalar)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	authPriv, platPriv := key(sha(n(0x05))), key(sha(n(0x04)))
	credRandom := sha(n(0x06))
	salt1 := sha([]byte("WebAuthn PRF\x00"), n(0x02))
	output1 := unhex("3c33e07d202c3b029cc21f1722767021bf27d595933b3d2b6a1b9d5dddc77fae")

	e := newEnv(t)
	ka, err := pinuv.NewKeyAgreementFromKey(authPriv)
	if err != nil {
		t.Fatal(err)
	}
	e.a.ka = ka
	cred := &keystore.Credential{Secrets: map[string][]byte{secretHMACWithoutUV: credRandom, secretHMACWithUV: make([]byte, 32)}}
	platKA, _ := pinuv.NewKeyAgreementFromKey(platPriv)
	var platKey cose.Key
	if err := cbor.Unmarshal(platKA.PublicKeyCOSE(), &platKey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version           int
		saltEnc, saltAuth string
		outEnc            string // deterministic for protocol 1 (zero IV)
	}{
		{1, "ab8c878bb05d04700f077ed91845ec9c503c925cb12b327ddbeb4243c397f913", "3dccd36b39c6df11dd85837ce672a9bb", "15d4e4f3f04109b492b575c1b38c28585b6719cf8d61304215108d939f37ccfb"},
		{2, "23dde5e3462daf36559b85c4ac5f9656aa9bfd81c1dc2bf8533c8b9f3882854786b4f500e25b4e3d81f7fc7c74236229", "8edf4c9d4770439b093d91df4e0788064a1f521c4041adb6338229b38b4f605c", ""},
	} {
		in := map[int]any{1: platKey, 2: unhex(tc.saltEnc), 3: unhex(tc.saltAuth), 4: tc.version}
		h, err := e.a.openHMACSecret(extHMACSecret, mustCBOR(t, in))
		if err != nil {
			t.Fatalf("protocol %d: %v", tc.version, err)
		}
		if !bytes.Equal(h.salts, salt1) {
			t.Fatalf("protocol %d: decrypted salt %x", tc.version, h.salts)
		}
		enc, ok, err := h.output(cred, false)
		if err != nil || !ok {
			t.Fatalf("protocol %d: output: %v", tc.version, err)
		}
		if tc.outEnc != "" && !bytes.Equal(enc, unhex(tc.outEnc)) {
			t.Fatalf("protocol %d: output_enc %x", tc.version, enc)
		}
		p, _ := pinuv.ByVersion(tc.version)
		var authKey cose.Key
		cbor.Unmarshal(ka.PublicKeyCOSE(), &authKey)
		ss, err := platKA.Decapsulate(p, authKey)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := ss.Decrypt(enc); !bytes.Equal(got, output1) {
			t.Fatalf("protocol %d: output1 %x", tc.version, got)
		}
	}
}
