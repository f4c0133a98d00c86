package uv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/authd/authd/uv/notify"
	"golang.org/x/sys/unix"
)

// PresenceModes describes the values ParsePresence accepts, for flag help.
const PresenceModes = "auto, notify, pinentry[:PATH], terminal, command:PATH, allow or deny"

// ParsePresence builds the Presence selected by the --presence flag:
//
//	auto          AutoPresence, deciding at every prompt: notify when a
//	              notification server with actions answers on the session
//	              bus, else pinentry when a display is present and pinentry
//	              is installed, else terminal when stdin is a terminal, else
//	              wait for a notification server until the prompt times out
//	notify        NotifyPresence: a desktop notification with Allow/Deny
//	pinentry[:P]  PinentryPresence: pinentry's CONFIRM dialog (P: program)
//	terminal      TerminalPresence reading stdin; prompts go to stderr, or to
//	              /dev/tty when stderr is redirected away from the terminal
//	command:PATH  CommandPresence running PATH, which must be an absolute
//	              path to an executable file (checked now, not at first use)
//	allow         AllowPresence: approve everything, for tests only
//	deny          DenyPresence: decline everything
func ParsePresence(spec string, stdin *os.File, logger *slog.Logger) (Presence, error) {
	if logger == nil {
		logger = slog.Default()
	}
	switch {
	case spec == "allow":
		logger.Warn("presence is auto-approved (--presence allow): any local process can use every passkey; for tests only")
		return AllowPresence{Logger: logger}, nil
	case spec == "deny":
		return DenyPresence{Reason: "--presence deny", Logger: logger}, nil
	case spec == "terminal":
		if stdin == nil {
			return nil, fmt.Errorf("uv: --presence terminal: no stdin")
		}
		return &TerminalPresence{In: stdin, Out: terminalOut(), Logger: logger}, nil
	case spec == "notify":
		n, err := sessionNotifier(context.Background())
		if err != nil {
			return nil, fmt.Errorf("uv: --presence notify: %w", err)
		}
		return NotifyPresence{Notifier: n, Logger: logger}, nil
	case spec == "pinentry" || strings.HasPrefix(spec, "pinentry:"):
		return NewPinentryPresence(strings.TrimPrefix(strings.TrimPrefix(spec, "pinentry"), ":"), logger)
	case spec == "auto":
		return newAutoPresence(stdin, logger), nil
	case strings.HasPrefix(spec, "command:"):
		path := strings.TrimPrefix(spec, "command:")
		if err := checkHelper(path); err != nil {
			return nil, err
		}
		return CommandPresence{Path: path, Logger: logger}, nil
	default:
		return nil, fmt.Errorf("uv: unknown presence mode %q (want %s)", spec, PresenceModes)
	}
}

// checkHelper fails early on a helper path that could never run, rather than
// declining every request later. The path must be absolute so that the
// daemon's working directory and $PATH cannot change which program decides.
func checkHelper(path string) error {
	if path == "" || !filepath.IsAbs(path) {
		return fmt.Errorf("uv: --presence command:PATH: %q is not an absolute path", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("uv: --presence command: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("uv: --presence command: %s is not a regular file", path)
	}
	// access(2) answers for the daemon's own credentials and mount options
	// (noexec); the mode check is the cheap, obvious case.
	if fi.Mode().Perm()&0o111 == 0 || unix.Access(path, unix.X_OK) != nil {
		return fmt.Errorf("uv: --presence command: %s is not executable", path)
	}
	return nil
}

// terminalOut picks where terminal prompts are written: stderr, unless it has
// been redirected (to a log file, say) and the controlling terminal is
// available instead.
func terminalOut() *os.File {
	if isTerminal(os.Stderr) {
		return os.Stderr
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		return tty // lives as long as the daemon
	}
	return os.Stderr
}

// sessionNotifier connects to the session bus's notification server. The
// connection lives as long as the daemon.
func sessionNotifier(ctx context.Context) (*notify.Notifier, error) {
	conn, err := dialSession(ctx)
	if err != nil {
		return nil, err
	}
	n, err := notify.New(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return n, nil
}

// WithTimeout sets how long a prompt stays up for the presence modes that
// show one themselves (notify, pinentry) and for auto, whose wait for a
// session counts against it too; others follow their context's
// deadline, which the engine sets to the same timeout.
func WithTimeout(p Presence, d time.Duration) Presence {
	switch v := p.(type) {
	case NotifyPresence:
		v.Timeout = d
		return v
	case PinentryPresence:
		v.Timeout = d
		return v
	case *AutoPresence:
		v.Timeout = d
		return v
	}
	return p
}

// SessionBusAddress is the session bus address from DBUS_SESSION_BUS_ADDRESS
// or $XDG_RUNTIME_DIR/bus (/run/user/UID/bus), and "" when there is none.
// Unlike godbus's default it never autolaunches a bus: a daemon started
// outside a desktop session must not spawn one.
func SessionBusAddress() string {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		return a
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = fmt.Sprintf("/run/user/%d", os.Getuid())
	}
	if fi, err := os.Stat(filepath.Join(dir, "bus")); err == nil && fi.Mode()&os.ModeSocket != 0 {
		return "unix:path=" + filepath.Join(dir, "bus")
	}
	return ""
}
