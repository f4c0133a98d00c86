package ctap2

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"

	"github.com/authd/authd/internal/cbor"
)

// authenticatorLargeBlobs (CTAP 2.1 §6.10): a serialized large-blob array
// (CBOR array ‖ LEFT(SHA-256(array), 16)) read and replaced in fragments.
const (
	maxLargeBlobArray = 8192
	maxFragment       = maxMsgSize - 64 // CTAP 2.1 §6.10.1
	minLargeBlobArray = 17
)

type largeBlobsRequest struct {
	Get               *uint64    `cbor:"1,keyasint"`
	Set               cbor.Bytes `cbor:"2,keyasint"`
	Offset            *uint64    `cbor:"3,keyasint"`
	Length            *uint64    `cbor:"4,keyasint"`
	PinUvAuthParam    cbor.Bytes `cbor:"5,keyasint"`
	PinUvAuthProtocol *uint64    `cbor:"6,keyasint"`
}

type largeBlobsResponse struct {
	Config []byte `cbor:"1,keyasint"`
}

// largeBlobWrite is a replacement being received; it is committed only when
// complete and intact, so a crash or an abandoned write keeps the old array.
type largeBlobWrite struct {
	expectedLength uint64
	buf            []byte
}

func (a *Authenticator) largeBlobs(req *largeBlobsRequest) (any, error) {
	// CTAP 2.1 §6.10.2 names INVALID_PARAMETER, not MISSING_PARAMETER, here.
	if req.Offset == nil {
		return nil, fail(ErrInvalidParameter, "largeBlobs: offset missing")
	}
	offset := *req.Offset
	if (req.Get == nil) == (req.Set == nil) {
		return nil, fail(ErrInvalidParameter, "largeBlobs: exactly one of get and set")
	}
	if req.Get != nil {
		if req.Length != nil {
			return nil, fail(ErrInvalidParameter, "largeBlobs: length is only for set")
		}
		if req.PinUvAuthParam != nil || req.PinUvAuthProtocol != nil {
			return nil, fail(ErrInvalidParameter, "largeBlobs: reading takes no pinUvAuthParam")
		}
		if *req.Get > maxFragment {
			return nil, fail(ErrInvalidLength, "largeBlobs: get %d exceeds maxFragmentLength %d", *req.Get, maxFragment)
		}
		array, err := a.cfg.State.LargeBlobArray()
		if err != nil {
			return nil, wrapStore("large-blob array", err)
		}
		if offset > uint64(len(array)) {
			return nil, fail(ErrInvalidParameter, "largeBlobs: offset %d beyond the array (%d bytes)", offset, len(array))
		}
		end := min(offset+*req.Get, uint64(len(array)))
		return &largeBlobsResponse{Config: array[offset:end]}, nil
	}

	if len(req.Set) > maxFragment {
		return nil, fail(ErrInvalidLength, "largeBlobs: fragment of %d bytes exceeds %d", len(req.Set), maxFragment)
	}
	a.mu.Lock()
	w := a.largeBlobWrite
	a.mu.Unlock()
	if offset == 0 {
		if req.Length == nil {
			return nil, fail(ErrInvalidParameter, "largeBlobs: length missing for the first fragment")
		}
		if *req.Length > maxLargeBlobArray {
			return nil, fail(ErrLargeBlobStorageFull, "largeBlobs: %d bytes exceed maxSerializedLargeBlobArray %d", *req.Length, maxLargeBlobArray)
		}
		if *req.Length < minLargeBlobArray {
			return nil, fail(ErrInvalidParameter, "largeBlobs: an array is at least %d bytes", minLargeBlobArray)
		}
		w = &largeBlobWrite{expectedLength: *req.Length}
	} else {
		if req.Length != nil {
			return nil, fail(ErrInvalidParameter, "largeBlobs: length only with offset 0")
		}
		if w == nil || offset != uint64(len(w.buf)) {
			return nil, fail(ErrInvalidSeq, "largeBlobs: offset %d is not the next expected one", offset)
		}
	}
	// Authorisation when protected: authenticate(token, 32×0xff ‖ h'0c00' ‖
	// uint32LE(offset) ‖ SHA-256(set)), permission lbw.
	if err := a.requireAuth(req.PinUvAuthParam, req.PinUvAuthProtocol, func() []byte {
		msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0c, 0x00)
		msg = binary.LittleEndian.AppendUint32(msg, uint32(offset))
		h := sha256.Sum256(req.Set)
		return append(msg, h[:]...)
	}, permLBW, "largeBlobs"); err != nil {
		return nil, err
	}
	if offset+uint64(len(req.Set)) > w.expectedLength {
		return nil, fail(ErrInvalidParameter, "largeBlobs: fragment goes past the declared length %d", w.expectedLength)
	}
	w.buf = append(w.buf, req.Set...)
	a.mu.Lock()
	a.largeBlobWrite = w
	a.mu.Unlock()
	if uint64(len(w.buf)) < w.expectedLength {
		return nil, nil
	}
	a.mu.Lock()
	a.largeBlobWrite = nil
	a.mu.Unlock()
	body, trailer := w.buf[:len(w.buf)-16], w.buf[len(w.buf)-16:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:16], trailer) {
		return nil, fail(ErrIntegrityFailure, "largeBlobs: the array's hash trailer does not match")
	}
	if err := a.cfg.State.SetLargeBlobArray(w.buf); err != nil {
		return nil, wrapStore("store large-blob array", err)
	}
	a.log.Info("ctap2: large-blob array replaced", "bytes", len(w.buf))
	return nil, nil
}

// requireAuth enforces pinUvAuthParam when the authenticator is protected
// (a PIN is set, or alwaysUv): missing → PUAT_REQUIRED, protocol checks, MAC
// over msg() with the current token, and the permission (CTAP 2.1 §6.10.2,
// §6.11).
func (a *Authenticator) requireAuth(param []byte, protocol *uint64, msg func() []byte, perm uint64, what string) error {
	settings, err := a.cfg.State.Settings()
	if err != nil {
		return wrapStore("settings", err)
	}
	if !a.cfg.State.State().PINSet && !settings.AlwaysUV {
		return nil
	}
	if param == nil {
		return fail(ErrPUATRequired, "%s needs a pinUvAuthToken", what)
	}
	p, err := protocolOf(protocol)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.verifyTokenLocked(p, msg(), param) {
		return fail(ErrPINAuthInvalid, "%s: pinUvAuthParam does not verify with the current token", what)
	}
	if a.token.permissions&perm == 0 {
		return fail(ErrPINAuthInvalid, "%s: token lacks the 0x%02x permission", what, perm)
	}
	return nil
}
