package ctap2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/authd/authd/internal/cbor"
)

func TestGetInfo(t *testing.T) {
	e := newEnv(t)
	m := e.must(cmdGetInfo, nil)
	versions := m[1].([]any)
	if len(versions) != 3 || versions[0] != "FIDO_2_0" || versions[1] != "FIDO_2_1_PRE" || versions[2] != "FIDO_2_1" {
		t.Fatalf("versions %v", versions)
	}
	if !bytes.Equal(m[3].([]byte), AAGUID[:]) {
		t.Fatal("aaguid")
	}
	opts := m[4].(map[any]any)
	for k, want := range map[string]bool{"rk": true, "up": true, "plat": true, "clientPin": false, "pinUvAuthToken": true, "credMgmt": true, "credentialMgmtPreview": true} {
		if opts[k] != want {
			t.Errorf("option %s = %v, want %v", k, opts[k], want)
		}
	}
	if _, ok := opts["uv"]; ok {
		t.Error("uv advertised without built-in user verification")
	}

	if m[6].([]any)[0] != uint64(2) || m[6].([]any)[1] != uint64(1) {
		t.Errorf("pinUvAuthProtocols %v", m[6])
	}
	e.expect(ErrInvalidLength, cmdGetInfo, []byte{0xa0})
	if e.setPIN(2, "1234") != StatusOK {
		t.Fatal("setPIN")
	}
	if e.must(cmdGetInfo, nil)[4].(map[any]any)["clientPin"] != true {
		t.Fatal("clientPin not true after setPIN")
	}
}

func TestMakeCredentialAndAssertion(t *testing.T) {
	for _, alg := range []int{-7, -8} {
		e := newEnv(t)
		m := e.must(cmdMakeCredential, mcParams("example.com", []byte{1, 2, 3}, false, -257, alg, -7))
		if m[1] != "packed" {
			t.Fatalf("fmt %v", m[1])
		}
		c := parseMC(t, m, "example.com")
		if c.alg != alg {
			t.Fatalf("alg %d, want first supported %d", c.alg, alg)
		}
		if e.up.lastOp() != "makeCredential" {
			t.Fatalf("presence op %q", e.up.lastOp())
		}
		var last uint32
		for i := 0; i < 3; i++ {
			ga := e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: []any{map[string]any{"type": "public-key", "id": c.id}}})
			ad := ga[2].([]byte)
			if len(ad) != 37 || ad[32] != flagUP {
				t.Fatalf("assertion authData %x", ad)
			}
			verifySig(t, c, ad, cdh, ga[3].([]byte))
			n := binary.BigEndian.Uint32(ad[33:])
			if n <= last {
				t.Fatalf("counter %d after %d", n, last)
			}
			last = n
			if _, ok := ga[4]; ok {
				t.Fatal("user returned for a non-discoverable credential")
			}
		}
		// A non-discoverable credential is never found without an allowList.
		e.expect(ErrNoCredentials, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
		// Nor for another RP.
		e.expect(ErrNoCredentials, cmdGetAssertion, map[int]any{1: "other.com", 2: cdh, 3: []any{map[string]any{"type": "public-key", "id": c.id}}})
	}
}

func TestAttestationNone(t *testing.T) {
	e := newEnv(t)
	p := mcParams("example.com", []byte{1}, false)
	p[11] = []string{"none"}
	m := e.must(cmdMakeCredential, p)
	if m[1] != "none" || len(m[3].(map[any]any)) != 0 {
		t.Fatalf("fmt %v stmt %v", m[1], m[3])
	}
	parseMC(t, m, "example.com")
}

func TestDiscoverableAndNextAssertion(t *testing.T) {
	e := newEnv(t)
	var ids [][]byte
	for i := byte(1); i <= 3; i++ {
		c := parseMC(t, e.must(cmdMakeCredential, mcParams("example.com", []byte{i}, true)), "example.com")
		ids = append(ids, c.id)
		e.clk.advance(time.Second)
	}
	parseMC(t, e.must(cmdMakeCredential, mcParams("example.com", []byte{9}, false)), "example.com")
	ga := e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	if ga[5] != uint64(3) {
		t.Fatalf("numberOfCredentials %v", ga[5])
	}
	got := [][]byte{ga[1].(map[any]any)["id"].([]byte)}
	user := ga[4].(map[any]any)
	if _, ok := user["name"]; ok {
		t.Fatal("user name returned without user verification")
	}
	for i := 0; i < 2; i++ {
		n := e.must(cmdGetNextAssertion, nil)
		if _, ok := n[5]; ok {
			t.Fatal("numberOfCredentials in getNextAssertion")
		}
		got = append(got, n[1].(map[any]any)["id"].([]byte))
	}
	// Newest first.
	for i := range got {
		if !bytes.Equal(got[i], ids[2-i]) {
			t.Fatalf("order: credential %d is %x, want %x", i, got[i], ids[2-i])
		}
	}
	e.expect(ErrNotAllowed, cmdGetNextAssertion, nil)
	// The window is 30 s, and any other command ends the sequence.
	e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	e.clk.advance(31 * time.Second)
	e.expect(ErrNotAllowed, cmdGetNextAssertion, nil)
	e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	e.must(cmdGetInfo, nil)
	e.expect(ErrNotAllowed, cmdGetNextAssertion, nil)
	// Same RP and user handle: the discoverable credential is replaced.
	e.must(cmdMakeCredential, mcParams("example.com", []byte{1}, true))
	if e.store.DiscoverableCount() != 3 {
		t.Fatalf("discoverable count %d, want 3 (same user replaced)", e.store.DiscoverableCount())
	}
	// up=false: a silent assertion without the UP flag.
	ga = e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"up": false}})
	if ga[2].([]byte)[32]&flagUP != 0 {
		t.Fatal("UP flag set for up=false")
	}
}

