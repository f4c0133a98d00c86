package webauthn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/ipc"
)

// createLB registers a discoverable credential with the largeBlob extension
// and returns its ID and clientExtensionResults.
func createLB(t *testing.T, e *env, user, support string, rk string) ([]byte, map[string]any) {
	t.Helper()
	opts := creationJSON(t, func(o map[string]any) {
		o["user"] = map[string]any{"id": b64([]byte(user)), "name": user, "displayName": user}
		o["authenticatorSelection"] = map[string]any{"residentKey": rk}
		o["extensions"] = map[string]any{"largeBlob": map[string]any{"support": support}}
	})
	out, err := e.c.Create(context.Background(), testOrigin, opts, ipc.Hints{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return unb64(t, m["rawId"]), m["clientExtensionResults"].(map[string]any)
}

// getLB runs get() with a largeBlob input for the given credentials.
func getLB(e *env, in map[string]any, ids ...[]byte) (map[string]any, error) {
	opts := requestJSON(e.t, func(o map[string]any) {
		var allow []any
		for _, id := range ids {
			allow = append(allow, map[string]any{"type": "public-key", "id": b64(id)})
		}
		if allow != nil {
			o["allowCredentials"] = allow
		}
		o["extensions"] = map[string]any{"largeBlob": in}
	})
	out, err := e.c.Get(context.Background(), testOrigin, opts, ipc.Hints{})
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		e.t.Fatal(err)
	}
	lb, _ := m["clientExtensionResults"].(map[string]any)["largeBlob"].(map[string]any)
	if lb == nil {
		e.t.Fatalf("no largeBlob output: %s", out)
	}
	return lb, nil
}

func writeLB(t *testing.T, e *env, id, blob []byte) bool {
	t.Helper()
	lb, err := getLB(e, map[string]any{"write": b64(blob)}, id)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	w, ok := lb["written"].(bool)
	if !ok {
		t.Fatalf("largeBlob output %v has no written", lb)
	}
	return w
}

func readLB(t *testing.T, e *env, id []byte) []byte {
	t.Helper()
	lb, err := getLB(e, map[string]any{"read": true}, id)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if _, ok := lb["blob"]; !ok {
		return nil
	}
	return unb64(t, lb["blob"])
}

// rawArray reads the authenticator's serialized large-blob array directly
// and checks its trailer; it returns the number of entries.
func rawArray(t *testing.T, e *env) int {
	t.Helper()
	var data []byte
	for {
		req := mustCBOR(t, map[int]any{1: 1000, 3: len(data)})
		resp := e.a.ServeCTAP(context.Background(), append([]byte{0x0c}, req...), nil)
		if resp[0] != 0 {
			t.Fatalf("largeBlobs get: 0x%02x", resp[0])
		}
		var r struct {
			Config []byte `cbor:"1,keyasint"`
		}
		if err := cbor.UnmarshalRecord(resp[1:], &r); err != nil {
			t.Fatal(err)
		}
		data = append(data, r.Config...)
		if len(r.Config) < 1000 {
			break
		}
	}
	body, trailer := data[:len(data)-16], data[len(data)-16:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:16], trailer) {
		t.Fatalf("array trailer does not verify")
	}
	var entries []map[int]any
	if err := cbor.UnmarshalRecord(body, &entries); err != nil {
		t.Fatalf("array: %v", err)
	}
	for i, en := range entries {
		if n, _ := en[2].([]byte); len(n) != 12 {
			t.Fatalf("entry %d: nonce %v", i, en[2])
		}
		if _, ok := en[1].([]byte); !ok {
			t.Fatalf("entry %d: no ciphertext", i)
		}
	}
	return len(entries)
}

