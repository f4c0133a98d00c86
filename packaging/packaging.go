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
)

// File names as installed.
const (
	UnitName        = "authd.service"
	DBusServiceName = "org.authd.Authenticator1.service"
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
