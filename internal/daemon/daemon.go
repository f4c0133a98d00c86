// Package daemon is authd's composition root: the only package (with cmd/*)
// that wires the keystore, the CTAP2 engine, user presence and the transports
// together. cmd/authd and the end-to-end tests both build a whole daemon here.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/unixsock"
	"github.com/authd/authd/keystore"
	"github.com/authd/authd/tpm"
	"github.com/authd/authd/uv"
)

// Config describes one daemon.
type Config struct {
	StateDir string         // credentials and state (0700)
	Presence ctap2.Presence // how the user confirms presence
	BootID   string         // kernel boot id (PIN_AUTH_BLOCKED lasts until it changes)
	Logger   *slog.Logger
	// Version is reported over CTAPHID INIT (major, minor, build).
	Version [3]byte
	// TPM selects the TPM: "" or TPMNone (software only), TPMAuto,
	// TPMRequired, a device path, "swtpm:SOCKET" or "tcp:HOST:PORT" (see
	// CheckTPMSpec). The zero value never touches a TPM; authd's --tpm
	// defaults to auto.
	TPM string
	// TPMDevice, if set, is the TPM to use instead of opening one by TPM
	// (tests and benchmarks wrap its transport). The daemon does not close
	// it; the caller does, after Close.
	TPMDevice *tpm.Device
	// Fingerprint selects built-in user verification and bioEnrollment
	// through fprintd: "" or FingerprintNone (none), FingerprintAuto (fprintd
	// when it has a device, else none with one info line) or
	// FingerprintSystem (fprintd, or refuse to start). authd's --fingerprint
	// defaults to auto.
	Fingerprint string
	// SystemBus is the D-Bus address of the system bus where fprintd runs;
	// "" means DBUS_SYSTEM_BUS_ADDRESS or the standard system bus.
	SystemBus string
	// UV is the user-verification preference (see ParseUV): "" or
	// "fingerprint,pin" (the default), or "pin" (no fingerprint).
	UV string
	// Pinentry is the program for authd's own PIN prompt (PromptPIN): an
	// absolute path or a name on PATH; "" means "pinentry".
	Pinentry string
	// PresenceTimeout bounds every wait for the user (presence prompts,
	// fingerprint scans); 0 means 30 s.
	PresenceTimeout time.Duration
}

// Daemon is a running authenticator: store, engine and CTAPHID server.
type Daemon struct {
	cfg          Config
	log          *slog.Logger
	dir          string
	dev          *tpm.Device // nil in software mode
	ownDev       bool        // dev was opened here and is closed by Close
	tpm          string      // the TPM in use, or TPMNone
	warn         string      // why auto fell back to software keys
	store        *keystore.Store
	engine       *ctap2.Authenticator
	hid          *ctaphid.Server
	uid          uint32
	wg           sync.WaitGroup
	pinentryPath string
	fp           *fprintUV  // nil without a fingerprint reader
	bus          *dbus.Conn // the system bus connection fp uses

	uhidMu   sync.Mutex
	uhidDoor *UHIDDoor // the virtual FIDO device, if created
	uhidNote string    // why there is none

	closeOnce sync.Once
	closeErr  error
}

// MasterKeyFile is the software sealer's key file inside the state directory.
const MasterKeyFile = "master.key"

