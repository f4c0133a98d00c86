package ctap2

import (
	"context"
)

// getInfo describes exactly what works (CTAP 2.1 §6.4). FIDO_2_1 is claimed
// because every feature CTAP 2.1 makes mandatory for it is implemented:
// hmac-secret, credProtect, credential management with rk, pinUvAuthToken and
// PIN/UV auth protocol 2; FIDO_2_1_PRE because the 0x41 prototype works too.
func (a *Authenticator) getInfo() (*getInfoResponse, error) {
	st := a.cfg.State.State()
	settings, err := a.cfg.State.Settings()
	if err != nil {
		return nil, wrapStore("settings", err)
	}
	force := st.ForcePINChange
	remaining := a.cfg.Store.MaxDiscoverable() - a.cfg.Store.DiscoverableCount()
	if remaining < 0 {
		remaining = 0
	}
	info := &getInfoResponse{
		Versions:   []string{"FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"},
		Extensions: supportedExtensions,
		AAGUID:     AAGUID[:],
		Options: map[string]bool{
			"plat":                  true,
			"rk":                    true,
			"up":                    true,
			"clientPin":             st.PINSet,
			"pinUvAuthToken":        true,
			"credMgmt":              true,
			"credentialMgmtPreview": true,
			"largeBlobs":            true,
			"authnrCfg":             true,
			"setMinPINLength":       true,
			"alwaysUv":              settings.AlwaysUV,
			// Without a PIN token, non-discoverable credentials may still be
			// made (second-factor use) unless alwaysUv is on.
			"makeCredUvNotRqd": !settings.AlwaysUV,
		},
		MaxMsgSize:                  maxMsgSize,
		PinUvAuthProtocols:          supportedProtocols,
		MaxCredentialCountInList:    maxCredsInList,
		MaxCredentialIDLength:       maxCredIDLength,
		Transports:                  []string{"internal"},
		Algorithms:                  []algorithm{{Alg: -7, Type: "public-key"}, {Alg: -8, Type: "public-key"}},
		MaxSerializedLargeBlobArray: maxLargeBlobArray,
		ForcePINChange:              &force,
		MinPINLength:                st.MinPINLength,
		FirmwareVersion:             a.cfg.FirmwareVersion,
		MaxCredBlobLength:           maxCredBlobLength,
		MaxRPIDsForSetMinPINLength:  maxRPIDsForSetMinPINLength,
		RemainingDiscoverable:       &remaining,
		AttestationFormats:          attestationFormats,
	}
	// Built-in UV: "uv" is absent without a sensor, false while no finger is
	// enrolled, true when a fingerprint can verify the user now.
	if a.cfg.Verifier != nil {
		ready := a.uvConfigured(context.Background())
		info.Options["uv"] = ready
		info.UVModality = uvModalityFingerprint
		info.PreferredPlatformUvAttempts = uvAttemptsPerRequest
		if a.cfg.BioEnroller != nil {
			info.Options["bioEnroll"] = ready
			info.Options["uvBioEnroll"] = true
			info.Options["userVerificationMgmtPreview"] = ready
		}
	}
	return info, nil
}

// reset implements authenticatorReset (CTAP 2.1 §6.6): only within 10 s of
// power-up (the daemon's start) and only after the user confirmed a prompt
// saying every passkey will be erased.
func (a *Authenticator) reset(ctx context.Context, keepalive func(byte)) error {
	if since := a.cfg.Now().Sub(a.powerUp); since > resetWindow || since < 0 {
		return fail(ErrNotAllowed, "reset is only possible within 10 s of authd starting (%s ago)", since.Round(1e9))
	}
	if err := a.confirm(ctx, keepalive, "reset", "", "", ErrUserActionTimeout); err != nil {
		return err
	}
	if err := a.cfg.State.Wipe(); err != nil {
		return wrapStore("reset", err)
	}
	a.mu.Lock()
	a.resetTokenLocked()
	a.dropNextLocked()
	a.credMgmt, a.largeBlobWrite = nil, nil
	err := a.ka.Regenerate()
	a.mu.Unlock()
	if err != nil {
		return err
	}
	a.log.Warn("ctap2: authenticator reset: every credential and the PIN were erased")
	return nil
}

// selection implements authenticatorSelection (CTAP 2.1 §6.9).
func (a *Authenticator) selection(ctx context.Context, keepalive func(byte)) error {
	return a.confirm(ctx, keepalive, "selection", "", "", ErrUserActionTimeout)
}
