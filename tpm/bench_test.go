package tpm

import (
	"crypto"
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// Benchmarks against swtpm over its unixio socket (one connection per
// command, as the daemon uses it). Run: go test -run '^$' -bench . ./tpm/
// They report TPM commands per operation (cmds/op) from a CountingTransport.

func benchDevice(b *testing.B, sw *swtpm) (*Device, *CountingTransport) {
	ct := NewCountingTransport(sw.raw())
	d, err := New(ct)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d, ct
}

// reportCmds reports distinct TPM commands per operation (resends after
// TPM_RC_RETRY excluded).
func reportCmds(b *testing.B, ct *CountingTransport) {
	b.ReportMetric(float64(ct.Total()-ct.Retried())/float64(b.N), "cmds/op")
}

// BenchmarkSignES256 is authd's signing path. "cached": the same credential
// again (TPM2_Sign only). "alternating": two credentials in turn, both kept
// loaded (TPM2_Sign only). "rotating": three credentials in turn, so every
// signature evicts the least recently used key (FlushContext, Load, Sign).
// "uncached": no key cache (Load, Sign, FlushContext).
func BenchmarkSignES256(b *testing.B) {
	for _, c := range []struct {
		name  string
		cache bool
		keys  int
	}{{"cached", true, 1}, {"alternating", true, 2}, {"rotating", true, 3}, {"uncached", false, 1}} {
		b.Run(c.name, func(b *testing.B) {
			d, ct := benchDevice(b, startSwtpm(b))
			d.cacheKeys = c.cache
			var signers []crypto.Signer
			for range c.keys {
				blob, _, err := d.NewKey(AlgES256)
				if err != nil {
					b.Fatal(err)
				}
				s, err := d.Signer(AlgES256, blob)
				if err != nil {
					b.Fatal(err)
				}
				// The first ECDSA sign on a fresh swtpm answers TPM_RC_RETRY.
				if _, err := s.Sign(rand.Reader, digest("warm-up"), crypto.SHA256); err != nil {
					b.Fatal(err)
				}
				signers = append(signers, s)
			}
			dg := digest("authenticatorData || clientDataHash")
			ct.Reset()
			b.ResetTimer()
			for i := range b.N {
				if _, err := signers[i%len(signers)].Sign(rand.Reader, dg, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCmds(b, ct)
		})
	}
}

// BenchmarkCreatePrimaryLoadSign is the stateless scheme (as tpm-fido does it):
// per signature TPM2_CreatePrimary of the SRK, TPM2_Load of the key,
// TPM2_Sign with a password session, and two TPM2_FlushContext.
func BenchmarkCreatePrimaryLoadSign(b *testing.B) {
	sw := startSwtpm(b)
	d, _ := benchDevice(b, sw)
	blob, _, err := d.NewKey(AlgES256)
	if err != nil {
		b.Fatal(err)
	}
	o, err := parseBlob(blob, kindES256)
	if err != nil {
		b.Fatal(err)
	}
	d.Close() // leave the TPM to the stateless scheme
	ct := NewCountingTransport(sw.raw())
	t := &retrying{t: ct, sleep: time.Sleep}
	dg := digest("authenticatorData || clientDataHash")
	sign := func() error {
		p, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
		}.Execute(t)
		if err != nil {
			return err
		}
		defer tpm2.FlushContext{FlushHandle: p.ObjectHandle}.Execute(t)
		k, err := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: p.ObjectHandle, Name: p.Name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    o.priv, InPublic: o.pub,
		}.Execute(t)
		if err != nil {
			return err
		}
		defer tpm2.FlushContext{FlushHandle: k.ObjectHandle}.Execute(t)
		_, err = tpm2.Sign{
			KeyHandle: tpm2.AuthHandle{Handle: k.ObjectHandle, Name: k.Name, Auth: tpm2.PasswordAuth(nil)},
			Digest:    tpm2.TPM2BDigest{Buffer: dg},
			InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(t)
		return err
	}
	if err := sign(); err != nil { // warm-up
		b.Fatal(err)
	}
	ct.Reset()
	b.ResetTimer()
	for range b.N {
		if err := sign(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCmds(b, ct)
}

// BenchmarkUnseal unseals the store's 32-byte data key (once per daemon start
// in practice): Load, StartAuthSession, Unseal, FlushContext.
func BenchmarkUnseal(b *testing.B) {
	d, ct := benchDevice(b, startSwtpm(b))
	blob, err := d.Seal(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	ct.Reset()
	b.ResetTimer()
	for range b.N {
		if _, err := d.Unseal(blob); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCmds(b, ct)
}