// New opens the state directory (refusing one in use by another authd) and
// builds the engine. The engine's power-up, which opens the 10-second Reset
// window, is now.
func New(cfg Config) (*Daemon, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Presence == nil {
		return nil, errors.New("daemon: a presence method is required")
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("daemon: state dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: state dir: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log, dir: dir, uid: uint32(os.Getuid())}
	if cfg.TPMDevice != nil {
		d.dev, d.tpm = cfg.TPMDevice, "(provided)"
	} else {
		var err error
		if d.dev, d.tpm, d.warn, err = openTPM(cfg.TPM); err != nil {
			return nil, err
		}
		d.ownDev = d.dev != nil
	}
	if err := d.openStore(); err != nil {
		d.closeTPM()
		return nil, err
	}
	store := d.store
	fp, bus, err := openFingerprint(log, cfg.Fingerprint, cfg.SystemBus, cfg.UV, store)
	if err != nil {
		store.Close()
		d.closeTPM()
		return nil, err
	}
	d.fp, d.bus = fp, bus
	if in, ok := cfg.Presence.(uv.Informer); ok && fp != nil {
		fp.inform = in // the fingerprint scan says what it waits for
	}
	d.pinentryPath = cfg.Pinentry
	ecfg := ctap2.Config{
		Store:           store,
		State:           store,
		Presence:        cfg.Presence,
		BootID:          cfg.BootID,
		Logger:          log,
		FirmwareVersion: int(cfg.Version[0])<<16 | int(cfg.Version[1])<<8 | int(cfg.Version[2]),
		PresenceTimeout: cfg.PresenceTimeout,
	}
	if fp != nil {
		ecfg.Verifier, ecfg.BioEnroller = fp, fp
	}
	engine, err := ctap2.New(ecfg)
	if err != nil {
		d.closeBus()
		store.Close()
		d.closeTPM()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.engine = engine
	d.hid = ctaphid.NewServer(engine, ctaphid.Config{Version: cfg.Version, Logger: log})
	return d, nil
}

// openStore opens the keystore with the sealer, key maker and PIN guard of
// the TPM mode, and reports what it found.
func (d *Daemon) openStore() error {
	log := d.log
	masterKey := filepath.Join(d.dir, MasterKeyFile)
	opts := keystore.Options{Logger: log}
	var sealer keystore.Sealer
	if d.dev == nil {
		why := "--tpm none"
		if d.warn != "" {
			why = d.warn
			log.Warn("authd: " + d.warn + "; passkeys are protected by software keys and " + MasterKeyFile +
				" only, so a copy of the state directory is enough to use them. " +
				"Use --tpm required to refuse to start without a TPM, or --tpm none to silence this warning.")
		}
		sealer = &softSealer{path: masterKey, why: why}
	} else {
		log.Info("authd: using the TPM", "tpm", d.tpm)
		if da, err := readDA(d.dev); err != nil {
			log.Warn("cannot read the TPM's dictionary-attack parameters", "err", err)
		} else {
			logDA(log, da)
		}
		sealer = &tpmSealer{dev: d.dev, masterKeyPath: masterKey}
		opts.PINGuard = pinGuard{dev: d.dev, log: log}
	}
	store, err := keystore.Open(d.dir, sealer, routedKeys{dev: d.dev}, opts)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.store = store
	if d.dev != nil {
		// Open either unsealed the data key with the TPM or sealed it anew.
		removeMasterKey(log, d.dir)
	}
	b := store.Backends()
	log.Info("authd: credentials by key backend", "tpm", b[keystore.BackendTPM],
		"software", b[keystore.BackendSoftware], "data_key_sealed_by", d.dataKeySealer(),
		"pin_in_tpm", store.PINGuarded())
	return nil
}

func (d *Daemon) dataKeySealer() string {
	if tpm.IsTPMBlob(d.store.SealedDataKey()) {
		return keystore.BackendTPM
	}
	return keystore.BackendSoftware
}

// Fingerprint reports whether a fingerprint reader is in use.
func (d *Daemon) Fingerprint() bool { return d.fp != nil }

func (d *Daemon) closeBus() {
	if d.fp != nil {
		d.fp.EnrollCancel()
	}
	if d.bus != nil {
		d.bus.Close()
	}
}

func (d *Daemon) closeTPM() error {
	if !d.ownDev || d.dev == nil {
		return nil
	}
	return d.dev.Close()
}

// Status is what the daemon reports about its key protection (for logs and
// the D-Bus GetStatus method).
type Status struct {
	// TPM is the TPM in use ("/dev/tpmrm0", "swtpm:…") or "none".
	TPM string
	// Warning says why --tpm auto fell back to software keys; empty
	// otherwise.
	Warning string
	// DataKey names what seals the store's data key: "tpm" or "software".
	DataKey string
	// PINInTPM says the PIN is kept by the TPM's PIN guard (no hash stored).
	PINInTPM bool
	// Backends counts credentials by where their keys live: "tpm" (ES256
	// keys inside the TPM) and "software" (keys encrypted under the data
	// key: EdDSA ones, and those made before a TPM was used).
	Backends map[string]int
	// DA is the TPM's dictionary-attack state, nil without a TPM or when
	// it could not be read (DAError says why).
	DA      *DAStatus
	DAError string
	// UHID is the hidraw node of authd's virtual FIDO device ("" when there
	// is none); UHIDNote says why there is none.
	UHID, UHIDNote string
}

// Status reports the key protection in use. With a TPM it reads the DA
// parameters (one TPM command).
func (d *Daemon) Status() Status {
	st := Status{
		TPM:      d.tpm,
		Warning:  d.warn,
		DataKey:  d.dataKeySealer(),
		PINInTPM: d.store.PINGuarded(),
		Backends: d.store.Backends(),
	}
	st.UHID, st.UHIDNote = d.uhidStatus()
	if d.dev != nil {
		da, err := readDA(d.dev)
		if err != nil {
			st.DAError = err.Error()
		}
		st.DA = da
	}
	return st
}

// Authenticator returns the CTAP2 engine (for in-process use and benchmarks).
func (d *Daemon) Authenticator() *ctap2.Authenticator { return d.engine }

// TPM returns the TPM in use ("/dev/tpmrm0", "swtpm:…") or "none".
func (d *Daemon) TPM() string { return d.tpm }

// Store returns the keystore.
func (d *Daemon) Store() *keystore.Store { return d.store }

// ServeCTAPHID accepts connections on ln until ctx is done. Every connection is
// one more "process opening the HID device": all share one channel space.
// Connections from another UID are refused.
func (d *Daemon) ServeCTAPHID(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("daemon: accept: %w", err)
		}
		uid, pid, err := unixsock.PeerCred(conn)
		if err != nil || uid != d.uid {
			d.log.Warn("daemon: refusing CTAPHID connection from another user", "peer_uid", uid, "err", err)
			conn.Close()
			continue
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer conn.Close()
			// Closing the connection when ctx ends unblocks its reader.
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			// Presence prompts name the program asking, where known.
			cctx := uv.WithRequester(ctx, programName(pid))
			if err := d.hid.ServeConn(cctx, conn); err != nil && ctx.Err() == nil {
				d.log.Debug("daemon: CTAPHID connection ended", "err", err)
			}
		}()
	}
}

// Close waits for connections to finish, closes the store (persisting exact
// signature counters) and the TPM. Further calls return the first result.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.close() })
	return d.closeErr
}

func (d *Daemon) close() error {
	d.wg.Wait()
	// Connections are gone, so their operations were cancelled; wait for the
	// engine to return from the one in flight before closing the store.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The engine stays reserved: nothing runs on the closed store.
	if _, err := d.engine.Idle(ctx); err != nil {
		d.log.Warn("daemon: an operation is still running at shutdown", "err", err)
	}
	if d.fp != nil {
		// Leave no "touch the fingerprint reader" on screen.
		if err := d.fp.waitNotices(ctx); err != nil {
			d.log.Warn("daemon: at shutdown", "err", err)
		}
	}
	d.closeBus()
	return errors.Join(d.store.Close(), d.closeTPM())
}

// programName is the executable of process pid ("" when unknown), as shown
// in presence prompts. Another process of the same user could lie about it,
// so it informs the user; it decides nothing.
func programName(pid int32) string {
	if pid <= 0 {
		return ""
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return filepath.Base(exe)
}
