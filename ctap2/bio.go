package ctap2

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/authd/authd/internal/cbor"
)

// Errors a BioEnroller returns.
var (
	ErrBioFull    = errors.New("ctap2: fingerprint storage full")
	ErrBioUnknown = errors.New("ctap2: no such fingerprint template")
)

// BioEnroller manages fingerprint templates for authenticatorBioEnrollment
// (CTAP 2.1 §6.7). Template IDs are opaque bytes chosen by the implementation.
// Sample statuses are CTAP's lastEnrollSampleStatus codes (0 = good). Errors:
// ctx.Err() when cancelled or timed out; one wrapping ErrBioFull when no more
// templates fit; one wrapping ErrBioUnknown for an unknown template.
type BioEnroller interface {
	// SensorInfo returns fingerprintKind (1 touch, 2 swipe) and the number of
	// good samples an enrollment needs.
	SensorInfo(ctx context.Context) (kind, samples int, err error)
	// EnrollBegin starts an enrollment and captures its first sample.
	EnrollBegin(ctx context.Context, timeout time.Duration) (id []byte, status, remaining int, err error)
	// EnrollNext captures the next sample of the enrollment id.
	EnrollNext(ctx context.Context, id []byte, timeout time.Duration) (status, remaining int, err error)
	// EnrollCancel abandons the enrollment in progress, if any.
	EnrollCancel()
	// Templates lists the enrolled templates with their friendly names.
	Templates(ctx context.Context) ([]Template, error)
	// SetName sets a template's friendly name; Remove deletes it.
	SetName(ctx context.Context, id []byte, name string) error
	Remove(ctx context.Context, id []byte) error
}

// Template is one enrolled fingerprint.
type Template struct {
	ID   []byte
	Name string
}

// authenticatorBioEnrollment (CTAP 2.1 §6.7) subcommands.
const (
	bioEnrollBegin         = 0x01
	bioEnrollCaptureNext   = 0x02
	bioCancelEnrollment    = 0x03
	bioEnumerate           = 0x04
	bioSetFriendlyName     = 0x05
	bioRemove              = 0x06
	bioGetSensorInfo       = 0x07
	modalityFingerprint    = 0x01
	maxTemplateFriendlyLen = 64
	defaultSampleTimeout   = 30 * time.Second
)

type bioRequest struct {
	Modality          *uint64         `cbor:"1,keyasint"`
	SubCommand        *uint64         `cbor:"2,keyasint"`
	SubCommandParams  cbor.RawMessage `cbor:"3,keyasint"`
	PinUvAuthProtocol *uint64         `cbor:"4,keyasint"`
	PinUvAuthParam    cbor.Bytes      `cbor:"5,keyasint"`
	GetModality       *bool           `cbor:"6,keyasint"`
}

type bioParams struct {
	TemplateID   cbor.Bytes `cbor:"1,keyasint"`
	FriendlyName *string    `cbor:"2,keyasint"`
	TimeoutMs    *uint64    `cbor:"3,keyasint"`
}

type bioTemplateInfo struct {
	ID   []byte `cbor:"1,keyasint"`
	Name string `cbor:"2,keyasint,omitempty"`
}

type bioResponse struct {
	Modality           int               `cbor:"1,keyasint,omitempty"`
	FingerprintKind    int               `cbor:"2,keyasint,omitempty"`
	MaxCaptureSamples  int               `cbor:"3,keyasint,omitempty"`
	TemplateID         []byte            `cbor:"4,keyasint,omitempty"`
	LastSampleStatus   *int              `cbor:"5,keyasint,omitempty"`
	RemainingSamples   *int              `cbor:"6,keyasint,omitempty"`
	TemplateInfos      []bioTemplateInfo `cbor:"7,keyasint,omitempty"`
	MaxFriendlyNameLen int               `cbor:"8,keyasint,omitempty"`
}

