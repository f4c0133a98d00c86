package uhid

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// uhidDevices is where the kernel puts uhid's HID devices, named
// BUS:VENDOR:PRODUCT.N (e.g. 0003:1209:0001.0004), each with a uevent file
// (HID_ID, HID_NAME, HID_PHYS, HID_UNIQ) and, once a driver has bound it,
// hidraw/hidrawN.
const uhidDevices = "devices/virtual/misc/uhid"

// findHidraw returns /dev/hidrawN for the uhid device whose HID_UNIQ is
// uniq, under the sysfs tree at sysRoot. Matching by uniq tells apart
// several devices with the same IDs (several authd instances). The error
// wraps fs.ErrNotExist when there is no such device or no hidraw node yet.
func findHidraw(sysRoot, uniq string) (string, error) {
	dir := filepath.Join(sysRoot, uhidDevices)
	devs, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("uhid: list HID devices: %w", err)
	}
	for _, dev := range devs {
		path := filepath.Join(dir, dev.Name())
		// Entries that are not HID devices (power/, uevent) have no HID_UNIQ.
		if v, ok := readUevent(filepath.Join(path, "uevent"))["HID_UNIQ"]; !ok || v != uniq {
			continue
		}
		nodes, _ := os.ReadDir(filepath.Join(path, "hidraw"))
		for _, n := range nodes {
			if !strings.HasPrefix(n.Name(), "hidraw") {
				continue
			}
			name := n.Name()
			if v := readUevent(filepath.Join(path, "hidraw", name, "uevent"))["DEVNAME"]; v != "" {
				name = v
			}
			return "/dev/" + name, nil
		}
		return "", fmt.Errorf("uhid: HID device %s has no hidraw node (not started yet, or hid-generic is not loaded): %w", dev.Name(), fs.ErrNotExist)
	}
	return "", fmt.Errorf("uhid: no HID device with uniq %q in %s: %w", uniq, dir, fs.ErrNotExist)
}

// readUevent parses a sysfs uevent file (KEY=value lines); a missing or
// unreadable file reads as empty.
func readUevent(path string) map[string]string {
	m := make(map[string]string)
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}
