// Command authctl manages authd, the FIDO2 platform authenticator, through
// its D-Bus API (org.authd.Authenticator1 on the session bus): list, filter,
// delete and protect passkeys, set or change the PIN, reset, show status and
// capabilities, diagnose the setup, and install the user service files.
//
// Exit status: 0 success, 1 the operation failed (the message names the
// D-Bus error and what to do), 2 usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	dbusapi "github.com/authd/authd/ipc/dbus"
)

const usage = `usage: authctl [--bus ADDRESS] COMMAND [ARGS]

Commands:
  status                 show authd's status (TPM, key backends, user verification)
  info                   show the WebAuthn capabilities authd offers
  list [FILTER] [--json] list passkeys (FILTER matches RP id/name and user names)
  delete ID              delete a passkey (ID or a unique prefix, see list)
  protect ID             protect a passkey against deletion
  unprotect ID           remove that protection
  pin set|change         set or change the PIN (authd prompts for it itself)
  reset                  erase every passkey and the PIN (authd asks to confirm)
  doctor                 check the setup and explain what is missing
  install --user [--authd PATH]
                         write the systemd user unit and the D-Bus activation
                         file so authd starts on demand
  install --uhid         (root) install the udev rule that lets the user at
                         the seat open /dev/uhid, and load uhid at boot, so
                         authd appears as a FIDO security key to every program
  browser install|uninstall [--extension-id ID] [--host PATH]
                         install the browser extension's native-messaging
                         host manifests (see authctl browser --help)

Options:
  --bus ADDRESS          D-Bus address to use instead of the session bus
  --json                 machine-readable output (status, info, list)

Exit status: 0 ok, 1 the operation failed, 2 usage error.
`

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// callTimeout bounds calls that do not wait for the user.
const callTimeout = 25 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// cli is one invocation.
type cli struct {
	ctx      context.Context
	stdout   io.Writer
	stderr   io.Writer
	bus      string // --bus
	json     bool   // --json
	user     bool   // --user
	uhid     bool   // --uhid
	authd    string // --authd
	conn     *dbus.Conn
	obj      dbus.BusObject
	loc      *time.Location
	lookPath func(string) (string, error)
}

// loc is the time zone for dates in tables (tests set UTC).
var loc = time.Local

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{ctx: ctx, stdout: stdout, stderr: stderr, loc: loc, lookPath: lookPath}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case name == "--bus" || name == "--authd":
			if !hasVal {
				if i+1 >= len(args) {
					return c.usage("%s needs a value", name)
				}
				i++
				val = args[i]
			}
			if name == "--bus" {
				c.bus = val
			} else {
				c.authd = val
			}
		case a == "--json":
			c.json = true
		case a == "--user":
			c.user = true
		case a == "--uhid":
			c.uhid = true
		case a == "-h" || a == "--help" || a == "help":
			fmt.Fprint(stdout, usage)
			return exitOK
		case a == "browser" && len(pos) == 0:
			return c.browser(args[i+1:])
		case strings.HasPrefix(a, "-") && a != "-":
			return c.usage("unknown option %s", a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 {
		return c.usage("no command")
	}
	cmd, rest := pos[0], pos[1:]
	nargs := func(min, max int) bool { return len(rest) >= min && len(rest) <= max }
	switch cmd {
	case "status", "info", "reset", "doctor":
		if !nargs(0, 0) {
			return c.usage("%s takes no arguments", cmd)
		}
	case "list":
		if !nargs(0, 1) {
			return c.usage("list takes at most one FILTER")
		}
	case "delete", "protect", "unprotect":
		if !nargs(1, 1) {
			return c.usage("%s takes one passkey ID (see authctl list)", cmd)
		}
	case "pin":
		if !nargs(1, 1) || rest[0] != "set" && rest[0] != "change" {
			return c.usage("pin takes set or change")
		}
	case "install":
		if !nargs(0, 0) || c.user == c.uhid {
			return c.usage("install needs --user (the user service) or --uhid (as root: the /dev/uhid udev rule)")
		}
		if c.uhid {
			return c.installUHID(defaultUHIDEnv)
		}
		return c.install()
	default:
		return c.usage("unknown command %q", cmd)
	}
	if cmd == "doctor" {
		return c.doctor()
	}
	if err := c.connect(); err != nil {
		return c.fail("", err)
	}
	defer c.conn.Close()
	switch cmd {
	case "status":
		return c.status()
	case "info":
		return c.info()
	case "list":
		filter := ""
		if len(rest) == 1 {
			filter = rest[0]
		}
		return c.list(filter)
	case "delete":
		return c.delete(rest[0])
	case "protect", "unprotect":
		return c.protect(rest[0], cmd == "protect")
	case "pin":
		return c.pin(rest[0])
	case "reset":
		return c.reset()
	}
	return exitUsage
}

func (c *cli) usage(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "authctl: "+format+"\n\n", args...)
	fmt.Fprint(c.stderr, usage)
	return exitUsage
}

// connect opens a private connection to the bus (--bus, else the session bus).
func (c *cli) connect() error {
	var (
		conn *dbus.Conn
		err  error
	)
	if c.bus != "" {
		conn, err = dbus.Connect(c.bus)
		if err != nil {
			return &connectError{where: "the bus at " + c.bus, err: err}
		}
	} else {
		if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" && os.Getenv("XDG_RUNTIME_DIR") == "" {
			return &connectError{where: "the session bus", err: errors.New("DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR are unset")}
		}
		conn, err = dbus.ConnectSessionBus()
		if err != nil {
			return &connectError{where: "the session bus", err: err}
		}
	}
	c.conn = conn
	c.obj = conn.Object(dbusapi.BusName, dbusapi.Path)
	return nil
}

