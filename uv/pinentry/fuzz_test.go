package pinentry

import (
	"bytes"
	"testing"
)

// FuzzDecodeData: "D" lines come from the pinentry program; any bytes must
// decode into the fixed-size Secret or fail, never panic or overflow it, and
// escaping then decoding must give the original bytes back.
func FuzzDecodeData(f *testing.F) {
	f.Add([]byte("1234"))
	f.Add([]byte("12%254%0D%0Ax"))
	f.Add([]byte("%"))
	f.Add([]byte("%zz"))
	f.Add(bytes.Repeat([]byte("%41"), 70))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Secret
		if err := decodeData(&s, data); err == nil && s.Len() > MaxSecretLen {
			t.Fatalf("secret of %d bytes", s.Len())
		}
		// Round trip for raw PINs that fit.
		if len(data) <= MaxSecretLen {
			var enc []byte
			for _, c := range data {
				if c == '%' || c < 0x20 {
					enc = append(enc, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
				} else {
					enc = append(enc, c)
				}
			}
			var r Secret
			if err := decodeData(&r, enc); err != nil || !r.Equal(data) {
				t.Fatalf("round trip of %q: %v", data, err)
			}
		}
	})
}
