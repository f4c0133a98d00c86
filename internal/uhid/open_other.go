//go:build !linux

package uhid

import (
	"errors"
	"log/slog"
	"os"
)

var errNotLinux = errors.New("uhid: virtual HID devices need Linux")

// Open fails: /dev/uhid is Linux-only.
func Open(path string) (*os.File, error) { return nil, errNotLinux }

// Available fails: /dev/uhid is Linux-only.
func Available(path string) error { return errNotLinux }

// Create fails: /dev/uhid is Linux-only.
func Create(f *os.File, cfg Config, log *slog.Logger) (*Device, error) { return nil, errNotLinux }
