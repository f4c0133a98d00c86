package pinentry

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLine is the longest Assuan line, in bytes, not counting the newline
// (ASSUAN_LINELENGTH). Longer commands are never sent (arguments are cut to
// fit); a longer response is a protocol error.
const MaxLine = 1000

// ErrProtocol is wrapped by the errors for a program that does not speak
// Assuan as pinentry does: no greeting, an unknown response, a line that is
// too long or a malformed %-escape.
var ErrProtocol = errors.New("pinentry: protocol error")

// Error is an Assuan "ERR <code> <description>" response. Code is a
// libgpg-error value: the error source in the top 8 bits (5 for pinentry),
// the error code in the low 16.
type Error struct {
	Code        uint32
	Description string // sanitised
}

func (e *Error) Error() string {
	return fmt.Sprintf("pinentry: ERR %d %s", e.Code, e.Description)
}

// libgpg-error codes (gpg-error.h) that pinentry returns.
const (
	gpgErrTimeout       = 62  // GPG_ERR_TIMEOUT: SETTIMEOUT expired
	gpgErrCanceled      = 99  // GPG_ERR_CANCELED: the user cancelled (also: no usable tty)
	gpgErrNotConfirmed  = 114 // GPG_ERR_NOT_CONFIRMED: CONFIRM answered no
	gpgErrFullyCanceled = 198 // GPG_ERR_FULLY_CANCELED
	gpgErrCodeMask      = 0xffff
)

// Is lets errors.Is(err, ErrCancelled) and errors.Is(err, ErrTimeout) match
// pinentry's answers whatever their error source.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrCancelled:
		switch e.Code & gpgErrCodeMask {
		case gpgErrCanceled, gpgErrFullyCanceled, gpgErrNotConfirmed:
			return true
		}
	case ErrTimeout:
		return e.Code&gpgErrCodeMask == gpgErrTimeout
	}
	return false
}

// escapeArg %-escapes s for a command argument: '%', CR and LF (as Assuan
// requires) and every other byte below 0x20 or DEL, which sanitize has
// normally removed already, so nothing can end or corrupt the line. The
// result is at most max bytes; when s does not fit it is cut between runes
// and ends in "…".
func escapeArg(s string, max int) string {
	const ellipsis = "…"
	var b strings.Builder
	cut := -1 // length of b when it last had room for the ellipsis
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if b.Len()+len(ellipsis) <= max {
			cut = b.Len()
		}
		switch {
		case size == 1 && (s[i] < 0x20 || s[i] == 0x7f || s[i] == '%'):
			fmt.Fprintf(&b, "%%%02X", s[i])
		case r == utf8.RuneError && size == 1:
			b.WriteString("\uFFFD")
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
		if b.Len() > max {
			if cut < 0 {
				return ""
			}
			return b.String()[:cut] + ellipsis
		}
	}
	return b.String()
}

// sanitize makes text that may come from a website (an RP ID, a user name)
// safe to hand to pinentry, which shows it on a terminal or in a dialog:
// invalid UTF-8 becomes U+FFFD; control characters (C0, C1, DEL, so every
// terminal escape sequence), format characters (bidi overrides, zero-width
// characters) and line/paragraph separators are removed, except that LF is
// kept when multiline is set. CR LF and lone CR become LF there.
func sanitize(s string, multiline bool) string {
	if multiline {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	var b strings.Builder
	for _, r := range s { // invalid UTF-8 decodes as U+FFFD
		if r == '\n' && multiline {
			b.WriteRune(r)
			continue
		}
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// lineReader reads Assuan lines into a fixed buffer, so that a PIN passes
// through no memory but this buffer and the Secret; wipe clears it.
type lineReader struct {
	r     io.Reader
	buf   [MaxLine + 1 + 512]byte // one line and its newline, plus read-ahead
	start int                     // buf[start:end] is unread
	end   int
}

// readLine returns the next line without its newline (and without a CR
// before it). The slice is valid until the next call.
func (l *lineReader) readLine() ([]byte, error) {
	for {
		if i := indexByte(l.buf[l.start:l.end], '\n'); i >= 0 {
			line := l.buf[l.start : l.start+i]
			l.start += i + 1
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) > MaxLine {
				return nil, fmt.Errorf("%w: response line longer than %d bytes", ErrProtocol, MaxLine)
			}
			return line, nil
		}
		if l.end-l.start > MaxLine+1 {
			return nil, fmt.Errorf("%w: response line longer than %d bytes", ErrProtocol, MaxLine)
		}
		if l.start > 0 { // make room: move the partial line to the front
			n := copy(l.buf[:], l.buf[l.start:l.end])
			clear(l.buf[n:l.end])
			l.start, l.end = 0, n
		}
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if n > 0 {
			continue
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

// wipe zeroes the buffer, including consumed lines.
func (l *lineReader) wipe() {
	clear(l.buf[:])
	l.start, l.end = 0, 0
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// decodeData %-decodes the payload of a "D" line into s.
func decodeData(s *Secret, data []byte) error {
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '%' {
			if i+2 >= len(data) {
				return fmt.Errorf("%w: truncated %%-escape in data line", ErrProtocol)
			}
			hi, ok1 := unhex(data[i+1])
			lo, ok2 := unhex(data[i+2])
			if !ok1 || !ok2 {
				return fmt.Errorf("%w: malformed %%-escape in data line", ErrProtocol)
			}
			c = hi<<4 | lo
			i += 2
		}
		if err := s.appendByte(c); err != nil {
			return err
		}
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseErr parses the text after "ERR ".
func parseErr(rest string) *Error {
	code, desc, _ := strings.Cut(rest, " ")
	n, err := strconv.ParseUint(code, 10, 32)
	if err != nil {
		return &Error{Description: sanitize(rest, false)}
	}
	return &Error{Code: uint32(n), Description: sanitize(unescape(desc), false)}
}

// unescape %-decodes s leniently (for descriptions only).
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
