package tpm

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Sentinel errors. Errors that come from the TPM also wrap go-tpm's
// tpm2.TPMRC, so errors.Is(err, tpm2.TPMRCLockout) and
// errors.As(err, &tpm2.TPMFmt1Error{}) work as well.
var (
	// ErrNoDevice: the TPM device or simulator socket is missing or unusable.
	ErrNoDevice = errors.New("tpm: no usable TPM")
	// ErrLockout: the TPM is in dictionary-attack lockout; DA-protected
	// objects (the PIN guard) cannot be used until it recovers.
	ErrLockout = errors.New("tpm: TPM is in dictionary-attack lockout")
	// ErrUnsupportedAlgorithm: NewKey/Signer got an algorithm other than ES256.
	ErrUnsupportedAlgorithm = errors.New("tpm: unsupported algorithm")
	// ErrForeign: a blob this TPM cannot load: made by another TPM (or
	// under another owner seed), altered, malformed, or of the wrong kind.
	ErrForeign = errors.New("tpm: blob does not belong to this TPM")
	// ErrTooLarge: Seal got more than MaxSealSize bytes.
	ErrTooLarge = errors.New("tpm: secret too large to seal")
	// ErrOwnerAuth: the owner hierarchy has a password, so the SRK cannot be
	// created with TPM2_CreatePrimary.
	ErrOwnerAuth = errors.New("tpm: the owner hierarchy has an authorization value (password)")
	// ErrClosed: the Device was closed.
	ErrClosed = errors.New("tpm: device closed")
)

// Device is one TPM. Its methods are safe for concurrent use; a mutex
// serialises the TPM commands, because a TPM executes one command at a time
// and the session nonces must advance in order.
//
// While open, a Device keeps loaded: the SRK (one transient object slot), one
// salted HMAC session, and at most two cached signing keys. Every other object
// is flushed before the method that loaded it returns, on every path. libtpms
// has only three transient slots, so a command that needs one more (TPM2_Load
// of a sealed object or PIN guard, TPM2_Create) first evicts the least
// recently used cached key when the cache is full (see withSlot).
type Device struct {
	mu     sync.Mutex
	t      transport.TPM
	owned  io.Closer // the transport Open made; nil after New
	closed bool
	// cacheKeys keeps the last two signing keys loaded (an LRU of
	// maxCachedKeys: libtpms has three transient slots, one is the SRK's) so
	// that signatures with either of two credentials, used in turn or not,
	// cost a single TPM2_Sign. On swtpm (BenchmarkSignES256, medians of 8) a
	// hit took 0.53 ms, a miss 0.61 ms, no cache 0.64 ms, and CreatePrimary
	// per signature 1.22 ms; a miss costs no more than no cache, so the cache
	// is on. Tests turn it off.
	cacheKeys bool

	// Per-TPM-boot state; ready says whether it is valid.
	ready  bool
	srk    tpm2.NamedHandle
	srkPub tpm2.TPMTPublic
	sess   tpm2.Session // salted with the SRK, AES-128-CFB EncryptIn, continueSession
	cached []cachedKey  // loaded signing keys, least recently used first; at most maxCachedKeys
}

// maxCachedKeys is how many signing keys a Device keeps loaded: libtpms has
// three transient object slots (MAX_LOADED_OBJECTS), and the SRK holds one.
const maxCachedKeys = 2

type cachedKey struct {
	id [32]byte // SHA-256 of the blob
	h  tpm2.NamedHandle
}

// Open opens the TPM named by spec (see OpenTransport: "" or a device path,
// "swtpm:SOCKET", "tcp:HOST:PORT"), creates the SRK and returns a Device that
// owns the transport.
//
// swtpm has no resource manager, so objects left loaded by a client that
// crashed would fill libtpms' three transient slots; for the swtpm: and tcp:
// forms Open therefore flushes every loaded transient object and session
// first. authd must be the simulator's only user, which it is in tests and
// development setups. A kernel device (/dev/tpmrm0) needs no such thing:
// the kernel's resource manager flushes a client's objects when it exits.
func Open(spec string) (*Device, error) {
	t, err := OpenTransport(spec)
	if err != nil {
		return nil, err
	}
	d, err := func() (*Device, error) {
		if strings.HasPrefix(spec, "swtpm:") || strings.HasPrefix(spec, "tcp:") {
			if err := flushAll(&retrying{t: t, sleep: time.Sleep}); err != nil {
				return nil, err
			}
		}
		return New(t)
	}()
	if err != nil {
		t.Close()
		if isTransportError(err) && !errors.Is(err, ErrNoDevice) {
			// No TPM answered (a file that is not a TPM, a dead socket).
			err = fmt.Errorf("tpm: %s: %w: %w", spec, ErrNoDevice, err)
		}
		return nil, err
	}
	d.owned = t
	return d, nil
}

