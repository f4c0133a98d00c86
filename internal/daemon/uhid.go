package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/authd/authd/internal/uhid"
	"github.com/authd/authd/uv"
)

// --uhid modes: the /dev/uhid door, a virtual FIDO HID device that every
// browser, libfido2, OpenSSH and systemd-cryptenroll find like a USB key.
const (
	UHIDAuto = "auto" // on when /dev/uhid can be opened, else one log line
	UHIDOn   = "on"   // on, or refuse to start
	UHIDOff  = "off"
)

// CheckUHIDSpec validates a --uhid value.
func CheckUHIDSpec(mode string) error {
	switch mode {
	case UHIDAuto, UHIDOn, UHIDOff:
		return nil
	}
	return fmt.Errorf("daemon: --uhid %q: want auto, on or off", mode)
}

// UHIDDoor is authd's virtual FIDO device: created by OpenUHID once the
// store and engine are ready, served by ServeUHID, destroyed when ServeUHID
// returns.
type UHIDDoor struct {
	open func(uhid.Config) (*uhid.Device, error)
	cfg  uhid.Config
	dev  *uhid.Device

	mu     sync.Mutex
	hidraw string // the node hosts open, once known
}

// OpenUHID creates the virtual FIDO device on path (uhid.DefaultPath in
// production) according to mode. With UHIDAuto an unusable /dev/uhid is not
// an error: it returns nil and the reason, also kept for Status and
// `authctl doctor`. With UHIDOff it returns nil, "".
func (d *Daemon) OpenUHID(mode, path string) (*UHIDDoor, error) {
	return d.OpenUHIDWith(mode, func(cfg uhid.Config) (*uhid.Device, error) {
		f, err := uhid.Open(path)
		if err != nil {
			return nil, err
		}
		dev, err := uhid.Create(f, cfg, d.log)
		if err != nil {
			f.Close()
			return nil, err
		}
		return dev, nil
	})
}

// OpenUHIDWith is OpenUHID with the device made by open (tests and
// benchmarks pass a device on a socket pair standing in for the kernel).
// open is called again to re-create a failed device.
func (d *Daemon) OpenUHIDWith(mode string, open func(uhid.Config) (*uhid.Device, error)) (*UHIDDoor, error) {
	if err := CheckUHIDSpec(mode); err != nil {
		return nil, err
	}
	d.uhidMu.Lock()
	defer d.uhidMu.Unlock()
	if mode == UHIDOff {
		d.uhidNote = "off (--uhid off)"
		return nil, nil
	}
	door := &UHIDDoor{open: open, cfg: uhid.Config{Version: uint32(d.cfg.Version[0])<<8 | uint32(d.cfg.Version[1])}}
	if err := door.create(); err != nil {
		if mode == UHIDOn {
			return nil, fmt.Errorf("daemon: --uhid on: %w", err)
		}
		d.uhidNote = strings.TrimPrefix(err.Error(), "uhid: ")
		d.log.Info("daemon: no virtual FIDO device (browsers use authd through the extension and D-Bus only): " + d.uhidNote +
			"; see `authctl doctor`")
		return nil, nil
	}
	d.uhidNote = ""
	d.uhidDoor = door
	return door, nil
}

func (door *UHIDDoor) create() error {
	dev, err := door.open(door.cfg)
	if err != nil {
		return err
	}
	door.dev = dev
	door.cfg = dev.Config() // keeps the generated Uniq across re-creations
	return nil
}

// ServeUHID serves CTAPHID on the door until ctx is done, then destroys the
// device; call Close only after it returned. The door shares the engine and
// the channel space with the socket door, as two processes share one USB
// key. If the device fails (the uhid file returns an error) it is
// re-created, with backoff.
func (d *Daemon) ServeUHID(ctx context.Context, door *UHIDDoor) {
	go door.announce(ctx, d)
	// Who is asking is only known when a request arrives: the hidraw node
	// is shared by every process that opened it.
	rctx := uv.WithRequesterFunc(ctx, door.requester)
	backoff := time.Second
	for {
		err := d.hid.ServeConn(rctx, door.dev)
		door.dev.Close()
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("daemon: virtual FIDO device failed; re-creating it", "err", err, "retry_in", backoff)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if err := door.create(); err == nil {
				break
			} else {
				backoff = min(2*backoff, 30*time.Second)
				d.log.Warn("daemon: re-creating the virtual FIDO device failed", "err", err, "retry_in", backoff)
			}
		}
		go door.announce(ctx, d)
	}
}

// announce logs the hidraw node once the kernel has made it, so users (and
// `authctl doctor`) know which node browsers will open.
func (door *UHIDDoor) announce(ctx context.Context, d *Daemon) {
	dev := door.dev
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := dev.WaitStarted(wctx); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("daemon: the kernel has not started the virtual FIDO device (is hid-generic available?)", "err", err)
		}
		return
	}
	for i := 0; i < 50; i++ {
		if p, err := dev.HidrawPath(); err == nil {
			door.mu.Lock()
			door.hidraw = p
			door.mu.Unlock()
			d.log.Info("daemon: virtual FIDO device ready", "hidraw", p)
			return
		}
		select {
		case <-wctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Hidraw returns the device node hosts open ("" until it is known).
func (door *UHIDDoor) Hidraw() string {
	door.mu.Lock()
	defer door.mu.Unlock()
	return door.hidraw
}

// requester names the programs that have the hidraw node open, for
// presence and UV prompts ("fido2-cred", "firefox-esr, ssh"). Best effort:
// empty when the node or /proc cannot be read.
func (door *UHIDDoor) requester() string {
	node := door.Hidraw()
	if node == "" {
		return ""
	}
	// A scan cut short by its bound still names who was found.
	procs, _ := uhid.Holders("/proc", node)
	return describeHolders(procs)
}

// describeHolders turns the holders into a short display name: the
// programs' names, each once, in a stable order.
func describeHolders(procs []uhid.Process) string {
	seen := map[string]bool{}
	var names []string
	for _, p := range procs {
		name := filepath.Base(p.Exe)
		if p.Exe == "" {
			name = p.Comm
		}
		if name == "" || name == "." || seen[name] {
			continue
		}
		seen[name] = true
		names = append(names, name)
	}
	sort.Strings(names)
	const maxNames = 3
	if len(names) > maxNames {
		return strings.Join(names[:maxNames], ", ") + fmt.Sprintf(" and %d more", len(names)-maxNames)
	}
	return strings.Join(names, ", ")
}

// uhidStatus reports the door for Status: the hidraw node, or why there is
// none.
func (d *Daemon) uhidStatus() (node, note string) {
	d.uhidMu.Lock()
	defer d.uhidMu.Unlock()
	if d.uhidDoor != nil {
		if n := d.uhidDoor.Hidraw(); n != "" {
			return n, ""
		}
		return "", "created; waiting for the kernel's hidraw node"
	}
	if d.uhidNote == "" {
		return "", "not opened"
	}
	return "", d.uhidNote
}
