// Package browser holds authd's browser extension (browser/extension) and
// the program that draws its icons.
package browser

//go:generate go run ./genicons -dir extension/icons

import (
	"image"
	"image/color"
	"math"
)

// IconSizes are the PNG sizes the extension's manifest references
// (toolbar 16/32, extensions page 48, store and install dialog 128).
var IconSizes = []int{16, 32, 48, 128}

// Icon draws the extension's icon at size×size pixels: a white key on a
// rounded blue square. Shapes are tested per subpixel (supersampled), so
// edges are anti-aliased at every size without an image library.
func Icon(size int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	const ss = 8 // subpixels per axis
	top := [3]float64{0x4a, 0x7d, 0xff}
	bottom := [3]float64{0x2b, 0x56, 0xd6}
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			var bg, key float64 // coverage
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					x := (float64(px) + (float64(sx)+0.5)/ss) / float64(size)
					y := (float64(py) + (float64(sy)+0.5)/ss) / float64(size)
					if inRoundedSquare(x, y, 0.22) {
						bg++
						if inKey(x, y) {
							key++
						}
					}
				}
			}
			bg /= ss * ss
			key /= ss * ss
			if bg == 0 {
				continue
			}
			// Vertical gradient under the key; the key is white.
			t := (float64(py) + 0.5) / float64(size)
			var c [3]float64
			for i := range c {
				base := top[i] + (bottom[i]-top[i])*t
				c[i] = base + (255-base)*(key/bg)
			}
			img.SetNRGBA(px, py, color.NRGBA{R: uint8(math.Round(c[0])), G: uint8(math.Round(c[1])), B: uint8(math.Round(c[2])), A: uint8(math.Round(bg * 255))})
		}
	}
	return img
}

// inRoundedSquare reports whether (x, y) in the unit square lies inside
// the unit square with corners of radius r.
func inRoundedSquare(x, y, r float64) bool {
	cx := math.Max(r, math.Min(1-r, x))
	cy := math.Max(r, math.Min(1-r, y))
	return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r
}

// inKey reports whether (x, y) lies on the key: a ring (the bow) on the
// left, a shaft to the right and two teeth hanging from its end.
func inKey(x, y float64) bool {
	const bx, by, outer, inner = 0.34, 0.5, 0.2, 0.085
	d := math.Hypot(x-bx, y-by)
	if d <= outer && d >= inner {
		return true
	}
	rect := func(x0, y0, x1, y1 float64) bool { return x >= x0 && x <= x1 && y >= y0 && y <= y1 }
	return rect(bx+outer-0.02, 0.44, 0.84, 0.56) || // shaft
		rect(0.64, 0.56, 0.71, 0.69) || // first tooth
		rect(0.76, 0.56, 0.84, 0.72) // last tooth
}
