package ctap2

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
)

// extOutputs returns the authData extension map of an MC or GA response.
func extOutputs(t testing.TB, ad []byte, attested bool) map[string]any {
	t.Helper()
	if ad[32]&flagED == 0 {
		return nil
	}
	rest := ad[37:]
	if attested {
		n := int(rest[16])<<8 | int(rest[17])
		rest = rest[18+n:]
		var key any
		// Skip the COSE key: decode it generically to learn its length.
		l := coseLen(t, rest)
		_ = key
		rest = rest[l:]
	}
	var m map[string]any
	if err := cbor.UnmarshalRecord(rest, &m); err != nil {
		t.Fatalf("extension outputs: %v (%x)", err, rest)
	}
	return m
}

func coseLen(t testing.TB, b []byte) int {
	for n := 1; n <= len(b); n++ {
		var v any
		if cbor.UnmarshalRecord(b[:n], &v) == nil {
			return n
		}
	}
	t.Fatal("no COSE key")
	return 0
}

func TestGetInfoFIDO21(t *testing.T) {
	e := newEnv(t)
	m := e.must(cmdGetInfo, nil)
	v := m[1].([]any)
	if v[len(v)-1] != "FIDO_2_1" {
		t.Fatalf("versions %v", v)
	}
	exts := map[any]bool{}
	for _, x := range m[2].([]any) {
		exts[x] = true
	}
	for _, want := range []string{"hmac-secret", "credProtect", "credBlob", "largeBlobKey", "minPinLength", "hmac-secret-mc"} {
		if !exts[want] {
			t.Errorf("extension %s not advertised", want)
		}
	}
	opts := m[4].(map[any]any)
	for k, want := range map[string]bool{"largeBlobs": true, "authnrCfg": true, "setMinPINLength": true, "alwaysUv": false, "makeCredUvNotRqd": true} {
		if opts[k] != want {
			t.Errorf("option %s = %v", k, opts[k])
		}
	}
	if m[11] != uint64(maxLargeBlobArray) || m[15] != uint64(32) || m[16] != uint64(8) {
		t.Errorf("limits %v %v %v", m[11], m[15], m[16])
	}
}

// hmacInput builds the platform's hmac-secret input for salts.
func (pl *platform) hmacInput(version int, salts []byte) map[int]any {
	enc := pl.enc(salts)
	in := map[int]any{1: pl.keyAgr, 2: enc, 3: pl.ss.Authenticate(enc)}
	if version != 1 {
		in[4] = version
	}
	return in
}

func (pl *platform) dec(b []byte) []byte {
	out, err := pl.ss.Decrypt(b)
	if err != nil {
		pl.t.Fatal(err)
	}
	return out
}

