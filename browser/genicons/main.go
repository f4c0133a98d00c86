// Command genicons writes the extension's icons (icon-N.png for every size
// in browser.IconSizes). Run it with `go generate ./browser`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"image/png"
	"log"
	"os"
	"path/filepath"

	"github.com/authd/authd/browser"
)

func main() {
	dir := flag.String("dir", "extension/icons", "output directory")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	for _, size := range browser.IconSizes {
		var buf bytes.Buffer
		if err := png.Encode(&buf, browser.Icon(size)); err != nil {
			log.Fatalf("genicons: encoding the %d px icon: %v", size, err)
		}
		path := filepath.Join(*dir, fmt.Sprintf("icon-%d.png", size))
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			log.Fatalf("genicons: %v", err)
		}
	}
}