func TestMakeCredentialErrors(t *testing.T) {
	e := newEnv(t)
	ok := func() map[int]any { return mcParams("example.com", []byte{1}, false) }
	without := func(k int) map[int]any { m := ok(); delete(m, k); return m }
	with := func(k int, v any) map[int]any { m := ok(); m[k] = v; return m }
	cases := []struct {
		name   string
		params any
		want   StatusCode
	}{
		{"no params", nil, ErrMissingParameter},
		{"invalid cbor", []byte{0xa1, 0x01}, ErrInvalidCBOR},
		{"trailing bytes", append(mustCBOR(t, ok()), 0x00), ErrInvalidCBOR},
		{"not canonical", []byte{0xa2, 0x02, 0x00, 0x01, 0x00}, ErrInvalidCBOR},
		{"duplicate key", []byte{0xa2, 0x01, 0x00, 0x01, 0x00}, ErrInvalidCBOR},
		{"not a map", []byte{0x80}, ErrCBORUnexpectedType},
		{"missing clientDataHash", without(1), ErrMissingParameter},
		{"missing rp", without(2), ErrMissingParameter},
		{"missing user", without(3), ErrMissingParameter},
		{"missing pubKeyCredParams", without(4), ErrMissingParameter},
		{"clientDataHash text", with(1, "x"), ErrCBORUnexpectedType},
		{"clientDataHash array", with(1, []int{1, 2}), ErrCBORUnexpectedType},
		{"clientDataHash short", with(1, []byte{1}), ErrInvalidParameter},
		{"rp not a map", with(2, "rp"), ErrCBORUnexpectedType},
		{"rp id missing", with(2, map[string]any{"name": "x"}), ErrMissingParameter},
		{"rp id int", with(2, map[string]any{"id": 3}), ErrCBORUnexpectedType},
		{"user id missing", with(3, map[string]any{"name": "x"}), ErrMissingParameter},
		{"user id too long", with(3, map[string]any{"id": make([]byte, 65)}), ErrInvalidParameter},
		{"params not array", with(4, map[string]any{}), ErrCBORUnexpectedType},
		{"param lacks alg", with(4, []any{map[string]any{"type": "public-key"}}), ErrMissingParameter},
		{"unsupported algorithms", with(4, []any{map[string]any{"type": "public-key", "alg": -257}}), ErrUnsupportedAlgorithm},
		{"unknown type skipped", with(4, []any{map[string]any{"type": "future", "alg": -7}}), ErrUnsupportedAlgorithm},
		{"options wrong type", with(7, map[string]any{"rk": 1}), ErrCBORUnexpectedType},
		{"up false", with(7, map[string]bool{"up": false}), ErrInvalidOption},
		{"uv true", with(7, map[string]bool{"uv": true}), ErrInvalidOption},
		{"enterprise attestation", with(10, 1), ErrInvalidParameter},
		{"pinUvAuthParam without protocol", with(8, make([]byte, 32)), ErrMissingParameter},
		{"pinUvAuthParam bad protocol", func() map[int]any { m := with(8, make([]byte, 32)); m[9] = 3; return m }(), ErrInvalidParameter},
		{"pinUvAuthParam no token", func() map[int]any { m := with(8, make([]byte, 32)); m[9] = 2; return m }(), ErrPINAuthInvalid},
		{"zero-length pinUvAuthParam", with(8, []byte{}), ErrPINNotSet},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { e.t = t; e.expect(c.want, cmdMakeCredential, c.params) })
	}
	e.t = t
	// Unknown keys (CTAP 2.2 adds some; text keys are never parameters) are ignored.
	m := with(0x20, "future")
	m2 := map[any]any{}
	for k, v := range m {
		m2[k] = v
	}
	m2["1"] = "text key"
	e.must(cmdMakeCredential, m2)
	// The user declines, or the platform cancels.
	e.up.set(errors.New("no"))
	e.expect(ErrOperationDenied, cmdMakeCredential, ok())
	e.up.set(nil)
	e.up.block = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if st, _ := e.callCtx(ctx, cmdMakeCredential, ok()); st != ErrKeepaliveCancel {
		t.Fatalf("cancelled: %v", st)
	}
	e.a.cfg.PresenceTimeout = time.Millisecond
	e.expect(ErrOperationDenied, cmdMakeCredential, ok())
	e.up.block = nil
}

