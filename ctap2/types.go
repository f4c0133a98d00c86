package ctap2

import (
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/cose"
)

// Command bytes (CTAP 2.1 §6).
const (
	cmdMakeCredential       = 0x01
	cmdGetAssertion         = 0x02
	cmdGetInfo              = 0x04
	cmdClientPIN            = 0x06
	cmdReset                = 0x07
	cmdGetNextAssertion     = 0x08
	cmdBioEnrollment        = 0x09
	cmdBioEnrollmentPreview = 0x40
	cmdCredentialManagement = 0x0A
	cmdSelection            = 0x0B
	cmdLargeBlobs           = 0x0C
	cmdConfig               = 0x0D
	cmdCredMgmtPreview      = 0x41
)

// rpEntity is PublicKeyCredentialRpEntity (WebAuthn §5.4.2); unknown members are ignored.
type rpEntity struct {
	ID   *string `cbor:"id"`
	Name string  `cbor:"name,omitempty"`
}

// userEntity is PublicKeyCredentialUserEntity (WebAuthn §5.4.3).
type userEntity struct {
	ID          cbor.Bytes `cbor:"id"`
	Name        string     `cbor:"name,omitempty"`
	DisplayName string     `cbor:"displayName,omitempty"`
}

// credParam is PublicKeyCredentialParameters.
type credParam struct {
	Type *string `cbor:"type"`
	Alg  *int64  `cbor:"alg"`
}

// credDescriptor is PublicKeyCredentialDescriptor.
type credDescriptor struct {
	Type       *string    `cbor:"type"`
	ID         cbor.Bytes `cbor:"id"`
	Transports []string   `cbor:"transports,omitempty"`
}

// outDescriptor is a descriptor in responses (no transports; canonical order id, type).
type outDescriptor struct {
	ID   []byte `cbor:"id"`
	Type string `cbor:"type"`
}

// makeCredentialRequest: CTAP 2.1 §6.1 parameters.
type makeCredentialRequest struct {
	ClientDataHash    cbor.Bytes                 `cbor:"1,keyasint"`
	RP                *rpEntity                  `cbor:"2,keyasint"`
	User              *userEntity                `cbor:"3,keyasint"`
	PubKeyCredParams  *[]credParam               `cbor:"4,keyasint"`
	ExcludeList       []credDescriptor           `cbor:"5,keyasint"`
	Extensions        map[string]cbor.RawMessage `cbor:"6,keyasint"`
	Options           map[string]bool            `cbor:"7,keyasint"`
	PinUvAuthParam    cbor.Bytes                 `cbor:"8,keyasint"`
	PinUvAuthProtocol *uint64                    `cbor:"9,keyasint"`
	EnterpriseAttest  *uint64                    `cbor:"10,keyasint"`
	AttFormatsPref    []string                   `cbor:"11,keyasint"`
}

type makeCredentialResponse struct {
	Fmt          string          `cbor:"1,keyasint"`
	AuthData     []byte          `cbor:"2,keyasint"`
	AttStmt      cbor.RawMessage `cbor:"3,keyasint"`
	LargeBlobKey []byte          `cbor:"5,keyasint,omitempty"`
}

// getAssertionRequest: CTAP 2.1 §6.2 parameters.
type getAssertionRequest struct {
	RPID              *string                    `cbor:"1,keyasint"`
	ClientDataHash    cbor.Bytes                 `cbor:"2,keyasint"`
	AllowList         []credDescriptor           `cbor:"3,keyasint"`
	Extensions        map[string]cbor.RawMessage `cbor:"4,keyasint"`
	Options           map[string]bool            `cbor:"5,keyasint"`
	PinUvAuthParam    cbor.Bytes                 `cbor:"6,keyasint"`
	PinUvAuthProtocol *uint64                    `cbor:"7,keyasint"`
}

type assertionUser struct {
	ID          []byte `cbor:"id"`
	Name        string `cbor:"name,omitempty"`
	DisplayName string `cbor:"displayName,omitempty"`
}

type getAssertionResponse struct {
	Credential          outDescriptor  `cbor:"1,keyasint"`
	AuthData            []byte         `cbor:"2,keyasint"`
	Signature           []byte         `cbor:"3,keyasint"`
	User                *assertionUser `cbor:"4,keyasint,omitempty"`
	NumberOfCredentials int            `cbor:"5,keyasint,omitempty"`
	UserSelected        bool           `cbor:"6,keyasint,omitempty"`
	LargeBlobKey        []byte         `cbor:"7,keyasint,omitempty"`
}

type algorithm struct {
	Alg  int    `cbor:"alg"`
	Type string `cbor:"type"`
}

