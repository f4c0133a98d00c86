// Package cbor owns the CTAP2 CBOR modes used everywhere in authd.
//
// Specification: CTAP 2.1 §8 "Message Encoding" (CTAP2 canonical CBOR encoding form).
// Encoding is exactly CTAP2 canonical (fxamacker/cbor CTAP2EncOptions). Decoding is
// strict: duplicate map keys, indefinite lengths, tags, invalid UTF-8 and nesting
// deeper than MaxDepth are rejected; unknown map keys are ignored, as CTAP requires.
// No other package calls fxamacker/cbor with its default (unsorted) options.
package cbor

import (
	"errors"
	"fmt"

	fx "github.com/fxamacker/cbor/v2"
)

// MaxDepth is the deepest nesting of maps and arrays accepted in a request
// (a GetAssertion hmac-secret COSE key sits at depth 4).
const MaxDepth = 4

var (
	enc fx.EncMode
	dec fx.DecMode
	// lax decodes authd's own records, which may nest deeper than requests.
	lax fx.DecMode
)

func init() {
	var err error
	if enc, err = fx.CTAP2EncOptions().EncMode(); err != nil {
		panic("cbor: encoder options: " + err.Error())
	}
	opts := fx.DecOptions{
		DupMapKey:       fx.DupMapKeyEnforcedAPF,
		IndefLength:     fx.IndefLengthForbidden,
		TagsMd:          fx.TagsForbidden,
		MaxNestedLevels: MaxDepth,
		UTF8:            fx.UTF8RejectInvalid,
		// "ID" is not "id": CTAP member names are case-sensitive.
		FieldNameMatching: fx.FieldNameMatchingCaseSensitive,
		// Default decoding of CBOR maps into interface{} yields map[interface{}]interface{};
		// keep that (CTAP maps have integer keys).
	}
	if dec, err = opts.DecMode(); err != nil {
		panic("cbor: decoder options: " + err.Error())
	}
	opts.MaxNestedLevels = 16
	if lax, err = opts.DecMode(); err != nil {
		panic("cbor: record decoder options: " + err.Error())
	}
}

// RawMessage is an encoded CBOR value copied verbatim.
type RawMessage = fx.RawMessage

// ByteString is a byte string usable as a map key.
type ByteString = fx.ByteString

// Marshal encodes v in CTAP2 canonical form.
func Marshal(v any) ([]byte, error) { return enc.Marshal(v) }

// ErrInvalid reports malformed CBOR (CTAP2_ERR_INVALID_CBOR).
var ErrInvalid = errors.New("cbor: invalid encoding")

// ErrType reports a well-formed value of the wrong type (CTAP2_ERR_CBOR_UNEXPECTED_TYPE).
var ErrType = errors.New("cbor: unexpected type")

// Unmarshal strictly decodes a complete CTAP parameter map (integer keys) into
// v; keys that are not integers are ignored like any unknown key. Errors wrap
// ErrInvalid (syntax, duplicate keys, depth, trailing bytes, non-canonical
// encoding) or ErrType (a known field has the wrong type).
func Unmarshal(data []byte, v any) error {
	return unmarshal(dec, data, v, true, true)
}

// UnmarshalRecord decodes authd's own stored records (deeper nesting allowed,
// canonical form still required).
func UnmarshalRecord(data []byte, v any) error {
	return unmarshal(lax, data, v, true, false)
}

func unmarshal(dm fx.DecMode, data []byte, v any, canonical, params bool) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if canonical {
		depth := MaxDepth
		if dm == lax {
			depth = 16
		}
		textKeys, err := checkCanonical(data, depth)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		// fxamacker matches a text key "1" to a keyasint field 1. In a CTAP
		// parameter map a text key is simply unknown, so drop such keys.
		if textKeys && params {
			var m map[any]any
			if err := dm.Unmarshal(data, &m); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalid, err)
			}
			for k := range m {
				if _, ok := k.(string); ok {
					delete(m, k)
				}
			}
			if data, err = enc.Marshal(m); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalid, err)
			}
		}
	}
	if err := dm.Unmarshal(data, v); err != nil {
		var te *fx.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%w: %v", ErrType, err)
		}
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Diagnose renders CBOR in diagnostic notation, for logs and golden tests.
func Diagnose(data []byte) string {
	s, err := fx.Diagnose(data)
	if err != nil {
		return fmt.Sprintf("<invalid cbor: %v>", err)
	}
	return s
}

// Bytes is a request field that must be a CBOR byte string. (A plain []byte
// field would also accept an array of small integers.) A present but empty
// byte string decodes to a non-nil empty slice, so "absent" and "empty" stay
// distinguishable, as CTAP requires for pinUvAuthParam.
type Bytes []byte

// UnmarshalCBOR implements fx.Unmarshaler. data is one well-formed item
// (the decoder has checked it), so the byte string's content is sliced
// directly instead of running a second decoder.
func (b *Bytes) UnmarshalCBOR(data []byte) error {
	if len(data) == 1 && (data[0] == 0xf6 || data[0] == 0xf7) { // null or undefined reads as absent
		*b = nil
		return nil
	}
	major, arg, n, err := head(data)
	if err != nil {
		return err
	}
	if major != 2 {
		return &fx.UnmarshalTypeError{CBORType: "non-byte-string", GoType: "[]byte"}
	}
	if arg != uint64(len(data)-n) {
		return fmt.Errorf("%w: byte string length", ErrInvalid)
	}
	*b = append(make([]byte, 0, arg), data[n:]...)
	return nil
}