func TestHMACSecret(t *testing.T) {
	for _, v := range []int{1, 2} {
		e := newEnv(t)
		salt1, salt2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		mc := mcParams("example.com", []byte{1}, true)
		pl := e.platform(v)
		mc[6] = map[string]any{"hmac-secret": true, "hmac-secret-mc": pl.hmacInput(v, salt1)}
		m := e.must(cmdMakeCredential, mc)
		outs := extOutputs(t, m[2].([]byte), true)
		if outs["hmac-secret"] != true {
			t.Fatalf("MC outputs %v", outs)
		}
		mcOut := pl.dec(outs["hmac-secret-mc"].([]byte))
		c := parseMC(t, m, "example.com")
		allow := []any{map[string]any{"type": "public-key", "id": c.id}}
		get := func(salts []byte, uvTok []byte, p pinuv.Protocol) []byte {
			pl := e.platform(v)
			req := map[int]any{1: "example.com", 2: cdh, 3: allow, 4: map[string]any{"hmac-secret": pl.hmacInput(v, salts)}}
			if uvTok != nil {
				req[6], req[7] = p.Authenticate(uvTok, cdh), v
			}
			r := e.must(cmdGetAssertion, req)
			verifySig(t, c, r[2].([]byte), cdh, r[3].([]byte))
			return pl.dec(extOutputs(t, r[2].([]byte), false)["hmac-secret"].([]byte))
		}
		o1 := get(salt1, nil, nil)
		if len(o1) != 32 || !bytes.Equal(o1, get(salt1, nil, nil)) {
			t.Fatal("output not stable for the same salt")
		}
		if !bytes.Equal(o1, mcOut) {
			t.Fatal("hmac-secret-mc output differs from getAssertion's (both without UV)")
		}
		o12 := get(append(append([]byte{}, salt1...), salt2...), nil, nil)
		if len(o12) != 64 || !bytes.Equal(o12[:32], o1) || bytes.Equal(o12[32:], o1) {
			t.Fatal("two salts")
		}
		// With user verification the other secret is used.
		e.setPIN(2, "1234")
		_, tok, p := e.token(v, "1234", permGA, "example.com")
		if bytes.Equal(get(salt1, tok, p), o1) {
			t.Fatal("UV and non-UV outputs are equal")
		}
		// Errors.
		pl = e.platform(v)
		in := pl.hmacInput(v, salt1)
		bad := map[int]any{1: in[1], 2: in[2], 3: bytes.Repeat([]byte{9}, len(in[3].([]byte)))}
		if v != 1 {
			bad[4] = v
		}
		ga := func(x any) map[int]any {
			return map[int]any{1: "example.com", 2: cdh, 3: allow, 4: map[string]any{"hmac-secret": x}}
		}
		e.expect(ErrPINAuthInvalid, cmdGetAssertion, ga(bad))
		e.expect(ErrMissingParameter, cmdGetAssertion, ga(map[int]any{1: in[1], 2: in[2]}))
		e.expect(ErrCBORUnexpectedType, cmdGetAssertion, ga("salt"))
		pl = e.platform(v)
		e.expect(ErrInvalidParameter, cmdGetAssertion, ga(pl.hmacInput(v, make([]byte, 48))))
		pl = e.platform(v)
		noUP := ga(pl.hmacInput(v, salt1))
		noUP[5] = map[string]bool{"up": false}
		e.expect(ErrUnsupportedOption, cmdGetAssertion, noUP)
		e.expect(ErrCBORUnexpectedType, cmdMakeCredential, func() map[int]any {
			m := mcParams("x.com", []byte{1}, false)
			m[6] = map[string]any{"hmac-secret": 1}
			return m
		}())
		e.expect(ErrInvalidParameter, cmdMakeCredential, func() map[int]any {
			m := mcParams("x.com", []byte{1}, false)
			m[6] = map[string]any{"hmac-secret-mc": e.platform(v).hmacInput(v, salt1)}
			return m
		}())
	}
}

func TestCredProtect(t *testing.T) {
	e := newEnv(t)
	ids := map[int][]byte{}
	for lvl := 1; lvl <= 3; lvl++ {
		mc := mcParams("example.com", []byte{byte(lvl)}, true)
		mc[6] = map[string]any{"credProtect": lvl}
		m := e.must(cmdMakeCredential, mc)
		if got := extOutputs(t, m[2].([]byte), true)["credProtect"]; got != uint64(lvl) {
			t.Fatalf("credProtect output %v", got)
		}
		ids[lvl] = parseMC(t, m, "example.com").id
	}
	// Without UV: only level 1 is discoverable; level 2 works with an allowList; level 3 never.
	ga := e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	if _, ok := ga[5]; ok || !bytes.Equal(ga[1].(map[any]any)["id"].([]byte), ids[1]) {
		t.Fatalf("discoverable without UV: %v", ga)
	}
	allow := func(id []byte) []any { return []any{map[string]any{"type": "public-key", "id": id}} }
	e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: allow(ids[2])})
	e.expect(ErrNoCredentials, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: allow(ids[3])})
	// excludeList ignores level 3 without UV.
	mc := mcParams("example.com", []byte{7}, false)
	mc[5] = allow(ids[3])
	e.must(cmdMakeCredential, mc)
	// With UV all three are found, newest first, and GNA walks them.
	e.setPIN(2, "1234")
	_, tok, p := e.token(2, "1234", permGA, "example.com")
	ga = e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 6: p.Authenticate(tok, cdh), 7: 2})
	if ga[5] != uint64(3) {
		t.Fatalf("with UV: %v credentials", ga[5])
	}
	e.must(cmdGetNextAssertion, nil)
	e.must(cmdGetNextAssertion, nil)
	// Bad values.
	for _, bad := range []any{0, 4} {
		m := mcParams("example.com", []byte{8}, false)
		m[6] = map[string]any{"credProtect": bad}
		e.expect(ErrInvalidParameter, cmdMakeCredential, m)
	}
	m := mcParams("example.com", []byte{8}, false)
	m[6] = map[string]any{"credProtect": "required"}
	e.expect(ErrCBORUnexpectedType, cmdMakeCredential, m)
	// Unknown extensions are ignored and produce no output.
	m = mcParams("example.com", []byte{8}, false)
	m[6] = map[string]any{"future-ext": map[string]any{"x": 1}}
	if outs := extOutputs(t, e.must(cmdMakeCredential, m)[2].([]byte), true); outs != nil {
		t.Fatalf("outputs for an unknown extension: %v", outs)
	}
}

