package uhid

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// Open opens the uhid character device (DefaultPath) read-write and
// close-on-exec. Go registers a character device with its poller, so the
// file is non-blocking and supports deadlines, which ctaphid's shutdown and
// Device.SetDeadline rely on. Never call the file's Fd method: it switches
// the descriptor back to blocking mode (use SyscallConn for raw access).
// The error says in one sentence why the device cannot be used.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, explain(path, err)
	}
	return f, nil
}

// Available reports why path cannot be used to create a device, or nil if
// it can. It opens and closes the device; that alone creates nothing.
func Available(path string) error {
	f, err := Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// explain turns an open error into a sentence a user can act on.
func explain(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("uhid: %s does not exist: the uhid kernel module is not loaded (sudo modprobe uhid): %w", path, err)
	case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("uhid: %s has no driver: the uhid kernel module is not loaded and could not be loaded on demand (sudo modprobe uhid): %w", path, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("uhid: no permission to open %s, which is root-only unless a udev rule grants access (sudo authctl install --uhid): %w", path, err)
	}
	return fmt.Errorf("uhid: cannot open %s: %w", path, err)
}

// Create creates the FIDO HID device on f, a /dev/uhid file from Open; see
// New. Closing the Device closes f.
func Create(f *os.File, cfg Config, log *slog.Logger) (*Device, error) {
	// A blocking descriptor (opened by other means, or after f.Fd()) still
	// works, but a blocked Read cannot be interrupted at shutdown.
	if err := f.SetReadDeadline(time.Time{}); err != nil && log != nil {
		log.Warn("uhid: the device file does not support deadlines; shutdown may wait for the next event", "file", f.Name(), "err", err)
	}
	return New(f, cfg, log)
}
