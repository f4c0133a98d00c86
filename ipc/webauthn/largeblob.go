package webauthn

import (
	"bytes"
	"compress/flate"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/ipc"
)

// The largeBlob extension (WebAuthn L3 §10.1.5) over CTAP 2.1's largeBlobKey
// extension (§12.3) and authenticatorLargeBlobs (§6.10): the client keeps
// per-credential blobs, compressed and encrypted under the credential's
// largeBlobKey, in the authenticator's serialized large-blob array.

const (
	cmdLargeBlobs       = 0x0C
	permLargeBlobWrite  = 0x10
	largeBlobTrailerLen = 16
	// CTAP 2.1 §6.10: maxFragmentLength = maxMsgSize − 64; maxMsgSize is
	// 1024 when getInfo omits it, and so is the minimum array size.
	defaultMaxMsgSize       = 1024
	defaultMaxLargeBlobSize = 1024
	largeBlobNonceLen       = 12
)

// largeBlobInputsJSON is AuthenticationExtensionsLargeBlobInputsJSON.
type largeBlobInputsJSON struct {
	Support *string `json:"support"`
	Read    *bool   `json:"read"`
	Write   *string `json:"write"`
}

// largeBlobCreate validates a create() largeBlob input: it reports whether
// the extension was asked for and whether support is required.
func largeBlobCreate(o *creationOptions) (want, required bool, err error) {
	in := o.Ext.LargeBlob
	if in == nil {
		return false, false, nil
	}
	if in.Read != nil || in.Write != nil {
		return false, false, ipc.Errorf(ipc.NotSupportedError, "largeBlob: read and write are not allowed when creating a credential")
	}
	return true, in.Support != nil && *in.Support == "required", nil
}

// largeBlobGet is the validated largeBlob input of a get().
type largeBlobGet struct {
	read  bool
	write []byte // nil: no write
}

func parseLargeBlobGet(o *requestOptions) (*largeBlobGet, error) {
	in := o.Ext.LargeBlob
	if in == nil {
		return nil, nil
	}
	if in.Support != nil {
		return nil, ipc.Errorf(ipc.NotSupportedError, "largeBlob: support is only for creating a credential")
	}
	read := in.Read != nil && *in.Read
	if read && in.Write != nil {
		return nil, ipc.Errorf(ipc.NotSupportedError, "largeBlob: read and write cannot be combined")
	}
	lb := &largeBlobGet{read: read}
	if in.Write != nil {
		if len(o.Allow) != 1 {
			return nil, ipc.Errorf(ipc.NotSupportedError, "largeBlob: write needs exactly one entry in allowCredentials")
		}
		b, err := b64("largeBlob.write", *in.Write)
		if err != nil {
			return nil, err
		}
		lb.write = b
		if lb.write == nil {
			lb.write = []byte{}
		}
	}
	if !lb.read && lb.write == nil {
		return nil, nil
	}
	return lb, nil
}

// largeBlobsSupported: the authenticator has the largeBlobKey extension and
// the largeBlobs option.
func (i *getInfo) largeBlobsSupported() bool {
	v, _ := i.option("largeBlobs")
	return v && i.hasExtension("largeBlobKey")
}

func (i *getInfo) maxFragment() int {
	m := i.MaxMsgSize
	if m <= 0 {
		m = defaultMaxMsgSize
	}
	return m - 64
}

func (i *getInfo) maxLargeBlobArray() int {
	if i.MaxSerializedLargeBlobArray <= 0 {
		return defaultMaxLargeBlobSize
	}
	return i.MaxSerializedLargeBlobArray
}

// readLargeBlobArray reads the serialized array in fragments and returns its
// entries (raw CBOR). An array whose trailer does not verify, or that is not
// a CBOR array, reads as empty (CTAP 2.1 §6.10.3).
func (s *session) readLargeBlobArray() ([][]byte, error) {
	frag := s.info.maxFragment()
	var data []byte
	for {
		body, err := s.call(cmdLargeBlobs, map[int]any{1: frag, 3: len(data)})
		if err != nil {
			return nil, err
		}
		var resp struct {
			Config []byte `cbor:"1,keyasint"`
		}
		if err := decode(body, &resp); err != nil {
			return nil, err
		}
		data = append(data, resp.Config...)
		if len(resp.Config) < frag {
			break
		}
		if len(data) > 1<<24 {
			return nil, errors.New("largeBlobs: the array is implausibly large")
		}
	}
	entries, err := splitLargeBlobArray(data)
	if err != nil {
		s.c.log().Info("webauthn: the large-blob array is invalid; treating it as empty", "error", err)
		return nil, nil
	}
	return entries, nil
}

// splitLargeBlobArray verifies the trailer and splits the CBOR array.
func splitLargeBlobArray(data []byte) ([][]byte, error) {
	if len(data) < 1+largeBlobTrailerLen {
		return nil, fmt.Errorf("%d bytes", len(data))
	}
	body, trailer := data[:len(data)-largeBlobTrailerLen], data[len(data)-largeBlobTrailerLen:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:largeBlobTrailerLen], trailer) {
		return nil, errors.New("hash trailer mismatch")
	}
	if n, err := cborItemLen(body, 0); err != nil || n != len(body) {
		return nil, fmt.Errorf("not one CBOR item: %v", err)
	}
	if body[0]>>5 != 4 {
		return nil, errors.New("not a CBOR array")
	}
	info := body[0] & 0x1f
	var count uint64
	off := 1
	switch {
	case info < 24:
		count = uint64(info)
	case info <= 27:
		size := 1 << (info - 24)
		for _, c := range body[1 : 1+size] {
			count = count<<8 | uint64(c)
		}
		off += size
	default:
		return nil, errors.New("indefinite array")
	}
	entries := make([][]byte, 0, min(count, 1024))
	for range count {
		n, err := cborItemLen(body[off:], 0)
		if err != nil {
			return nil, err
		}
		entries = append(entries, body[off:off+n])
		off += n
	}
	return entries, nil
}

