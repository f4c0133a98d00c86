package ctap2

import (
	"fmt"

	"github.com/authd/authd/internal/cbor"
)

// The getAssertion request decoder and response encoder below are written by
// hand because getAssertion is the hot path of every sign-in and reflection
// costs more than the rest of the request. FuzzGetAssertionDecoder checks that
// decodeGetAssertion agrees with the generic decoder on every input.

// decodeGetAssertion decodes CTAP 2.1 §6.2 parameters like decode does.
func decodeGetAssertion(params []byte, req *getAssertionRequest) error {
	if len(params) == 0 {
		return fail(ErrMissingParameter, "no parameters")
	}
	r, _, err := cbor.NewReader(params)
	if err != nil {
		return fail(ErrInvalidCBOR, "%v", err)
	}
	if err := readGetAssertion(r, req); err != nil {
		if isType(err) {
			return fail(ErrCBORUnexpectedType, "%v", err)
		}
		return fail(ErrInvalidCBOR, "%v", err)
	}
	return nil
}

func isType(err error) bool {
	for e := err; e != nil; {
		if e == cbor.ErrType {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

func readGetAssertion(r *cbor.Reader, req *getAssertionRequest) error {
	if r.Null() {
		return nil // like the generic decoder: no parameters at all
	}
	n, err := r.MapLen()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		k, isInt, raw, err := r.Key()
		if err != nil {
			return err
		}
		if !isInt {
			// A text key is unknown, not a parameter; other kinds cannot name one.
			if len(raw) == 0 || raw[0]>>5 != 3 {
				return fmt.Errorf("%w: parameter key of major type %d", cbor.ErrType, raw[0]>>5)
			}
			if err := r.Skip(); err != nil {
				return err
			}
			continue
		}
		null := r.Null()
		switch k {
		case 1:
			req.RPID = nil
			if !null {
				s, err := r.Text()
				if err != nil {
					return err
				}
				req.RPID = &s
			}
		case 2:
			req.ClientDataHash = nil
			if !null {
				if req.ClientDataHash, err = r.Bytes(); err != nil {
					return err
				}
			}
		case 3:
			req.AllowList = nil
			if !null {
				if req.AllowList, err = readDescriptors(r); err != nil {
					return err
				}
			}
		case 4:
			req.Extensions = nil
			if !null {
				if req.Extensions, err = readRawMap(r); err != nil {
					return err
				}
			}
		case 5:
			req.Options = nil
			if !null {
				if req.Options, err = readBoolMap(r); err != nil {
					return err
				}
			}
		case 6:
			req.PinUvAuthParam = nil
			if !null {
				if req.PinUvAuthParam, err = r.Bytes(); err != nil {
					return err
				}
			}
		case 7:
			req.PinUvAuthProtocol = nil
			if !null {
				v, err := r.Uint()
				if err != nil {
					return err
				}
				req.PinUvAuthProtocol = &v
			}
		default:
			if !null {
				if err := r.Skip(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func readDescriptors(r *cbor.Reader) ([]credDescriptor, error) {
	n, err := r.ArrayLen()
	if err != nil {
		return nil, err
	}
	out := make([]credDescriptor, n)
	for i := range out {
		if r.Null() {
			continue
		}
		m, err := r.MapLen()
		if err != nil {
			return nil, err
		}
		d := &out[i]
		for j := 0; j < m; j++ {
			_, isInt, raw, err := r.Key()
			if err != nil {
				return nil, err
			}
			if err := checkKey(raw); err != nil {
				return nil, err
			}
			name := ""
			if !isInt && len(raw) > 0 {
				switch raw[0] >> 5 {
				case 3:
					name = string(raw[len(raw)-textLen(raw):])
				case 2, 7: // byte strings, floats and simple values cannot name a member
					return nil, fmt.Errorf("%w: member name of major type %d", cbor.ErrType, raw[0]>>5)
				}
			}
			null := r.Null()
			switch {
			case null:
				switch name {
				case "id":
					d.ID = nil
				case "type":
					d.Type = nil
				case "transports":
					d.Transports = nil
				}
			case name == "id":
				if d.ID, err = r.Bytes(); err != nil {
					return nil, err
				}
			case name == "type":
				s, err := r.Text()
				if err != nil {
					return nil, err
				}
				d.Type = &s
			case name == "transports":
				k, err := r.ArrayLen()
				if err != nil {
					return nil, err
				}
				d.Transports = make([]string, k)
				for t := range d.Transports {
					if r.Null() {
						continue
					}
					if d.Transports[t], err = r.Text(); err != nil {
						return nil, err
					}
				}
			default:
				if err := r.Skip(); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// checkKey rejects map keys the generic decoder cannot use at all (arrays
// and maps are not hashable) as malformed.
func checkKey(raw []byte) error {
	if len(raw) > 0 && (raw[0]>>5 == 4 || raw[0]>>5 == 5) {
		return fmt.Errorf("%w: array or map as a map key", cbor.ErrInvalid)
	}
	return nil
}

// textLen returns the content length of an encoded text string key.
func textLen(raw []byte) int {
	switch ai := raw[0] & 0x1f; {
	case ai < 24:
		return int(ai)
	case ai == 24:
		return len(raw) - 2
	case ai == 25:
		return len(raw) - 3
	case ai == 26:
		return len(raw) - 5
	}
	return len(raw) - 9
}

func readRawMap(r *cbor.Reader) (map[string]cbor.RawMessage, error) {
	n, err := r.MapLen()
	if err != nil {
		return nil, err
	}
	out := make(map[string]cbor.RawMessage, n)
	for i := 0; i < n; i++ {
		var k string
		if !r.Null() { // a null name reads as "" (as in the generic decoder)
			if k, err = r.Text(); err != nil {
				return nil, err
			}
		}
		v, err := r.Raw()
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func readBoolMap(r *cbor.Reader) (map[string]bool, error) {
	n, err := r.MapLen()
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		var k string
		if !r.Null() { // a null name reads as "" (as in the generic decoder)
			if k, err = r.Text(); err != nil {
				return nil, err
			}
		}
		if out[k], err = r.Bool(); err != nil { // null is not an option value
			return nil, err
		}
	}
	return out, nil
}

// appendCBOR encodes the response in CTAP2 canonical form: integer keys
// ascending, text keys by encoded bytes ("id" < "type", "id" < "name" <
// "displayName").
func (g *getAssertionResponse) appendCBOR(dst []byte) []byte {
	n := uint64(3)
	if g.User != nil {
		n++
	}
	if g.NumberOfCredentials != 0 {
		n++
	}
	if g.UserSelected {
		n++
	}
	if g.LargeBlobKey != nil {
		n++
	}
	dst = cbor.AppendHead(dst, 5, n)
	dst = append(dst, 0x01, 0xa2)
	dst = cbor.AppendText(dst, "id")
	dst = cbor.AppendBytes(dst, g.Credential.ID)
	dst = cbor.AppendText(dst, "type")
	dst = cbor.AppendText(dst, g.Credential.Type)
	dst = cbor.AppendBytes(append(dst, 0x02), g.AuthData)
	dst = cbor.AppendBytes(append(dst, 0x03), g.Signature)
	if u := g.User; u != nil {
		m := uint64(1)
		if u.Name != "" {
			m++
		}
		if u.DisplayName != "" {
			m++
		}
		dst = cbor.AppendHead(append(dst, 0x04), 5, m)
		dst = cbor.AppendBytes(cbor.AppendText(dst, "id"), u.ID)
		if u.Name != "" {
			dst = cbor.AppendText(cbor.AppendText(dst, "name"), u.Name)
		}
		if u.DisplayName != "" {
			dst = cbor.AppendText(cbor.AppendText(dst, "displayName"), u.DisplayName)
		}
	}
	if g.NumberOfCredentials != 0 {
		dst = cbor.AppendHead(append(dst, 0x05), 0, uint64(g.NumberOfCredentials))
	}
	if g.UserSelected {
		dst = append(dst, 0x06, 0xf5)
	}
	if g.LargeBlobKey != nil {
		dst = cbor.AppendBytes(append(dst, 0x07), g.LargeBlobKey)
	}
	return dst
}