type connectError struct {
	where string
	err   error
}

func (e *connectError) Error() string {
	return fmt.Sprintf("cannot connect to %s: %v", e.where, e.err)
}

// call makes a call that does not wait for the user.
func (c *cli) call(method string, args ...any) *dbus.Call {
	ctx, cancel := context.WithTimeout(c.ctx, callTimeout)
	defer cancel()
	return c.obj.CallWithContext(ctx, dbusapi.Interface+"."+method, 0, args...)
}

// longCall makes a call that may wait for the user as long as authd's
// prompts do; an interrupt (Ctrl-C) sends Cancel() and waits for the answer.
func (c *cli) longCall(method string, args ...any) error {
	call := c.obj.Go(dbusapi.Interface+"."+method, 0, make(chan *dbus.Call, 1), args...)
	select {
	case <-call.Done:
		return call.Err
	case <-c.ctx.Done():
		fmt.Fprintln(c.stderr, "authctl: cancelling…")
		c.obj.Call(dbusapi.Interface+".Cancel", 0)
		select {
		case <-call.Done:
			if call.Err == nil {
				return nil
			}
		case <-time.After(5 * time.Second):
		}
		return dbus.Error{Name: dbusapi.ErrorPrefix + "AbortError", Body: []any{"cancelled (interrupted)"}}
	}
}

// dbusError extracts the D-Bus error name and message.
func dbusError(err error) (name, msg string, ok bool) {
	var de dbus.Error
	if errors.As(err, &de) {
		if len(de.Body) > 0 {
			msg, _ = de.Body[0].(string)
		}
		return de.Name, msg, true
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		if len(dp.Body) > 0 {
			msg, _ = dp.Body[0].(string)
		}
		return dp.Name, msg, true
	}
	return "", "", false
}

// advice tells a shell user what to do about a D-Bus error.
var advice = map[string]string{
	"org.freedesktop.DBus.Error.ServiceUnknown":    "authd is not running and cannot be started on demand: run `authctl install --user` and `systemctl --user daemon-reload`, or start authd yourself",
	"org.freedesktop.DBus.Error.NameHasNoOwner":    "authd is not running: start it, or run `authctl install --user` so the bus starts it on demand",
	"org.freedesktop.DBus.Error.AccessDenied":      "authd serves only the user it runs as: run authctl as that user",
	"org.freedesktop.DBus.Error.NoReply":           "authd did not answer in time: check its log (journalctl --user -u authd)",
	"org.freedesktop.DBus.Error.Spawn.ChildExited": "the bus could not start authd: check the Exec= path (authctl doctor) and its log",
	"org.freedesktop.DBus.Error.UnknownMethod":     "this authd does not offer that operation: update authd",
	"org.authd.Error.NotAllowedError":              "the request was refused, timed out or matched nothing: check the ID (authctl list) and answer authd's prompt",
	"org.authd.Error.InvalidStateError":            "the passkey or PIN is not in a state that allows this (see the message)",
	"org.authd.Error.SecurityError":                "refused for security reasons (see the message)",
	"org.authd.Error.NotSupportedError":            "authd cannot do this on this machine: see `authctl doctor`",
	"org.authd.Error.ConstraintError":              "a requirement was not met (for example the PIN's length)",
	"org.authd.Error.AbortError":                   "the operation was cancelled",
	"org.authd.Error.TypeError":                    "authd did not accept the argument: check the ID with `authctl list`",
	"org.authd.Error.UnknownError":                 "authd failed internally: see its log (journalctl --user -u authd)",
}

// fail prints err for what (an operation description, may be "") and
// returns exit status 1.
func (c *cli) fail(what string, err error) int {
	prefix := "authctl: "
	if what != "" {
		prefix += what + ": "
	}
	var ce *connectError
	switch name, msg, ok := dbusError(err); {
	case errors.As(err, &ce):
		fmt.Fprintf(c.stderr, "%s%v\n", prefix, err)
		if c.bus == "" {
			fmt.Fprintln(c.stderr, "hint: authctl talks to authd over the session bus; run it inside your desktop session, set DBUS_SESSION_BUS_ADDRESS, or pass --bus ADDRESS")
		} else {
			fmt.Fprintln(c.stderr, "hint: check the --bus address")
		}
	case ok:
		if msg == "" {
			msg = err.Error()
		}
		fmt.Fprintf(c.stderr, "%s%s: %s\n", prefix, name, msg)
		if a := advice[name]; a != "" {
			fmt.Fprintf(c.stderr, "hint: %s\n", a)
		}
	default:
		fmt.Fprintf(c.stderr, "%s%v\n", prefix, err)
	}
	return exitFail
}

// flatten turns a{sv} (nested a{sv} as dotted keys) into sorted lines.
func flatten(prefix string, m map[string]dbus.Variant, out map[string]string) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		switch x := v.Value().(type) {
		case map[string]dbus.Variant:
			flatten(key, x, out)
		case bool:
			out[key] = map[bool]string{true: "yes", false: "no"}[x]
		case []string:
			out[key] = strings.Join(x, ", ")
		default:
			out[key] = fmt.Sprint(x)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
