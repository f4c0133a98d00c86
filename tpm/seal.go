package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// MaxSealSize is the most plaintext one sealed object holds: a sealed
// object's data is a TPM2B_SENSITIVE_DATA, at most MAX_SYM_DATA (128) bytes
// on the TPMs we know of (Part 2, 10.4.4 and Part 4's TpmProfile.h). The key
// store seals only its 32-byte data key; larger secrets belong under it.
const MaxSealSize = 128

// Seal seals plaintext (1 to MaxSealSize bytes) to this TPM: a keyedhash
// sealed-data object created under the SRK with TPM2_Create. The plaintext
// travels encrypted (salted session, EncryptIn) and comes back only inside
// the blob's TPM2B_PRIVATE, encrypted under the SRK.
func (d *Device) Seal(plaintext []byte) (blob []byte, err error) {
	if len(plaintext) == 0 {
		// The TPM refuses a sealed object without data (TPM_RC_ATTRIBUTES).
		return nil, fmt.Errorf("tpm: seal: empty plaintext")
	}
	if len(plaintext) > MaxSealSize {
		return nil, fmt.Errorf("tpm: seal: %d bytes, at most %d fit in a sealed object: %w", len(plaintext), MaxSealSize, ErrTooLarge)
	}
	err = d.run(func() error {
		rsp, err := d.create(tpm2.Create{
			ParentHandle: d.srkAuth(),
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
				Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: plaintext}),
			}},
			InPublic: tpm2.New2B(sealTemplate(true)),
		})
		if err != nil {
			return fmt.Errorf("tpm: seal (TPM2_Create): %w", err)
		}
		blob = marshalBlob(rsp.OutPublic, rsp.OutPrivate)
		return nil
	})
	return blob, err
}

// Unseal returns the plaintext sealed in blob: TPM2_Load, TPM2_Unseal through
// a one-off salted session with EncryptOut (so the secret crosses the bus
// encrypted), TPM2_FlushContext. A blob from another TPM, altered, or not a
// sealed blob at all fails with an error wrapping ErrForeign.
func (d *Device) Unseal(blob []byte) (plaintext []byte, err error) {
	o, err := parseBlob(blob, kindSealed)
	if err != nil {
		return nil, err
	}
	err = d.run(func() error {
		h, err := d.loadWithSlot(o, kindSealed)
		if err != nil {
			return err
		}
		defer d.flushQuiet(h.Handle)
		sess := d.oneOffSession(nil)
		defer d.flushSession(sess)
		rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: sess}}.Execute(d.t)
		if err != nil {
			return fmt.Errorf("tpm: unseal (TPM2_Unseal): %w", err)
		}
		plaintext = rsp.OutData.Buffer
		return nil
	})
	return plaintext, err
}
