package ctap2

import "fmt"

// StatusCode is a CTAP status code (CTAP 2.1 §8.2 "Status codes"). It is the
// only error text that crosses the wire: ServeCTAP maps every error to one with
// StatusOf. Internal errors wrap a StatusCode with %w to pick the code.
type StatusCode byte

// Status codes, named as in the specification.
const (
	StatusOK                  StatusCode = 0x00
	ErrInvalidCommand         StatusCode = 0x01
	ErrInvalidParameter       StatusCode = 0x02
	ErrInvalidLength          StatusCode = 0x03
	ErrInvalidSeq             StatusCode = 0x04
	ErrTimeout                StatusCode = 0x05
	ErrChannelBusy            StatusCode = 0x06
	ErrLockRequired           StatusCode = 0x0A
	ErrInvalidChannel         StatusCode = 0x0B
	ErrCBORUnexpectedType     StatusCode = 0x11
	ErrInvalidCBOR            StatusCode = 0x12
	ErrMissingParameter       StatusCode = 0x14
	ErrLimitExceeded          StatusCode = 0x15
	ErrFPDatabaseFull         StatusCode = 0x17
	ErrLargeBlobStorageFull   StatusCode = 0x18
	ErrCredentialExcluded     StatusCode = 0x19
	ErrProcessing             StatusCode = 0x21
	ErrInvalidCredential      StatusCode = 0x22
	ErrUserActionPending      StatusCode = 0x23
	ErrOperationPending       StatusCode = 0x24
	ErrNoOperations           StatusCode = 0x25
	ErrUnsupportedAlgorithm   StatusCode = 0x26
	ErrOperationDenied        StatusCode = 0x27
	ErrKeyStoreFull           StatusCode = 0x28
	ErrUnsupportedOption      StatusCode = 0x2B
	ErrInvalidOption          StatusCode = 0x2C
	ErrKeepaliveCancel        StatusCode = 0x2D
	ErrNoCredentials          StatusCode = 0x2E
	ErrUserActionTimeout      StatusCode = 0x2F
	ErrNotAllowed             StatusCode = 0x30
	ErrPINInvalid             StatusCode = 0x31
	ErrPINBlocked             StatusCode = 0x32
	ErrPINAuthInvalid         StatusCode = 0x33
	ErrPINAuthBlocked         StatusCode = 0x34
	ErrPINNotSet              StatusCode = 0x35
	ErrPUATRequired           StatusCode = 0x36
	ErrPINPolicyViolation     StatusCode = 0x37
	ErrPINTokenExpired        StatusCode = 0x38
	ErrRequestTooLarge        StatusCode = 0x39
	ErrActionTimeout          StatusCode = 0x3A
	ErrUPRequired             StatusCode = 0x3B
	ErrUVBlocked              StatusCode = 0x3C
	ErrIntegrityFailure       StatusCode = 0x3D
	ErrInvalidSubcommand      StatusCode = 0x3E
	ErrUVInvalid              StatusCode = 0x3F
	ErrUnauthorizedPermission StatusCode = 0x40
	ErrOther                  StatusCode = 0x7F
)

var statusNames = map[StatusCode]string{
	StatusOK: "CTAP2_OK", ErrInvalidCommand: "CTAP1_ERR_INVALID_COMMAND",
	ErrInvalidParameter: "CTAP1_ERR_INVALID_PARAMETER", ErrInvalidLength: "CTAP1_ERR_INVALID_LENGTH",
	ErrInvalidSeq: "CTAP1_ERR_INVALID_SEQ", ErrTimeout: "CTAP1_ERR_TIMEOUT",
	ErrChannelBusy: "CTAP1_ERR_CHANNEL_BUSY", ErrLockRequired: "CTAP1_ERR_LOCK_REQUIRED",
	ErrInvalidChannel: "CTAP1_ERR_INVALID_CHANNEL", ErrCBORUnexpectedType: "CTAP2_ERR_CBOR_UNEXPECTED_TYPE",
	ErrInvalidCBOR: "CTAP2_ERR_INVALID_CBOR", ErrMissingParameter: "CTAP2_ERR_MISSING_PARAMETER",
	ErrLimitExceeded: "CTAP2_ERR_LIMIT_EXCEEDED", ErrFPDatabaseFull: "CTAP2_ERR_FP_DATABASE_FULL",
	ErrLargeBlobStorageFull: "CTAP2_ERR_LARGE_BLOB_STORAGE_FULL", ErrCredentialExcluded: "CTAP2_ERR_CREDENTIAL_EXCLUDED",
	ErrProcessing: "CTAP2_ERR_PROCESSING", ErrInvalidCredential: "CTAP2_ERR_INVALID_CREDENTIAL",
	ErrUserActionPending: "CTAP2_ERR_USER_ACTION_PENDING", ErrOperationPending: "CTAP2_ERR_OPERATION_PENDING",
	ErrNoOperations: "CTAP2_ERR_NO_OPERATIONS", ErrUnsupportedAlgorithm: "CTAP2_ERR_UNSUPPORTED_ALGORITHM",
	ErrOperationDenied: "CTAP2_ERR_OPERATION_DENIED", ErrKeyStoreFull: "CTAP2_ERR_KEY_STORE_FULL",
	ErrUnsupportedOption: "CTAP2_ERR_UNSUPPORTED_OPTION", ErrInvalidOption: "CTAP2_ERR_INVALID_OPTION",
	ErrKeepaliveCancel: "CTAP2_ERR_KEEPALIVE_CANCEL", ErrNoCredentials: "CTAP2_ERR_NO_CREDENTIALS",
	ErrUserActionTimeout: "CTAP2_ERR_USER_ACTION_TIMEOUT", ErrNotAllowed: "CTAP2_ERR_NOT_ALLOWED",
	ErrPINInvalid: "CTAP2_ERR_PIN_INVALID", ErrPINBlocked: "CTAP2_ERR_PIN_BLOCKED",
	ErrPINAuthInvalid: "CTAP2_ERR_PIN_AUTH_INVALID", ErrPINAuthBlocked: "CTAP2_ERR_PIN_AUTH_BLOCKED",
	ErrPINNotSet: "CTAP2_ERR_PIN_NOT_SET", ErrPUATRequired: "CTAP2_ERR_PUAT_REQUIRED",
	ErrPINPolicyViolation: "CTAP2_ERR_PIN_POLICY_VIOLATION", ErrPINTokenExpired: "CTAP2_ERR_PIN_TOKEN_EXPIRED",
	ErrRequestTooLarge: "CTAP2_ERR_REQUEST_TOO_LARGE", ErrActionTimeout: "CTAP2_ERR_ACTION_TIMEOUT",
	ErrUPRequired: "CTAP2_ERR_UP_REQUIRED", ErrUVBlocked: "CTAP2_ERR_UV_BLOCKED",
	ErrIntegrityFailure: "CTAP2_ERR_INTEGRITY_FAILURE", ErrInvalidSubcommand: "CTAP2_ERR_INVALID_SUBCOMMAND",
	ErrUVInvalid: "CTAP2_ERR_UV_INVALID", ErrUnauthorizedPermission: "CTAP2_ERR_UNAUTHORIZED_PERMISSION",
	ErrOther: "CTAP1_ERR_OTHER",
}

// Error implements error.
func (s StatusCode) Error() string {
	if n, ok := statusNames[s]; ok {
		return fmt.Sprintf("ctap2: %s (0x%02x)", n, byte(s))
	}
	return fmt.Sprintf("ctap2: status 0x%02x", byte(s))
}

// Name returns the specification name of the code.
func (s StatusCode) Name() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("0x%02x", byte(s))
}
