package daemon

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/authd/authd/keystore"
	"github.com/authd/authd/tpm"
)

// TPM selections (Config.TPM, authd --tpm). Anything else is a device path
// (starting with "/"), "swtpm:SOCKET" or "tcp:HOST:PORT" (see tpm.Open).
const (
	TPMAuto     = "auto"     // /dev/tpmrm0 when present and usable, else software with a warning
	TPMNone     = "none"     // software only
	TPMRequired = "required" // /dev/tpmrm0, or refuse to start
)

// CheckTPMSpec reports whether spec is a valid TPM selection, without
// opening anything.
func CheckTPMSpec(spec string) error {
	switch {
	case spec == "", spec == TPMAuto, spec == TPMNone, spec == TPMRequired:
		return nil
	case strings.HasPrefix(spec, "/"):
		return nil
	case strings.HasPrefix(spec, "swtpm:") && len(spec) > len("swtpm:"):
		return nil
	case strings.HasPrefix(spec, "tcp:") && len(spec) > len("tcp:"):
		return nil
	}
	return fmt.Errorf("daemon: --tpm %q: want auto, none, required, a device path (/dev/tpmrm0), swtpm:SOCKET or tcp:HOST:PORT", spec)
}

// openTPM opens the TPM that spec selects. It returns a nil device for
// software mode; warning then says why auto found no TPM (empty for none).
func openTPM(spec string) (dev *tpm.Device, used, warning string, err error) {
	if err := CheckTPMSpec(spec); err != nil {
		return nil, "", "", err
	}
	switch spec {
	case "", TPMNone:
		return nil, TPMNone, "", nil
	case TPMAuto:
		if _, serr := os.Stat(tpm.DefaultDevice); serr != nil {
			return nil, TPMNone, fmt.Sprintf("no TPM found (%s: %v)", tpm.DefaultDevice, errors.Unwrap(serr)), nil
		}
		dev, err := tpm.Open(tpm.DefaultDevice)
		if err != nil {
			return nil, TPMNone, fmt.Sprintf("the TPM is not usable (%v)%s", err, tpmHint(err)), nil
		}
		return dev, tpm.DefaultDevice, "", nil
	case TPMRequired:
		spec = tpm.DefaultDevice
	}
	dev, err = tpm.Open(spec)
	if err != nil {
		return nil, "", "", fmt.Errorf("daemon: --tpm %s: %w%s", spec, err, tpmHint(err))
	}
	return dev, spec, "", nil
}

// tpmHint adds advice for the usual reasons a TPM does not open.
func tpmHint(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return " (the TPM resource manager /dev/tpmrm0 is usually group tss: add your user to it, see README)"
	case errors.Is(err, tpm.ErrOwnerAuth):
		return " (authd needs the owner hierarchy's authorization to be empty)"
	}
	return ""
}

// tpmSealer seals the store's data key to the TPM. It still unseals a data
// key sealed by the software fallback (a store made without a TPM), reading
// master.key, and asks the store to seal such a key anew (keystore.Resealer),
// after which master.key is deleted (see Daemon.New).
type tpmSealer struct {
	dev           *tpm.Device
	masterKeyPath string
}

var (
	_ keystore.Sealer   = (*tpmSealer)(nil)
	_ keystore.Resealer = (*tpmSealer)(nil)
)

func (s *tpmSealer) Seal(pt []byte) ([]byte, error) { return s.dev.Seal(pt) }

func (s *tpmSealer) Unseal(blob []byte) ([]byte, error) {
	if !tpm.IsTPMBlob(blob) {
		if _, err := os.Lstat(s.masterKeyPath); err != nil {
			return nil, fmt.Errorf("the data key was sealed by the software fallback, but %s is gone (%v): %w",
				s.masterKeyPath, errors.Unwrap(err), keystore.ErrSealed)
		}
		soft, err := keystore.OpenSoftwareSealer(s.masterKeyPath)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, keystore.ErrSealed)
		}
		return soft.Unseal(blob)
	}
	pt, err := s.dev.Unseal(blob)
	switch {
	case errors.Is(err, tpm.ErrForeign):
		return nil, fmt.Errorf("the data key was sealed by another TPM, or this TPM was cleared since; "+
			"this state directory cannot be used with this TPM (%w): %w", err, keystore.ErrSealed)
	case err != nil:
		return nil, fmt.Errorf("the TPM cannot unseal the data key (%w): %w", err, keystore.ErrSealed)
	}
	return pt, nil
}