// serializeLargeBlobArray encodes entries as a CBOR array ‖ LEFT(SHA-256, 16).
func serializeLargeBlobArray(entries [][]byte) []byte {
	out := cbor.AppendHead(nil, 4, uint64(len(entries)))
	for _, e := range entries {
		out = append(out, e...)
	}
	h := sha256.Sum256(out)
	return append(out, h[:largeBlobTrailerLen]...)
}

type largeBlobEntry struct {
	Ciphertext []byte `cbor:"1,keyasint"`
	Nonce      []byte `cbor:"2,keyasint"`
	OrigSize   uint64 `cbor:"3,keyasint"`
}

func largeBlobAD(origSize uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte("blob"), origSize)
}

// openLargeBlobEntry decrypts and inflates one entry with key; ok is false
// when the entry is not this key's (or is malformed).
func openLargeBlobEntry(key, raw []byte) (blob []byte, ok bool) {
	var e largeBlobEntry
	if cbor.UnmarshalRecord(raw, &e) != nil || len(e.Nonce) != largeBlobNonceLen {
		return nil, false
	}
	aead, err := newLargeBlobAEAD(key)
	if err != nil {
		return nil, false
	}
	plain, err := aead.Open(nil, e.Nonce, e.Ciphertext, largeBlobAD(e.OrigSize))
	if err != nil {
		return nil, false
	}
	if e.OrigSize > 1<<24 {
		return nil, false
	}
	r := flate.NewReader(bytes.NewReader(plain))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, int64(e.OrigSize)+1))
	if err != nil || uint64(len(out)) != e.OrigSize {
		return nil, false
	}
	return out, true
}

func sealLargeBlobEntry(key, blob []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(blob); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	aead, err := newLargeBlobAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, largeBlobNonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	origSize := uint64(len(blob))
	ct := aead.Seal(nil, nonce, buf.Bytes(), largeBlobAD(origSize))
	return cbor.Marshal(map[int]any{1: ct, 2: nonce, 3: origSize})
}

func newLargeBlobAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("largeBlobKey of %d bytes", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// readLargeBlob returns the blob stored for key, or nil.
func (s *session) readLargeBlob(key []byte) ([]byte, error) {
	entries, err := s.readLargeBlobArray()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if blob, ok := openLargeBlobEntry(key, e); ok {
			return blob, nil
		}
	}
	return nil, nil
}

// writeLargeBlob replaces key's blob: entries this key opens are dropped, the
// new one appended, and the array written in fragments, each authorised by
// tok (nil when the authenticator is unprotected).
func (s *session) writeLargeBlob(key, blob []byte, tok *token) error {
	entries, err := s.readLargeBlobArray()
	if err != nil {
		return err
	}
	kept := entries[:0]
	for _, e := range entries {
		if _, ok := openLargeBlobEntry(key, e); !ok {
			kept = append(kept, e)
		}
	}
	entry, err := sealLargeBlobEntry(key, blob)
	if err != nil {
		return err
	}
	array := serializeLargeBlobArray(append(kept, entry))
	if max := s.info.maxLargeBlobArray(); len(array) > max {
		return fmt.Errorf("largeBlob: the array would be %d bytes; the authenticator holds %d", len(array), max)
	}
	frag := s.info.maxFragment()
	for off := 0; off < len(array); off += frag {
		chunk := array[off:min(off+frag, len(array))]
		params := map[int]any{2: chunk, 3: off}
		if off == 0 {
			params[4] = len(array)
		}
		if tok != nil {
			msg := append(bytes.Repeat([]byte{0xff}, 32), cmdLargeBlobs, 0x00)
			msg = binary.LittleEndian.AppendUint32(msg, uint32(off))
			h := sha256.Sum256(chunk)
			params[5] = tok.param(append(msg, h[:]...))
			params[6] = tok.p.Version()
		}
		if _, err := s.call(cmdLargeBlobs, params); err != nil {
			return err
		}
	}
	return nil
}

// largeBlobGetResult runs the read or write after the assertion and adds
// clientExtensionResults.largeBlob.
func (s *session) largeBlobGetResult(lb *largeBlobGet, key []byte, tok *token, results map[string]any) error {
	out := map[string]any{}
	results["largeBlob"] = out
	usable := s.info.largeBlobsSupported() && len(key) == 32
	switch {
	case lb.read:
		if !usable {
			return nil
		}
		blob, err := s.readLargeBlob(key)
		if err != nil {
			if st, ok := statusOf(err); ok && st == stKeepaliveCancel {
				return err
			}
			s.c.log().Info("webauthn: reading the large blob failed", "error", err)
			return nil
		}
		if blob != nil {
			out["blob"] = b64e(blob)
		}
	case lb.write != nil:
		out["written"] = false
		if !usable {
			return nil
		}
		if err := s.writeLargeBlob(key, lb.write, tok); err != nil {
			if st, ok := statusOf(err); ok && st == stKeepaliveCancel {
				return err
			}
			s.c.log().Info("webauthn: writing the large blob failed", "error", err)
			return nil
		}
		out["written"] = true
	}
	return nil
}