// New returns a Device that sends its commands through t, which the caller
// keeps and closes after the Device (tests inject counting or fault-injecting
// transports here). It creates the SRK and the salted session at once, so
// configuration problems such as an owner password show up here.
func New(t transport.TPM) (*Device, error) {
	d := &Device{t: &retrying{t: t, sleep: time.Sleep}, cacheKeys: true}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupLocked(); err != nil {
		return nil, err
	}
	return d, nil
}

// Close flushes the SRK, the session and any cached key, and closes the
// transport if Open made it. Blobs stay valid: the SRK is re-derived from
// the owner seed by the next Open.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.resetLocked()
	if d.owned != nil {
		if cerr := d.owned.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// setupLocked creates the SRK (TPM2_CreatePrimary, owner hierarchy) and the
// salted session (TPM2_StartAuthSession).
func (d *Device) setupLocked() error {
	create := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}
	rsp, err := create.Execute(d.t)
	if errors.Is(err, tpm2.TPMRCInitialize) {
		// A simulator started without --flags startup-clear (a hardware TPM
		// has always been started by the firmware).
		if _, serr := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(d.t); serr != nil {
			return fmt.Errorf("tpm: TPM2_Startup: %w", serr)
		}
		rsp, err = create.Execute(d.t)
	}
	switch {
	case errors.Is(err, tpm2.TPMRCBadAuth), errors.Is(err, tpm2.TPMRCAuthFail):
		return fmt.Errorf("tpm: create SRK (TPM2_CreatePrimary): authd needs the owner hierarchy's password to be empty: %w: %w", ErrOwnerAuth, err)
	case err != nil:
		return fmt.Errorf("tpm: create SRK (TPM2_CreatePrimary): %w", err)
	}
	srk := tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		d.flushQuiet(srk.Handle)
		return fmt.Errorf("tpm: SRK public area: %w", err)
	}
	// The session is salted with the SRK, so its key is unknown to anyone
	// watching the bus; parameters are encrypted on the way in.
	sess, _, err := tpm2.HMACSession(d.t, tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(srk.Handle, *pub), tpm2.AESEncryption(128, tpm2.EncryptIn))
	if err != nil {
		d.flushQuiet(srk.Handle)
		return fmt.Errorf("tpm: start salted session (TPM2_StartAuthSession): %w", err)
	}
	d.srk, d.srkPub, d.sess, d.ready = srk, *pub, sess, true
	return nil
}

// resetLocked flushes everything the Device keeps loaded and marks it
// not ready, so that the next operation sets up afresh. Flush errors are
// expected when the TPM restarted (its handles are gone) and are returned
// only for Close to report.
func (d *Device) resetLocked() error {
	if !d.ready {
		return nil
	}
	var errs []error
	for _, c := range d.cached {
		errs = append(errs, d.flush(c.h.Handle))
	}
	if h := d.sess.Handle(); h != tpm2.TPMRHNull {
		errs = append(errs, d.flush(h))
	}
	errs = append(errs, d.flush(d.srk.Handle))
	d.ready, d.sess, d.cached = false, nil, nil
	d.srk, d.srkPub = tpm2.NamedHandle{}, tpm2.TPMTPublic{}
	return errors.Join(errs...)
}

// run executes f under the lock, after setting up the SRK and session if a
// previous failure (or a TPM restart) cleared them. When f fails in a way
// that leaves the TPM's state unknown, the Device is reset: the operation in
// flight fails and the next one recreates the SRK and session.
func (d *Device) run(f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if !d.ready {
		if err := d.setupLocked(); err != nil {
			return err
		}
	}
	err := f()
	if err != nil && !keepsState(err) {
		d.resetLocked()
	}
	return err
}

// keepsState reports whether err leaves the TPM and the Device's view of it
// consistent: an error about a command's parameters (a foreign blob fails
// TPM2_Load's integrity check, for instance), lockout, or a TPM that stayed
// busy. Anything else (a transport error, TPM_RC_INITIALIZE after a restart,
// a missing handle or session, a response HMAC that does not verify) means
// the SRK or the session may be gone or out of step.
func keepsState(err error) bool {
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		return false
	}
	switch {
	case errors.Is(rc, tpm2.TPMRCLockout), errors.Is(rc, tpm2.TPMRCRetry),
		errors.Is(rc, tpm2.TPMRCYielded), errors.Is(rc, tpm2.TPMRCTesting):
		return true
	}
	var f1 tpm2.TPMFmt1Error
	if errors.As(rc, &f1) {
		isParam, _ := f1.Parameter()
		return isParam
	}
	return false
}

// evictLRU flushes the least recently used cached key. On failure the key
// stays in the cache, so that the reset that follows flushes it again.
func (d *Device) evictLRU() error {
	if err := d.flush(d.cached[0].h.Handle); err != nil {
		return err
	}
	d.cached = append(d.cached[:0], d.cached[1:]...)
	return nil
}