// getInfoResponse: CTAP 2.1 §6.4. Only members that describe working features are filled.
type getInfoResponse struct {
	Versions                    []string        `cbor:"1,keyasint"`
	Extensions                  []string        `cbor:"2,keyasint,omitempty"`
	AAGUID                      []byte          `cbor:"3,keyasint"`
	Options                     map[string]bool `cbor:"4,keyasint,omitempty"`
	MaxMsgSize                  int             `cbor:"5,keyasint,omitempty"`
	PinUvAuthProtocols          []int           `cbor:"6,keyasint,omitempty"`
	MaxCredentialCountInList    int             `cbor:"7,keyasint,omitempty"`
	MaxCredentialIDLength       int             `cbor:"8,keyasint,omitempty"`
	Transports                  []string        `cbor:"9,keyasint,omitempty"`
	Algorithms                  []algorithm     `cbor:"10,keyasint,omitempty"`
	MaxSerializedLargeBlobArray int             `cbor:"11,keyasint,omitempty"`
	ForcePINChange              *bool           `cbor:"12,keyasint,omitempty"`
	MinPINLength                int             `cbor:"13,keyasint,omitempty"`
	FirmwareVersion             int             `cbor:"14,keyasint,omitempty"`
	MaxCredBlobLength           int             `cbor:"15,keyasint,omitempty"`
	MaxRPIDsForSetMinPINLength  int             `cbor:"16,keyasint,omitempty"`
	PreferredPlatformUvAttempts int             `cbor:"17,keyasint,omitempty"`
	UVModality                  int             `cbor:"18,keyasint,omitempty"`
	RemainingDiscoverable       *int            `cbor:"20,keyasint,omitempty"`
	AttestationFormats          []string        `cbor:"22,keyasint,omitempty"`
}

// clientPINRequest: CTAP 2.1 §6.5.5.
type clientPINRequest struct {
	PinUvAuthProtocol *uint64    `cbor:"1,keyasint"`
	SubCommand        *uint64    `cbor:"2,keyasint"`
	KeyAgreement      *cose.Key  `cbor:"3,keyasint"`
	PinUvAuthParam    cbor.Bytes `cbor:"4,keyasint"`
	NewPinEnc         cbor.Bytes `cbor:"5,keyasint"`
	PinHashEnc        cbor.Bytes `cbor:"6,keyasint"`
	Permissions       *uint64    `cbor:"9,keyasint"`
	RPID              *string    `cbor:"10,keyasint"`
}

type clientPINResponse struct {
	KeyAgreement    cbor.RawMessage `cbor:"1,keyasint,omitempty"`
	PinUvAuthToken  []byte          `cbor:"2,keyasint,omitempty"`
	PinRetries      *int            `cbor:"3,keyasint,omitempty"`
	PowerCycleState *bool           `cbor:"4,keyasint,omitempty"`
	UVRetries       *int            `cbor:"5,keyasint,omitempty"`
}

// credMgmtRequest: CTAP 2.1 §6.8.
type credMgmtRequest struct {
	SubCommand        *uint64         `cbor:"1,keyasint"`
	SubCommandParams  cbor.RawMessage `cbor:"2,keyasint"`
	PinUvAuthProtocol *uint64         `cbor:"3,keyasint"`
	PinUvAuthParam    cbor.Bytes      `cbor:"4,keyasint"`
}

type credMgmtParams struct {
	RPIDHash     cbor.Bytes      `cbor:"1,keyasint"`
	CredentialID *credDescriptor `cbor:"2,keyasint"`
	User         *userEntity     `cbor:"3,keyasint"`
}

type rpOut struct {
	ID   string `cbor:"id"`
	Name string `cbor:"name,omitempty"`
}

type credMgmtResponse struct {
	ExistingResidentCredentialsCount *int            `cbor:"1,keyasint,omitempty"`
	MaxPossibleRemaining             *int            `cbor:"2,keyasint,omitempty"`
	RP                               *rpOut          `cbor:"3,keyasint,omitempty"`
	RPIDHash                         []byte          `cbor:"4,keyasint,omitempty"`
	TotalRPs                         *int            `cbor:"5,keyasint,omitempty"`
	User                             *assertionUser  `cbor:"6,keyasint,omitempty"`
	CredentialID                     *outDescriptor  `cbor:"7,keyasint,omitempty"`
	PublicKey                        cbor.RawMessage `cbor:"8,keyasint,omitempty"`
	TotalCredentials                 *int            `cbor:"9,keyasint,omitempty"`
	CredProtect                      *int            `cbor:"10,keyasint,omitempty"`
	LargeBlobKey                     []byte          `cbor:"11,keyasint,omitempty"`
}
