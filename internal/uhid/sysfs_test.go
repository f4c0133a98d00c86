package uhid

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// writeTree creates files (path → content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindHidraw(t *testing.T) {
	root := t.TempDir()
	const dir = "devices/virtual/misc/uhid/"
	writeTree(t, root, map[string]string{
		// Another authd instance, and one whose uniq extends ours.
		dir + "0003:1209:0001.0001/uevent":                   "DRIVER=hid-generic\nHID_ID=0003:00001209:00000001\nHID_NAME=authd passkeys\nHID_UNIQ=authd-1-aaaa\n",
		dir + "0003:1209:0001.0001/hidraw/hidraw0/uevent":    "MAJOR=246\nMINOR=0\nDEVNAME=hidraw0\n",
		dir + "0003:1209:0001.0002/uevent":                   "HID_UNIQ=authd-2-bbbbX\n",
		dir + "0003:1209:0001.0002/hidraw/hidraw1/uevent":    "DEVNAME=hidraw1\n",
		dir + "0003:1209:0001.0003/uevent":                   "HID_NAME=authd passkeys\nHID_UNIQ=authd-2-bbbb\nMODALIAS=hid:b0003g0001v00001209p00000001\n",
		dir + "0003:1209:0001.0003/hidraw/hidraw7/uevent":    "MAJOR=246\nMINOR=7\nDEVNAME=hidraw7\n",
		dir + "0003:1209:0001.0004/uevent":                   "HID_UNIQ=authd-3-cccc\n", // not bound yet
		dir + "0003:1209:0001.0005/uevent":                   "HID_UNIQ=authd-4-dddd\n",
		dir + "0003:1209:0001.0005/hidraw/hidraw9/dev":       "246:9\n", // no uevent: the name is the node
		dir + "0003:1209:0001.0005/hidraw/power/autosuspend": "",
		"devices/virtual/misc/uhid/uevent":                   "MAJOR=10\nMINOR=239\nDEVNAME=uhid\n",
		"devices/virtual/misc/uhid/power/runtime_status":     "unsupported\n",
	})
	for uniq, want := range map[string]string{
		"authd-1-aaaa": "/dev/hidraw0",
		"authd-2-bbbb": "/dev/hidraw7",
		"authd-4-dddd": "/dev/hidraw9",
	} {
		if got, err := findHidraw(root, uniq); got != want || err != nil {
			t.Errorf("findHidraw(%q) = %q, %v; want %q", uniq, got, err, want)
		}
	}
	for _, uniq := range []string{"authd-3-cccc", "authd-5-eeee", ""} {
		if got, err := findHidraw(root, uniq); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("findHidraw(%q) = %q, %v; want fs.ErrNotExist", uniq, got, err)
		}
	}
	if _, err := findHidraw(t.TempDir(), "x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no uhid directory: %v, want fs.ErrNotExist", err)
	}
}
