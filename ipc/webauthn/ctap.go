package webauthn

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
	"github.com/authd/authd/ipc"
)

// CTAP 2.1 command bytes and clientPIN subcommands (§6, §6.5.5).
const (
	cmdMakeCredential   = 0x01
	cmdGetAssertion     = 0x02
	cmdGetInfo          = 0x04
	cmdClientPIN        = 0x06
	cmdGetNextAssertion = 0x08

	pinGetRetries         = 0x01
	pinGetKeyAgreement    = 0x02
	pinGetTokenUsingUV    = 0x06
	pinGetTokenUsingPIN   = 0x09
	permMakeCredential    = 0x01
	permGetAssertion      = 0x02
	algES256              = -7
	algEdDSA              = -8
	algRS256              = -257
	busyRetryInterval     = 50 * time.Millisecond
	defaultTimeout        = 300 * time.Second
	maxTimeout            = 600 * time.Second
	minTimeout            = 15 * time.Second
	keepaliveUPNeededByte = 2
)

// CTAP status codes the client reacts to (CTAP 2.1 §8.2).
const (
	stOK                   = 0x00
	stInvalidCommand       = 0x01
	stInvalidParameter     = 0x02
	stTimeout              = 0x05
	stChannelBusy          = 0x06
	stLimitExceeded        = 0x15
	stCredentialExcluded   = 0x19
	stInvalidCredential    = 0x22
	stUnsupportedAlgorithm = 0x26
	stOperationDenied      = 0x27
	stKeyStoreFull         = 0x28
	stUnsupportedOption    = 0x2B
	stInvalidOption        = 0x2C
	stKeepaliveCancel      = 0x2D
	stNoCredentials        = 0x2E
	stUserActionTimeout    = 0x2F
	stNotAllowed           = 0x30
	stPINInvalid           = 0x31
	stPINBlocked           = 0x32
	stPINAuthInvalid       = 0x33
	stPINAuthBlocked       = 0x34
	stPINNotSet            = 0x35
	stPUATRequired         = 0x36
	stPINPolicyViolation   = 0x37
	stActionTimeout        = 0x3A
	stUVBlocked            = 0x3C
	stUVInvalid            = 0x3F
	stUnauthorizedPerm     = 0x40
)

// ctapError is a non-zero CTAP status from the authenticator.
type ctapError struct {
	cmd    byte
	status byte
}

func (e *ctapError) Error() string {
	return fmt.Sprintf("authenticator command 0x%02x failed with status 0x%02x", e.cmd, e.status)
}

func statusOf(err error) (byte, bool) {
	var ce *ctapError
	if errors.As(err, &ce) {
		return ce.status, true
	}
	return 0, false
}

// session is one create() or get() in progress.
type session struct {
	c      *Client
	parent context.Context // the caller's: its cancellation is AbortError
	ctx    context.Context // parent plus the operation timeout: NotAllowedError
	info   *getInfo
}

// call sends one command and returns the response body (without the status
// byte). CHANNEL_BUSY (another client holds the authenticator) is retried
// until the operation's deadline.
func (s *session) call(cmd byte, params any) ([]byte, error) {
	msg := []byte{cmd}
	if params != nil {
		b, err := cbor.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("encoding command 0x%02x: %w", cmd, err)
		}
		msg = append(msg, b...)
	}
	for {
		resp := s.c.Transport.ServeCTAP(s.ctx, msg, func(byte) {})
		if len(resp) == 0 {
			return nil, fmt.Errorf("authenticator command 0x%02x: empty response", cmd)
		}
		if resp[0] == stChannelBusy {
			t := time.NewTimer(busyRetryInterval)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return nil, &ctapError{cmd: cmd, status: stKeepaliveCancel}
			case <-t.C:
				continue
			}
		}
		if resp[0] != stOK {
			return nil, &ctapError{cmd: cmd, status: resp[0]}
		}
		return resp[1:], nil
	}
}

// decode decodes a response map (canonical CBOR, integer keys).
func decode(body []byte, v any) error {
	if len(body) == 0 {
		return errors.New("authenticator returned no response body")
	}
	if err := cbor.UnmarshalRecord(body, v); err != nil {
		return fmt.Errorf("decoding the authenticator's response: %w", err)
	}
	return nil
}

