package nmhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SessionBusAddress finds the session bus the way a host started by a
// browser must: $DBUS_SESSION_BUS_ADDRESS unless it is unset, empty,
// "disabled:" (Chromium sets that in its own environment, and the host
// inherits it) or an autolaunch: address; else $XDG_RUNTIME_DIR/bus; else
// /run/user/UID/bus. It never autolaunches a bus. getenv and uid are
// parameters for tests.
func SessionBusAddress(getenv func(string) string, uid int) (string, error) {
	env := strings.TrimSpace(getenv("DBUS_SESSION_BUS_ADDRESS"))
	if env != "" && !strings.HasPrefix(env, "disabled:") && !strings.HasPrefix(env, "autolaunch:") {
		return env, nil
	}
	var tried []string
	if rt := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(rt) {
		p := filepath.Join(rt, "bus")
		if isSocket(p) {
			return "unix:path=" + p, nil
		}
		tried = append(tried, p)
	}
	p := fmt.Sprintf("/run/user/%d/bus", uid)
	if isSocket(p) {
		return "unix:path=" + p, nil
	}
	tried = append(tried, p)
	why := "unset"
	if env != "" {
		why = fmt.Sprintf("%q", env)
	}
	return "", errors.New("no session bus: DBUS_SESSION_BUS_ADDRESS is " + why + " and there is no socket at " + strings.Join(tried, " or "))
}

func isSocket(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}
