// Package packaging holds the service files shipped with authd: the systemd
// user unit (authd.service) and the D-Bus session activation file
// (org.authd.Authenticator1.service), embedded so that `authctl install
// --user` writes them with the real binary path.
package packaging

import (
	_ "embed"
	"fmt"
	"path/filepath"
	"strings"
)

// Unit and DBusService are the committed templates.
var (
	//go:embed authd.service
	Unit string
	//go:embed org.authd.Authenticator1.service
	DBusService string
	// UdevRule grants /dev/uhid to the seat user (the uhid door);
	// ModulesLoad loads the uhid module at boot.
	//go:embed 70-authd-uhid.rules
	UdevRule string
	//go:embed authd-uhid.conf
	ModulesLoad string
)

// File names as installed.
const (
	UnitName        = "authd.service"
	DBusServiceName = "org.authd.Authenticator1.service"
	// System-wide paths of the uhid door's files (root installs them).
	UdevRulePath    = "/etc/udev/rules.d/70-authd-uhid.rules"
	ModulesLoadPath = "/etc/modules-load.d/authd-uhid.conf"
)

// Render returns tmpl with the program of its ExecStart= (unit) or Exec=
// (D-Bus service) line replaced by authd, an absolute path; the arguments on
// that line are kept.
func Render(tmpl, authd string) (string, error) {
	if !filepath.IsAbs(authd) {
		return "", fmt.Errorf("packaging: authd path %q is not absolute", authd)
	}
	if strings.ContainsAny(authd, " \t\n%\\\"'") {
		return "", fmt.Errorf("packaging: authd path %q contains spaces, quotes or %%; install authd somewhere else", authd)
	}
	lines := strings.Split(tmpl, "\n")
	n := 0
	for i, l := range lines {
		for _, key := range []string{"ExecStart=", "Exec="} {
			if !strings.HasPrefix(l, key) {
				continue
			}
			rest := strings.TrimPrefix(l, key)
			_, args, _ := strings.Cut(rest, " ")
			lines[i] = key + authd
			if args != "" {
				lines[i] += " " + args
			}
			n++
		}
	}
	if n != 1 {
		return "", fmt.Errorf("packaging: template has %d ExecStart=/Exec= lines, want 1", n)
	}
	return strings.Join(lines, "\n"), nil
}