// bioEnrollment serves authenticatorBioEnrollment (and the 0x40 prototype).
func (a *Authenticator) bioEnrollment(ctx context.Context, req *bioRequest, keepalive func(byte)) (any, error) {
	if a.cfg.BioEnroller == nil {
		return nil, fail(ErrInvalidCommand, "bio enrollment is not offered")
	}
	if req.GetModality != nil && *req.GetModality {
		return &bioResponse{Modality: modalityFingerprint}, nil
	}
	if req.SubCommand == nil {
		return nil, fail(ErrMissingParameter, "bioEnrollment: subCommand missing")
	}
	if req.Modality == nil {
		return nil, fail(ErrMissingParameter, "bioEnrollment: modality missing")
	}
	if *req.Modality != modalityFingerprint {
		return nil, fail(ErrInvalidParameter, "bioEnrollment: modality %d is not fingerprint", *req.Modality)
	}
	sub := *req.SubCommand
	var params bioParams
	if req.SubCommandParams != nil {
		if err := decode(req.SubCommandParams, &params); err != nil {
			return nil, err
		}
	}
	be := a.cfg.BioEnroller
	switch sub {
	case bioGetSensorInfo:
		kind, samples, err := be.SensorInfo(ctx)
		if err != nil {
			return nil, fail(ErrOther, "fingerprint sensor: %v", err)
		}
		return &bioResponse{FingerprintKind: kind, MaxCaptureSamples: samples, MaxFriendlyNameLen: maxTemplateFriendlyLen}, nil
	case bioCancelEnrollment:
		be.EnrollCancel()
		a.mu.Lock()
		a.bioEnrolling = nil
		a.mu.Unlock()
		return nil, nil
	case bioEnrollBegin, bioEnrollCaptureNext, bioEnumerate, bioSetFriendlyName, bioRemove:
	default:
		return nil, fail(ErrInvalidSubcommand, "bioEnrollment subcommand 0x%02x", sub)
	}
	// authenticate(token, uint8(modality) ‖ uint8(subCommand) ‖ subCommandParams), permission be.
	if req.PinUvAuthParam == nil {
		return nil, fail(ErrPUATRequired, "bio enrollment needs a pinUvAuthToken")
	}
	p, err := protocolOf(req.PinUvAuthProtocol)
	if err != nil {
		return nil, err
	}
	msg := append([]byte{byte(*req.Modality), byte(sub)}, req.SubCommandParams...)
	a.mu.Lock()
	ok := a.verifyTokenLocked(p, msg, req.PinUvAuthParam)
	perm := a.token.permissions&permBE != 0
	a.mu.Unlock()
	if !ok {
		return nil, fail(ErrPINAuthInvalid, "bioEnrollment: pinUvAuthParam does not verify with the current token")
	}
	if !perm {
		return nil, fail(ErrPINAuthInvalid, "bioEnrollment: token lacks the be permission")
	}
	timeout := defaultSampleTimeout
	if params.TimeoutMs != nil && *params.TimeoutMs > 0 {
		timeout = time.Duration(*params.TimeoutMs) * time.Millisecond
	}
	mapErr := func(what string, err error) error {
		switch {
		case ctx.Err() != nil:
			return fail(ErrKeepaliveCancel, "%s cancelled", what)
		case errors.Is(err, context.DeadlineExceeded):
			return fail(ErrUserActionTimeout, "%s: no finger within the timeout", what)
		case errors.Is(err, ErrBioFull):
			return fail(ErrFPDatabaseFull, "%s: no room for another fingerprint", what)
		case errors.Is(err, ErrBioUnknown):
			return fail(ErrInvalidOption, "%s: no such template", what)
		}
		return fail(ErrOther, "%s: %v", what, err)
	}
	switch sub {
	case bioEnrollBegin, bioEnrollCaptureNext:
		keepalive(StatusUPNeeded)
		defer keepalive(StatusProcessing)
		var id []byte
		var status, remaining int
		if sub == bioEnrollBegin {
			if id, status, remaining, err = be.EnrollBegin(ctx, timeout); err != nil {
				return nil, mapErr("enrollBegin", err)
			}
			a.mu.Lock()
			a.bioEnrolling = id
			a.mu.Unlock()
		} else {
			a.mu.Lock()
			cur := a.bioEnrolling
			a.mu.Unlock()
			if cur == nil || !bytes.Equal(cur, params.TemplateID) {
				return nil, fail(ErrInvalidParameter, "enrollCaptureNextSample: templateId is not the enrollment in progress")
			}
			if status, remaining, err = be.EnrollNext(ctx, cur, timeout); err != nil {
				return nil, mapErr("enrollCaptureNextSample", err)
			}
		}
		if remaining == 0 {
			a.mu.Lock()
			a.bioEnrolling = nil
			a.mu.Unlock()
		}
		return &bioResponse{TemplateID: id, LastSampleStatus: &status, RemainingSamples: &remaining}, nil
	case bioEnumerate:
		ts, err := be.Templates(ctx)
		if err != nil {
			return nil, mapErr("enumerateEnrollments", err)
		}
		if len(ts) == 0 {
			return nil, fail(ErrInvalidOption, "no fingerprints enrolled")
		}
		resp := &bioResponse{}
		for _, t := range ts {
			resp.TemplateInfos = append(resp.TemplateInfos, bioTemplateInfo{ID: t.ID, Name: t.Name})
		}
		return resp, nil
	case bioSetFriendlyName:
		if params.TemplateID == nil || params.FriendlyName == nil {
			return nil, fail(ErrMissingParameter, "setFriendlyName needs templateId and templateFriendlyName")
		}
		if len(*params.FriendlyName) > maxTemplateFriendlyLen {
			return nil, fail(ErrInvalidParameter, "friendly name longer than %d bytes", maxTemplateFriendlyLen)
		}
		if err := be.SetName(ctx, params.TemplateID, *params.FriendlyName); err != nil {
			return nil, mapErr("setFriendlyName", err)
		}
		return nil, nil
	default: // bioRemove
		if params.TemplateID == nil {
			return nil, fail(ErrMissingParameter, "removeEnrollment needs templateId")
		}
		if err := be.Remove(ctx, params.TemplateID); err != nil {
			return nil, mapErr("removeEnrollment", err)
		}
		return nil, nil
	}
}
