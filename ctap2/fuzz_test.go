package ctap2

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/authd/authd/internal/cbor"
)

// fuzzEnv is shared by a fuzz target's iterations (opening a store per input
// would dominate the run).
func fuzzEnv(f *testing.F) *env {
	return newEnv(f)
}

// checkResponse asserts the wire contract for any input: a status byte from
// the specification's table, no body on errors, canonical CBOR on success.
func checkResponse(t *testing.T, resp []byte) {
	if len(resp) == 0 {
		t.Fatal("empty response")
	}
	st := StatusCode(resp[0])
	if _, ok := statusNames[st]; !ok {
		t.Fatalf("unknown status 0x%02x", resp[0])
	}
	if st != StatusOK {
		if len(resp) != 1 {
			t.Fatalf("error with a body: %x", resp)
		}
		if st == ErrOther {
			t.Fatalf("internal error for input")
		}
		return
	}
	if len(resp) > 1 {
		var v any
		if err := cbor.UnmarshalRecord(resp[1:], &v); err != nil {
			t.Fatalf("response not canonical CBOR: %v", err)
		}
	}
}

func fuzzCommand(f *testing.F, cmd byte, seeds ...any) {
	for _, s := range seeds {
		b, err := cbor.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	e := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, params []byte) {
		e.t = t
		resp := e.a.ServeCTAP(context.Background(), append([]byte{cmd}, params...), nil)
		checkResponse(t, resp)
	})
}

func FuzzMakeCredential(f *testing.F) {
	m := mcParams("example.com", []byte{1}, true, -8, -7)
	m[5] = []any{map[string]any{"type": "public-key", "id": []byte{1, 2}}}
	m[6] = map[string]any{"credProtect": 2}
	m[8], m[9] = make([]byte, 32), 2
	fuzzCommand(f, cmdMakeCredential, mcParams("example.com", []byte{1}, false), m)
}

func FuzzGetAssertion(f *testing.F) {
	fuzzCommand(f, cmdGetAssertion,
		map[int]any{1: "example.com", 2: cdh},
		map[int]any{1: "example.com", 2: cdh, 3: []any{map[string]any{"type": "public-key", "id": []byte{1}}}, 5: map[string]bool{"up": false}, 6: make([]byte, 16), 7: 1})
}

func FuzzClientPIN(f *testing.F) {
	key := map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)}
	fuzzCommand(f, cmdClientPIN,
		map[int]any{1: 2, 2: 1},
		map[int]any{1: 1, 2: 2},
		map[int]any{1: 2, 2: 3, 3: key, 4: make([]byte, 32), 5: make([]byte, 80)},
		map[int]any{1: 2, 2: 9, 3: key, 6: make([]byte, 32), 9: 3, 10: "example.com"})
}

func FuzzCredentialManagement(f *testing.F) {
	h := sha256.Sum256([]byte("example.com"))
	fuzzCommand(f, cmdCredentialManagement,
		map[int]any{1: 1, 3: 2, 4: make([]byte, 32)},
		map[int]any{1: 4, 2: map[int]any{1: h[:]}, 3: 1, 4: make([]byte, 16)},
		map[int]any{1: 6, 2: map[int]any{2: map[string]any{"id": []byte{1}, "type": "public-key"}}, 3: 2, 4: make([]byte, 32)},
		map[int]any{1: 3})
}

// FuzzServeCTAP feeds whole messages, command byte included.
func FuzzServeCTAP(f *testing.F) {
	for _, s := range [][]byte{{cmdGetInfo}, {cmdGetNextAssertion}, {cmdSelection}, {0x7f, 0xa0}, {cmdReset}} {
		f.Add(s)
	}
	e := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		e.t = t
		checkResponse(t, e.a.ServeCTAP(context.Background(), msg, nil))
	})
}

func FuzzLargeBlobs(f *testing.F) {
	fuzzCommand(f, cmdLargeBlobs,
		map[int]any{1: 100, 3: 0},
		map[int]any{2: []byte{0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c}, 3: 0, 4: 17},
		map[int]any{2: []byte{1, 2, 3}, 3: 0, 4: 40, 5: make([]byte, 32), 6: 2},
		map[int]any{2: []byte{1}, 3: 5})
}

func FuzzConfig(f *testing.F) {
	fuzzCommand(f, cmdConfig,
		map[int]any{1: 2},
		map[int]any{1: 3, 2: map[int]any{1: 6, 2: []string{"example.com"}, 3: true}},
		map[int]any{1: 3, 2: map[int]any{1: 8}, 3: 2, 4: make([]byte, 32)},
		map[int]any{1: 1},
		map[int]any{1: 0xff, 2: map[int]any{1: 1}})
}

// FuzzExtensions feeds arbitrary extension inputs to makeCredential and
// getAssertion's decoders (hmac-secret, hmac-secret-mc, credProtect,
// credBlob, largeBlobKey, minPinLength).
func FuzzExtensions(f *testing.F) {
	key := map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)}
	for _, s := range []any{
		map[string]any{"hmac-secret": true, "credProtect": 2, "credBlob": []byte("blob"), "largeBlobKey": true, "minPinLength": true},
		map[string]any{"hmac-secret": map[int]any{1: key, 2: make([]byte, 32), 3: make([]byte, 16)}},
		map[string]any{"hmac-secret": true, "hmac-secret-mc": map[int]any{1: key, 2: make([]byte, 48), 3: make([]byte, 32), 4: 2}},
		map[string]any{"credBlob": true, "largeBlobKey": false},
	} {
		f.Add(mustCBOR(f, s))
	}
	e := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, exts []byte) {
		e.t = t
		var raw map[string]cbor.RawMessage
		if cbor.Unmarshal(exts, &raw) != nil {
			return
		}
		mc := mcParams("example.com", []byte{1}, true)
		mc[6] = raw
		ga := map[int]any{1: "example.com", 2: cdh, 4: raw}
		for cmd, m := range map[byte]map[int]any{cmdMakeCredential: mc, cmdGetAssertion: ga} {
			b, err := cbor.Marshal(m)
			if err != nil {
				return
			}
			checkResponse(t, e.a.ServeCTAP(context.Background(), append([]byte{cmd}, b...), nil))
		}
	})
}

// FuzzBioEnrollment feeds authenticatorBioEnrollment requests to an engine
// with a (fake) fingerprint reader.
func FuzzBioEnrollment(f *testing.F) {
	for _, s := range []any{
		map[int]any{1: 1, 2: 7},
		map[int]any{6: true},
		map[int]any{1: 1, 2: 1, 3: map[int]any{3: 1000}, 4: 2, 5: make([]byte, 32)},
		map[int]any{1: 1, 2: 5, 3: map[int]any{1: []byte("t"), 2: "name"}, 4: 1, 5: make([]byte, 16)},
		map[int]any{1: 2, 2: 4},
	} {
		f.Add(mustCBOR(f, s))
	}
	e := fuzzEnv(f)
	withFinger(e)
	f.Fuzz(func(t *testing.T, params []byte) {
		e.t = t
		checkResponse(t, e.a.ServeCTAP(context.Background(), append([]byte{cmdBioEnrollment}, params...), nil))
	})
}
