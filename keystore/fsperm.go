package keystore

import (
	"fmt"
	"io/fs"
	"os"
)

// ensurePrivateDir creates dir (and missing parents) with mode 0700 and then
// refuses it unless it is a directory owned by the effective user with no
// group or world permission bits. An existing directory is never chmod'ed: a
// loose mode is an operator error worth surfacing, not silently repairing.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keystore: create directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("keystore: %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("keystore: directory %s has mode %#o, want 0700 (no group/world access)", dir, perm)
	}
	if err := checkOwner(fi); err != nil {
		return fmt.Errorf("keystore: directory %s: %w", dir, err)
	}
	return nil
}

// checkPrivateFile refuses anything but a regular file owned by the effective
// user whose mode is 0600 or stricter.
func checkPrivateFile(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("keystore: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&^0o600 != 0 {
		return fmt.Errorf("keystore: %s has mode %#o, want 0600 or stricter", path, perm)
	}
	if err := checkOwner(fi); err != nil {
		return fmt.Errorf("keystore: %s: %w", path, err)
	}
	return nil
}
