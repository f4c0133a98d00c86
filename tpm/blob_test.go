package tpm

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzParseBlob: blobs come from the key store and may be corrupt; parsing
// must never panic, and whatever IsTPMBlob accepts re-encodes to itself.
func FuzzParseBlob(f *testing.F) {
	priv := tpm2.TPM2BPrivate{Buffer: bytes.Repeat([]byte{0xAB}, 126)}
	for _, k := range []kind{kindES256, kindSealed, kindPINGuard} {
		f.Add(marshalBlob(tpm2.New2B(k.template()), priv))
	}
	f.Add([]byte("ATPM\x01\x00\x00\x00\x00"))
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !IsTPMBlob(b) {
			return
		}
		for _, k := range []kind{kindES256, kindSealed, kindPINGuard} {
			o, err := parseBlob(b, k)
			if err != nil {
				continue
			}
			if got := marshalBlob(o.pub, o.priv); !bytes.Equal(got, b) {
				t.Fatalf("%v blob re-encodes as %x, was %x", k, got, b)
			}
			if k == kindES256 {
				ecdsaPublic(o.public) // must not panic
			}
		}
	})
}

func TestTemplatesPassOwnCheck(t *testing.T) {
	for _, k := range []kind{kindES256, kindSealed, kindPINGuard} {
		p := k.template()
		if err := k.check(&p); err != nil {
			t.Errorf("%v: %v", k, err)
		}
		for _, other := range []kind{kindES256, kindSealed, kindPINGuard} {
			if other != k && other.check(&p) == nil {
				t.Errorf("a %v passes as a %v", k, other)
			}
		}
	}
}
