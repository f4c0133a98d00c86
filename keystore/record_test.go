package keystore

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// fuzzDEK is the data key the seed corpus records are sealed under, so that
// fuzzing also exercises decryption of well-formed records.
var fuzzDEK = func() (k [32]byte) {
	for i := range k {
		k[i] = byte(i)
	}
	return k
}()

// seedCredentials are encoded into the seed corpus.
func seedCredentials() []*Credential {
	return []*Credential{{
		ID:              []byte{0x5e, 0xed, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d},
		RPID:            "example.com",
		RPName:          "Example",
		UserID:          []byte("user-handle-1"),
		UserName:        "alice@example.com",
		UserDisplayName: "Alice",
		Alg:             AlgES256,
		PublicKey:       []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20},
		KeyBlob:         bytes.Repeat([]byte{0x42}, 32),
		Created:         time.Unix(1700000000, 0),
		LastUsed:        time.Unix(1700000500, 7),
		Counter:         512,
		Discoverable:    true,
		CredProtect:     2,
		Protected:       true,
		Secrets:         map[string][]byte{"hmac-secret": bytes.Repeat([]byte{1}, 32), "hmac-secret-uv": bytes.Repeat([]byte{2}, 32)},
		Attrs:           map[string][]byte{"credBlob": {0x00}},
	}, {
		ID:      []byte{1},
		RPID:    "a",
		Alg:     AlgEdDSA,
		KeyBlob: bytes.Repeat([]byte{0x07}, 32),
	}}
}

func encodeSeed(t testing.TB, c *Credential) []byte {
	t.Helper()
	sealed, err := sealSecrets(&fuzzDEK, c)
	if err != nil {
		t.Fatal(err)
	}
	data, err := encodeRecord(newRecord(c, c.Counter, sealed))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRecordRoundTrip(t *testing.T) {
	for _, c := range seedCredentials() {
		data := encodeSeed(t, c)
		r, err := decodeRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		again, err := encodeRecord(r)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		got, err := openRecord(&fuzzDEK, r)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Created.Equal(c.Created) || !got.LastUsed.Equal(c.LastUsed) {
			t.Fatal("times differ")
		}
		got.Created, got.LastUsed = c.Created, c.LastUsed
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("decoded %+v\nwant    %+v", got, c)
		}
		var other [32]byte
		if _, err := openRecord(&other, r); err == nil {
			t.Fatal("opened under another data key")
		}
	}
}

// TestFuzzSeedCorpus checks that the checked-in seed corpus holds a real
// record. KEYSTORE_WRITE_FUZZ_SEED=1 regenerates it.
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeRecord")
	if os.Getenv("KEYSTORE_WRITE_FUZZ_SEED") != "" {
		for i, c := range seedCredentials() {
			data := encodeSeed(t, c)
			content := "go test fuzz v1\n[]byte(" + strconv.QuoteToASCII(string(data)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, "record"+strconv.Itoa(i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	content, err := os.ReadFile(filepath.Join(dir, "record0"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(content, []byte("\n"))
	lit := bytes.TrimSuffix(bytes.TrimPrefix(lines[1], []byte("[]byte(")), []byte(")"))
	s, err := strconv.Unquote(string(lit))
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRecord([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	c, err := openRecord(&fuzzDEK, r)
	if err != nil || c.UserName != "alice@example.com" {
		t.Fatalf("seed record0 does not open: %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, c := range seedCredentials() {
		f.Add(encodeSeed(f, c))
	}
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err != nil {
			return
		}
		enc, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		enc2, err := encodeRecord(r2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %x vs %x", enc, enc2)
		}
		// Decryption of arbitrary sealed parts must fail cleanly, and a
		// record that opens must re-seal and open to the same credential.
		c, err := openRecord(&fuzzDEK, r)
		if err != nil {
			return
		}
		sealed, err := sealSecrets(&fuzzDEK, c)
		if err != nil {
			t.Fatal(err)
		}
		r3, err := decodeRecord(mustEncode(t, newRecord(c, r.Ceiling, sealed)))
		if err != nil {
			t.Fatal(err)
		}
		c3, err := openRecord(&fuzzDEK, r3)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(c3), normalize(c)) {
			t.Fatalf("credential round trip differs:\n%+v\n%+v", c3, c)
		}
	})
}

func mustEncode(t *testing.T, r *record) []byte {
	t.Helper()
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// normalize maps empty slices and maps to nil (omitempty drops them).
func normalize(c *Credential) *Credential {
	c = c.Clone()
	for _, b := range []*[]byte{&c.ID, &c.UserID, &c.PublicKey, &c.KeyBlob} {
		if len(*b) == 0 {
			*b = nil
		}
	}
	if len(c.Secrets) == 0 {
		c.Secrets = nil
	}
	if len(c.Attrs) == 0 {
		c.Attrs = nil
	}
	for _, m := range []map[string][]byte{c.Secrets, c.Attrs} {
		for k, v := range m {
			if len(v) == 0 {
				m[k] = nil
			}
		}
	}
	return c
}