// NeedsReseal implements keystore.Resealer: a data key the TPM did not seal
// is sealed again by it.
func (s *tpmSealer) NeedsReseal(sealed []byte) bool { return !tpm.IsTPMBlob(sealed) }

// softSealer is the software fallback's sealer (master.key). It refuses a
// data key sealed by a TPM with a clear error, and opens (or creates)
// master.key only when it is needed, so that trying a TPM-sealed store
// without the TPM leaves no new key file behind.
type softSealer struct {
	path string
	why  string // why no TPM is used, for the error message

	mu sync.Mutex
	s  *keystore.SoftwareSealer
}

var _ keystore.Sealer = (*softSealer)(nil)

func (s *softSealer) sealer(create bool) (*keystore.SoftwareSealer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s != nil {
		return s.s, nil
	}
	if !create {
		if _, err := os.Lstat(s.path); err != nil {
			return nil, fmt.Errorf("the data key was sealed with %s, which is gone (%v): %w", s.path, errors.Unwrap(err), keystore.ErrSealed)
		}
	}
	ss, err := keystore.OpenSoftwareSealer(s.path)
	if err != nil {
		return nil, err
	}
	s.s = ss
	return ss, nil
}

func (s *softSealer) Seal(pt []byte) ([]byte, error) {
	ss, err := s.sealer(true)
	if err != nil {
		return nil, err
	}
	return ss.Seal(pt)
}

func (s *softSealer) Unseal(blob []byte) ([]byte, error) {
	if tpm.IsTPMBlob(blob) {
		return nil, fmt.Errorf("the data key is sealed by a TPM, but authd runs without one (%s); "+
			"start it with the TPM that made this store (--tpm): %w", s.why, keystore.ErrSealed)
	}
	ss, err := s.sealer(false)
	if err != nil {
		return nil, err
	}
	return ss.Unseal(blob)
}

// routedKeys is the composite KeyMaker: new ES256 keys are made in the TPM;
// EdDSA keys (which TPMs do not offer) are software keys, whose blobs the
// store encrypts under the TPM-sealed data key. Existing blobs are routed by
// their format, so credentials made before a TPM was available keep working.
// Without a TPM (dev nil) every new key is a software key.
type routedKeys struct {
	dev *tpm.Device
}

var (
	_ keystore.KeyMaker   = routedKeys{}
	_ keystore.KeyBackend = routedKeys{}
)

func (k routedKeys) NewKey(alg int) ([]byte, crypto.PublicKey, error) {
	if k.dev != nil && alg == keystore.AlgES256 {
		return k.dev.NewKey(alg)
	}
	return keystore.SoftwareKeys{}.NewKey(alg)
}

func (k routedKeys) Signer(alg int, blob []byte) (crypto.Signer, error) {
	if !tpm.IsTPMBlob(blob) {
		return keystore.SoftwareKeys{}.Signer(alg, blob)
	}
	if k.dev == nil {
		return nil, errors.New("daemon: this credential's key is in a TPM, but authd runs without one")
	}
	return k.dev.Signer(alg, blob)
}

// Backend implements keystore.KeyBackend.
func (routedKeys) Backend(_ int, blob []byte) string {
	if tpm.IsTPMBlob(blob) {
		return keystore.BackendTPM
	}
	return keystore.BackendSoftware
}

// pinGuard adapts the TPM's PIN guard to keystore.PINGuard: a TPM
// dictionary-attack lockout becomes keystore.ErrPINLockout (which the engine
// answers with CTAP2_ERR_PIN_AUTH_BLOCKED, without spending a retry), with a
// log line saying how long the TPM needs.
type pinGuard struct {
	dev *tpm.Device
	log *slog.Logger
}

