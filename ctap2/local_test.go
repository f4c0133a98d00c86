package ctap2

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLocalPINAndReset(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.a.SetPINLocal(ctx, []byte("12")); StatusOf(err) != ErrPINPolicyViolation {
		t.Fatalf("short PIN: %v", err)
	}
	if err := e.a.SetPINLocal(ctx, []byte("1234")); err != nil {
		t.Fatal(err)
	}
	if err := e.a.SetPINLocal(ctx, []byte("5678")); StatusOf(err) != ErrPINAuthInvalid {
		t.Fatalf("second set: %v", err)
	}
	// The PIN set locally works through clientPIN.
	if st, _, _ := e.token(2, "1234", permMC, "x"); st != StatusOK {
		t.Fatalf("token: %v", st)
	}
	if err := e.a.ChangePINLocal(ctx, []byte("0000"), []byte("5678")); StatusOf(err) != ErrPINInvalid {
		t.Fatalf("change with a wrong PIN: %v", err)
	}
	if n, _ := retries(e); n != 7 {
		t.Fatalf("retries %d", n)
	}
	if err := e.a.ChangePINLocal(ctx, []byte("1234"), []byte("5678")); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.token(2, "5678", permMC, "x"); st != StatusOK {
		t.Fatalf("token with the new PIN: %v", st)
	}
	// Reset: any time, but only with the user's confirmation.
	e.must(cmdMakeCredential, mcParams("example.com", []byte{1}, false))
	e.clk.advance(time.Hour)
	e.up.set(errors.New("no"))
	if err := e.a.ResetLocal(ctx); StatusOf(err) != ErrOperationDenied {
		t.Fatalf("declined reset: %v", err)
	}
	e.up.set(nil)
	if err := e.a.ResetLocal(ctx); err != nil {
		t.Fatal(err)
	}
	if all, _ := e.store.All(); len(all) != 0 || e.store.State().PINSet {
		t.Fatal("reset left data")
	}
	if e.up.lastOp() != "reset" {
		t.Fatalf("presence op %q", e.up.lastOp())
	}
}
