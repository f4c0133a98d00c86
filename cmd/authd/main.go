// Command authd is a FIDO2 (CTAP 2.1) platform authenticator for Linux.
//
// It keeps passkeys in a local store (software sealing by default), asks the
// user for presence, and serves CTAPHID over a Unix socket where every report
// is 64 bytes with no report-ID byte.
//
//	authd [--state-dir DIR] [--ctaphid-socket PATH] [--presence auto|terminal|command:PATH|allow|deny]
//	      [--tpm auto|none|required|DEVICE|swtpm:SOCKET|tcp:HOST:PORT]
//	      [--fingerprint auto|none|system] [--uv fingerprint,pin|pin] [--system-bus ADDRESS]
//	      [--uhid auto|on|off]
//
// With a TPM (--tpm auto finds /dev/tpmrm0), ES256 keys live in the TPM, the
// store's data key is sealed to it and the PIN is checked by it. With
// /dev/uhid (--uhid auto), authd also appears as a FIDO HID device that
// browsers, libfido2, OpenSSH and systemd-cryptenroll use like a USB key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/godbus/dbus/v5"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/authd/authd/internal/daemon"
	"github.com/authd/authd/internal/sysinfo"
	"github.com/authd/authd/internal/uhid"
	"github.com/authd/authd/internal/unixsock"
	dbusapi "github.com/authd/authd/ipc/dbus"
	"github.com/authd/authd/uv"
)

// version is authd's release; -ldflags "-X main.version=..." overrides it.
var version = "0.1.0"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stderr))
}

