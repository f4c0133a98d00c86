// Package uhid creates a FIDO security key through Linux's /dev/uhid, so that
// browsers and libfido2 find authd the way they find a USB key, and presents
// it as the io.ReadWriter of 64-byte reports that ctaphid.Server.ServeConn
// serves:
//
//	f, err := uhid.Open(uhid.DefaultPath)
//	...
//	dev, err := uhid.Create(f, uhid.Config{}, log) // the kernel adds the HID device
//	...
//	defer dev.Close() // UHID_DESTROY: the device disappears
//	go srv.ServeConn(ctx, dev)
//	if err := dev.WaitStarted(ctx); err == nil {
//		path, err := dev.HidrawPath() // e.g. /dev/hidraw3, for logs and tests
//	}
//
// Specifications: the kernel's uhid ABI (include/uapi/linux/uhid.h,
// Documentation/hid/uhid.rst) and the CTAP 2.1 USB HID transport (§11.2),
// whose report descriptor (§11.2.8.1) is ReportDescriptor.
//
// The event codec is portable Go; only Open, Create and Available need
// Linux.
package uhid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// ReportSize is the size of every CTAPHID report, in and out (CTAP 2.1
// §11.2.4).
const ReportSize = 64

// DefaultPath is the uhid character device.
const DefaultPath = "/dev/uhid"

// Defaults of the zero Config fields.
const (
	DefaultName = "authd passkeys"
	// DefaultVendor and DefaultProduct are pid.codes' vendor ID and its test
	// product ID, which anyone may use but which is shared by every test
	// device. Hosts find FIDO devices by the report descriptor's usage page,
	// not by IDs, so the default works; a packager who registers a product
	// ID of its own sets Config.Vendor/Product.
	DefaultVendor  = 0x1209
	DefaultProduct = 0x0001
)

// Config describes the HID device to create (struct uhid_create2_req). The
// zero Config is valid.
type Config struct {
	// Name is the product name hosts show (HID_NAME); DefaultName if empty.
	Name string
	// Phys is the physical path (HID_PHYS); empty by default.
	Phys string
	// Uniq is the serial string (HID_UNIQ), which HidrawPath uses to tell
	// this device from other authd instances; if empty, a unique
	// "authd-<pid>-<random>".
	Uniq string
	// Vendor and Product are the USB IDs; DefaultVendor and DefaultProduct
	// if zero.
	Vendor, Product uint32
	// Version is the device release number (bcdDevice).
	Version uint32
}

// withDefaults fills the zero fields of c and checks the strings fit their
// NUL-terminated fields of uhid_create2_req.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Uniq == "" {
		var r [4]byte
		_, _ = rand.Read(r[:])
		c.Uniq = fmt.Sprintf("authd-%d-%s", os.Getpid(), hex.EncodeToString(r[:]))
	}
	if c.Vendor == 0 {
		c.Vendor = DefaultVendor
	}
	if c.Product == 0 {
		c.Product = DefaultProduct
	}
	for _, f := range []struct {
		name, v string
		size    int
	}{{"name", c.Name, 128}, {"phys", c.Phys, 64}, {"uniq", c.Uniq, 64}} {
		if len(f.v) >= f.size {
			return c, fmt.Errorf("uhid: %s %q is longer than %d bytes", f.name, f.v, f.size-1)
		}
		// Control characters would cut the string short (NUL) or break the
		// KEY=value lines of sysfs uevent files (newline).
		for i := 0; i < len(f.v); i++ {
			if f.v[i] < 0x20 {
				return c, fmt.Errorf("uhid: %s %q contains a control character", f.name, f.v)
			}
		}
	}
	return c, nil
}

// Device is a uhid HID device with the CTAPHID report descriptor. It is an
// io.ReadWriter of 64-byte reports for ctaphid.Server.ServeConn. Read and
// Write may be called concurrently with each other.
type Device struct {
	rw  io.ReadWriteCloser
	cfg Config
	log *slog.Logger

	rmu     sync.Mutex // serialises Read, which owns buf and pending
	buf     [eventSize]byte
	report  [ReportSize]byte
	pending []byte // the unread part of report

	wmu sync.Mutex // one event at a time: Write, replies and DESTROY

	mu      sync.Mutex
	started bool
	opened  bool
	startCh chan struct{} // closed while started

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed by Close
}

// New creates the HID device by writing UHID_CREATE2 to rw, which must
// preserve event boundaries (one Read returns one event, one Write takes
// one), as /dev/uhid does; Create is New for a /dev/uhid file. log receives
// the device's state changes (nil discards them). On error rw is left open.
func New(rw io.ReadWriteCloser, cfg Config, log *slog.Logger) (*Device, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{rw: rw, cfg: cfg, log: log, startCh: make(chan struct{}), done: make(chan struct{})}
	if err := d.writeEvent(encodeCreate2(cfg, ReportDescriptor())); err != nil {
		return nil, fmt.Errorf("uhid: create device: %w", err)
	}
	log.Info("uhid: device created", "name", cfg.Name, "vendor", fmt.Sprintf("%04x", cfg.Vendor),
		"product", fmt.Sprintf("%04x", cfg.Product), "uniq", cfg.Uniq)
	return d, nil
}

// Config returns the device's configuration, defaults filled in.
func (d *Device) Config() Config { return d.cfg }

