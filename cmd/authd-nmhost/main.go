// Command authd-nmhost is the native-messaging host of authd's browser
// extension: the browser starts it (one process per connectNative port)
// with the calling extension's origin as its argument, and it forwards the
// extension's requests, framed as 4-byte little-endian length + JSON on
// stdin/stdout, to authd's D-Bus API (org.authd.Authenticator1 on the
// session bus). See internal/nmhost for the protocol.
//
// It refuses extensions that are not allowed (built-in IDs plus the config
// file $XDG_CONFIG_HOME/authd/nmhost.json written by `authctl browser
// install`), finds the session bus even when the browser set
// DBUS_SESSION_BUS_ADDRESS=disabled:, and logs to stderr only (Chromium
// forwards it to its own log); it never logs options, credentials or PINs.
//
// Exit status: 0 the port closed, 1 the stream broke, 2 caller refused.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/internal/nmhost"
)

func main() {
	// A browser that closed the port must not kill us with SIGPIPE while a
	// reply is being written: writes then fail with EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level()}))
	os.Exit(run(os.Args[1:], log))
}

func level() slog.Level {
	if os.Getenv("AUTHD_NMHOST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func run(args []string, log *slog.Logger) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(os.Stderr, "authd-nmhost is started by the browser (native messaging); install it with `authctl browser install`.")
		return 2
	}
	cfgPath, err := nmhost.ConfigPath(os.Getenv)
	var cfg nmhost.Config
	if err == nil {
		cfg, err = nmhost.LoadConfig(cfgPath)
	}
	if err != nil {
		log.Warn("authd-nmhost: ignoring the config file", "err", err)
	}
	caller, err := nmhost.CheckCaller(args, cfg)
	if err != nil {
		log.Error("authd-nmhost: refusing the caller", "err", err)
		return 2
	}
	log.Info("authd-nmhost: serving", "caller", caller, "pid", os.Getpid())
	h := &nmhost.Host{
		Log: log,
		Dial: func() (*dbus.Conn, error) {
			addr, err := nmhost.SessionBusAddress(os.Getenv, os.Getuid())
			if err != nil {
				return nil, err
			}
			return dbus.Connect(addr)
		},
	}
	if err := h.Serve(context.Background(), os.Stdin, os.Stdout); err != nil {
		return 1
	}
	return 0
}
