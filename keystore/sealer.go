package keystore

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/crypto/chacha20poly1305"
)

// Master key file format: magic(8) ‖ version(1) ‖ key(32).
const (
	masterKeyMagic   = "authd-mk"
	masterKeyVersion = 1
	masterKeyFileLen = len(masterKeyMagic) + 1 + 32
)

// Sealed blob format: version(1) ‖ nonce(24) ‖ XChaCha20-Poly1305 ciphertext.
const (
	sealVersion = 1
	sealAD      = "authd-seal-v1"
	sealMinLen  = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
)

// SoftwareSealer is the Sealer used when no TPM is available. It encrypts with
// XChaCha20-Poly1305 under a random 256-bit master key kept in a 0600 file.
// It protects against disclosure of the database alone (backups, copies of
// authd.db), not against an attacker who can read the key file too.
// It is safe for concurrent use.
type SoftwareSealer struct {
	key [32]byte
}

// OpenSoftwareSealer loads the master key file at path, or creates it
// atomically (mode 0600) when it does not exist. The parent directory is
// created with mode 0700 if missing and must be 0700 (no group or world
// access) and owned by the effective user. A key file with the wrong size or
// header yields an error wrapping ErrCorrupt; a key file with a mode looser
// than 0600 is refused. An existing key file is never modified.
func OpenSoftwareSealer(path string) (*SoftwareSealer, error) {
	if err := ensurePrivateDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	s := new(SoftwareSealer)
	err := s.load(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = createMasterKey(path); err == nil {
			err = s.load(path)
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *SoftwareSealer) load(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("keystore: open master key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("keystore: master key: %w", err)
	}
	if err := checkPrivateFile(path, fi); err != nil {
		return err
	}
	var buf [masterKeyFileLen + 1]byte
	defer clear(buf[:])
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("keystore: read master key: %w", err)
	}
	if n != masterKeyFileLen {
		return fmt.Errorf("keystore: master key file %s has the wrong size: %w", path, ErrCorrupt)
	}
	if !bytes.Equal(buf[:len(masterKeyMagic)], []byte(masterKeyMagic)) {
		return fmt.Errorf("keystore: %s is not an authd master key file: %w", path, ErrCorrupt)
	}
	if v := buf[len(masterKeyMagic)]; v != masterKeyVersion {
		return fmt.Errorf("keystore: master key file %s has unsupported version %d: %w", path, v, ErrCorrupt)
	}
	copy(s.key[:], buf[len(masterKeyMagic)+1:masterKeyFileLen])
	return nil
}

// createMasterKey writes a fresh key to a temporary file, fsyncs it and links
// it into place, so path either does not exist or holds a complete key. If
// another process won the race, its key is kept.
func createMasterKey(path string) error {
	var buf [masterKeyFileLen]byte
	defer clear(buf[:])
	copy(buf[:], masterKeyMagic)
	buf[len(masterKeyMagic)] = masterKeyVersion
	if _, err := rand.Read(buf[len(masterKeyMagic)+1:]); err != nil {
		return fmt.Errorf("keystore: generate master key: %w", err)
	}
	err := createFileExclusive(path, buf[:])
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keystore: create master key: %w", err)
	}
	return nil
}

// createFileExclusive atomically creates path with mode 0600 holding data.
// It returns an error wrapping fs.ErrExist if path already exists, which it
// then leaves untouched.
func createFileExclusive(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err = f.Chmod(0o600); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Link(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Seal encrypts plaintext under the master key with a random nonce.
func (s *SoftwareSealer) Seal(plaintext []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(s.key[:])
	if err != nil {
		return nil, fmt.Errorf("keystore: seal: %w", err)
	}
	out := make([]byte, 1+aead.NonceSize(), sealMinLen+len(plaintext))
	out[0] = sealVersion
	nonce := out[1:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keystore: seal: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, []byte(sealAD)), nil
}

// Unseal reverses Seal. Any failure wraps ErrSealed.
func (s *SoftwareSealer) Unseal(blob []byte) ([]byte, error) {
	if len(blob) < sealMinLen {
		return nil, fmt.Errorf("keystore: unseal: blob too short: %w", ErrSealed)
	}
	if blob[0] != sealVersion {
		return nil, fmt.Errorf("keystore: unseal: unknown blob version %d: %w", blob[0], ErrSealed)
	}
	aead, err := chacha20poly1305.NewX(s.key[:])
	if err != nil {
		return nil, fmt.Errorf("keystore: unseal: %v: %w", err, ErrSealed)
	}
	nonce := blob[1 : 1+aead.NonceSize()]
	pt, err := aead.Open(nil, nonce, blob[1+aead.NonceSize():], []byte(sealAD))
	if err != nil {
		return nil, fmt.Errorf("keystore: unseal: authentication failed (different master key or altered blob): %w", ErrSealed)
	}
	return pt, nil
}