// getInfo is the part of authenticatorGetInfo the client uses.
type getInfo struct {
	Versions           []string        `cbor:"1,keyasint"`
	Extensions         []string        `cbor:"2,keyasint"`
	AAGUID             []byte          `cbor:"3,keyasint"`
	Options            map[string]bool `cbor:"4,keyasint"`
	PinUvAuthProtocols []int           `cbor:"6,keyasint"`
	MaxMsgSize         int             `cbor:"5,keyasint"`
	MaxCredsInList     int             `cbor:"7,keyasint"`
	MaxCredIDLength    int             `cbor:"8,keyasint"`
	Algorithms         []struct {
		Alg  int64  `cbor:"alg"`
		Type string `cbor:"type"`
	} `cbor:"10,keyasint"`
	MaxSerializedLargeBlobArray int      `cbor:"11,keyasint"`
	AttestationFormats          []string `cbor:"22,keyasint"`
}

func (i *getInfo) option(name string) (value, present bool) {
	v, ok := i.Options[name]
	return v, ok
}

func (i *getInfo) hasExtension(name string) bool {
	for _, e := range i.Extensions {
		if e == name {
			return true
		}
	}
	return false
}

func (i *getInfo) supportsAlg(alg int64) bool {
	if len(i.Algorithms) == 0 {
		return alg == algES256 // CTAP 2.0 authenticators: ES256 only
	}
	for _, a := range i.Algorithms {
		if a.Type == "public-key" && a.Alg == alg {
			return true
		}
	}
	return false
}

// protocol picks the PIN/UV auth protocol: two when offered, else one.
func (i *getInfo) protocol() pinuv.Protocol {
	for _, v := range i.PinUvAuthProtocols {
		if v == 2 {
			return pinuv.V2
		}
	}
	for _, v := range i.PinUvAuthProtocols {
		if v == 1 {
			return pinuv.V1
		}
	}
	return pinuv.V2
}

func (s *session) loadInfo() error {
	body, err := s.call(cmdGetInfo, nil)
	if err != nil {
		return err
	}
	s.info = &getInfo{}
	return decode(body, s.info)
}

// platformKey is a key agreement with the authenticator: the platform's
// ephemeral key and the shared secret for one protocol.
type platformKey struct {
	pub cbor.RawMessage // the platform's COSE key (alg -25)
	ss  pinuv.SharedSecret
}

func (k *platformKey) clear() { k.ss.Clear() }

