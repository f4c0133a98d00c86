package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/godbus/dbus/v5"

	dbusapi "github.com/authd/authd/ipc/dbus"
)

// doctor prints one line per check: "ok", "warn", "FAIL" or "info", and
// what to do. It exits 1 when a check failed.
func (c *cli) doctor() int {
	failed := false
	report := func(level, what, format string, args ...any) {
		if level == "FAIL" {
			failed = true
		}
		fmt.Fprintf(c.stdout, "%-4s  %-16s %s\n", level, what, fmt.Sprintf(format, args...))
	}

	// The bus and authd.
	addr := c.bus
	if addr == "" {
		addr = os.Getenv("DBUS_SESSION_BUS_ADDRESS")
	}
	var status map[string]string // authd's status, when it answers
	if err := c.connect(); err != nil {
		report("FAIL", "session bus", "%v: run inside your desktop session, set DBUS_SESSION_BUS_ADDRESS or pass --bus", err)
	} else {
		defer c.conn.Close()
		if addr == "" {
			addr = "(default: $XDG_RUNTIME_DIR/bus)"
		}
		report("ok", "session bus", "%s", addr)
		c.doctorBusSocket(addr, report)
		c.doctorAuthd(report)
		status = c.uhidStatus()
	}

	// Local checks that need no daemon.
	c.doctorPinentry(report)
	c.doctorSocket(report)
	c.doctorInstall(report)
	c.doctorBrowser(report)
	c.doctorUHID(report, status, defaultUHIDEnv)

	if failed {
		fmt.Fprintln(c.stdout, "\nSome checks failed; see the lines marked FAIL.")
		return exitFail
	}
	return exitOK
}

type reporter func(level, what, format string, args ...any)

func (c *cli) doctorAuthd(report reporter) {
	var owned bool
	if err := c.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, dbusapi.BusName).Store(&owned); err != nil {
		report("FAIL", "authd", "cannot ask the bus about %s: %v", dbusapi.BusName, err)
		return
	}
	if !owned {
		var names []string
		c.conn.BusObject().Call("org.freedesktop.DBus.ListActivatableNames", 0).Store(&names)
		activatable := false
		for _, n := range names {
			activatable = activatable || n == dbusapi.BusName
		}
		if !activatable {
			report("FAIL", "authd", "not running and not D-Bus activatable: run `authctl install --user` (then `systemctl --user daemon-reload`), or start authd")
			return
		}
		report("info", "authd", "not running; the bus will start it on demand (asking it now)")
	}
	var st map[string]dbus.Variant
	if err := c.call("GetStatus").Store(&st); err != nil {
		name, msg, _ := dbusError(err)
		report("FAIL", "authd", "GetStatus failed: %s %s (%s)", name, msg, advice[name])
		return
	}
	report("ok", "authd", "answers on %s", dbusapi.BusName)

	lines := map[string]string{}
	flatten("", st, lines)
	explained := map[string]bool{}
	get := func(k string) (string, bool) { v, ok := lines[k]; explained[k] = true; return v, ok }
	if tpm, ok := get("tpm"); ok {
		if tpm == "" || tpm == "none" {
			report("warn", "TPM", "not used: passkey keys are software keys sealed by a key file (%s)", orDefault(lines["warning"], "authd --tpm auto uses /dev/tpmrm0 when present; add yourself to the tss group if it exists"))
		} else {
			report("ok", "TPM", "%s: ES256 keys live in the TPM", tpm)
		}
	}
	if w, ok := get("warning"); ok && w != "" {
		report("warn", "authd warning", "%s", w)
	}
	for _, k := range []string{"data_key", "pin_in_tpm"} {
		if v, ok := get(k); ok {
			report("info", k, "%s", v)
		}
	}
	if v, ok := get("fingerprint"); ok {
		if v == "" || v == "none" {
			report("info", "fingerprint", "no fingerprint reader in use (fprintd with a device and enrolled fingers enables it)")
		} else {
			report("ok", "fingerprint", "%s", v)
		}
	}
	if v, ok := get("enrolled_fingers"); ok {
		if v == "" {
			report("warn", "fingers", "no enrolled fingers: enroll one (fprintd-enroll) to verify by fingerprint")
		} else {
			report("ok", "fingers", "%s", v)
		}
	}
	for _, k := range []string{"notifications", "presence"} {
		if v, ok := get(k); ok {
			level := "ok"
			if v == "" || v == "no" || v == "none" || v == "deny" {
				level = "warn"
			}
			report(level, k, "%s", v)
		}
	}
	for _, k := range sortedKeys(lines) {
		if !explained[k] {
			report("info", k, "%s", lines[k])
		}
	}

	var caps map[string]dbus.Variant
	if err := c.call("GetCapabilities").Store(&caps); err != nil {
		name, msg, _ := dbusError(err)
		report("FAIL", "capabilities", "GetCapabilities failed: %s %s", name, msg)
		return
	}
	if uv, _ := caps["userVerifyingPlatformAuthenticator"].Value().(bool); uv {
		report("ok", "user verif.", "available (sites may offer passkey sign-in)")
	} else {
		report("warn", "user verif.", "not available: set a PIN (`authctl pin set`) or enroll a fingerprint")
	}
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// doctorBusSocket checks a unix:path= bus socket's owner and mode.
func (c *cli) doctorBusSocket(addr string, report reporter) {
	for _, part := range strings.Split(addr, ";") {
		_, rest, ok := strings.Cut(part, "unix:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if p, ok := strings.CutPrefix(kv, "path="); ok {
				c.checkOwner(report, "bus socket", p, 0)
			}
		}
	}
}

