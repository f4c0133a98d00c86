package vm_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// requireTool returns the path of a program, or skips the test (fails it
// under CI, where scripts/test.sh has installed pkg).
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found: install the Debian package %s (scripts/test.sh does)", name, pkg)
	}
	t.Skipf("%s not found (Debian package %s)", name, pkg)
	return ""
}

// hidModules are the kernel modules the guest loads, in dependency order
// (hid provides hidraw, built in; hid-generic binds the uhid device: without
// udev nothing autoloads it).
var hidModules = []string{"hid", "uhid", "hid-generic"}

// guestKernel is Debian's stock kernel, unpacked for a direct PVH boot.
type guestKernel struct {
	version string // e.g. 6.1.0-56-amd64
	vmlinux string // uncompressed ELF: QEMU boots it through PVH, skipping xz under TCG
	modules map[string]string
}

// prepareKernel downloads Debian's current linux-image package (apt-get
// download: nothing is installed on the host) and extracts vmlinux and the
// HID modules into a cache directory shared by runs.
func prepareKernel(t testing.TB) guestKernel {
	t.Helper()
	requireTool(t, "apt-get", "apt")
	requireTool(t, "dpkg-deb", "dpkg")
	requireTool(t, "xz", "xz-utils")
	version, err := kernelVersion()
	if err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "authd-vmtest", version)
	k := guestKernel{version: version, vmlinux: filepath.Join(dir, "vmlinux"), modules: map[string]string{}}
	for _, m := range hidModules {
		k.modules[m] = filepath.Join(dir, m+".ko")
	}
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return k
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	deb, err := downloadKernel(dir, version)
	if err != nil {
		t.Fatal(err)
	}
	unpack := t.TempDir()
	tar := fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar -x -C %q --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/hid/hid.ko*' './lib/modules/*/kernel/drivers/hid/uhid.ko*' './lib/modules/*/kernel/drivers/hid/hid-generic.ko*'", deb, unpack)
	if out, err := exec.Command("sh", "-c", tar).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", deb, err, out)
	}
	for _, m := range hidModules {
		src := filepath.Join(unpack, "lib/modules", version, "kernel/drivers/hid", m+".ko")
		if _, err := os.Stat(src); err != nil {
			// Debian 13 compresses modules; busybox insmod reads .ko.xz too,
			// but the guest script names .ko, so decompress here.
			if out, err := exec.Command("xz", "-d", src+".xz").CombinedOutput(); err != nil {
				t.Fatalf("module %s: %v\n%s", m, err, out)
			}
		}
		if err := os.Rename(src, k.modules[m]); err != nil {
			t.Fatal(err)
		}
	}
	if err := extractVmlinux(filepath.Join(unpack, "boot", "vmlinuz-"+version), k.vmlinux); err != nil {
		t.Fatal(err)
	}
	os.Remove(deb)
	if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// kernelVersion asks apt which kernel linux-image-amd64 currently depends on.
func kernelVersion() (string, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil || !bytes.Contains(out, []byte("Depends: linux-image-")) {
		// No package lists yet (a fresh machine): fetch them once.
		if uout, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("apt-get update: %v\n%s", uerr, uout)
		}
		if out, err = exec.Command("apt-cache", "depends", "linux-image-amd64").Output(); err != nil {
			return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
		}
	}
	m := regexp.MustCompile(`Depends: linux-image-([0-9][^\s]*-amd64)`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no kernel dependency in apt-cache output:\n%s", out)
	}
	return string(m[1]), nil
}

func downloadKernel(dir, version string) (string, error) {
	cmd := exec.Command("apt-get", "download", "-q", "linux-image-"+version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download linux-image-%s: %v\n%s", version, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "linux-image-"+version+"_*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("apt-get download left no .deb in %s", dir)
	}
	return debs[0], nil
}

// extractVmlinux decompresses the xz payload of a bzImage (what the kernel's
// scripts/extract-vmlinux does): booting the ELF directly saves ~4 s of
// in-guest decompression under TCG.
func extractVmlinux(bzImage, out string) error {
	b, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	off := bytes.Index(b, []byte("\xfd7zXZ\x00"))
	if off < 0 {
		return fmt.Errorf("%s: no xz payload (not a Debian amd64 bzImage?)", bzImage)
	}
	cmd := exec.Command("xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(b[off:])
	elf, err := cmd.Output()
	if err != nil && !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		return fmt.Errorf("xz -dc %s: %w", bzImage, err)
	}
	if !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		return fmt.Errorf("%s: payload is not an ELF vmlinux", bzImage)
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, elf, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
