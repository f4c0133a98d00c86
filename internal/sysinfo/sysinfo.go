// Package sysinfo answers the few questions about the Linux host that the
// daemon needs: which kernel boot this is, and where its state and runtime
// files live, created safely.
package sysinfo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Paths that tests replace.
var (
	bootIDPath  = "/proc/sys/kernel/random/boot_id"
	runUserBase = "/run/user"
)

// BootID returns the kernel's random boot ID, which changes at every boot.
// CTAP 2.1 blocks PIN entry after 3 consecutive wrong PINs "until power
// cycle"; keying that counter to the boot ID means restarting the daemon does
// not clear it, but rebooting does.
func BootID() (string, error) {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return "", fmt.Errorf("sysinfo: boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("sysinfo: boot id: %s is empty", bootIDPath)
	}
	return id, nil
}

// DefaultStateDir returns where authd keeps its persistent state:
// $XDG_DATA_HOME/authd, else $HOME/.local/share/authd. As the XDG Base
// Directory specification requires, a relative $XDG_DATA_HOME is ignored.
// The directory is not created; see EnsurePrivateDir.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "authd"), nil
	}
	home := os.Getenv("HOME")
	if !filepath.IsAbs(home) {
		return "", errors.New("sysinfo: state dir: neither $XDG_DATA_HOME nor $HOME is set to an absolute path")
	}
	return filepath.Join(home, ".local", "share", "authd"), nil
}

// DefaultRuntimeDir returns where authd puts its socket and other files that
// must not outlive the session: $XDG_RUNTIME_DIR/authd (an absolute value
// only, per the XDG specification). Without it, it uses /run/user/$UID/authd
// if /run/user/$UID is a directory owned by us with mode 0700, as systemd
// creates it. Failing that, it falls back to os.TempDir()/authd-$UID, which
// it creates (0700) and checks now, because anyone can create that name
// first in a shared /tmp: it refuses a symlink, a directory owned by someone
// else or one open to group or others.
//
// Only in the last case is the directory created; see EnsurePrivateDir.
func DefaultRuntimeDir() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "authd"), nil
	}
	// authd is not setuid: the euid owns what it creates and names its
	// /run/user directory.
	uid := os.Geteuid()
	userDir := filepath.Join(runUserBase, strconv.Itoa(uid))
	if fi, err := os.Lstat(userDir); err == nil && fi.IsDir() &&
		fi.Mode().Perm() == 0o700 && ownerOf(fi) == uid {
		return filepath.Join(userDir, "authd"), nil
	}

	dir := filepath.Join(os.TempDir(), "authd-"+strconv.Itoa(uid))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("sysinfo: runtime dir: %w", err)
	}
	fi, err := os.Lstat(dir) // not Stat: a squatter's symlink must not be followed
	if err != nil {
		return "", fmt.Errorf("sysinfo: runtime dir: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("sysinfo: runtime dir: %s is a symlink; refusing it (remove it, or set XDG_RUNTIME_DIR)", dir)
	}
	if err := checkPrivate(dir, fi, uid); err != nil {
		return "", fmt.Errorf("sysinfo: runtime dir: %w (remove it, or set XDG_RUNTIME_DIR)", err)
	}
	return dir, nil
}

// EnsurePrivateDir creates path and any missing parents with mode 0700 (as
// mkdir -p), then checks that path is a directory owned by us and closed to
// group and others. An existing directory that fails the check is refused,
// not repaired: someone else made it so, and the user should know.
func EnsurePrivateDir(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("sysinfo: %s: %s is not a directory", path, pe.Path)
		}
		return fmt.Errorf("sysinfo: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("sysinfo: %w", err)
	}
	if err := checkPrivate(path, fi, os.Geteuid()); err != nil {
		return fmt.Errorf("sysinfo: %w", err)
	}
	return nil
}

// checkPrivate reports why fi, describing path, is not a private directory
// of uid.
func checkPrivate(path string, fi fs.FileInfo, uid int) error {
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	if owner := ownerOf(fi); owner != uid {
		return fmt.Errorf("%s is owned by uid %d, not %d", path, owner, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %#o, open to group or others (chmod 700 it)", path, perm)
	}
	return nil
}

// ownerOf returns the uid owning fi, or -1 if it cannot tell.
func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
