package cbor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

var (
	errTruncated    = errors.New("truncated")
	errNonMinimal   = errors.New("non-minimal length or integer")
	errKeyOrder     = errors.New("map keys not in CTAP2 canonical order")
	errIndefinite   = errors.New("indefinite length")
	errReserved     = errors.New("reserved additional information")
	errTooDeep      = errors.New("nested too deeply")
	errTrailingData = errors.New("trailing data")
	errUTF8         = errors.New("invalid UTF-8 in a text string")
	errSimple       = errors.New("unassigned simple value")
	errKeyType      = errors.New("map key is not an integer (within int64), a text string or a byte string")
)

// checkCanonical verifies without allocating that data is exactly one item in
// CTAP2 canonical form (CTAP 2.1 §8): shortest integer and length encodings,
// definite lengths, map keys in bytewise lexicographic order of their
// encodings (which also excludes duplicates). It reports whether the
// top-level map has a key that is not an integer.
func checkCanonical(data []byte, maxDepth int) (textKeys bool, err error) {
	n, textKeys, err := item(data, 0, maxDepth, true)
	if err != nil {
		return false, err
	}
	if n != len(data) {
		return false, errTrailingData
	}
	return textKeys, nil
}

// head decodes an item head: major type, argument, and header length.
func head(data []byte) (major byte, arg uint64, n int, err error) {
	if len(data) == 0 {
		return 0, 0, 0, errTruncated
	}
	major, ai := data[0]>>5, data[0]&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), 1, nil
	case ai == 24:
		if len(data) < 2 {
			return 0, 0, 0, errTruncated
		}
		arg = uint64(data[1])
		if (arg < 24 && major != 7) || (major == 7 && arg < 32) {
			return 0, 0, 0, errNonMinimal // RFC 8949 §3.3: two-byte simple values start at 32
		}
		return major, arg, 2, nil
	case ai == 25:
		if len(data) < 3 {
			return 0, 0, 0, errTruncated
		}
		arg = uint64(binary.BigEndian.Uint16(data[1:]))
		if arg <= 0xff && major != 7 {
			return 0, 0, 0, errNonMinimal
		}
		return major, arg, 3, nil
	case ai == 26:
		if len(data) < 5 {
			return 0, 0, 0, errTruncated
		}
		arg = uint64(binary.BigEndian.Uint32(data[1:]))
		if arg <= 0xffff && major != 7 {
			return 0, 0, 0, errNonMinimal
		}
		return major, arg, 5, nil
	case ai == 27:
		if len(data) < 9 {
			return 0, 0, 0, errTruncated
		}
		arg = binary.BigEndian.Uint64(data[1:])
		if arg <= 0xffffffff && major != 7 {
			return 0, 0, 0, errNonMinimal
		}
		return major, arg, 9, nil
	case ai == 31:
		return 0, 0, 0, errIndefinite
	}
	return 0, 0, 0, errReserved
}

// item checks one item and returns its encoded length.
func item(data []byte, depth, maxDepth int, top bool) (int, bool, error) {
	major, arg, n, err := head(data)
	if err != nil {
		return 0, false, err
	}
	switch major {
	case 0, 1: // integers carry no content
		return n, false, nil
	case 7:
		// CTAP uses false, true, null (and tolerates undefined); unassigned
		// simple values have no meaning in any CTAP message.
		if ai := data[0] & 0x1f; ai < 20 || ai == 24 {
			return 0, false, errSimple
		}
		return n, false, nil
	case 2, 3:
		if arg > uint64(len(data)-n) {
			return 0, false, errTruncated
		}
		if major == 3 && !utf8.Valid(data[n:n+int(arg)]) {
			return 0, false, errUTF8
		}
		return n + int(arg), false, nil
	case 4, 5:
		if depth+1 > maxDepth {
			return 0, false, errTooDeep
		}
		// Every element needs at least one byte; this bounds the loop.
		if arg > uint64(len(data)-n) {
			return 0, false, errTruncated
		}
		textKeys := false
		var prevKey []byte
		for i := uint64(0); i < arg; i++ {
			if major == 5 {
				k, _, err := item(data[n:], depth+1, maxDepth, false)
				if err != nil {
					return 0, false, err
				}
				key := data[n : n+k]
				if km := key[0] >> 5; km > 3 {
					// Arrays and maps are not hashable; floats, booleans and
					// null never name anything in CTAP.
					return 0, false, errKeyType
				}
				if key[0]>>5 <= 1 && key[0]&0x1f == 27 && key[1]&0x80 != 0 {
					return 0, false, errKeyType // an integer key beyond int64
				}
				if prevKey != nil && bytes.Compare(prevKey, key) >= 0 {
					return 0, false, errKeyOrder
				}
				if top && key[0]>>5 > 1 {
					textKeys = true
				}
				prevKey = key
				n += k
			}
			m, _, err := item(data[n:], depth+1, maxDepth, false)
			if err != nil {
				return 0, false, err
			}
			n += m
		}
		return n, textKeys, nil
	}
	// Tags (major type 6) are forbidden in CTAP2 messages.
	return 0, false, errors.New("tag")
}