// checkOwner reports whether path is owned by us and has no bits of
// forbidden in its mode (0 = only report).
func (c *cli) checkOwner(report reporter, what, path string, forbidden fs.FileMode) bool {
	fi, err := os.Lstat(path)
	if err != nil {
		report("info", what, "%s: %v", path, err)
		return false
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && st.Uid != uint32(os.Getuid()) {
		report("FAIL", what, "%s is owned by uid %d, not you (uid %d)", path, st.Uid, os.Getuid())
		return false
	}
	if fi.Mode().Perm()&forbidden != 0 {
		report("FAIL", what, "%s has mode %04o: others can reach it; authd recreates it as %04o (restart authd)", path, fi.Mode().Perm(), fi.Mode().Perm()&^forbidden)
		return false
	}
	report("ok", what, "%s (mode %04o, yours)", path, fi.Mode().Perm())
	return true
}

func (c *cli) doctorPinentry(report reporter) {
	var found []string
	for _, p := range []string{"pinentry", "pinentry-gnome3", "pinentry-qt", "pinentry-gtk2", "pinentry-curses", "pinentry-tty"} {
		if path, err := c.lookPath(p); err == nil {
			found = append(found, path)
		}
	}
	switch {
	case len(found) == 0:
		report("warn", "pinentry", "not on PATH: authd cannot prompt for its PIN or confirm with pinentry (Debian: apt install pinentry-gnome3 or pinentry-curses)")
	case found[0] != "" && filepath.Base(found[0]) != "pinentry":
		report("warn", "pinentry", "no `pinentry` on PATH (found %s): start authd with --pinentry PATH", strings.Join(found, ", "))
	default:
		report("ok", "pinentry", "%s", strings.Join(found, ", "))
	}
}

// doctorSocket checks the CTAPHID socket and its directory.
func (c *cli) doctorSocket(report reporter) {
	rt := os.Getenv("XDG_RUNTIME_DIR")
	if !filepath.IsAbs(rt) {
		rt = fmt.Sprintf("/run/user/%d", os.Getuid())
	}
	dir := filepath.Join(rt, "authd")
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		report("info", "CTAPHID socket", "%s does not exist (authd not started yet, or it uses another --ctaphid-socket)", dir)
		return
	}
	if !c.checkOwner(report, "runtime dir", dir, 0o077) {
		return
	}
	sock := filepath.Join(dir, "ctaphid.sock")
	if _, err := os.Lstat(sock); errors.Is(err, fs.ErrNotExist) {
		report("info", "CTAPHID socket", "%s does not exist (authd not running?)", sock)
		return
	}
	c.checkOwner(report, "CTAPHID socket", sock, 0o077)
}

// doctorInstall checks the user unit and activation file.
func (c *cli) doctorInstall(report reporter) {
	unit, svc, err := installPaths()
	if err != nil {
		report("info", "install", "%v", err)
		return
	}
	for _, f := range []struct{ what, path, key string }{
		{"systemd unit", unit, "ExecStart="},
		{"D-Bus activation", svc, "Exec="},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			report("info", f.what, "%s not installed (run `authctl install --user` so authd starts on demand)", f.path)
			continue
		}
		exe := ""
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, f.key); ok {
				exe, _, _ = strings.Cut(v, " ")
			}
		}
		if fi, err := os.Stat(exe); err != nil || fi.Mode()&0o111 == 0 {
			report("FAIL", f.what, "%s starts %q, which is not an executable: run `authctl install --user --authd PATH` again", f.path, exe)
			continue
		}
		report("ok", f.what, "%s → %s", f.path, exe)
	}
}
