package ctap2

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"sort"

	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/keystore"
)

// authenticatorCredentialManagement subcommands (CTAP 2.1 §6.8).
const (
	cmGetCredsMetadata      = 0x01
	cmEnumerateRPsBegin     = 0x02
	cmEnumerateRPsNext      = 0x03
	cmEnumerateCredsBegin   = 0x04
	cmEnumerateCredsNext    = 0x05
	cmDeleteCredential      = 0x06
	cmUpdateUserInformation = 0x07
)

// credMgmtState remembers an enumeration for its GetNext subcommand.
type credMgmtState struct {
	rps   []keystore.RP
	creds []*keystore.Credential
	next  int
	sub   uint64 // the GetNext subcommand this state serves
}

func (a *Authenticator) credentialManagement(req *credMgmtRequest) (any, error) {
	if req.SubCommand == nil {
		return nil, fail(ErrMissingParameter, "subCommand missing")
	}
	sub := *req.SubCommand
	var params credMgmtParams
	if req.SubCommandParams != nil {
		if err := decode(req.SubCommandParams, &params); err != nil {
			return nil, err
		}
	}
	switch sub {
	case cmEnumerateRPsNext, cmEnumerateCredsNext:
		return a.credMgmtNext(sub)
	case cmGetCredsMetadata, cmEnumerateRPsBegin, cmEnumerateCredsBegin, cmDeleteCredential, cmUpdateUserInformation:
	default:
		return nil, fail(ErrInvalidSubcommand, "credentialManagement subcommand 0x%02x", sub)
	}
	a.mu.Lock()
	a.credMgmt = nil
	a.mu.Unlock()
	if sub == cmEnumerateCredsBegin && params.RPIDHash == nil {
		return nil, fail(ErrMissingParameter, "rpIDHash missing")
	}
	if (sub == cmDeleteCredential || sub == cmUpdateUserInformation) && params.CredentialID == nil {
		return nil, fail(ErrMissingParameter, "credentialID missing")
	}
	if sub == cmUpdateUserInformation && params.User == nil {
		return nil, fail(ErrMissingParameter, "user missing")
	}
	// Authorisation: authenticate(token, subCommand ‖ subCommandParams), permission cm.
	if req.PinUvAuthParam == nil {
		return nil, fail(ErrPUATRequired, "credential management needs a pinUvAuthToken")
	}
	p, err := protocolOf(req.PinUvAuthProtocol)
	if err != nil {
		return nil, err
	}
	msg := append([]byte{byte(sub)}, req.SubCommandParams...)
	a.mu.Lock()
	ok := a.verifyTokenLocked(p, msg, req.PinUvAuthParam)
	perm := a.token.permissions&permCM != 0
	bound, boundRP := a.token.hasRPID, a.token.rpID
	a.mu.Unlock()
	if !ok {
		return nil, fail(ErrPINAuthInvalid, "pinUvAuthParam does not verify with the current token")
	}
	if !perm {
		return nil, fail(ErrPINAuthInvalid, "token lacks the cm permission")
	}

	switch sub {
	case cmGetCredsMetadata:
		if bound {
			return nil, fail(ErrPINAuthInvalid, "token is bound to an RP ID")
		}
		n := a.cfg.Store.DiscoverableCount()
		rem := a.cfg.Store.MaxDiscoverable() - n
		if rem < 0 {
			rem = 0
		}
		return &credMgmtResponse{ExistingResidentCredentialsCount: &n, MaxPossibleRemaining: &rem}, nil

	case cmEnumerateRPsBegin:
		if bound {
			return nil, fail(ErrPINAuthInvalid, "token is bound to an RP ID")
		}
		rps, err := a.cfg.Store.RPs()
		if err != nil {
			return nil, wrapStore("list RPs", err)
		}
		if len(rps) == 0 {
			return nil, fail(ErrNoCredentials, "no discoverable credentials")
		}
		total := len(rps)
		resp := rpResponse(rps[0])
		resp.TotalRPs = &total
		a.mu.Lock()
		a.credMgmt = &credMgmtState{rps: rps, next: 1, sub: cmEnumerateRPsNext}
		a.mu.Unlock()
		return resp, nil

	case cmEnumerateCredsBegin:
		if bound {
			h := sha256.Sum256([]byte(boundRP))
			if !bytes.Equal(h[:], params.RPIDHash) {
				return nil, fail(ErrPINAuthInvalid, "token is bound to another RP ID")
			}
		}
		creds, err := a.discoverableByHash(params.RPIDHash)
		if err != nil {
			return nil, err
		}
		if len(creds) == 0 {
			return nil, fail(ErrNoCredentials, "no discoverable credentials for that rpIDHash")
		}
		total := len(creds)
		resp := credResponse(creds[0])
		resp.TotalCredentials = &total
		a.mu.Lock()
		a.credMgmt = &credMgmtState{creds: creds, next: 1, sub: cmEnumerateCredsNext}
		a.mu.Unlock()
		return resp, nil

	case cmDeleteCredential:
		c, err := a.cfg.Store.Get(params.CredentialID.ID)
		if err != nil {
			return nil, fail(ErrNoCredentials, "no such credential")
		}
		if bound && c.RPID != boundRP {
			return nil, fail(ErrPINAuthInvalid, "token is bound to another RP ID")
		}
		if err := a.cfg.Store.Delete(c.ID); err != nil {
			if errors.Is(err, keystore.ErrNotFound) {
				return nil, fail(ErrNoCredentials, "no such credential")
			}
			return nil, wrapStore("delete credential", err)
		}
		a.log.Info("ctap2: credential deleted", "rp", c.RPID)
		return nil, nil

	default: // cmUpdateUserInformation
		c, err := a.cfg.Store.Get(params.CredentialID.ID)
		if err != nil {
			return nil, fail(ErrNoCredentials, "no such credential")
		}
		if bound && c.RPID != boundRP {
			return nil, fail(ErrPINAuthInvalid, "token is bound to another RP ID")
		}
		if !bytes.Equal(params.User.ID, c.UserID) {
			return nil, fail(ErrInvalidParameter, "user.id does not match the credential")
		}
		if err := a.cfg.Store.UpdateUser(c.ID, params.User.Name, params.User.DisplayName); err != nil {
			return nil, wrapStore("update user", err)
		}
		return nil, nil
	}
}

