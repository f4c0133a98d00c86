package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/authd/authd/packaging"
)

// installPaths returns where the user unit and the D-Bus activation file go:
// $XDG_CONFIG_HOME/systemd/user (systemd's user unit path) and
// $XDG_DATA_HOME/dbus-1/services (the session bus's per-user service dir).
func installPaths() (unit, dbusService string, err error) {
	home, _ := os.UserHomeDir()
	config := os.Getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(config) {
		if home == "" {
			return "", "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set")
		}
		config = filepath.Join(home, ".config")
	}
	data := os.Getenv("XDG_DATA_HOME")
	if !filepath.IsAbs(data) {
		if home == "" {
			return "", "", errors.New("neither $XDG_DATA_HOME nor $HOME is set")
		}
		data = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(config, "systemd", "user", packaging.UnitName),
		filepath.Join(data, "dbus-1", "services", packaging.DBusServiceName), nil
}

// authdPath finds the authd binary: --authd, else authd on PATH, else next
// to authctl.
func (c *cli) authdPath() (string, error) {
	return c.findProgram(c.authd, "authd", "--authd")
}

// findProgram resolves an executable: flagValue if set, else name on PATH,
// else name next to authctl; the result is absolute with symlinks resolved,
// because it is written into service files and manifests.
func (c *cli) findProgram(flagValue, name, flagName string) (string, error) {
	cand := flagValue
	if cand == "" {
		if p, err := c.lookPath(name); err == nil {
			cand = p
		} else if self, err := os.Executable(); err == nil {
			cand = filepath.Join(filepath.Dir(self), name)
		}
	}
	abs, err := filepath.Abs(cand)
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("no %s executable at %s: build it (go build -o ~/.local/bin/%s ./cmd/%s) or pass %s PATH", name, abs, name, name, flagName)
	}
	return abs, nil
}

func (c *cli) install() int {
	authd, err := c.authdPath()
	if err != nil {
		return c.fail("install", err)
	}
	unitPath, svcPath, err := installPaths()
	if err != nil {
		return c.fail("install", err)
	}
	for _, f := range []struct{ tmpl, path string }{
		{packaging.Unit, unitPath},
		{packaging.DBusService, svcPath},
	} {
		text, err := packaging.Render(f.tmpl, authd)
		if err != nil {
			return c.fail("install", err)
		}
		if err := writeFile(f.path, []byte(text)); err != nil {
			return c.fail("install", err)
		}
		fmt.Fprintf(c.stdout, "wrote %s\n", f.path)
	}
	fmt.Fprintf(c.stdout, `authd (%s) now starts on demand when a client calls org.authd.Authenticator1.
Next: systemctl --user daemon-reload
      (optional, start it at login: systemctl --user enable --now authd)
Check with: authctl doctor
`, authd)
	return exitOK
}

// writeFile replaces path atomically (0644, parents 0755).
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".authctl-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