// TestLargeBlob: with a PIN set, blobs are written (lbw token) and read back
// per credential; the array stays valid for the engine.
func TestLargeBlob(t *testing.T) {
	e := newEnv(t, nil)
	e.setPIN("1234")
	e.pin.answers = make([]string, 100)
	for i := range e.pin.answers {
		e.pin.answers[i] = "1234"
	}
	if n := rawArray(t, e); n != 0 {
		t.Fatalf("initial array has %d entries", n)
	}
	a, ext := createLB(t, e, "alice", "required", "required")
	if lb := ext["largeBlob"].(map[string]any); lb["supported"] != true {
		t.Fatalf("largeBlob %v", lb)
	}
	b, ext := createLB(t, e, "bob", "preferred", "required")
	if lb := ext["largeBlob"].(map[string]any); lb["supported"] != true {
		t.Fatalf("largeBlob %v", lb)
	}

	if got := readLB(t, e, a); got != nil {
		t.Fatalf("blob %q before any write", got)
	}
	blobA := []byte("alice's certificate, alice's certificate, alice's certificate")
	if !writeLB(t, e, a, blobA) {
		t.Fatal("write a: not written")
	}
	if got := readLB(t, e, a); !bytes.Equal(got, blobA) {
		t.Fatalf("read a: %q", got)
	}
	if got := readLB(t, e, b); got != nil {
		t.Fatalf("read b without a blob: %q", got)
	}
	blobB := make([]byte, 300)
	rand.Read(blobB)
	if !writeLB(t, e, b, blobB) {
		t.Fatal("write b: not written")
	}
	if got := readLB(t, e, a); !bytes.Equal(got, blobA) {
		t.Fatalf("read a after b's write: %q", got)
	}
	if got := readLB(t, e, b); !bytes.Equal(got, blobB) {
		t.Fatal("read b")
	}
	if n := rawArray(t, e); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
	// Replacing a's blob keeps b's; an empty blob is a blob.
	if !writeLB(t, e, a, []byte{}) {
		t.Fatal("rewrite a: not written")
	}
	if n := rawArray(t, e); n != 2 {
		t.Fatalf("%d entries after replacing, want 2", n)
	}
	if got := readLB(t, e, a); got == nil || len(got) != 0 {
		t.Fatalf("read a after replacing: %q", got)
	}
	if got := readLB(t, e, b); !bytes.Equal(got, blobB) {
		t.Fatal("read b after a's replacement")
	}

	// A blob needing several fragments (incompressible, > maxMsgSize − 64).
	big := make([]byte, 7700)
	rand.Read(big)
	if !writeLB(t, e, a, big) {
		t.Fatal("big write: not written")
	}
	if got := readLB(t, e, a); !bytes.Equal(got, big) {
		t.Fatal("big read")
	}
	if got := readLB(t, e, b); !bytes.Equal(got, blobB) {
		t.Fatal("read b after the big write")
	}
	// Beyond maxSerializedLargeBlobArray: not written, old contents kept.
	huge := make([]byte, 9000)
	rand.Read(huge)
	if writeLB(t, e, b, huge) {
		t.Fatal("a too-large array was written")
	}
	if got := readLB(t, e, b); !bytes.Equal(got, blobB) {
		t.Fatal("read b after the refused write")
	}
	rawArray(t, e)

	// Input errors.
	_, err := getLB(e, map[string]any{"write": b64([]byte("x"))}, a, b)
	wantErr(t, err, ipc.NotSupportedError)
	_, err = getLB(e, map[string]any{"write": b64([]byte("x"))})
	wantErr(t, err, ipc.NotSupportedError)
	_, err = getLB(e, map[string]any{"read": true, "write": b64([]byte("x"))}, a)
	wantErr(t, err, ipc.NotSupportedError)
	_, err = getLB(e, map[string]any{"support": "required"}, a)
	wantErr(t, err, ipc.NotSupportedError)
	_, err = e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) {
		o["extensions"] = map[string]any{"largeBlob": map[string]any{"read": true}}
	}), ipc.Hints{})
	wantErr(t, err, ipc.NotSupportedError)

	// Discoverable read without allowCredentials finds the account's blob.
	lb, err := getLB(e, map[string]any{"read": true})
	if err != nil {
		t.Fatal(err)
	}
	if lb["blob"] == nil {
		t.Fatalf("discoverable read: %v", lb)
	}
}

// TestLargeBlobSupport: required support needs a discoverable credential;
// preferred without one reports supported false.
func TestLargeBlobSupport(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.c.Create(context.Background(), testOrigin, creationJSON(t, func(o map[string]any) {
		o["authenticatorSelection"] = map[string]any{"residentKey": "discouraged"}
		o["extensions"] = map[string]any{"largeBlob": map[string]any{"support": "required"}}
	}), ipc.Hints{})
	wantErr(t, err, ipc.NotSupportedError)
	id, ext := createLB(t, e, "carol", "preferred", "discouraged")
	if lb := ext["largeBlob"].(map[string]any); lb["supported"] != false {
		t.Fatalf("largeBlob %v", lb)
	}
	// No key for a non-discoverable credential: nothing written or read.
	if writeLB(t, e, id, []byte("x")) {
		t.Fatal("written without a largeBlobKey")
	}
	if got := readLB(t, e, id); got != nil {
		t.Fatalf("read %q", got)
	}
	// Without a PIN the array is written unauthenticated.
	d, ext := createLB(t, e, "dave", "required", "required")
	if lb := ext["largeBlob"].(map[string]any); lb["supported"] != true {
		t.Fatalf("largeBlob %v", lb)
	}
	if !writeLB(t, e, d, []byte("no pin")) {
		t.Fatal("write without PIN")
	}
	if got := readLB(t, e, d); string(got) != "no pin" {
		t.Fatalf("read %q", got)
	}
	if n := rawArray(t, e); n != 1 {
		t.Fatalf("%d entries", n)
	}
}