func TestCredBlobAndLargeBlobKey(t *testing.T) {
	e := newEnv(t)
	mc := mcParams("example.com", []byte{1}, true)
	mc[6] = map[string]any{"credBlob": []byte("a blob of sixteen"), "largeBlobKey": true}
	m := e.must(cmdMakeCredential, mc)
	if extOutputs(t, m[2].([]byte), true)["credBlob"] != true {
		t.Fatal("credBlob output")
	}
	key, ok := m[5].([]byte)
	if !ok || len(key) != 32 {
		t.Fatalf("largeBlobKey %v", m[5])
	}
	c := parseMC(t, m, "example.com")
	ga := e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 4: map[string]any{"credBlob": true, "largeBlobKey": true}})
	if got := extOutputs(t, ga[2].([]byte), false)["credBlob"]; !bytes.Equal(got.([]byte), []byte("a blob of sixteen")) {
		t.Fatalf("credBlob %v", got)
	}
	if !bytes.Equal(ga[7].([]byte), key) {
		t.Fatal("largeBlobKey differs")
	}
	verifySig(t, c, ga[2].([]byte), cdh, ga[3].([]byte))
	// Too long: not stored, output false; not discoverable: no large-blob key.
	mc = mcParams("example.com", []byte{2}, false)
	mc[6] = map[string]any{"credBlob": make([]byte, 33), "largeBlobKey": true}
	m = e.must(cmdMakeCredential, mc)
	if extOutputs(t, m[2].([]byte), true)["credBlob"] != false || m[5] != nil {
		t.Fatalf("oversized credBlob / non-rk largeBlobKey: %v %v", extOutputs(t, m[2].([]byte), true), m[5])
	}
	id2 := parseMC(t, m, "example.com").id
	ga = e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: []any{map[string]any{"type": "public-key", "id": id2}}, 4: map[string]any{"credBlob": true}})
	if got := extOutputs(t, ga[2].([]byte), false)["credBlob"]; len(got.([]byte)) != 0 {
		t.Fatal("credBlob for a credential without one")
	}
	mc[6] = map[string]any{"largeBlobKey": false}
	e.expect(ErrInvalidOption, cmdMakeCredential, mc)
	e.expect(ErrInvalidOption, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 4: map[string]any{"largeBlobKey": false}})
}

// largeBlob writes array in fragments of n bytes.
func (e *env) writeLargeBlob(array []byte, n int, auth func(offset int, frag []byte) map[int]any) StatusCode {
	for off := 0; off < len(array); off += n {
		frag := array[off:min(off+n, len(array))]
		req := map[int]any{2: frag, 3: off}
		if off == 0 {
			req[4] = len(array)
		}
		if auth != nil {
			for k, v := range auth(off, frag) {
				req[k] = v
			}
		}
		if st, _ := e.call(cmdLargeBlobs, req); st != StatusOK {
			return st
		}
	}
	return StatusOK
}

func serialize(body []byte) []byte {
	h := sha256.Sum256(body)
	return append(append([]byte{}, body...), h[:16]...)
}

