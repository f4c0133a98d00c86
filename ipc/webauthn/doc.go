// Package webauthn is authd's WebAuthn client (WebAuthn Level 3 §5.1.3
// "Create a New Credential", §5.1.4 "Use an Existing Credential"): what a
// browser does between navigator.credentials.create()/get() and the
// authenticator, for callers of the local API that hand authd an origin and
// PublicKeyCredential{Creation,Request}OptionsJSON.
//
// It validates the origin (https, or http on localhost) and the RP ID against
// it with the public suffix list, serialises CollectedClientData byte-exactly
// (CCDToString, §5.8.1.1), maps the options and extensions (credProps, prf →
// hmac-secret, credentialProtectionPolicy → credProtect, minPinLength,
// largeBlob → largeBlobKey and authenticatorLargeBlobs) onto
// CTAP 2.1 commands, acquires a pinUvAuthToken with built-in UV or the PIN
// (collected by authd's own prompt through UserVerifier) when user
// verification is wanted, and returns RegistrationResponseJSON /
// AuthenticationResponseJSON. Every failure is an *ipc.Error named after the
// DOMException a browser would throw at the same point.
//
// Like any platform it speaks CTAP bytes to a Transport (command byte ‖ CBOR
// in, status ‖ CBOR out); *ctap2.Authenticator satisfies Transport, but this
// package does not import the engine.
package webauthn