func run(args []string, stdin *os.File, stderr io.Writer) int {
	fs := flag.NewFlagSet("authd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "", "directory for credentials and state (default $XDG_DATA_HOME/authd)")
	sock := fs.String("ctaphid-socket", "", "Unix socket serving CTAPHID reports (default $XDG_RUNTIME_DIR/authd/ctaphid.sock)")
	presence := fs.String("presence", "auto", "user presence: auto (notify, else pinentry, else terminal, else deny), notify, pinentry[:PATH], terminal, command:PATH, allow (tests only), deny")
	presenceTimeout := fs.Duration("presence-timeout", 30*time.Second, "how long a prompt or a fingerprint scan waits for the user")
	dbusMode := fs.String("dbus", "", "local platform API on the session D-Bus: session or none (default: session when a session bus exists)")
	pinentryProg := fs.String("pinentry", "", "pinentry program for authd's own PIN prompt (default: pinentry on PATH)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	tpmSpec := fs.String("tpm", daemon.TPMAuto, "TPM: auto (/dev/tpmrm0 if usable, else software keys with a warning), none, required, a device path, swtpm:SOCKET or tcp:HOST:PORT")
	fingerprint := fs.String("fingerprint", daemon.FingerprintAuto, "fingerprint reader through fprintd: auto (use it when fprintd has a device), none, system (required)")
	uvSpec := fs.String("uv", daemon.UVDefault, "user verification in order of preference: fingerprint,pin or pin (no fingerprint)")
	systemBus := fs.String("system-bus", "", "D-Bus address of the system bus where fprintd runs (default $DBUS_SYSTEM_BUS_ADDRESS or the standard system bus)")
	uhidMode := fs.String("uhid", daemon.UHIDAuto, "virtual FIDO HID device through /dev/uhid, for browsers, libfido2, OpenSSH and systemd: auto (when /dev/uhid can be opened), on (required) or off")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "authd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintf(os.Stdout, "authd %s\n", version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "authd: --log-level: %v\n", err)
		return 2
	}
	if err := daemon.CheckTPMSpec(*tpmSpec); err != nil {
		fmt.Fprintf(stderr, "authd: %v\n", strings.TrimPrefix(err.Error(), "daemon: "))
		return 2
	}
	if err := daemon.CheckFingerprintSpec(*fingerprint); err != nil {
		fmt.Fprintf(stderr, "authd: %v\n", strings.TrimPrefix(err.Error(), "daemon: "))
		return 2
	}
	if err := daemon.CheckUHIDSpec(*uhidMode); err != nil {
		fmt.Fprintf(stderr, "authd: %v\n", strings.TrimPrefix(err.Error(), "daemon: "))
		return 2
	}
	if _, err := daemon.ParseUV(*uvSpec); err != nil {
		fmt.Fprintf(stderr, "authd: %v\n", strings.TrimPrefix(err.Error(), "daemon: "))
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := options{stateDir: *stateDir, sock: *sock, presence: *presence, tpm: *tpmSpec,
		fingerprint: *fingerprint, uv: *uvSpec, systemBus: *systemBus, pinentry: *pinentryProg,
		presenceTimeout: *presenceTimeout, dbus: *dbusMode, uhid: *uhidMode}
	if err := serve(log, opts, stdin); err != nil {
		log.Error("authd: " + strings.TrimPrefix(err.Error(), "authd: "))
		return 1
	}
	return 0
}

// options are the daemon's flags.
type options struct {
	stateDir, sock, presence, tpm string
	fingerprint, uv, systemBus    string
	pinentry                      string
	presenceTimeout               time.Duration
	dbus, uhid                    string
}

func serve(log *slog.Logger, o options, stdin *os.File) error {
	stateDir, sock, presenceSpec := o.stateDir, o.sock, o.presence
	var err error
	if stateDir == "" {
		if stateDir, err = sysinfo.DefaultStateDir(); err != nil {
			return err
		}
	}
	if sock == "" {
		dir, err := sysinfo.DefaultRuntimeDir()
		if err != nil {
			return err
		}
		sock = filepath.Join(dir, "ctaphid.sock")
	}
	presence, err := uv.ParsePresence(presenceSpec, stdin, log)
	if err != nil {
		return err
	}
	if o.presenceTimeout <= 0 {
		return fmt.Errorf("--presence-timeout must be positive")
	}
	presence = uv.WithTimeout(presence, o.presenceTimeout)
	bootID, err := sysinfo.BootID()
	if err != nil {
		return err
	}
	d, err := daemon.New(daemon.Config{
		StateDir:        stateDir,
		Presence:        presence,
		BootID:          bootID,
		Logger:          log,
		Version:         parseVersion(version),
		TPM:             o.tpm,
		Fingerprint:     o.fingerprint,
		SystemBus:       o.systemBus,
		UV:              o.uv,
		Pinentry:        o.pinentry,
		PresenceTimeout: o.presenceTimeout,
	})
	if err != nil {
		return err
	}
	ln, err := unixsock.Listen(sock)
	if err != nil {
		d.Close()
		return err
	}
	defer os.Remove(sock)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	api, err := serveDBus(log, o.dbus, d)
	if err != nil {
		d.Close()
		return err
	}
	// The virtual FIDO device appears only now, when authd can answer it.
	door, err := d.OpenUHID(o.uhid, uhid.DefaultPath)
	if err != nil {
		if api != nil {
			api.Close()
		}
		d.Close()
		return err
	}
	uhidDone := make(chan struct{})
	if door != nil {
		go func() {
			defer close(uhidDone)
			d.ServeUHID(ctx, door)
		}()
	} else {
		close(uhidDone)
	}
	log.Info("authd: serving", "version", version, "ctaphid_socket", sock, "state_dir", stateDir, "presence", presenceSpec,
		"tpm", d.TPM(), "fingerprint", d.Fingerprint(), "dbus", api != nil, "uhid", door != nil)
	serr := d.ServeCTAPHID(ctx, ln)
	stop()
	<-uhidDone // the device is destroyed before the store closes
	if api != nil {
		api.Close() // cancels API calls in flight before the engine closes
	}
	cerr := d.Close()
	if err := errors.Join(serr, cerr); err != nil {
		return err
	}
	log.Info("authd: stopped")
	return nil
}

// parseVersion turns "1.2.3" into CTAPHID's major, minor, build bytes.
func parseVersion(v string) [3]byte {
	var out [3]byte
	var a, b, c int
	fmt.Sscanf(v, "%d.%d.%d", &a, &b, &c)
	out[0], out[1], out[2] = byte(a), byte(b), byte(c)
	return out
}

// serveDBus exports the local platform API (org.authd.Authenticator1) on the
// session bus. mode "" uses the session bus when one is reachable.
func serveDBus(log *slog.Logger, mode string, d *daemon.Daemon) (*dbusapi.Server, error) {
	switch mode {
	case "none":
		return nil, nil
	case "", "session":
	default:
		return nil, fmt.Errorf("--dbus %q: want session or none", mode)
	}
	addr := uv.SessionBusAddress()
	if addr == "" {
		if mode == "session" {
			return nil, fmt.Errorf("--dbus session: no session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus)")
		}
		log.Info("authd: no session bus; the D-Bus platform API is off")
		return nil, nil
	}
	conn, err := dbus.Connect(addr)
	if err != nil {
		if mode == "session" {
			return nil, fmt.Errorf("--dbus session: %w", err)
		}
		log.Info("authd: no session bus; the D-Bus platform API is off", "err", err)
		return nil, nil
	}
	srv, err := dbusapi.Start(conn, d.Backend(), log)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("D-Bus API: %w", err)
	}
	return srv, nil
}