// keyAgreement runs clientPIN getKeyAgreement and derives the shared secret
// (CTAP 2.1 §6.5.6 encapsulate(), platform side).
func (s *session) keyAgreement(p pinuv.Protocol) (*platformKey, error) {
	body, err := s.call(cmdClientPIN, map[int]any{1: p.Version(), 2: pinGetKeyAgreement})
	if err != nil {
		return nil, err
	}
	var resp struct {
		KeyAgreement *cose.Key `cbor:"1,keyasint"`
	}
	if err := decode(body, &resp); err != nil {
		return nil, err
	}
	if resp.KeyAgreement == nil {
		return nil, errors.New("getKeyAgreement returned no key")
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ka, err := pinuv.NewKeyAgreementFromKey(priv)
	if err != nil {
		return nil, err
	}
	ss, err := ka.Decapsulate(p, *resp.KeyAgreement)
	if err != nil {
		return nil, fmt.Errorf("authenticator key agreement: %w", err)
	}
	return &platformKey{pub: ka.PublicKeyCOSE(), ss: ss}, nil
}

// token is a pinUvAuthToken with the protocol it was issued for.
type token struct {
	p   pinuv.Protocol
	key []byte
}

func (t *token) param(clientDataHash []byte) []byte { return t.p.Authenticate(t.key, clientDataHash) }

func (t *token) clear() {
	if t != nil {
		clear(t.key)
	}
}

func (s *session) decryptToken(p pinuv.Protocol, k *platformKey, body []byte) (*token, error) {
	var resp struct {
		Token []byte `cbor:"2,keyasint"`
	}
	if err := decode(body, &resp); err != nil {
		return nil, err
	}
	key, err := k.ss.Decrypt(resp.Token)
	if err != nil || (len(key) != 16 && len(key) != 32) {
		return nil, errors.New("the authenticator returned an unusable pinUvAuthToken")
	}
	return &token{p: p, key: key}, nil
}

// uvToken asks for a token through built-in user verification
// (getPinUvAuthTokenUsingUvWithPermissions, CTAP 2.1 §6.5.5.7.3).
func (s *session) uvToken(perm int, rpID string) (*token, error) {
	p := s.info.protocol()
	k, err := s.keyAgreement(p)
	if err != nil {
		return nil, err
	}
	defer k.clear()
	body, err := s.call(cmdClientPIN, map[int]any{1: p.Version(), 2: pinGetTokenUsingUV, 3: k.pub, 9: perm, 10: rpID})
	if err != nil {
		return nil, err
	}
	return s.decryptToken(p, k, body)
}

func (s *session) pinRetries() (int, error) {
	body, err := s.call(cmdClientPIN, map[int]any{1: s.info.protocol().Version(), 2: pinGetRetries})
	if err != nil {
		return 0, err
	}
	var resp struct {
		Retries    int  `cbor:"3,keyasint"`
		PowerCycle bool `cbor:"4,keyasint"`
	}
	if err := decode(body, &resp); err != nil {
		return 0, err
	}
	if resp.PowerCycle {
		return 0, ipc.Errorf(ipc.NotAllowedError, "the PIN is blocked after too many wrong attempts; it works again after a reboot")
	}
	return resp.Retries, nil
}

// pinToken collects the PIN through the UserVerifier and exchanges it for a
// token (getPinUvAuthTokenUsingPinWithPermissions, CTAP 2.1 §6.5.5.7.2). A
// wrong PIN asks again while the authenticator has retries left.
func (s *session) pinToken(perm int, rpID string) (*token, error) {
	if s.c.UV == nil {
		return nil, ipc.Errorf(ipc.NotAllowedError, "user verification by PIN is needed, but no PIN prompt is available")
	}
	p := s.info.protocol()
	for attempt := 1; ; attempt++ {
		retries, err := s.pinRetries()
		if err != nil {
			return nil, err
		}
		if retries <= 0 {
			return nil, ipc.Errorf(ipc.NotAllowedError, "the PIN is blocked: no retries left (only a reset helps)")
		}
		pin, err := s.c.UV.PIN(s.ctx, attempt, retries)
		if err != nil {
			if s.ctx.Err() != nil {
				return nil, &ctapError{cmd: cmdClientPIN, status: stKeepaliveCancel}
			}
			return nil, ipc.Errorf(ipc.NotAllowedError, "no PIN was entered: %v", err)
		}
		tok, err := s.pinTokenOnce(p, pin, perm, rpID)
		clear(pin)
		if st, ok := statusOf(err); ok && st == stPINInvalid {
			s.c.log().Info("webauthn: wrong PIN", "attempt", attempt)
			continue
		}
		return tok, err
	}
}

func (s *session) pinTokenOnce(p pinuv.Protocol, pin []byte, perm int, rpID string) (*token, error) {
	k, err := s.keyAgreement(p)
	if err != nil {
		return nil, err
	}
	defer k.clear()
	h := pinuv.PINHash(pin)
	enc, err := k.ss.Encrypt(h[:])
	clear(h[:])
	if err != nil {
		return nil, err
	}
	body, err := s.call(cmdClientPIN, map[int]any{1: p.Version(), 2: pinGetTokenUsingPIN, 3: k.pub, 6: enc, 9: perm, 10: rpID})
	if err != nil {
		return nil, err
	}
	return s.decryptToken(p, k, body)
}

// userVerification acquires a token for perm and rpID: built-in UV first
// (when the authenticator reports uv=true), the PIN when that is unavailable
// or fails. It returns nil, nil when neither is configured and UV is only
// preferred.
func (s *session) userVerification(perm int, rpID string, required bool) (*token, error) {
	uv, _ := s.info.option("uv")
	pin, _ := s.info.option("clientPin")
	if uv {
		tok, err := s.uvToken(perm, rpID)
		if err == nil {
			return tok, nil
		}
		st, ok := statusOf(err)
		if !ok || st == stKeepaliveCancel {
			return nil, err
		}
		s.c.log().Info("webauthn: built-in user verification failed; trying the PIN", "status", fmt.Sprintf("0x%02x", st))
		if !pin {
			return nil, err
		}
	}
	if pin {
		return s.pinToken(perm, rpID)
	}
	if required {
		return nil, ipc.Errorf(ipc.NotAllowedError, "user verification is required, but the authenticator has neither a PIN nor built-in user verification set up")
	}
	return nil, nil
}

// mapError turns a failure into the DOMException a browser would report
// (WebAuthn L3 §5.1.3, §5.1.4, §6.3.2–6.3.3 "error code equivalent to").
func (s *session) mapError(err error) error {
	if err == nil {
		return nil
	}
	var ie *ipc.Error
	if errors.As(err, &ie) {
		return ie
	}
	if s.parent.Err() != nil {
		return ipc.Errorf(ipc.AbortError, "the operation was cancelled")
	}
	if s.ctx.Err() != nil {
		return ipc.Errorf(ipc.NotAllowedError, "the operation timed out")
	}
	st, ok := statusOf(err)
	if !ok {
		return ipc.Errorf(ipc.UnknownError, "%v", err)
	}
	switch st {
	case stKeepaliveCancel:
		return ipc.Errorf(ipc.AbortError, "the operation was cancelled")
	case stCredentialExcluded:
		return ipc.Errorf(ipc.InvalidStateError, "a credential for this account already exists on this authenticator")
	case stUnsupportedAlgorithm:
		return ipc.Errorf(ipc.NotSupportedError, "the authenticator supports none of the requested algorithms")
	case stKeyStoreFull:
		return ipc.Errorf(ipc.ConstraintError, "the authenticator has no room for another discoverable credential")
	case stUnsupportedOption:
		return ipc.Errorf(ipc.ConstraintError, "the authenticator does not support a requested option")
	case stOperationDenied:
		return ipc.Errorf(ipc.NotAllowedError, "the user declined")
	case stUserActionTimeout, stActionTimeout, stTimeout:
		return ipc.Errorf(ipc.NotAllowedError, "the user did not respond in time")
	case stNoCredentials, stInvalidCredential:
		return ipc.Errorf(ipc.NotAllowedError, "no passkey on this authenticator matches the request")
	case stPINBlocked:
		return ipc.Errorf(ipc.NotAllowedError, "the PIN is blocked: no retries left (only a reset helps)")
	case stPINAuthBlocked:
		return ipc.Errorf(ipc.NotAllowedError, "the PIN is blocked after too many wrong attempts; it works again after a reboot")
	case stUVBlocked, stUVInvalid:
		return ipc.Errorf(ipc.NotAllowedError, "the user could not be verified")
	case stPINNotSet, stPUATRequired, stNotAllowed, stPINAuthInvalid, stPINPolicyViolation, stUnauthorizedPerm, stInvalidOption:
		return ipc.Errorf(ipc.NotAllowedError, "the authenticator refused the request (%v)", err)
	}
	return ipc.Errorf(ipc.UnknownError, "%v", err)
}

// authData is parsed authenticator data (WebAuthn L3 §6.1).
type authData struct {
	raw       []byte
	rpIDHash  []byte
	flags     byte
	credID    []byte
	publicKey []byte // COSE_Key
	ext       []byte // CBOR map, or nil
}

const (
	flagAT = 0x40
	flagED = 0x80
)

func parseAuthData(b []byte) (*authData, error) {
	if len(b) < 37 {
		return nil, fmt.Errorf("authenticator data of %d bytes", len(b))
	}
	ad := &authData{raw: b, rpIDHash: b[:32], flags: b[32]}
	rest := b[37:]
	if ad.flags&flagAT != 0 {
		if len(rest) < 18 {
			return nil, errors.New("truncated attested credential data")
		}
		n := int(binary.BigEndian.Uint16(rest[16:18]))
		rest = rest[18:]
		if len(rest) < n {
			return nil, errors.New("truncated credential ID")
		}
		ad.credID, rest = rest[:n], rest[n:]
		m, err := cborItemLen(rest, 0)
		if err != nil {
			return nil, fmt.Errorf("credential public key: %w", err)
		}
		ad.publicKey, rest = rest[:m], rest[m:]
	}
	if ad.flags&flagED != 0 {
		m, err := cborItemLen(rest, 0)
		if err != nil {
			return nil, fmt.Errorf("extensions: %w", err)
		}
		ad.ext, rest = rest[:m], rest[m:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes after the authenticator data", len(rest))
	}
	return ad, nil
}

// cborItemLen returns the length of the first (definite-length) CBOR item
// in b; enough to split authenticator data, whose parts are then decoded
// strictly by internal/cbor.
func cborItemLen(b []byte, depth int) (int, error) {
	if depth > 16 {
		return 0, errors.New("cbor nesting too deep")
	}
	if len(b) == 0 {
		return 0, errors.New("truncated cbor")
	}
	major, info := b[0]>>5, b[0]&0x1f
	n := 1
	var arg uint64
	switch {
	case info < 24:
		arg = uint64(info)
	case info <= 27:
		size := 1 << (info - 24)
		if len(b) < 1+size {
			return 0, errors.New("truncated cbor")
		}
		for _, c := range b[1 : 1+size] {
			arg = arg<<8 | uint64(c)
		}
		n += size
	default:
		return 0, errors.New("indefinite or reserved cbor length")
	}
	switch major {
	case 0, 1, 7:
		return n, nil
	case 2, 3:
		if arg > uint64(len(b)-n) {
			return 0, errors.New("truncated cbor")
		}
		return n + int(arg), nil
	case 4, 5:
		items := arg
		if major == 5 {
			items *= 2
		}
		if items > uint64(len(b)) {
			return 0, errors.New("truncated cbor")
		}
		for range items {
			m, err := cborItemLen(b[n:], depth+1)
			if err != nil {
				return 0, err
			}
			n += m
		}
		return n, nil
	}
	return 0, errors.New("cbor tags are not allowed")
}
