package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/ctap2/pinuv"
	"github.com/authd/authd/keystore"
	"github.com/authd/authd/uv/pinentry"
)

// fakePinentry writes a pinentry that answers GETPIN with the PINs in
// $PINS (one per run, consumed from a counter file), or cancels on "CANCEL".
func fakePinentry(t *testing.T, pins ...string) string {
	dir := t.TempDir()
	for i, p := range pins {
		os.WriteFile(filepath.Join(dir, "pin"+string(rune('0'+i))), []byte(p), 0o600)
	}
	script := filepath.Join(dir, "pinentry")
	body := `#!/bin/sh
dir=$(dirname "$0")
n=$(cat "$dir/count" 2>/dev/null || echo 0)
echo $((n+1)) > "$dir/count"
pin=$(cat "$dir/pin$n")
echo "OK Pleased to meet you"
while read -r cmd rest; do
  case "$cmd" in
    GETPIN) if [ "$pin" = CANCEL ]; then echo "ERR 83886179 Operation cancelled"; else echo "D $pin"; echo OK; fi ;;
    BYE) echo OK; exit 0 ;;
    *) echo OK ;;
  esac
done
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

func TestPromptPIN(t *testing.T) {
	newD := func(t *testing.T, prog string) *Daemon {
		d, err := New(Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: approveAll{}, BootID: "b", Pinentry: prog})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		if err := d.store.SetPIN(pinuv.PINHash([]byte("12%4")), func(st *keystore.State) error { st.PINCodePoints = 4; return nil }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	ctx := context.Background()
	// Right PIN (with a % that travels %-escaped on the wire).
	d := newD(t, fakePinentry(t, "12%254"))
	if err := d.PromptPIN(ctx, "Unlock passkey management"); err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	// Two wrong PINs, then the right one: asked again, counters as clientPIN's.
	d = newD(t, fakePinentry(t, "0000", "1111", "12%254"))
	if err := d.PromptPIN(ctx, "x"); err != nil {
		t.Fatalf("third attempt right: %v", err)
	}
	if n := d.store.State().PINRetries; n != 8 {
		t.Fatalf("retries %d after success", n)
	}
	// Three wrong PINs: PIN_AUTH_BLOCKED (3 consecutive), 5 retries left.
	d = newD(t, fakePinentry(t, "0000", "1111", "2222"))
	if err := d.PromptPIN(ctx, "x"); ctap2.StatusOf(err) != ctap2.ErrPINAuthBlocked {
		t.Fatalf("three wrong PINs: %v", err)
	}
	if n := d.store.State().PINRetries; n != 5 {
		t.Fatalf("retries %d", n)
	}
	// Cancel.
	d = newD(t, fakePinentry(t, "CANCEL"))
	if err := d.PromptPIN(ctx, "x"); !errors.Is(err, pinentry.ErrCancelled) {
		t.Fatalf("cancel: %v", err)
	}
	// No pinentry program.
	d = newD(t, "no-such-pinentry-program")
	if err := d.PromptPIN(ctx, "x"); err == nil {
		t.Fatal("missing pinentry accepted")
	}
}

type approveAll struct{}

func (approveAll) ConfirmPresence(context.Context, string, string, string) error { return nil }
