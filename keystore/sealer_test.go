package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSoftwareSealerRoundTrip(t *testing.T) {
	dir := filepath.Join(privateDir(t), "state")
	path := filepath.Join(dir, "master.key")
	s, err := OpenSoftwareSealer(path)
	if err != nil {
		t.Fatal(err)
	}
	assertMode(t, dir, 0o700)
	assertMode(t, path, 0o600)
	if fi, _ := os.Stat(path); fi.Size() != int64(masterKeyFileLen) {
		t.Fatalf("key file size %d, want %d", fi.Size(), masterKeyFileLen)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}

	msg := []byte("data encryption key material....")
	blob, err := s.Seal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if blob[0] != sealVersion || len(blob) != sealMinLen+len(msg) {
		t.Fatalf("blob layout: version %d len %d", blob[0], len(blob))
	}
	if bytes.Contains(blob, msg) {
		t.Fatal("plaintext visible in sealed blob")
	}
	blob2, _ := s.Seal(msg)
	if bytes.Equal(blob, blob2) {
		t.Fatal("two seals of the same plaintext are identical (nonce reuse?)")
	}

	// Reopening loads the same key.
	s2, err := OpenSoftwareSealer(path)
	if err != nil {
		t.Fatal(err)
	}
	if s2.key != s.key {
		t.Fatal("reopened sealer has a different key")
	}
	got, err := s2.Unseal(blob)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Unseal = %q, %v", got, err)
	}

	// Failures wrap ErrSealed.
	other, err := OpenSoftwareSealer(filepath.Join(privateDir(t), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	badVersion := bytes.Clone(blob)
	badVersion[0] = 9
	for name, tc := range map[string]struct {
		s    *SoftwareSealer
		blob []byte
	}{
		"other key": {other, blob},
		"tampered":  {s, tampered},
		"version":   {s, badVersion},
		"short":     {s, blob[:sealMinLen-1]},
		"empty":     {s, nil},
	} {
		if _, err := tc.s.Unseal(tc.blob); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: Unseal error %v, want ErrSealed", name, err)
		}
	}
}

func TestSoftwareSealerRefuses(t *testing.T) {
	good := make([]byte, masterKeyFileLen)
	copy(good, masterKeyMagic)
	good[len(masterKeyMagic)] = masterKeyVersion

	for name, tc := range map[string]struct {
		content []byte
		mode    os.FileMode
		corrupt bool
	}{
		"short":       {good[:masterKeyFileLen-1], 0o600, true},
		"long":        {append(bytes.Clone(good), 0), 0o600, true},
		"empty":       {nil, 0o600, true},
		"bad magic":   {append([]byte("AUTHD-MK"), good[8:]...), 0o600, true},
		"bad version": {append(append([]byte(masterKeyMagic), 2), good[9:]...), 0o600, true},
		"mode 0640":   {good, 0o640, false},
		"mode 0604":   {good, 0o604, false},
		"mode 0700":   {good, 0o700, false},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(privateDir(t), "master.key")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := OpenSoftwareSealer(path)
			if err == nil {
				t.Fatal("OpenSoftwareSealer succeeded")
			}
			if errors.Is(err, ErrCorrupt) != tc.corrupt {
				t.Fatalf("error %v: errors.Is(ErrCorrupt) = %v, want %v", err, !tc.corrupt, tc.corrupt)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tc.content) {
				t.Fatal("key file was modified")
			}
		})
	}

	t.Run("0400 accepted", func(t *testing.T) {
		path := filepath.Join(privateDir(t), "master.key")
		if err := os.WriteFile(path, good, 0o400); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSoftwareSealer(path); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("loose parent", func(t *testing.T) {
		dir := privateDir(t)
		if err := os.Chmod(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSoftwareSealer(filepath.Join(dir, "master.key")); err == nil {
			t.Fatal("accepted a parent directory with mode 0750")
		}
		if _, err := os.Stat(filepath.Join(dir, "master.key")); !os.IsNotExist(err) {
			t.Fatal("key file created in a loose directory")
		}
	})

	t.Run("symlink", func(t *testing.T) {
		dir := privateDir(t)
		target := filepath.Join(dir, "real.key")
		if err := os.WriteFile(target, good, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "master.key")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSoftwareSealer(link); err == nil {
			t.Fatal("followed a symlinked key file")
		}
	})
}

// privateDir returns a new empty directory with mode 0700 (t.TempDir's
// directories follow the umask).
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s mode %#o, want %#o", path, got, want)
	}
}