// withSlot runs f, a command that needs a free transient object slot
// (TPM2_Load, TPM2_Create), with one free: when the cache is full, it first
// evicts the least recently used key (SRK + maxCachedKeys fill libtpms'
// slots). Should the TPM still answer TPM_RC_OBJECT_MEMORY (fewer slots
// than assumed), it evicts one more cached key, if any, and runs f once more.
// Called with d.mu held.
func (d *Device) withSlot(f func() error) error {
	if len(d.cached) >= maxCachedKeys {
		if err := d.evictLRU(); err != nil {
			return err
		}
	}
	err := f()
	if errors.Is(err, tpm2.TPMRCObjectMemory) && len(d.cached) > 0 {
		if err := d.evictLRU(); err != nil {
			return err
		}
		err = f()
	}
	return err
}

// loadWithSlot is load through withSlot.
func (d *Device) loadWithSlot(o *object, k kind) (h tpm2.NamedHandle, err error) {
	err = d.withSlot(func() error {
		h, err = d.load(o, k)
		return err
	})
	return h, err
}

// create runs a TPM2_Create (under the SRK) through withSlot: libtpms needs
// a free transient object slot for the object being created.
func (d *Device) create(c tpm2.Create) (rsp *tpm2.CreateResponse, err error) {
	err = d.withSlot(func() error {
		rsp, err = c.Execute(d.t)
		return err
	})
	return rsp, err
}

// srkAuth is the SRK as a parent, authorised through the salted session.
func (d *Device) srkAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: d.srk.Handle, Name: d.srk.Name, Auth: d.sess}
}

// oneOffSession returns a salted HMAC session that the TPM flushes after one
// command (continueSession clear); auth is the authorised object's
// authValue. It is used where parameters go out encrypted (TPM2_Unseal),
// which the long-lived EncryptIn session cannot do.
func (d *Device) oneOffSession(auth []byte) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(d.srk.Handle, d.srkPub),
		tpm2.AESEncryption(128, tpm2.EncryptOut),
		tpm2.Auth(auth))
}

// flushSession flushes a one-off session that is still loaded because its
// command never completed.
func (d *Device) flushSession(s tpm2.Session) {
	if h := s.Handle(); h != tpm2.TPMRHNull {
		d.flushQuiet(h)
	}
}

// load loads a blob's object under the SRK (TPM2_Load). Parameter errors
// (the integrity check of the private area, most often) mean the blob does
// not belong to this TPM's SRK and wrap ErrForeign.
func (d *Device) load(o *object, k kind) (tpm2.NamedHandle, error) {
	rsp, err := tpm2.Load{ParentHandle: d.srkAuth(), InPrivate: o.priv, InPublic: o.pub}.Execute(d.t)
	if err != nil {
		var f1 tpm2.TPMFmt1Error
		if errors.As(err, &f1) {
			if isParam, _ := f1.Parameter(); isParam {
				return tpm2.NamedHandle{}, fmt.Errorf("tpm: load %v (TPM2_Load): %w: %w", k, ErrForeign, err)
			}
		}
		return tpm2.NamedHandle{}, fmt.Errorf("tpm: load %v (TPM2_Load): %w", k, err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

func (d *Device) flush(h tpm2.TPMHandle) error {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(d.t); err != nil {
		return fmt.Errorf("tpm: flush %#x (TPM2_FlushContext): %w", uint32(h), err)
	}
	return nil
}

// flushQuiet flushes on an error path, where the first error is the one to
// report.
func (d *Device) flushQuiet(h tpm2.TPMHandle) { _ = d.flush(h) }

// flushAll flushes every transient object and loaded session (simulators
// only; see Open).
func flushAll(t transport.TPM) error {
	// TPM_HT_LOADED_SESSION (= HMAC_SESSION) lists loaded sessions of
	// both kinds; TPM_HT_SAVED_SESSION (= POLICY_SESSION) context-saved ones.
	for _, first := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		hs, err := handles(t, first)
		if err != nil {
			return err
		}
		for _, h := range hs {
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err != nil {
				return fmt.Errorf("tpm: flush stale handle %#x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

// handles lists the TPM's handles of type ht (TPM2_GetCapability,
// TPM_CAP_HANDLES).
func handles(t transport.TPM, ht tpm2.TPMHT) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := uint32(ht) << 24
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: list handles (TPM2_GetCapability): %w", err)
		}
		l, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("tpm: list handles: %w", err)
		}
		// The TPM returns only handles of the type in the property's top
		// octet (Part 3, 30.2: TPM_CAP_HANDLES).
		out = append(out, l.Handle...)
		if !rsp.MoreData || len(l.Handle) == 0 {
			return out, nil
		}
		next = uint32(l.Handle[len(l.Handle)-1]) + 1
	}
}
