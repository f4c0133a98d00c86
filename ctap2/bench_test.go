package ctap2

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// BenchmarkBareECDSA is the baseline: one P-256 signature over a SHA-256 digest.
func BenchmarkBareECDSA(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("authData||clientDataHash"))
	b.ResetTimer()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineGetAssertion is a whole GetAssertion handed to the engine:
// CBOR decoding, credential lookup, durable counter, signature, encoding.
func BenchmarkEngineGetAssertion(b *testing.B) {
	e := newEnv(b)
	c := parseMC(b, e.must(cmdMakeCredential, mcParams("example.com", []byte{1}, false)), "example.com")
	msg := append([]byte{cmdGetAssertion}, mustCBOR(b, map[int]any{1: "example.com", 2: cdh, 3: []any{map[string]any{"type": "public-key", "id": c.id}}})...)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if resp := e.a.ServeCTAP(ctx, msg, nil); resp[0] != 0 {
			b.Fatalf("status %x", resp[0])
		}
	}
}
