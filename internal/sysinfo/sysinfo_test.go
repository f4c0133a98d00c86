package sysinfo

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestBootIDFromKernel(t *testing.T) {
	if _, err := os.Stat(bootIDPath); err != nil {
		t.Skipf("no boot id on this system: %v", err)
	}
	id, err := BootID()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("BootID = %q, want a UUID", id)
	}
	again, err := BootID()
	if err != nil || again != id {
		t.Errorf("BootID changed within a boot: %q then %q (%v)", id, again, err)
	}
}

func TestBootIDFile(t *testing.T) {
	dir := t.TempDir()
	old := bootIDPath
	t.Cleanup(func() { bootIDPath = old })

	bootIDPath = filepath.Join(dir, "boot_id")
	os.WriteFile(bootIDPath, []byte("  0123-abcd\n"), 0o644)
	if id, err := BootID(); err != nil || id != "0123-abcd" {
		t.Errorf("BootID = %q, %v; want trimmed contents", id, err)
	}

	os.WriteFile(bootIDPath, []byte("\n"), 0o644)
	if _, err := BootID(); err == nil {
		t.Error("BootID accepted an empty file")
	}

	bootIDPath = filepath.Join(dir, "absent")
	if _, err := BootID(); err == nil || !strings.HasPrefix(err.Error(), "sysinfo: ") {
		t.Errorf("BootID on a missing file = %v", err)
	}
}

func TestDefaultStateDir(t *testing.T) {
	tests := []struct {
		xdg, home, want string
		ok              bool
	}{
		{"/xdg/data", "/home/u", "/xdg/data/authd", true},
		{"", "/home/u", "/home/u/.local/share/authd", true},
		{"relative/data", "/home/u", "/home/u/.local/share/authd", true}, // ignored per XDG
		{"", "", "", false},
		{"", "relative", "", false},
	}
	for _, tt := range tests {
		t.Setenv("XDG_DATA_HOME", tt.xdg)
		t.Setenv("HOME", tt.home)
		got, err := DefaultStateDir()
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("XDG_DATA_HOME=%q HOME=%q: DefaultStateDir = %q, %v; want %q", tt.xdg, tt.home, got, err, tt.want)
		}
	}
}

// runtimeFixture unsets XDG_RUNTIME_DIR and points /run/user and the temp
// dir at fresh directories.
func runtimeFixture(t *testing.T) (runUser, tmp string) {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", "")
	runUser, tmp = t.TempDir(), t.TempDir()
	t.Setenv("TMPDIR", tmp)
	old := runUserBase
	runUserBase = runUser
	t.Cleanup(func() { runUserBase = old })
	return runUser, tmp
}

var uidStr = strconv.Itoa(os.Geteuid())

func TestDefaultRuntimeDirXDG(t *testing.T) {
	runtimeFixture(t)
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	if got, err := DefaultRuntimeDir(); err != nil || got != "/run/user/4242/authd" {
		t.Errorf("DefaultRuntimeDir = %q, %v", got, err)
	}
}

func TestDefaultRuntimeDirRunUser(t *testing.T) {
	runUser, tmp := runtimeFixture(t)
	userDir := filepath.Join(runUser, uidStr)
	if err := os.Mkdir(userDir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(userDir, 0o700) // whatever the umask
	if got, err := DefaultRuntimeDir(); err != nil || got != filepath.Join(userDir, "authd") {
		t.Errorf("DefaultRuntimeDir = %q, %v; want %s/authd", got, err, userDir)
	}

	// A /run/user directory open to others is not used.
	os.Chmod(userDir, 0o755)
	want := filepath.Join(tmp, "authd-"+uidStr)
	if got, err := DefaultRuntimeDir(); err != nil || got != want {
		t.Errorf("DefaultRuntimeDir = %q, %v; want %s", got, err, want)
	}
}

func TestDefaultRuntimeDirTempFallback(t *testing.T) {
	_, tmp := runtimeFixture(t)
	want := filepath.Join(tmp, "authd-"+uidStr)
	for i := range 2 { // creates, then accepts its own directory
		got, err := DefaultRuntimeDir()
		if err != nil || got != want {
			t.Fatalf("call %d: DefaultRuntimeDir = %q, %v; want %s", i, got, err, want)
		}
		fi, err := os.Lstat(got)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a 0700 directory", got, fi.Mode())
		}
	}
}

func TestDefaultRuntimeDirRefusesSquatters(t *testing.T) {
	t.Run("symlink", func(t *testing.T) {
		_, tmp := runtimeFixture(t)
		target := t.TempDir() // ours and 0700: still refused, being a symlink
		os.Chmod(target, 0o700)
		if err := os.Symlink(target, filepath.Join(tmp, "authd-"+uidStr)); err != nil {
			t.Fatal(err)
		}
		if got, err := DefaultRuntimeDir(); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("DefaultRuntimeDir = %q, %v; want a symlink refusal", got, err)
		}
	})
	t.Run("open mode", func(t *testing.T) {
		_, tmp := runtimeFixture(t)
		dir := filepath.Join(tmp, "authd-"+uidStr)
		os.Mkdir(dir, 0o777)
		os.Chmod(dir, 0o777)
		if got, err := DefaultRuntimeDir(); err == nil || !strings.Contains(err.Error(), "mode") {
			t.Errorf("DefaultRuntimeDir = %q, %v; want a mode refusal", got, err)
		}
	})
	t.Run("file", func(t *testing.T) {
		_, tmp := runtimeFixture(t)
		os.WriteFile(filepath.Join(tmp, "authd-"+uidStr), nil, 0o600)
		if got, err := DefaultRuntimeDir(); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("DefaultRuntimeDir = %q, %v; want a refusal", got, err)
		}
	})
	t.Run("other owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a directory away")
		}
		_, tmp := runtimeFixture(t)
		dir := filepath.Join(tmp, "authd-"+uidStr)
		os.Mkdir(dir, 0o700)
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Skip(err)
		}
		if got, err := DefaultRuntimeDir(); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("DefaultRuntimeDir = %q, %v; want an owner refusal", got, err)
		}
	})
}

func TestEnsurePrivateDir(t *testing.T) {
	base := t.TempDir()

	dir := filepath.Join(base, "a", "b", "authd")
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(base, "a")} {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v, %v; want a private directory", p, fi.Mode(), err)
		}
	}
	if err := EnsurePrivateDir(dir); err != nil {
		t.Errorf("existing private dir: %v", err)
	}

	for _, mode := range []os.FileMode{0o750, 0o705, 0o777} {
		open := filepath.Join(base, "open"+mode.String())
		os.Mkdir(open, mode)
		os.Chmod(open, mode)
		if err := EnsurePrivateDir(open); err == nil || !strings.Contains(err.Error(), "chmod 700") {
			t.Errorf("mode %v: EnsurePrivateDir = %v, want a refusal", mode, err)
		}
	}

	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if err := EnsurePrivateDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file: EnsurePrivateDir = %v, want not a directory", err)
	}
	if err := EnsurePrivateDir(filepath.Join(file, "sub")); err == nil || !strings.HasPrefix(err.Error(), "sysinfo: ") {
		t.Errorf("under a file: EnsurePrivateDir = %v", err)
	}

	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		if err := os.Chown(other, 65534, 65534); err == nil {
			if err := EnsurePrivateDir(other); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
				t.Errorf("other owner: EnsurePrivateDir = %v, want a refusal", err)
			}
		}
	}
}