func TestLargeBlobs(t *testing.T) {
	e := newEnv(t)
	got := e.must(cmdLargeBlobs, map[int]any{1: 1024, 3: 0})[1].([]byte)
	if !bytes.Equal(got, []byte{0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c}) {
		t.Fatalf("initial array %x", got)
	}
	body := mustCBOR(t, []any{map[int]any{1: bytes.Repeat([]byte{7}, 3000), 2: make([]byte, 12), 3: 5000}})
	array := serialize(body)
	if st := e.writeLargeBlob(array, 1000, nil); st != StatusOK {
		t.Fatalf("write: %v", st)
	}
	var back []byte
	for off := 0; off < len(array); off += 700 {
		back = append(back, e.must(cmdLargeBlobs, map[int]any{1: 700, 3: off})[1].([]byte)...)
	}
	if !bytes.Equal(back, array) {
		t.Fatal("read back differs")
	}
	// A bad trailer: INTEGRITY_FAILURE, and the old array stays.
	bad := append([]byte{}, array...)
	bad[len(bad)-1] ^= 1
	if st := e.writeLargeBlob(bad, 2000, nil); st != ErrIntegrityFailure {
		t.Fatalf("bad hash: %v", st)
	}
	// An abandoned write (another command in between) keeps the old array too.
	e.must(cmdLargeBlobs, map[int]any{2: array[:100], 3: 0, 4: len(array)})
	e.must(cmdGetInfo, nil)
	e.expect(ErrInvalidSeq, cmdLargeBlobs, map[int]any{2: array[100:200], 3: 100})
	if got := e.must(cmdLargeBlobs, map[int]any{1: 20, 3: 0})[1].([]byte); !bytes.Equal(got, array[:20]) {
		t.Fatal("array changed by failed writes")
	}
	// Parameter rules.
	e.expect(ErrInvalidParameter, cmdLargeBlobs, map[int]any{1: 10})
	e.expect(ErrInvalidParameter, cmdLargeBlobs, map[int]any{1: 10, 3: 0, 5: make([]byte, 32), 6: 2})
	e.expect(ErrInvalidParameter, cmdLargeBlobs, map[int]any{1: 10, 2: []byte{1}, 3: 0})
	e.expect(ErrInvalidParameter, cmdLargeBlobs, map[int]any{3: 0})
	e.expect(ErrInvalidLength, cmdLargeBlobs, map[int]any{1: maxFragment + 1, 3: 0})
	e.expect(ErrInvalidParameter, cmdLargeBlobs, map[int]any{1: 10, 3: 100000})
	e.expect(ErrLargeBlobStorageFull, cmdLargeBlobs, map[int]any{2: []byte{1}, 3: 0, 4: maxLargeBlobArray + 1})
	e.expect(ErrInvalidParameter, cmdLargeBlobs, map[int]any{2: []byte{1}, 3: 0})
	e.expect(ErrInvalidParameter, cmdLargeBlobs, map[int]any{2: make([]byte, 20), 3: 0, 4: 17})

	// With a PIN: a token with lbw is needed.
	e.setPIN(2, "1234")
	if st := e.writeLargeBlob(array, 3000, nil); st != ErrPUATRequired {
		t.Fatalf("without token: %v", st)
	}
	_, tok, p := e.token(2, "1234", permLBW, "")
	authFor := func(tok []byte) func(int, []byte) map[int]any {
		return func(off int, frag []byte) map[int]any {
			msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0c, 0x00, byte(off), byte(off>>8), byte(off>>16), byte(off>>24))
			h := sha256.Sum256(frag)
			return map[int]any{5: p.Authenticate(tok, append(msg, h[:]...)), 6: 2}
		}
	}
	empty := serialize([]byte{0x80})
	if st := e.writeLargeBlob(empty, 3000, authFor(tok)); st != StatusOK {
		t.Fatalf("with lbw token: %v", st)
	}
	_, tok, _ = e.token(2, "1234", permGA, "x")
	if st := e.writeLargeBlob(array, 3000, authFor(tok)); st != ErrPINAuthInvalid {
		t.Fatalf("token without lbw: %v", st)
	}
}

func (e *env) configReq(tok []byte, p pinuv.Protocol, sub int, params any) map[int]any {
	req := map[int]any{1: sub}
	msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0d, byte(sub))
	if params != nil {
		raw := mustCBOR(e.t, params)
		req[2] = params
		msg = append(msg, raw...)
	}
	if tok != nil {
		req[3], req[4] = p.Version(), p.Authenticate(tok, msg)
	}
	return req
}

