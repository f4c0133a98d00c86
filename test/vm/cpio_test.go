package vm_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// initramfs collects the files of a newc cpio archive (the format the kernel
// unpacks into its rootfs, Documentation/driver-api/early-userspace/
// buffer-format.rst). Writing it here keeps the test free of GNU cpio.
type initramfs struct {
	entries map[string]cpioEntry
}

type cpioEntry struct {
	mode  uint32 // file type and permission bits, as in stat(2)
	data  []byte // file contents or symlink target
	major uint32 // device numbers of character devices
	minor uint32
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
	cpioChr  = 0o020000
)

func newInitramfs() *initramfs { return &initramfs{entries: map[string]cpioEntry{}} }

// dir adds a directory and its parents.
func (r *initramfs) dir(name string) {
	name = strings.Trim(name, "/")
	for p := name; p != "." && p != ""; p = filepath.Dir(p) {
		if _, ok := r.entries[p]; !ok {
			r.entries[p] = cpioEntry{mode: cpioDir | 0o755}
		}
	}
}

// file adds a regular file (and its parent directories).
func (r *initramfs) file(name string, perm uint32, data []byte) {
	name = strings.Trim(name, "/")
	r.dir(filepath.Dir(name))
	r.entries[name] = cpioEntry{mode: cpioReg | perm, data: data}
}

// copyFile adds the host file src as name, following symlinks.
func (r *initramfs) copyFile(t testing.TB, name, src string, perm uint32) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	r.file(name, perm, b)
}

// chardev adds a character device node.
func (r *initramfs) chardev(name string, perm, major, minor uint32) {
	name = strings.Trim(name, "/")
	r.dir(filepath.Dir(name))
	r.entries[name] = cpioEntry{mode: cpioChr | perm, major: major, minor: minor}
}

// program adds a dynamically linked host program with the libraries ldd
// reports and the dynamic loader, at the same paths as on the host.
func (r *initramfs) program(t testing.TB, path string) {
	t.Helper()
	r.copyFile(t, path, path, 0o755)
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", path, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"): // the loader itself
			lib = f[0]
		default:
			continue
		}
		if _, ok := r.entries[strings.Trim(lib, "/")]; !ok {
			r.copyFile(t, lib, lib, 0o755)
		}
	}
}

// write emits the archive, gzip-compressed (fast level: the kernel
// decompresses it under TCG, where every millisecond counts less than the
// host's build time).
func (r *initramfs) write(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(r.entries))
	for n := range r.entries {
		names = append(names, n)
	}
	sort.Strings(names) // parents before children
	ino := uint32(1)
	for _, n := range names {
		e := r.entries[n]
		if err := writeCPIOEntry(zw, ino, n, e); err != nil {
			return err
		}
		ino++
	}
	if err := writeCPIOEntry(zw, 0, "TRAILER!!!", cpioEntry{}); err != nil {
		return err
	}
	return zw.Close()
}

func writeCPIOEntry(w io.Writer, ino uint32, name string, e cpioEntry) error {
	nlink := uint32(1)
	if e.mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name)+1, 0)
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(&b)
	b.Write(e.data)
	pad4(&b)
	_, err := w.Write(b.Bytes())
	return err
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// TestInitramfsFormat checks the writer against busybox's cpio reader, so a
// format slip shows up here rather than as a kernel that cannot find /init.
func TestInitramfsFormat(t *testing.T) {
	bb := requireTool(t, "busybox", "busybox-static")
	r := newInitramfs()
	r.file("init", 0o755, []byte("#!/bin/sh\necho hi\n"))
	r.file("lib/modules/a.ko", 0o644, []byte("abc")) // 3 bytes: needs padding
	r.chardev("dev/console", 0o600, 5, 1)
	var buf bytes.Buffer
	if err := r.write(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bb, "cpio", "-t", "-v")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox cpio -t: %v\n%s", err, out)
	}
	listing := string(out)
	for _, want := range []string{"-rwxr-xr-x", " init", "lib/modules/a.ko", "crw-------", "dev/console", "drwxr-xr-x"} {
		if !strings.Contains(listing, want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, listing)
		}
	}
	// Extract and compare contents.
	dir := t.TempDir()
	cmd = exec.Command(bb, "cpio", "-i", "-d")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "lib/modules/a.ko")); err != nil || string(b) != "abc" {
		t.Fatalf("extracted a.ko = %q, %v", b, err)
	}
}
