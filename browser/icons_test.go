package browser

import (
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestIcons: the committed PNGs exist, decode, have their sizes, are what
// Icon draws today (run `go generate ./browser` after changing it), and are
// the ones manifest.json references.
func TestIcons(t *testing.T) {
	for _, size := range IconSizes {
		path := filepath.Join("extension", "icons", fmt.Sprintf("icon-%d.png", size))
		f, err := os.Open(path)
		if err != nil {
			t.Fatalf("%v (run `go generate ./browser`)", err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if b := img.Bounds(); b != image.Rect(0, 0, size, size) {
			t.Errorf("%s is %v, want %dx%d", path, b, size, size)
			continue
		}
		want := Icon(size)
		opaque := 0
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				r1, g1, b1, a1 := img.At(x, y).RGBA()
				r2, g2, b2, a2 := want.At(x, y).RGBA()
				if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
					t.Fatalf("%s differs from Icon(%d) at (%d,%d): run `go generate ./browser`", path, size, x, y)
				}
				if a1 == 0xffff {
					opaque++
				}
			}
		}
		// Not blank, not a full square: rounded corners are transparent.
		if opaque < size*size/2 || opaque == size*size {
			t.Errorf("%s: %d of %d pixels opaque", path, opaque, size*size)
		}
		// The key is there: white pixels in the middle row.
		white := 0
		for x := 0; x < size; x++ {
			if r, g, b, _ := img.At(x, size/2).RGBA(); r > 0xf000 && g > 0xf000 && b > 0xf000 {
				white++
			}
		}
		if white < size/4 {
			t.Errorf("%s: only %d white pixels across the middle (no key?)", path, white)
		}
	}

	var m struct {
		Icons  map[string]string `json:"icons"`
		Action struct {
			DefaultIcon map[string]string `json:"default_icon"`
		} `json:"action"`
	}
	b, err := os.ReadFile(filepath.Join("extension", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	for _, size := range IconSizes {
		k := fmt.Sprint(size)
		if got, want := m.Icons[k], fmt.Sprintf("icons/icon-%d.png", size); got != want {
			t.Errorf("manifest icons[%s] = %q, want %q", k, got, want)
		}
	}
	if len(m.Action.DefaultIcon) == 0 {
		t.Error("manifest action.default_icon is missing")
	}
	for k, p := range m.Action.DefaultIcon {
		if m.Icons[k] != p {
			t.Errorf("action.default_icon[%s] = %q is not icons[%s]", k, p, k)
		}
	}
}
