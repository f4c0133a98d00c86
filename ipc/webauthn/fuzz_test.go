package webauthn

import (
	"errors"
	"testing"

	"github.com/authd/authd/ipc"
)

// FuzzCreationOptions: PublicKeyCredentialCreationOptionsJSON comes from a
// web page; any bytes must parse or fail with an *ipc.Error, never panic.
func FuzzCreationOptions(f *testing.F) {
	f.Add([]byte(`{"rp":{"id":"example.com","name":"Ex"},"user":{"id":"dXNlcg","name":"u","displayName":"U"},"challenge":"Y2hhbGxlbmdl","pubKeyCredParams":[{"type":"public-key","alg":-7}],"authenticatorSelection":{"residentKey":"required","userVerification":"required"},"extensions":{"credProps":true,"prf":{"eval":{"first":"AA"}},"credentialProtectionPolicy":"userVerificationRequired"}}`))
	f.Add([]byte(`{"rp":{},"user":{"id":""},"challenge":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parseCreationOptions(data); err != nil {
			var e *ipc.Error
			if !errors.As(err, &e) || e.Name == "" {
				t.Fatalf("error without a WebAuthn name: %v", err)
			}
		}
	})
}

// FuzzRequestOptions: the same for PublicKeyCredentialRequestOptionsJSON,
// including prf evaluation inputs.
func FuzzRequestOptions(f *testing.F) {
	f.Add([]byte(`{"challenge":"Y2hhbGxlbmdl","rpId":"example.com","allowCredentials":[{"type":"public-key","id":"AQID"}],"userVerification":"preferred","extensions":{"prf":{"evalByCredential":{"AQID":{"first":"AA","second":"AQ"}}}}}`))
	f.Add([]byte(`{"challenge":"","allowCredentials":[{}]}`))
	f.Add([]byte(`{"challenge":"AA","extensions":{"largeBlob":{"read":true}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := parseRequestOptions(data)
		if err != nil {
			return
		}
		parsePRFGet(o)
	})
}

// FuzzAuthData: authenticator data comes back from the authenticator.
func FuzzAuthData(f *testing.F) {
	f.Add(make([]byte, 37))
	f.Add(append(make([]byte, 32), 0x41, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseAuthData(data)
	})
}