var _ keystore.PINGuard = pinGuard{}

func (g pinGuard) NewPINGuard(authValue []byte) ([]byte, error) { return g.dev.NewPINGuard(authValue) }

func (g pinGuard) CheckPIN(blob, authValue []byte) (bool, error) {
	ok, err := g.dev.CheckPIN(blob, authValue)
	if errors.Is(err, tpm.ErrLockout) {
		args := []any{"err", err}
		if maxTries, interval, _, counter, derr := g.dev.DAParameters(); derr == nil {
			args = append(args, "lockout_counter", counter, "max_tries", maxTries,
				"seconds_per_forgiven_failure", interval)
		}
		g.log.Warn("TPM dictionary-attack lockout: PIN checks are refused until the TPM forgives failures "+
			"(one every LOCKOUT_INTERVAL seconds); no CTAP PIN retry was spent", args...)
		return false, fmt.Errorf("%w: %w", keystore.ErrPINLockout, err)
	}
	if err == nil && !ok {
		if _, _, _, counter, derr := g.dev.DAParameters(); derr == nil {
			g.log.Debug("TPM counted a wrong PIN", "lockout_counter", counter)
		}
	}
	return ok, err
}

// DAStatus is the TPM's dictionary-attack configuration and state
// (TPM_PT_MAX_AUTH_FAIL, TPM_PT_LOCKOUT_INTERVAL, TPM_PT_LOCKOUT_RECOVERY,
// TPM_PT_LOCKOUT_COUNTER), read when asked.
type DAStatus struct {
	MaxTries        uint32 // failures before lockout
	RecoveryTime    uint32 // seconds until one failure is forgiven (0: DA protection off)
	LockoutRecovery uint32 // seconds before the lockout hierarchy may be tried again
	LockoutCounter  uint32 // failures counted now
}

func readDA(dev *tpm.Device) (*DAStatus, error) {
	m, r, l, c, err := dev.DAParameters()
	if err != nil {
		return nil, err
	}
	return &DAStatus{MaxTries: m, RecoveryTime: r, LockoutRecovery: l, LockoutCounter: c}, nil
}

// logDA logs the DA parameters at start and warns about settings under which
// the TPM adds little (or locks out before CTAP's own counters would).
func logDA(log *slog.Logger, da *DAStatus) {
	log.Info("TPM dictionary-attack parameters", "max_tries", da.MaxTries,
		"recovery_time_s", da.RecoveryTime, "lockout_recovery_s", da.LockoutRecovery,
		"lockout_counter", da.LockoutCounter)
	switch {
	case da.RecoveryTime == 0:
		log.Warn("the TPM's dictionary-attack protection is off (recovery time 0): wrong PINs are limited only by authd's counters")
	case da.MaxTries < 3:
		log.Warn("the TPM locks out after fewer wrong PINs than CTAP's 3 consecutive ones; PIN checks will be refused (PIN_AUTH_BLOCKED) early",
			"max_tries", da.MaxTries)
	}
	if da.MaxTries > 0 && da.LockoutCounter >= da.MaxTries {
		log.Warn("the TPM is in dictionary-attack lockout now: PIN checks are refused until it recovers",
			"lockout_counter", da.LockoutCounter, "seconds_per_forgiven_failure", da.RecoveryTime)
	}
}

// removeMasterKey deletes the software master key once the store's data key
// is sealed by the TPM: it protects nothing any more, and without it a copy
// of the state directory holds nothing that opens without this TPM.
func removeMasterKey(log *slog.Logger, dir string) {
	path := filepath.Join(dir, MasterKeyFile)
	switch err := os.Remove(path); {
	case err == nil:
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
		log.Info("removed the software master key: the data key is sealed by the TPM now", "path", path)
	case !errors.Is(err, fs.ErrNotExist):
		log.Warn("cannot remove the software master key that the TPM replaced", "path", path, "err", err)
	}
}
