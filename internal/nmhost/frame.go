// Package nmhost is the protocol core of authd-nmhost, the native-messaging
// host that connects authd's browser extension to the D-Bus platform API
// (org.authd.Authenticator1 on the session bus).
//
// Framing (Chrome and Firefox native messaging): every message is a 4-byte
// length in native byte order (little-endian on every platform authd runs
// on) followed by that many bytes of UTF-8 JSON. Browsers send at most
// 64 MiB; a host may send at most 1 MiB.
//
// Requests and replies:
//
//	{"id": <any JSON>, "type": "create"|"get"|"capabilities"|"list"|"delete"|
//	 "protect"|"unprotect"|"cancel"|"status", "origin": "https://site",
//	 "topOrigin"?: "https://top", "options"?: {...}, "timeoutMs"?: n,
//	 "filter"?: "text", "credentialId"?: "base64url", "target"?: <id>}
//	→ {"id": same, "ok": true, "result": ...}
//	→ {"id": same, "ok": false, "error": {"name": "NotAllowedError", "message": "..."}}
//
// Requests run concurrently. Each create/get runs on a bus connection of
// its own, so {"type": "cancel", "target": <id of a create/get>} aborts
// that one ceremony (Cancel() on its connection; it then fails with
// AbortError) and no other; its result is {"cancelled": bool}, false when
// the target already ended.
//
// Error names are the DOMException names of org.authd.Error.<Name>, plus
// "NotReachable" when authd cannot be reached (the extension then hands the
// request to the browser's own WebAuthn), and "UseAnotherDevice"
// (org.authd.Error.UseAnotherDevice) when the user chose another device in
// authd's prompt, which the extension handles the same way. Messages that cannot be parsed are
// answered with id null.
package nmhost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// BrowserLimit is the largest message a browser sends (64 MiB). A
	// larger length prefix means the stream is not native messaging.
	BrowserLimit = 64 << 20
	// ReplyLimit is the largest message a host may send (1 MiB).
	ReplyLimit = 1 << 20
	// DefaultMaxRequest is the largest request the host accepts. WebAuthn
	// options are a few KiB; anything near this is an error or an attack.
	DefaultMaxRequest = 1 << 20
)

// ErrTooLarge reports a frame longer than the accepted maximum whose body
// was read and discarded: the stream is still in sync.
type ErrTooLarge struct{ Len uint32 }

func (e *ErrTooLarge) Error() string {
	return fmt.Sprintf("message of %d bytes is larger than the host accepts", e.Len)
}

// ErrDesync reports a length prefix beyond the browser limit: the stream
// cannot be trusted any more.
type ErrDesync struct{ Len uint32 }

func (e *ErrDesync) Error() string {
	return fmt.Sprintf("length prefix %d exceeds the 64 MiB native-messaging limit: not a native-messaging stream", e.Len)
}

// ErrTruncated reports a stream that ended inside a frame.
var ErrTruncated = errors.New("the stream ended inside a message (truncated frame)")

// ReadFrame reads one message of at most max bytes. It returns io.EOF at a
// clean end of stream, *ErrTooLarge (stream still usable) for a frame above
// max, *ErrDesync for a length above BrowserLimit and ErrTruncated when the
// stream ends mid-frame.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return nil, ErrTruncated
		}
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > BrowserLimit {
		return nil, &ErrDesync{Len: n}
	}
	if int64(n) > int64(max) {
		if m, err := io.CopyN(io.Discard, r, int64(n)); m < int64(n) {
			if err == nil || err == io.EOF {
				return nil, ErrTruncated
			}
			return nil, err
		}
		return nil, &ErrTooLarge{Len: n}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, ErrTruncated
		}
		return nil, err
	}
	return buf, nil
}

// WriteFrame writes msg as one frame (one Write call). It refuses messages
// above ReplyLimit.
func WriteFrame(w io.Writer, msg []byte) error {
	if len(msg) > ReplyLimit {
		return fmt.Errorf("reply of %d bytes exceeds the 1 MiB native-messaging limit", len(msg))
	}
	buf := make([]byte, 4+len(msg))
	binary.LittleEndian.PutUint32(buf, uint32(len(msg)))
	copy(buf[4:], msg)
	_, err := w.Write(buf)
	return err
}
