module github.com/authd/authd

go 1.26.8

require (
	github.com/fxamacker/cbor/v2 v2.9.4
	go.etcd.io/bbolt v1.4.3
	golang.org/x/crypto v0.59.0
)

require (
	github.com/go-webauthn/webauthn v0.18.2 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/term v0.48.0 // indirect
)