func (a *Authenticator) credMgmtNext(sub uint64) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.credMgmt
	if st == nil || st.sub != sub {
		return nil, fail(ErrNotAllowed, "no enumeration in progress")
	}
	if sub == cmEnumerateRPsNext {
		if st.next >= len(st.rps) {
			a.credMgmt = nil
			return nil, fail(ErrNotAllowed, "no more RPs")
		}
		st.next++
		return rpResponse(st.rps[st.next-1]), nil
	}
	if st.next >= len(st.creds) {
		a.credMgmt = nil
		return nil, fail(ErrNotAllowed, "no more credentials")
	}
	st.next++
	return credResponse(st.creds[st.next-1]), nil
}

// discoverableByHash finds the discoverable credentials of the RP whose
// SHA-256(rpID) is h, newest first.
func (a *Authenticator) discoverableByHash(h []byte) ([]*keystore.Credential, error) {
	rps, err := a.cfg.Store.RPs()
	if err != nil {
		return nil, wrapStore("list RPs", err)
	}
	for _, rp := range rps {
		sum := sha256.Sum256([]byte(rp.ID))
		if !bytes.Equal(sum[:], h) {
			continue
		}
		all, err := a.cfg.Store.ByRP(rp.ID)
		if err != nil {
			return nil, wrapStore("find credentials", err)
		}
		var out []*keystore.Credential
		for _, c := range all {
			if c.Discoverable {
				out = append(out, c)
			}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
		return out, nil
	}
	return nil, nil
}

func rpResponse(rp keystore.RP) *credMgmtResponse {
	sum := sha256.Sum256([]byte(rp.ID))
	return &credMgmtResponse{RP: &rpOut{ID: rp.ID, Name: rp.Name}, RPIDHash: sum[:]}
}

func credResponse(c *keystore.Credential) *credMgmtResponse {
	resp := &credMgmtResponse{
		User:         &assertionUser{ID: c.UserID, Name: c.UserName, DisplayName: c.UserDisplayName},
		CredentialID: &outDescriptor{ID: c.ID, Type: "public-key"},
		PublicKey:    cbor.RawMessage(c.PublicKey),
	}
	cp := int(c.CredProtect)
	if cp == 0 {
		cp = 1 // userVerificationOptional is the default policy
	}
	resp.CredProtect = &cp
	resp.LargeBlobKey = c.Secrets[secretLargeBlobKey]
	return resp
}
