package keystore

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

func benchStore(b *testing.B, opts Options) *Store {
	b.Helper()
	dir := b.TempDir()
	sealer, err := OpenSoftwareSealer(filepath.Join(dir, "key", "master.key"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(filepath.Join(dir, "key", "state"), sealer, SoftwareKeys{}, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkNextCounter measures the signature counter. "reserve=256"
// includes one fsynced ceiling write per 256 values; "in-reservation" is the
// pure in-memory path.
func BenchmarkNextCounter(b *testing.B) {
	for _, tc := range []struct {
		name    string
		reserve uint32
	}{{"reserve=default", DefaultCounterReserve}, {"in-reservation", math.MaxUint32}} {
		b.Run(tc.name, func(b *testing.B) {
			s := benchStore(b, Options{CounterReserve: tc.reserve})
			c := newCred(b, s, "example.com", "alice", true)
			mustPut(b, s, c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.NextCounter(c.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkByRP looks up an RP with 10 credentials among 1000.
func BenchmarkByRP(b *testing.B) {
	s := benchStore(b, Options{})
	for i := 0; i < 1000; i++ {
		mustPut(b, s, newCred(b, s, fmt.Sprintf("rp%d.example", i%100), fmt.Sprint("u", i), true))
	}
	b.ReportAllocs()
	for b.Loop() {
		l, err := s.ByRP("rp42.example")
		if err != nil || len(l) != 10 {
			b.Fatal(len(l), err)
		}
	}
}

// BenchmarkSigner measures cached signer lookup and a cached ES256 sign.
func BenchmarkSigner(b *testing.B) {
	s := benchStore(b, Options{})
	c := newCred(b, s, "example.com", "alice", true)
	mustPut(b, s, c)
	if _, err := s.Signer(c); err != nil {
		b.Fatal(err)
	}
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Signer(c); err != nil {
				b.Fatal(err)
			}
		}
	})
	digest := sha256.Sum256([]byte("authenticator data"))
	b.Run("sign-es256-cached", func(b *testing.B) {
		for b.Loop() {
			sg, err := s.Signer(c)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign-es256-uncached", func(b *testing.B) {
		for b.Loop() {
			sg, err := SoftwareKeys{}.Signer(c.Alg, c.KeyBlob)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
}
