package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/cbor"
)

// The benchmarks below run in one process so their ratios are comparable;
// scripts/bench.sh runs them and BENCHMARKS.md reports the ratios.

var benchCDH = bytes.Repeat([]byte{0xcd}, 32)

func mcMessage(tb testing.TB, rk bool, user byte) []byte {
	b, err := cbor.Marshal(map[int]any{
		1: benchCDH,
		2: map[string]any{"id": "bench.example"},
		3: map[string]any{"id": []byte{user}, "name": "bench"},
		4: []any{map[string]any{"alg": -7, "type": "public-key"}},
		7: map[string]bool{"rk": rk},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return append([]byte{0x01}, b...)
}

// gaMessage creates a credential and returns a getAssertion for it.
func gaMessage(tb testing.TB, dt *daemonT) []byte {
	c := dt.client(tb)
	_, resp, err := c.Call(context.Background(), ctaphid.CmdCBOR, mcMessage(tb, false, 1))
	if err != nil || resp[0] != 0 {
		tb.Fatalf("makeCredential: %v %x", err, resp[:1])
	}
	var mc map[int]any
	if err := cbor.UnmarshalRecord(resp[1:], &mc); err != nil {
		tb.Fatal(err)
	}
	ad := mc[2].([]byte)
	id := ad[55 : 55+(int(ad[53])<<8|int(ad[54]))]
	b, err := cbor.Marshal(map[int]any{1: "bench.example", 2: benchCDH, 3: []any{map[string]any{"type": "public-key", "id": id}}})
	if err != nil {
		tb.Fatal(err)
	}
	return append([]byte{0x02}, b...)
}

// BenchmarkBareECDSA is the baseline: one P-256 signature, nothing else.
func BenchmarkBareECDSA(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("authData||clientDataHash"))
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineGetAssertion hands a getAssertion to the daemon's engine in
// process: CBOR, lookup, durable counter, signature, encoding.
func BenchmarkEngineGetAssertion(b *testing.B) {
	dt := startDaemon(b)
	msg := gaMessage(b, dt)
	engine := dt.d.Authenticator()
	ctx := context.Background()
	for b.Loop() {
		if resp := engine.ServeCTAP(ctx, msg, nil); resp[0] != 0 {
			b.Fatalf("status 0x%02x", resp[0])
		}
	}
}

// BenchmarkSocketGetAssertion is the same getAssertion through CTAPHID over
// the Unix socket: framing both ways, scheduling, the engine.
func BenchmarkSocketGetAssertion(b *testing.B) {
	dt := startDaemon(b)
	msg := gaMessage(b, dt)
	c := dt.client(b)
	ctx := context.Background()
	for b.Loop() {
		if _, resp, err := c.Call(ctx, ctaphid.CmdCBOR, msg); err != nil || resp[0] != 0 {
			b.Fatalf("getAssertion: %v", err)
		}
	}
}

// BenchmarkSocketMakeCredential creates non-discoverable credentials through
// the socket: key generation, sealing, a durable bbolt transaction, attestation.
func BenchmarkSocketMakeCredential(b *testing.B) {
	dt := startDaemon(b)
	c := dt.client(b)
	msg := mcMessage(b, false, 1)
	ctx := context.Background()
	for b.Loop() {
		if _, resp, err := c.Call(ctx, ctaphid.CmdCBOR, msg); err != nil || resp[0] != 0 {
			b.Fatalf("makeCredential: %v", err)
		}
	}
}
