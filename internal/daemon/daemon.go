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

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/unixsock"
	"github.com/authd/authd/keystore"
)

// Config describes one daemon.
type Config struct {
	StateDir string         // credentials and state (0700)
	Presence ctap2.Presence // how the user confirms presence
	BootID   string         // kernel boot id (PIN_AUTH_BLOCKED lasts until it changes)
	Logger   *slog.Logger
	// Version is reported over CTAPHID INIT (major, minor, build).
	Version [3]byte
}

// Daemon is a running authenticator: store, engine and CTAPHID server.
type Daemon struct {
	log    *slog.Logger
	store  *keystore.Store
	engine *ctap2.Authenticator
	hid    *ctaphid.Server
	uid    uint32
	wg     sync.WaitGroup
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
	sealer, err := keystore.OpenSoftwareSealer(filepath.Join(dir, MasterKeyFile))
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	store, err := keystore.Open(dir, sealer, keystore.SoftwareKeys{}, keystore.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	engine, err := ctap2.New(ctap2.Config{
		Store:           store,
		State:           store,
		Presence:        cfg.Presence,
		BootID:          cfg.BootID,
		Logger:          log,
		FirmwareVersion: int(cfg.Version[0])<<16 | int(cfg.Version[1])<<8 | int(cfg.Version[2]),
	})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	hid := ctaphid.NewServer(engine, ctaphid.Config{Version: cfg.Version, Logger: log})
	return &Daemon{log: log, store: store, engine: engine, hid: hid, uid: uint32(os.Getuid())}, nil
}

// Authenticator returns the CTAP2 engine (for in-process use and benchmarks).
func (d *Daemon) Authenticator() *ctap2.Authenticator { return d.engine }

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
		uid, err := unixsock.PeerUID(conn)
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
			if err := d.hid.ServeConn(ctx, conn); err != nil && ctx.Err() == nil {
				d.log.Debug("daemon: CTAPHID connection ended", "err", err)
			}
		}()
	}
}

// Close waits for connections to finish and closes the store (persisting exact
// signature counters).
func (d *Daemon) Close() error {
	d.wg.Wait()
	// Connections are gone, so their operations were cancelled; wait for the
	// engine to return from the one in flight before closing the store.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.engine.Idle(ctx); err != nil {
		d.log.Warn("daemon: an operation is still running at shutdown", "err", err)
	}
	return d.store.Close()
}