func TestConfig(t *testing.T) {
	e := newEnv(t)
	// Unprotected: no token needed.
	e.must(cmdConfig, e.configReq(nil, nil, cfgToggleAlwaysUv, nil))
	if e.must(cmdGetInfo, nil)[4].(map[any]any)["alwaysUv"] != true {
		t.Fatal("alwaysUv not reported")
	}
	e.expect(ErrPUATRequired, cmdMakeCredential, mcParams("example.com", []byte{1}, false))
	e.setPIN(2, "1234")
	e.expect(ErrPUATRequired, cmdConfig, e.configReq(nil, nil, cfgToggleAlwaysUv, nil))
	_, tok, p := e.token(2, "1234", permMC|permGA, "example.com")
	mc := mcParams("example.com", []byte{1}, false)
	mc[8], mc[9] = p.Authenticate(tok, cdh), 2
	c := parseMC(t, e.must(cmdMakeCredential, mc), "example.com")
	allow := []any{map[string]any{"type": "public-key", "id": c.id}}
	e.expect(ErrPUATRequired, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: allow})
	e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: allow, 5: map[string]bool{"up": false}})
	// acfg is needed.
	e.expect(ErrPINAuthInvalid, cmdConfig, e.configReq(tok, p, cfgToggleAlwaysUv, nil))
	_, tok, _ = e.token(2, "1234", permACFG, "")
	e.must(cmdConfig, e.configReq(tok, p, cfgToggleAlwaysUv, nil))
	e.must(cmdMakeCredential, mcParams("example.com", []byte{2}, false))
	// That makeCredential collected presence, which spends the token's
	// permissions (CTAP 2.1 §6.1.2 step 14): get a new one.
	_, tok, _ = e.token(2, "1234", permACFG, "")
	// setMinPINLength.
	e.expect(ErrPINPolicyViolation, cmdConfig, e.configReq(tok, p, cfgSetMinPINLength, map[int]any{1: 3}))
	e.must(cmdConfig, e.configReq(tok, p, cfgSetMinPINLength, map[int]any{1: 6, 2: []string{"example.com"}}))
	info := e.must(cmdGetInfo, nil)
	if info[13] != uint64(6) || info[12] != true {
		t.Fatalf("minPINLength %v forcePINChange %v", info[13], info[12])
	}
	if st, _, _ := e.token(2, "1234", permMC, "example.com"); st != ErrPINPolicyViolation {
		t.Fatalf("token before the forced change: %v", st)
	}
	if st := e.changePIN(2, "1234", "12345"); st != ErrPINPolicyViolation {
		t.Fatalf("change to a too-short PIN: %v", st)
	}
	if st := e.changePIN(2, "1234", "123456"); st != StatusOK {
		t.Fatalf("changePIN: %v", st)
	}
	// minPinLength extension: output only for listed RPs.
	_, tok, _ = e.token(2, "123456", permMC, "example.com")
	mc = mcParams("example.com", []byte{3}, false)
	mc[6] = map[string]any{"minPinLength": true}
	mc[8], mc[9] = p.Authenticate(tok, cdh), 2
	if got := extOutputs(t, e.must(cmdMakeCredential, mc)[2].([]byte), true)["minPinLength"]; got != uint64(6) {
		t.Fatalf("minPinLength output %v", got)
	}
	mc = mcParams("other.example", []byte{3}, false)
	mc[6] = map[string]any{"minPinLength": true}
	if outs := extOutputs(t, e.must(cmdMakeCredential, mc)[2].([]byte), true); outs["minPinLength"] != nil {
		t.Fatalf("minPinLength for an unlisted RP: %v", outs)
	}
	// Other subcommands.
	_, tok, _ = e.token(2, "123456", permACFG, "")
	e.expect(ErrInvalidParameter, cmdConfig, e.configReq(tok, p, cfgEnableEnterpriseAttestation, nil))
	e.expect(ErrInvalidSubcommand, cmdConfig, e.configReq(tok, p, 0x42, nil))
	e.expect(ErrMissingParameter, cmdConfig, map[int]any{3: 2})
	f := newEnv(t)
	f.expect(ErrPINNotSet, cmdConfig, f.configReq(nil, nil, cfgSetMinPINLength, map[int]any{3: true}))
	f.expect(ErrKeyStoreFull, cmdConfig, f.configReq(nil, nil, cfgSetMinPINLength, map[int]any{2: []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}}))
}
