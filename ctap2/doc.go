// Package ctap2 is authd's CTAP 2.1 authenticator engine.
//
// Specification: Client to Authenticator Protocol (CTAP) 2.1, Proposed Standard
// 2021-06-15, https://fidoalliance.org/specs/fido-v2.1-ps-20210615/fido-client-to-authenticator-protocol-v2.1-ps-20210615.html
//
// It implements §6.1 authenticatorMakeCredential, §6.2 authenticatorGetAssertion,
// §6.3 authenticatorGetNextAssertion, §6.4 authenticatorGetInfo, §6.5
// authenticatorClientPIN (PIN/UV auth protocols 1 and 2, pinUvAuthToken with
// permissions), §6.6 authenticatorReset, §6.8 authenticatorCredentialManagement
// (and its 0x41 prototype alias) and §6.9 authenticatorSelection, plus the
// authenticator data and packed self attestation of WebAuthn Level 3 §6.1, §8.2.
//
// The engine declares the small interfaces it needs (CredentialStore,
// StateStore, Presence) and owns the status codes as the typed error
// StatusCode. It imports no transport, no D-Bus and no TPM: ServeCTAP takes a
// command byte ‖ CBOR and returns a status byte ‖ CBOR, so CTAPHID, the local
// API and tests all drive the same code.
package ctap2
