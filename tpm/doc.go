// Package tpm keeps authd's key material in a TPM 2.0: ES256 credential keys
// that never leave the TPM, sealed secrets (the key store's data key), and a
// PIN guard whose authorization failures feed the TPM's dictionary-attack
// protection. *Device satisfies keystore.Sealer and keystore.KeyMaker
// structurally; this package imports no other authd package (in particular
// not keystore or ctap2), only go-tpm.
//
// # Storage root key and sessions
//
// A Device creates the TCG reference ECC P-256 storage root key
// (tpm2.ECCSRKTemplate: restricted decrypt, AES-128-CFB, fixedTPM,
// fixedParent, sensitiveDataOrigin, userWithAuth, noDA) under the owner
// hierarchy once, and keeps it loaded with one HMAC session salted with it
// (AES-128-CFB parameter encryption on the way in). The SRK is derived from
// the owner seed, so it is the same after every TPM restart and every blob
// made under it keeps working; a TPM cleared or replaced cannot load them.
// When the TPM restarts under a Device (or a socket drops), the operation in
// flight fails and the next one recreates the SRK and session.
//
// TPM 2.0 Library, Part 3 commands used, and the session on each:
//
//	TPM2_CreatePrimary (24.1)    SRK; owner hierarchy, empty password session
//	TPM2_StartAuthSession (11.1) salted with the SRK (ECDH), HMAC, AES-128-CFB
//	TPM2_Create (12.1)           keys, sealed secrets, PIN guards: long-lived
//	                             salted session, EncryptIn (sensitive data and
//	                             authValue travel encrypted)
//	TPM2_Load (12.2)             long-lived salted session (SRK as parent)
//	TPM2_Sign (20.2)             long-lived salted session, EncryptIn (the
//	                             digest; a signature is no TPM2B, so its
//	                             response cannot be encrypted)
//	TPM2_Unseal (12.7)           one-off salted session, EncryptOut (the secret
//	                             travels encrypted); for the PIN guard the
//	                             session's HMAC key includes the authValue
//	TPM2_FlushContext (28.4)     no session (none allowed)
//	TPM2_GetCapability (30.2)    no session: DA parameters, handle lists
//	TPM2_Startup (9.3)           only if a simulator answers TPM_RC_INITIALIZE
//
// Cost per operation (TPM commands): Sign 1 when the key is one of the two
// cached ones, 2 on a miss with a free cache slot (Load, Sign), else 3 (flush
// the least recently used cached key, Load, Sign); NewKey and Seal 1; Unseal
// 4 (Load, StartAuthSession, Unseal, Flush); CheckPIN 4, 5 for a wrong PIN
// (go-tpm flushes the failed session). NewKey, Seal, NewPINGuard, Unseal and
// CheckPIN cost one more (a FlushContext) when two keys are cached.
//
// # PIN guard and dictionary-attack lockout
//
// The PIN guard is a TPM object whose authValue is derived from the PIN, so that
// checking a PIN is a TPM authorization and wrong PINs feed the TPM's
// dictionary-attack (DA) counter.
//
// How it sits under CTAP's counters: CTAP 2.1 keeps pinRetries (8, reset by
// a correct PIN, 0 = blocked for good) and blocks after 3 consecutive wrong
// PINs until a power cycle; authd keeps both in its state file. The TPM adds
// its own global counter (TPM_PT_LOCKOUT_COUNTER) over every DA-protected
// object of every TPM user: at TPM_PT_MAX_AUTH_FAIL failures it locks out,
// and it forgets one failure every TPM_PT_LOCKOUT_INTERVAL seconds. A correct
// PIN does NOT reset it (only time, or TPM2_DictionaryAttackLockReset with
// the lockout hierarchy's password, which authd does not have), and a
// non-orderly TPM shutdown after DA-protected use adds one failure.
//
// So the TPM bounds the guessing rate even if malware under the user's
// account rolls the state file back to restore pinRetries, but it can also
// lock out before CTAP's counters are used up: with swtpm's defaults (3
// tries, 1000 s interval, 1000 s lockout recovery) the third wrong PIN
// (counted since the last forgiven one, across correct PINs and reboots)
// locks PIN checks for about 17 minutes. Real TPMs are configured by the OS
// or firmware; read DAParameters at run time instead of assuming values.
// The daemon should map ErrLockout to CTAP2_ERR_PIN_AUTH_BLOCKED without
// spending a pinRetries value (no PIN was checked), and may tell the user
// how long the TPM needs (about LOCKOUT_INTERVAL per forgiven failure).
//
// Only the PIN guard is DA-protected: signing keys and sealed secrets have
// an empty authValue and noDA set, so a lockout never stops assertions that
// need no PIN, nor unsealing the store's data key. Replacing a guard (PIN
// change) does not revoke the old blob, which still verifies the old PIN:
// the daemon must delete it.
//
// # Blobs
//
// Every blob is "ATPM" ‖ version 1 ‖ TPM2B_PUBLIC ‖ TPM2B_PRIVATE; see
// IsTPMBlob. The private part is encrypted and integrity-protected by the TPM
// under the SRK: nothing in a blob is usable without this TPM.
//
// # Robustness
//
// TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING are retried with
// exponential back-off (about a second in total). libtpms has three transient
// object slots: a Device uses at most three (SRK and up to two cached signing
// keys; TPM2_Create, and TPM2_Load for Unseal or CheckPIN, first evict the
// least recently used key when two are cached, and a TPM_RC_OBJECT_MEMORY
// answer evicts one more and retries once), and every error path flushes
// what it loaded. Errors wrap go-tpm's tpm2.TPMRC, so errors.Is(err, tpm2.TPMRCLockout)
// and friends work alongside this package's sentinels.
package tpm
