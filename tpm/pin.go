package tpm

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// pinGuardData is what the guard seals. It is not secret: the guard exists
// for its authorization check, not to protect data.
var pinGuardData = []byte("authd PIN guard v1")

// pinAuth turns the caller's value into the authValue given to the TPM.
// go-tpm v0.9.8 strips an HMAC key at the first zero byte, not just trailing
// zeros as the TPM does (Part 1, 19.6.5), so a value with a zero byte inside
// would never authorize; the value is hashed with a domain label and zero
// bytes are replaced by 0x01 (a negligible loss of entropy) to avoid that.
func pinAuth(v []byte) []byte {
	h := sha256.New()
	h.Write([]byte("authd tpm PIN guard authValue\x00"))
	h.Write(v)
	a := h.Sum(nil)
	for i := range a {
		if a[i] == 0 {
			a[i] = 1
		}
	}
	return a
}

// NewPINGuard creates a PIN guard whose authorization is authValue (1 to 32
// bytes; the daemon derives 32 from the PIN hash). It is a keyedhash sealed
// object under the SRK without noDA, made with TPM2_Create through the
// salted session with EncryptIn, so the authValue crosses the bus encrypted.
func (d *Device) NewPINGuard(authValue []byte) (blob []byte, err error) {
	if len(authValue) == 0 || len(authValue) > sha256.Size {
		return nil, fmt.Errorf("tpm: PIN guard: authValue is %d bytes, want 1 to %d", len(authValue), sha256.Size)
	}
	err = d.run(func() error {
		rsp, err := d.create(tpm2.Create{
			ParentHandle: d.srkAuth(),
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
				UserAuth: tpm2.TPM2BAuth{Buffer: pinAuth(authValue)},
				Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: pinGuardData}),
			}},
			InPublic: tpm2.New2B(sealTemplate(false)),
		})
		if err != nil {
			return fmt.Errorf("tpm: create PIN guard (TPM2_Create): %w", err)
		}
		blob = marshalBlob(rsp.OutPublic, rsp.OutPrivate)
		return nil
	})
	return blob, err
}

// CheckPIN tries authValue against a guard from NewPINGuard: TPM2_Load,
// TPM2_Unseal authorised by a one-off HMAC session keyed with the authValue
// and salted with the SRK (so neither the value nor material for an offline
// guess crosses the bus), TPM2_FlushContext.
//
// A wrong value returns (false, nil) and has incremented the TPM's DA
// counter. In lockout it returns an error wrapping ErrLockout (and
// tpm2.TPMRCLockout), whatever the value.
func (d *Device) CheckPIN(blob []byte, authValue []byte) (ok bool, err error) {
	o, err := parseBlob(blob, kindPINGuard)
	if err != nil {
		return false, err
	}
	if len(authValue) == 0 || len(authValue) > sha256.Size {
		return false, fmt.Errorf("tpm: check PIN: authValue is %d bytes, want 1 to %d", len(authValue), sha256.Size)
	}
	err = d.run(func() error {
		h, err := d.loadWithSlot(o, kindPINGuard)
		if err != nil {
			return err
		}
		defer d.flushQuiet(h.Handle)
		sess := d.oneOffSession(pinAuth(authValue))
		defer d.flushSession(sess)
		rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: sess}}.Execute(d.t)
		switch {
		case err == nil:
			// The response HMAC verified with the authValue, so the TPM
			// accepted it; the data is checked only as a sanity check.
			ok = string(rsp.OutData.Buffer) == string(pinGuardData)
			if !ok {
				return fmt.Errorf("tpm: check PIN: unexpected guard contents: %w", ErrForeign)
			}
			return nil
		case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
			return nil
		case errors.Is(err, tpm2.TPMRCLockout):
			return fmt.Errorf("tpm: check PIN (TPM2_Unseal): %w: %w", ErrLockout, err)
		default:
			return fmt.Errorf("tpm: check PIN (TPM2_Unseal): %w", err)
		}
	})
	return ok, err
}

// DAParameters reads the TPM's dictionary-attack settings and state with
// TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES): TPM_PT_MAX_AUTH_FAIL (failures
// before lockout), TPM_PT_LOCKOUT_INTERVAL (seconds until one failure is
// forgiven), TPM_PT_LOCKOUT_RECOVERY (seconds before the lockout hierarchy
// may be tried again after a failure) and TPM_PT_LOCKOUT_COUNTER (current
// failures). It needs no SRK, so it works even with an owner password.
func (d *Device) DAParameters() (maxTries, recoveryTime, lockoutRecovery uint32, lockoutCounter uint32, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, 0, 0, 0, ErrClosed
	}
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutCounter),
		PropertyCount: 4,
	}.Execute(d.t)
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("tpm: DA parameters (TPM2_GetCapability): %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("tpm: DA parameters: %w", err)
	}
	seen := 0
	for _, p := range props.TPMProperty {
		switch p.Property {
		case tpm2.TPMPTMaxAuthFail:
			maxTries = p.Value
		case tpm2.TPMPTLockoutInterval:
			recoveryTime = p.Value
		case tpm2.TPMPTLockoutRecovery:
			lockoutRecovery = p.Value
		case tpm2.TPMPTLockoutCounter:
			lockoutCounter = p.Value
		default:
			continue
		}
		seen++
	}
	if seen != 4 {
		return 0, 0, 0, 0, fmt.Errorf("tpm: DA parameters: TPM returned %d of 4 properties", seen)
	}
	return maxTries, recoveryTime, lockoutRecovery, lockoutCounter, nil
}
