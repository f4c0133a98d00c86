package ctap2

import (
	"bytes"
	"slices"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/keystore"
)

// authenticatorConfig (CTAP 2.1 §6.11) subcommands.
const (
	cfgEnableEnterpriseAttestation = 0x01
	cfgToggleAlwaysUv              = 0x02
	cfgSetMinPINLength             = 0x03
	cfgVendorPrototype             = 0xff

	maxRPIDsForSetMinPINLength = 8
)

type configRequest struct {
	SubCommand        *uint64         `cbor:"1,keyasint"`
	SubCommandParams  cbor.RawMessage `cbor:"2,keyasint"`
	PinUvAuthProtocol *uint64         `cbor:"3,keyasint"`
	PinUvAuthParam    cbor.Bytes      `cbor:"4,keyasint"`
}

type setMinPINLengthParams struct {
	NewMinPINLength   *uint64   `cbor:"1,keyasint"`
	MinPinLengthRPIDs *[]string `cbor:"2,keyasint"`
	ForceChangePin    *bool     `cbor:"3,keyasint"`
}

func (a *Authenticator) config(req *configRequest) (any, error) {
	if req.SubCommand == nil {
		return nil, fail(ErrMissingParameter, "config: subCommand missing")
	}
	sub := *req.SubCommand
	switch sub {
	case cfgToggleAlwaysUv, cfgSetMinPINLength, cfgEnableEnterpriseAttestation:
	default:
		return nil, fail(ErrInvalidSubcommand, "config subcommand 0x%02x", sub)
	}
	var params setMinPINLengthParams
	if sub == cfgSetMinPINLength && req.SubCommandParams != nil {
		if err := decode(req.SubCommandParams, &params); err != nil {
			return nil, err
		}
	}
	// authenticate(token, 32×0xff ‖ 0x0d ‖ uint8(subCommand) ‖ subCommandParams), permission acfg.
	if err := a.requireAuth(req.PinUvAuthParam, req.PinUvAuthProtocol, func() []byte {
		msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0d, byte(sub))
		return append(msg, req.SubCommandParams...)
	}, permACFG, "config"); err != nil {
		return nil, err
	}
	switch sub {
	case cfgEnableEnterpriseAttestation:
		return nil, fail(ErrInvalidParameter, "enterprise attestation is not supported")
	case cfgToggleAlwaysUv:
		var now bool
		if err := a.cfg.State.UpdateSettings(func(s *keystore.Settings) error {
			s.AlwaysUV = !s.AlwaysUV
			now = s.AlwaysUV
			return nil
		}); err != nil {
			return nil, wrapStore("toggleAlwaysUv", err)
		}
		a.log.Info("ctap2: alwaysUv toggled", "alwaysUv", now)
		return nil, nil
	}
	// setMinPINLength.
	st := a.cfg.State.State()
	newMin := uint64(st.MinPINLength)
	if params.NewMinPINLength != nil {
		newMin = *params.NewMinPINLength
	}
	if newMin < uint64(st.MinPINLength) {
		return nil, fail(ErrPINPolicyViolation, "minPINLength may only grow (%d < %d)", newMin, st.MinPINLength)
	}
	if newMin > maxPINBytes {
		return nil, fail(ErrPINPolicyViolation, "minPINLength %d exceeds the maximum PIN length", newMin)
	}
	force := params.ForceChangePin != nil && *params.ForceChangePin
	if force && !st.PINSet {
		return nil, fail(ErrPINNotSet, "forceChangePin without a PIN")
	}
	if params.MinPinLengthRPIDs != nil && len(*params.MinPinLengthRPIDs) > maxRPIDsForSetMinPINLength {
		return nil, fail(ErrKeyStoreFull, "at most %d minPinLengthRPIDs", maxRPIDsForSetMinPINLength)
	}
	if params.MinPinLengthRPIDs != nil {
		if err := a.cfg.State.UpdateSettings(func(s *keystore.Settings) error {
			for _, id := range *params.MinPinLengthRPIDs {
				if !slices.Contains(s.MinPINLengthRPIDs, id) {
					s.MinPINLengthRPIDs = append(s.MinPINLengthRPIDs, id)
				}
			}
			if len(s.MinPINLengthRPIDs) > maxRPIDsForSetMinPINLength {
				return fail(ErrKeyStoreFull, "at most %d minPinLengthRPIDs", maxRPIDsForSetMinPINLength)
			}
			return nil
		}); err != nil {
			return nil, wrapStore("setMinPINLength", err)
		}
	}
	if err := a.cfg.State.UpdateState(func(s *keystore.State) error {
		s.MinPINLength = int(newMin)
		// A PIN shorter than the new minimum must be changed.
		if s.PINSet && (force || s.PINCodePoints < int(newMin)) {
			s.ForcePINChange = true
		}
		return nil
	}); err != nil {
		return nil, wrapStore("setMinPINLength", err)
	}
	if force || (st.PINSet && st.PINCodePoints < int(newMin)) {
		a.mu.Lock()
		a.resetTokenLocked() // tokens from the old PIN no longer count
		a.mu.Unlock()
	}
	a.log.Info("ctap2: minimum PIN length set", "minPINLength", newMin, "forcePINChange", force)
	return nil, nil
}
