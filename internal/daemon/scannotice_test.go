package daemon

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd/ctaphid"
	"github.com/authd/authd/internal/cbor"
	"github.com/authd/authd/internal/fprinttest"
	"github.com/authd/authd/internal/unixsock"
	"github.com/authd/authd/uv"
	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/notify/notifytest"
)

// enrollFinger enrolls one finger (scanned as print) through the adapter.
func enrollFinger(t *testing.T, ctx context.Context, e *fprinttest.Env, fp *fprintUV, print string) {
	t.Helper()
	var id []byte
	done := async(func() (err error) {
		id, _, _, err = fp.EnrollBegin(ctx, 10*time.Second)
		return err
	})
	e.Scan(t, print)
	if err := <-done; err != nil {
		t.Fatalf("EnrollBegin: %v", err)
	}
	for left := 1; left > 0; {
		e.Scan(t, print)
		var err error
		if _, left, err = fp.EnrollNext(ctx, id, 10*time.Second); err != nil {
			t.Fatalf("EnrollNext: %v", err)
		}
	}
}

// TestFingerprintScanNotice: while built-in UV waits for a finger, a
// notification without actions says for which operation, website and
// program (the one on the other end of the CTAPHID socket); it is withdrawn
// when the scan ends, by a match or by CTAPHID_CANCEL.
func TestFingerprintScanNotice(t *testing.T) {
	e := fprinttest.Start(t)
	s := notifytest.Start(t, nil)
	n, err := notify.New(s.Bus.Conn)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(logBuf)
	dir := t.TempDir()
	d, err := New(Config{StateDir: filepath.Join(dir, "state"), BootID: "boot",
		Presence:    uv.NotifyPresence{Notifier: n},
		Fingerprint: FingerprintSystem, SystemBus: e.Addr,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	})
	ctx := fpCtx(t)
	enrollFinger(t, ctx, e, d.fp, "print-A")

	ln, err := unixsock.Listen(filepath.Join(dir, "run", "hid.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := async(func() error { return d.ServeCTAPHID(sctx, ln) })
	t.Cleanup(func() { stop(); <-served; d.Close() })
	conn, err := net.Dial("unix", filepath.Join(dir, "run", "hid.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := ctaphid.NewClient(conn)
	if _, err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	requester := "\nRequested by: " + filepath.Base(exe)

	cdh := sha256.Sum256([]byte("scan notice"))
	// call sends a CTAP2 command in the background; the channel yields
	// the status byte.
	call := func(cmd byte, params map[int]any) <-chan byte {
		b, err := cbor.Marshal(params)
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan byte, 1)
		go func() {
			_, resp, err := c.Call(ctx, ctaphid.CmdCBOR, append([]byte{cmd}, b...))
			if err != nil || len(resp) == 0 {
				t.Errorf("CTAPHID call: %v", err)
				ch <- 0xff
				return
			}
			ch <- resp[0]
		}()
		return ch
	}
	// shown waits for the scan's notification and checks it.
	shown := func(wantBody string) notifytest.Notification {
		t.Helper()
		got := s.WaitNotify(ctx)
		if got.Summary != "Verify it's you (authd)" || got.Body != wantBody || len(got.Actions) != 0 {
			t.Fatalf("notification %q / %q / actions %q; want the UV title / %q / none", got.Summary, got.Body, got.Actions, wantBody)
		}
		if ids := s.Closed(); slices.Contains(ids, got.ID) {
			t.Fatalf("notification %d closed while the scan is pending", got.ID)
		}
		return got
	}
	withdrawn := func(id uint32) {
		t.Helper()
		for !slices.Contains(s.Closed(), id) {
			select {
			case <-ctx.Done():
				t.Fatalf("notification %d not withdrawn after the scan; closed: %v", id, s.Closed())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	mc := call(0x01, map[int]any{1: cdh[:], 2: map[string]any{"id": "example.com"},
		3: map[string]any{"id": []byte("u1"), "name": "alice"},
		4: []any{map[string]any{"alg": -7, "type": "public-key"}},
		7: map[string]bool{"rk": true, "uv": true}})
	got := shown("Touch the fingerprint reader to create a passkey on example.com" + requester)
	e.Scan(t, "print-A")
	if st := <-mc; st != 0 {
		t.Fatalf("makeCredential with built-in UV: status 0x%02x", st)
	}
	withdrawn(got.ID)

	ga := map[int]any{1: "example.com", 2: cdh[:], 5: map[string]bool{"uv": true}}
	st := call(0x02, ga)
	got = shown("Touch the fingerprint reader to sign in to example.com" + requester)
	e.Scan(t, "print-A")
	if st := <-st; st != 0 {
		t.Fatalf("getAssertion with built-in UV: status 0x%02x", st)
	}
	withdrawn(got.ID)

	st = call(0x02, ga)
	got = shown("Touch the fingerprint reader to sign in to example.com" + requester)
	if err := c.Cancel(); err != nil {
		t.Fatal(err)
	}
	if st := <-st; st != 0x2d {
		t.Fatalf("cancelled getAssertion: status 0x%02x, want 0x2d (KEEPALIVE_CANCEL)", st)
	}
	withdrawn(got.ID)
}
