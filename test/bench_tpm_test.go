package test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/daemon"
	"github.com/authd/authd/internal/swtpmtest"
	"github.com/authd/authd/tpm"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// The TPM benchmarks run against swtpm over its unixio socket (one
// connection per command, as authd --tpm swtpm:… uses it) and report TPM
// commands per operation (tpmcmds/op) counted in the transport, resends after
// TPM_RC_RETRY excluded. BENCHMARKS.md has the figures.

// countedTPMDaemon starts swtpm and a daemon whose TPM commands go through a
// CountingTransport.
func countedTPMDaemon(tb testing.TB) (*daemonT, *tpm.CountingTransport) {
	tb.Helper()
	sw := swtpmtest.Start(tb)
	raw, err := tpm.OpenTransport(sw.Spec())
	if err != nil {
		tb.Fatal(err)
	}
	ct := tpm.NewCountingTransport(raw)
	dev, err := tpm.New(ct)
	if err != nil {
		tb.Fatal(err)
	}
	// Registered before the daemon's cleanup, so it runs after it.
	tb.Cleanup(func() {
		if err := dev.Close(); err != nil {
			tb.Errorf("tpm Close: %v", err)
		}
		ct.Close()
	})
	return startDaemonCfg(tb, daemon.Config{TPMDevice: dev}), ct
}

// gaMessages creates n ES256 credentials and returns a getAssertion for each.
func gaMessages(tb testing.TB, dt *daemonT, n int) [][]byte {
	c := dt.client(tb)
	var out [][]byte
	for i := range n {
		_, resp, err := c.Call(context.Background(), ctaphid.CmdCBOR, mcMessage(tb, false, byte(i+1)))
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
		out = append(out, append([]byte{0x02}, b...))
	}
	return out
}

func serve(tb testing.TB, dt *daemonT, msg []byte) {
	if resp := dt.d.Authenticator().ServeCTAP(context.Background(), msg, nil); resp[0] != 0 {
		tb.Fatalf("getAssertion: status 0x%02x", resp[0])
	}
}

// TestTPMCommandsPerAssertion: a getAssertion costs at most 3 TPM commands
// (FlushContext of the least recently used cached key, Load, Sign), and 1
// (Sign) when the credential's key is one of the two still loaded; never a
// CreatePrimary.
func TestTPMCommandsPerAssertion(t *testing.T) {
	dt, ct := countedTPMDaemon(t)
	msgs := gaMessages(t, dt, 3)
	// Warm-up (the first ECDSA sign on a fresh swtpm answers RETRY), ending
	// with msgs[1]'s and msgs[0]'s keys loaded.
	serve(t, dt, msgs[2])
	serve(t, dt, msgs[1])
	serve(t, dt, msgs[0])
	for i, c := range []struct {
		name string
		seq  []int
		want int
	}{
		{"same credential", []int{0, 0, 0, 0}, 1},
		{"alternating between 2 credentials", []int{1, 0, 1, 0}, 1},
		{"rotating among 3 credentials", []int{2, 1, 0, 2, 1, 0}, 3},
	} {
		for _, k := range c.seq {
			ct.Reset()
			serve(t, dt, msgs[k])
			n := ct.Total() - ct.Retried()
			if n != c.want || ct.Count(tpm2.TPMCCCreatePrimary) != 0 {
				t.Errorf("%s (case %d): %d TPM commands (%d CreatePrimary), want %d", c.name, i, n, ct.Count(tpm2.TPMCCCreatePrimary), c.want)
			}
		}
	}
}

// BenchmarkTPMEngineGetAssertion is authd's whole assertion path with the
// TPM, in process: the engine as in BenchmarkEngineGetAssertion, the
// signature made by swtpm. "cached": one credential (TPM2_Sign only);
// "alternating": two credentials in turn, both kept loaded (TPM2_Sign only);
// "rotating": three credentials in turn, so every assertion evicts the least
// recently used key (FlushContext, Load, Sign).
func BenchmarkTPMEngineGetAssertion(b *testing.B) {
	for _, c := range []struct {
		name string
		n    int
	}{{"cached", 1}, {"alternating", 2}, {"rotating", 3}} {
		b.Run(c.name, func(b *testing.B) {
			dt, ct := countedTPMDaemon(b)
			msgs := gaMessages(b, dt, c.n)
			for _, m := range msgs {
				serve(b, dt, m)
			}
			ct.Reset()
			i := 0
			for b.Loop() {
				serve(b, dt, msgs[i%len(msgs)])
				i++
			}
			b.ReportMetric(float64(ct.Total()-ct.Retried())/float64(i), "tpmcmds/op")
		})
	}
}

// retryTransport resends commands answered with TPM_RC_RETRY (a fresh
// swtpm's first ECDSA signature does that).
type retryTransport struct{ t transport.TPM }

func (r retryTransport) Send(cmd []byte) ([]byte, error) {
	for i := 0; ; i++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || len(rsp) < 10 || i == 10 || tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) != tpm2.TPMRCRetry {
			return rsp, err
		}
		time.Sleep(time.Millisecond << i)
	}
}

// BenchmarkTPMCreatePrimaryLoadSign is the stateless scheme that recreates
// the storage key for every signature (as tpm-fido does): TPM2_CreatePrimary
// of the SRK, TPM2_Load of the credential key, TPM2_Sign with a password
// session and two TPM2_FlushContext, over the same transport as authd's.
// The engine's work around the signature is not included, which favours
// this baseline.
func BenchmarkTPMCreatePrimaryLoadSign(b *testing.B) {
	sw := swtpmtest.Start(b)
	dev, err := tpm.Open(sw.Spec())
	if err != nil {
		b.Fatal(err)
	}
	blob, _, err := dev.NewKey(tpm.AlgES256)
	if err != nil {
		b.Fatal(err)
	}
	dev.Close()
	// blob = "ATPM" ‖ 1 ‖ TPM2B_PUBLIC ‖ TPM2B_PRIVATE
	rest := blob[5:]
	np := 2 + int(binary.BigEndian.Uint16(rest))
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](rest[:np])
	if err != nil {
		b.Fatal(err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](rest[np:])
	if err != nil {
		b.Fatal(err)
	}
	raw, err := tpm.OpenTransport(sw.Spec())
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	ct := tpm.NewCountingTransport(raw)
	t := retryTransport{ct}
	digest := sha256.Sum256([]byte("authenticatorData || clientDataHash"))
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
			InPrivate:    *priv, InPublic: *pub,
		}.Execute(t)
		if err != nil {
			return err
		}
		defer tpm2.FlushContext{FlushHandle: k.ObjectHandle}.Execute(t)
		_, err = tpm2.Sign{
			KeyHandle: tpm2.AuthHandle{Handle: k.ObjectHandle, Name: k.Name, Auth: tpm2.PasswordAuth(nil)},
			Digest:    tpm2.TPM2BDigest{Buffer: digest[:]},
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
	i := 0
	for b.Loop() {
		if err := sign(); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(ct.Total()-ct.Retried())/float64(i), "tpmcmds/op")
}
