package cbor

import (
	"fmt"
	"unicode/utf8"
)

// Reader walks one CBOR item that checkCanonical (or Unmarshal's checks) has
// already validated. It exists for the hot path (getAssertion), where a
// reflection-based decoder costs more than the rest of the request; its
// semantics mirror Unmarshal's: a value of the wrong major type is ErrType,
// null reads as absent.
type Reader struct {
	data []byte
	off  int
}

// NewReader checks that data is one canonical CBOR item (depth ≤ MaxDepth)
// and returns a Reader positioned on it. It also reports whether the
// top-level map has non-integer keys.
func NewReader(data []byte) (*Reader, bool, error) {
	if len(data) == 0 {
		return nil, false, fmt.Errorf("%w: empty", ErrInvalid)
	}
	textKeys, err := checkCanonical(data, MaxDepth)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &Reader{data: data}, textKeys, nil
}

func (r *Reader) head() (major byte, arg uint64, err error) {
	major, arg, n, err := head(r.data[r.off:])
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r.off += n
	return major, arg, nil
}

func (r *Reader) peek() byte { return r.data[r.off] }

// Null consumes a null (or undefined) if one is next.
func (r *Reader) Null() bool {
	if b := r.peek(); b == 0xf6 || b == 0xf7 {
		r.off++
		return true
	}
	return false
}

func typeErr(want string, major byte) error {
	return fmt.Errorf("%w: major type %d where %s expected", ErrType, major, want)
}

// MapLen reads a map header.
func (r *Reader) MapLen() (int, error) {
	save := r.off
	major, arg, err := r.head()
	if err != nil {
		return 0, err
	}
	if major != 5 {
		r.off = save
		return 0, typeErr("map", major)
	}
	return int(arg), nil
}

// ArrayLen reads an array header.
func (r *Reader) ArrayLen() (int, error) {
	save := r.off
	major, arg, err := r.head()
	if err != nil {
		return 0, err
	}
	if major != 4 {
		r.off = save
		return 0, typeErr("array", major)
	}
	return int(arg), nil
}

// Key reads a map key: an integer (isInt) or anything else, returned raw.
func (r *Reader) Key() (n int64, isInt bool, raw []byte, err error) {
	start := r.off
	switch r.peek() >> 5 {
	case 0, 1:
		major, arg, err := r.head()
		if err != nil {
			return 0, false, nil, err
		}
		if arg > 1<<63-1 {
			return 0, false, nil, fmt.Errorf("%w: map key overflows int64", ErrType)
		}
		if major == 1 {
			return -1 - int64(arg), true, nil, nil
		}
		return int64(arg), true, nil, nil
	}
	if err := r.Skip(); err != nil {
		return 0, false, nil, err
	}
	return 0, false, r.data[start:r.off], nil
}

// Uint reads an unsigned integer.
func (r *Reader) Uint() (uint64, error) {
	save := r.off
	major, arg, err := r.head()
	if err != nil {
		return 0, err
	}
	if major != 0 {
		r.off = save
		return 0, typeErr("unsigned integer", major)
	}
	return arg, nil
}

// Int reads a signed integer that fits int64.
func (r *Reader) Int() (int64, error) {
	save := r.off
	major, arg, err := r.head()
	if err != nil {
		return 0, err
	}
	if (major != 0 && major != 1) || arg > 1<<63-1 {
		r.off = save
		return 0, typeErr("integer", major)
	}
	if major == 1 {
		return -1 - int64(arg), nil
	}
	return int64(arg), nil
}

// Text reads a UTF-8 text string.
func (r *Reader) Text() (string, error) {
	save := r.off
	major, arg, err := r.head()
	if err != nil {
		return "", err
	}
	if major != 3 {
		r.off = save
		return "", typeErr("text string", major)
	}
	s := r.data[r.off : r.off+int(arg)]
	if !utf8.Valid(s) {
		return "", fmt.Errorf("%w: invalid UTF-8", ErrInvalid)
	}
	r.off += int(arg)
	return string(s), nil
}

// Bytes reads a byte string (a copy; non-nil even when empty).
func (r *Reader) Bytes() ([]byte, error) {
	save := r.off
	major, arg, err := r.head()
	if err != nil {
		return nil, err
	}
	if major != 2 {
		r.off = save
		return nil, typeErr("byte string", major)
	}
	b := append(make([]byte, 0, arg), r.data[r.off:r.off+int(arg)]...)
	r.off += int(arg)
	return b, nil
}

// Bool reads true or false.
func (r *Reader) Bool() (bool, error) {
	switch r.peek() {
	case 0xf4:
		r.off++
		return false, nil
	case 0xf5:
		r.off++
		return true, nil
	}
	return false, typeErr("boolean", r.peek()>>5)
}

// Raw returns the next item's encoding (a sub-slice) and skips it.
func (r *Reader) Raw() ([]byte, error) {
	start := r.off
	if err := r.Skip(); err != nil {
		return nil, err
	}
	return r.data[start:r.off], nil
}

// PeekRaw returns the first byte of the next item (for kind checks).
func (r *Reader) PeekRaw() []byte { return r.data[r.off : r.off+1] }

// Skip skips the next item.
func (r *Reader) Skip() error {
	n, _, err := item(r.data[r.off:], 0, 1<<30, false)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r.off += n
	return nil
}

// Done reports whether the whole input was consumed.
func (r *Reader) Done() bool { return r.off == len(r.data) }

// AppendHead appends a canonical item head (CTAP 2.1 §8: shortest form).
func AppendHead(dst []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(dst, m|byte(arg))
	case arg <= 0xff:
		return append(dst, m|24, byte(arg))
	case arg <= 0xffff:
		return append(dst, m|25, byte(arg>>8), byte(arg))
	case arg <= 0xffffffff:
		return append(dst, m|26, byte(arg>>24), byte(arg>>16), byte(arg>>8), byte(arg))
	}
	return append(dst, m|27, byte(arg>>56), byte(arg>>48), byte(arg>>40), byte(arg>>32), byte(arg>>24), byte(arg>>16), byte(arg>>8), byte(arg))
}

// AppendBytes appends a byte string.
func AppendBytes(dst, b []byte) []byte { return append(AppendHead(dst, 2, uint64(len(b))), b...) }

// AppendText appends a text string.
func AppendText(dst []byte, s string) []byte { return append(AppendHead(dst, 3, uint64(len(s))), s...) }