func mustCBOR(t testing.TB, v any) []byte {
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExcludeList(t *testing.T) {
	e := newEnv(t)
	c := parseMC(t, e.must(cmdMakeCredential, mcParams("example.com", []byte{1}, false)), "example.com")
	p := mcParams("example.com", []byte{2}, false)
	p[5] = []any{map[string]any{"type": "public-key", "id": []byte("foreign")}, map[string]any{"type": "public-key", "id": c.id}}
	e.expect(ErrCredentialExcluded, cmdMakeCredential, p)
	if e.up.lastOp() != "credentialExcluded" {
		t.Fatalf("presence op %q", e.up.lastOp())
	}
	// Even when the user does not confirm.
	e.up.set(errors.New("no"))
	e.expect(ErrCredentialExcluded, cmdMakeCredential, p)
	e.up.set(nil)
	// Another RP's excludeList does not match.
	p2 := mcParams("other.com", []byte{2}, false)
	p2[5] = p[5]
	e.must(cmdMakeCredential, p2)
}

func TestGetAssertionErrors(t *testing.T) {
	e := newEnv(t)
	e.expect(ErrMissingParameter, cmdGetAssertion, map[int]any{2: cdh})
	e.expect(ErrMissingParameter, cmdGetAssertion, map[int]any{1: "example.com"})
	e.expect(ErrCBORUnexpectedType, cmdGetAssertion, map[int]any{1: 5, 2: cdh})
	e.expect(ErrUnsupportedOption, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"rk": true}})
	e.expect(ErrInvalidOption, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}})
	e.expect(ErrNoCredentials, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh})
	e.expect(ErrMissingParameter, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: []any{map[string]any{"type": "public-key"}}})
	e.expect(ErrInvalidCommand, 0x55, nil)
	e.expect(ErrInvalidCommand, 0x03, nil)
	if resp := e.a.ServeCTAP(context.Background(), nil, nil); resp[0] != byte(ErrInvalidLength) {
		t.Fatalf("empty message: %x", resp)
	}
	if resp := e.a.ServeCTAP(context.Background(), make([]byte, maxMsgSize+1), nil); resp[0] != byte(ErrRequestTooLarge) {
		t.Fatalf("oversized message: %x", resp)
	}
}

func TestBusy(t *testing.T) {
	e := newEnv(t)
	e.up.block = make(chan struct{})
	done := make(chan StatusCode)
	go func() {
		resp := e.a.ServeCTAP(context.Background(), append([]byte{cmdMakeCredential}, mustCBOR(t, mcParams("example.com", []byte{1}, false))...), nil)
		done <- StatusCode(resp[0])
	}()
	for {
		e.up.mu.Lock()
		n := len(e.up.ops)
		e.up.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if resp := e.a.ServeCTAP(context.Background(), []byte{cmdGetInfo}, nil); resp[0] != byte(ErrChannelBusy) {
		t.Fatalf("concurrent request: %x", resp)
	}
	close(e.up.block)
	if st := <-done; st != StatusOK {
		t.Fatalf("first request: %v", st)
	}
}

func TestSelection(t *testing.T) {
	e := newEnv(t)
	e.must(cmdSelection, nil)
	e.up.set(errors.New("no"))
	e.expect(ErrOperationDenied, cmdSelection, nil)
	e.up.set(nil)
	e.up.block = make(chan struct{})
	e.a.cfg.PresenceTimeout = time.Millisecond
	e.expect(ErrUserActionTimeout, cmdSelection, nil)
}

func TestReset(t *testing.T) {
	e := newEnv(t)
	c := parseMC(t, e.must(cmdMakeCredential, mcParams("example.com", []byte{1}, true)), "example.com")
	if e.setPIN(1, "1234") != StatusOK {
		t.Fatal("setPIN")
	}
	e.up.set(errors.New("no"))
	e.expect(ErrOperationDenied, cmdReset, nil)
	e.up.set(nil)
	e.must(cmdReset, nil)
	if e.up.lastOp() != "reset" {
		t.Fatalf("presence op %q", e.up.lastOp())
	}
	e.expect(ErrNoCredentials, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 3: []any{map[string]any{"type": "public-key", "id": c.id}}})
	if e.must(cmdGetInfo, nil)[4].(map[any]any)["clientPin"] != false {
		t.Fatal("PIN survived reset")
	}
	// The window closes 10 s after power-up and reopens only with a restart.
	e.clk.advance(11 * time.Second)
	e.expect(ErrNotAllowed, cmdReset, nil)
	e.restart(e.boot)
	e.must(cmdReset, nil)
}