// Read returns the next CTAPHID report a host wrote to the device's hidraw
// node: 64 bytes for a 64-byte p (a smaller p gets the report in pieces). It
// blocks until a report arrives, handling the kernel's other events on the
// way: START and STOP (Started), OPEN and CLOSE (Opened), GET_REPORT and
// SET_REPORT (failed with EIO). Malformed events and output reports that are
// not 64 bytes are dropped.
func (d *Device) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	for len(d.pending) == 0 {
		n, err := d.rw.Read(d.buf[:])
		if n > 0 {
			d.handle(d.buf[:n])
		}
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

// handle processes one event read from the kernel.
func (d *Device) handle(b []byte) {
	ev, err := decodeEvent(b)
	if err != nil {
		d.log.Debug("uhid: malformed event dropped", "len", len(b), "err", err)
		return
	}
	switch ev.typ {
	case evStart:
		d.setStarted(true)
		d.log.Info("uhid: device started", "uniq", d.cfg.Uniq, "dev_flags", ev.flags)
	case evStop:
		d.setStarted(false)
		d.log.Info("uhid: device stopped", "uniq", d.cfg.Uniq)
	case evOpen, evClose:
		d.mu.Lock()
		d.opened = ev.typ == evOpen
		d.mu.Unlock()
		d.log.Debug("uhid: hidraw open state", "event", eventName(ev.typ), "uniq", d.cfg.Uniq)
	case evOutput:
		r, ok := outputReport(ev)
		if !ok {
			d.log.Debug("uhid: output report dropped", "len", len(ev.data), "rtype", ev.rtype)
			return
		}
		d.pending = d.report[:copy(d.report[:], r)]
	case evGetReport, evSetReport:
		// The kernel waits up to 5 s for the reply; the host's ioctl fails
		// with EIO either way.
		reply := evGetReportReply
		if ev.typ == evSetReport {
			reply = evSetReportReply
		}
		d.wmu.Lock()
		err := d.writeEvent(encodeReply(reply, ev.id))
		d.wmu.Unlock()
		d.log.Debug("uhid: report request refused", "event", eventName(ev.typ), "rtype", ev.rtype, "reply_err", err)
	default:
		d.log.Debug("uhid: event ignored", "event", eventName(ev.typ))
	}
}

func (d *Device) setStarted(started bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if started && !d.started {
		close(d.startCh)
	} else if !started && d.started {
		d.startCh = make(chan struct{})
	}
	d.started = started
}

// Write sends p, one or more whole 64-byte reports, to the hosts reading the
// hidraw node, each as one UHID_INPUT2. Writes to /dev/uhid never block; the
// kernel drops reports while no host has the node open.
func (d *Device) Write(p []byte) (int, error) {
	if len(p)%ReportSize != 0 {
		return 0, fmt.Errorf("uhid: write of %d bytes: reports are %d bytes", len(p), ReportSize)
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	for off := 0; off < len(p); off += ReportSize {
		if err := d.writeEvent(encodeInput2(p[off : off+ReportSize])); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// writeEvent writes one event; the caller holds wmu, except in New.
func (d *Device) writeEvent(b []byte) error {
	n, err := d.rw.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return err
}

// SetDeadline sets the read and write deadlines of the underlying file, or
// returns os.ErrNoDeadline if it has none (an *os.File supports deadlines
// only if pollable: see Open).
func (d *Device) SetDeadline(t time.Time) error {
	if x, ok := d.rw.(interface{ SetDeadline(time.Time) error }); ok {
		return x.SetDeadline(t)
	}
	return os.ErrNoDeadline
}

// SetReadDeadline is SetDeadline for reads only.
func (d *Device) SetReadDeadline(t time.Time) error {
	if x, ok := d.rw.(interface{ SetReadDeadline(time.Time) error }); ok {
		return x.SetReadDeadline(t)
	}
	return os.ErrNoDeadline
}

// SetWriteDeadline is SetDeadline for writes only.
func (d *Device) SetWriteDeadline(t time.Time) error {
	if x, ok := d.rw.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return x.SetWriteDeadline(t)
	}
	return os.ErrNoDeadline
}

// Started reports whether the kernel has started the device (UHID_START: a
// HID driver such as hid-generic bound it, so the hidraw node exists) and
// not stopped it since. Events are seen by Read.
func (d *Device) Started() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started
}

// Opened reports whether some host has the device open (between UHID_OPEN
// and UHID_CLOSE, which the kernel sends for the first open and the last
// close). Events are seen by Read.
func (d *Device) Opened() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opened
}

// WaitStarted waits until the device is started. START arrives through Read,
// so another goroutine must be reading, e.g. ServeConn. It returns
// net.ErrClosed once the Device is closed, and context.Cause(ctx) when ctx
// ends first.
func (d *Device) WaitStarted(ctx context.Context) error {
	d.mu.Lock()
	ch := d.startCh
	d.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-d.done:
		return net.ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// HidrawPath returns the device node hosts open, such as /dev/hidraw3,
// found through sysfs by the device's Uniq. It exists once the device is
// started (WaitStarted); the node itself appears shortly after, made by
// devtmpfs or udev. The error wraps fs.ErrNotExist while there is none.
func (d *Device) HidrawPath() (string, error) {
	return findHidraw("/sys", d.cfg.Uniq)
}

// Close destroys the device (UHID_DESTROY) and closes the underlying file.
// Further calls return the first call's result.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		// ctaphid's shutdown leaves a past deadline behind; DESTROY must
		// still go out. (Closing the file destroys the device too, so a
		// failed DESTROY is only logged.)
		_ = d.SetWriteDeadline(time.Time{})
		d.wmu.Lock()
		err := d.writeEvent(encodeDestroy())
		d.wmu.Unlock()
		if err != nil && !errors.Is(err, os.ErrClosed) {
			d.log.Debug("uhid: destroy", "err", err)
		}
		d.closeErr = d.rw.Close()
		d.log.Info("uhid: device destroyed", "uniq", d.cfg.Uniq)
	})
	return d.closeErr
}
