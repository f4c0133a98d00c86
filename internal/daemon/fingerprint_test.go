package daemon

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/internal/fprinttest"
	"github.com/authd/authd/uv"
)

func fpStart(t *testing.T, e *fprinttest.Env, spec, uv string) (*Daemon, *logBuf, error) {
	t.Helper()
	logs := new(logBuf)
	cfg := Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: approve{}, BootID: "boot", Fingerprint: spec, UV: uv,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if e != nil {
		cfg.SystemBus = e.Addr
	}
	d, err := New(cfg)
	if err != nil {
		return nil, logs, err
	}
	t.Cleanup(func() { d.Close() })
	return d, logs, nil
}

func fpCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// async runs fn in a goroutine; the channel yields its error.
func async(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

func TestFingerprintAdapter(t *testing.T) {
	e := fprinttest.Start(t)
	d, logs, err := fpStart(t, e, FingerprintSystem, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	})
	if !d.Fingerprint() {
		t.Fatal("no fingerprint reader with --fingerprint system")
	}
	fp := d.fp
	ctx := fpCtx(t)

	if fp.Available(ctx) {
		t.Fatal("Available with nothing enrolled")
	}
	kind, samples, err := fp.SensorInfo(ctx)
	if err != nil || kind != fpKindSwipe || samples != 5 {
		t.Fatalf("SensorInfo = %d, %d, %v; want swipe (2), 5", kind, samples, err)
	}
	if ts, err := fp.Templates(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("Templates = %v, %v", ts, err)
	}

	// Enroll left-thumb (the first free finger): first sample with
	// EnrollBegin, retry statuses in between, then the remaining stages.
	type begin struct {
		id                []byte
		status, remaining int
	}
	var b begin
	done := async(func() (err error) {
		b.id, b.status, b.remaining, err = fp.EnrollBegin(ctx, 10*time.Second)
		return err
	})
	e.Scan(t, "print-A")
	if err := <-done; err != nil {
		t.Fatalf("EnrollBegin: %v", err)
	}
	if string(b.id) != "left-thumb" || b.status != fpGood || b.remaining != 4 {
		t.Fatalf("EnrollBegin = %q, %d, %d; want left-thumb, 0, 4", b.id, b.status, b.remaining)
	}
	for _, r := range []struct {
		n    int
		want int
	}{{0, fpPoorQuality}, {1, fpTooShort}, {2, fpTooSkewed}, {3, fpNoUpTransition}} {
		e.Retry(t, r.n)
		st, rem, err := fp.EnrollNext(ctx, b.id, 10*time.Second)
		if err != nil || st != r.want || rem != 4 {
			t.Fatalf("EnrollNext after RETRY %d = %d, %d, %v; want %d, 4", r.n, st, rem, err, r.want)
		}
	}
	// A timeout keeps the enrollment running.
	if _, _, err := fp.EnrollNext(ctx, b.id, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EnrollNext without a finger: %v, want DeadlineExceeded", err)
	}
	if _, _, err := fp.EnrollNext(ctx, []byte("right-thumb"), time.Second); err == nil {
		t.Fatal("EnrollNext with another template ID succeeded")
	}
	for want := 3; want >= 0; want-- {
		e.Scan(t, "print-A")
		st, rem, err := fp.EnrollNext(ctx, b.id, 10*time.Second)
		if err != nil || st != fpGood || rem != want {
			t.Fatalf("EnrollNext = %d, %d, %v; want 0, %d", st, rem, err, want)
		}
	}
	if !fp.Available(ctx) {
		t.Fatal("not Available after enrolling")
	}
	ts, err := fp.Templates(ctx)
	if err != nil || len(ts) != 1 || string(ts[0].ID) != "left-thumb" || ts[0].Name != "left-thumb" {
		t.Fatalf("Templates = %+v, %v; want left-thumb named after the finger", ts, err)
	}

	t.Run("Names", func(t *testing.T) {
		if err := fp.SetName(ctx, b.id, "Daumen"); err != nil {
			t.Fatal(err)
		}
		ts, err := fp.Templates(ctx)
		if err != nil || len(ts) != 1 || ts[0].Name != "Daumen" {
			t.Fatalf("Templates after SetName = %+v, %v", ts, err)
		}
		st, _ := d.Store().Settings()
		if st.FingerNames["left-thumb"] != "Daumen" {
			t.Fatalf("FingerNames = %v", st.FingerNames)
		}
		for _, id := range []string{"right-thumb", "nose", ""} {
			if err := fp.SetName(ctx, []byte(id), "x"); !errors.Is(err, ctap2.ErrBioUnknown) {
				t.Errorf("SetName(%q): %v, want ErrBioUnknown", id, err)
			}
			if err := fp.Remove(ctx, []byte(id)); !errors.Is(err, ctap2.ErrBioUnknown) {
				t.Errorf("Remove(%q): %v, want ErrBioUnknown", id, err)
			}
		}
	})

	verify := func(t *testing.T, id string) error {
		t.Helper()
		done := async(func() error { return fp.VerifyUser(ctx, uv.OpGetAssertion, "example.org") })
		e.Scan(t, id)
		return <-done
	}
	t.Run("Verify", func(t *testing.T) {
		if err := verify(t, "print-A"); err != nil {
			t.Fatalf("matching scan: %v", err)
		}
		if err := verify(t, "print-B"); !errors.Is(err, ctap2.ErrUVNoMatch) {
			t.Fatalf("other finger: %v, want ErrUVNoMatch", err)
		}
		done := async(func() error { return fp.VerifyUser(ctx, uv.OpGetAssertion, "example.org") })
		e.Retry(t, 1)
		e.Scan(t, "print-A")
		if err := <-done; err != nil {
			t.Fatalf("retry then match: %v", err)
		}
	})

	t.Run("VerifyCancel", func(t *testing.T) {
		vctx, cancel := context.WithCancel(ctx)
		done := async(func() error { return fp.VerifyUser(vctx, uv.OpGetAssertion, "example.org") })
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := e.WaitSocket(wctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let VerifyStart run
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled verify: %v, want context.Canceled", err)
		}
		if err := verify(t, "print-A"); err != nil {
			t.Fatalf("verify after cancel: %v", err)
		}
	})

	t.Run("EnrollCancel", func(t *testing.T) {
		var id []byte
		done := async(func() (err error) {
			id, _, _, err = fp.EnrollBegin(ctx, 10*time.Second)
			return err
		})
		e.Scan(t, "print-B")
		if err := <-done; err != nil || string(id) != "left-index-finger" {
			t.Fatalf("second EnrollBegin = %q, %v; want left-index-finger", id, err)
		}
		// The device is held by the enrollment.
		if err := fp.VerifyUser(ctx, uv.OpGetAssertion, "example.org"); err == nil || errors.Is(err, ctap2.ErrUVNoMatch) {
			t.Fatalf("verify during an enrollment: %v, want a busy error", err)
		}
		fp.EnrollCancel()
		fp.EnrollCancel()
		if _, _, err := fp.EnrollNext(ctx, id, time.Second); err == nil {
			t.Fatal("EnrollNext after cancel succeeded")
		}
		ts, _ := fp.Templates(ctx)
		if len(ts) != 1 {
			t.Fatalf("Templates after a cancelled enrollment = %+v", ts)
		}
		if err := verify(t, "print-A"); err != nil {
			t.Fatalf("verify after cancelled enrollment: %v", err)
		}
	})

	t.Run("EnrollBeginCancelled", func(t *testing.T) {
		bctx, cancel := context.WithCancel(ctx)
		done := async(func() error { _, _, _, err := fp.EnrollBegin(bctx, 10*time.Second); return err })
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := e.WaitSocket(wctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled EnrollBegin: %v", err)
		}
		if err := verify(t, "print-A"); err != nil {
			t.Fatalf("verify after cancelled EnrollBegin: %v", err)
		}
	})

	t.Run("Remove", func(t *testing.T) {
		if err := fp.Remove(ctx, b.id); err != nil {
			t.Fatal(err)
		}
		if ts, err := fp.Templates(ctx); err != nil || len(ts) != 0 {
			t.Fatalf("Templates after Remove = %+v, %v", ts, err)
		}
		if st, _ := d.Store().Settings(); len(st.FingerNames) != 0 {
			t.Fatalf("FingerNames after Remove = %v", st.FingerNames)
		}
		if fp.Available(ctx) {
			t.Fatal("Available after Remove")
		}
		if err := fp.Remove(ctx, b.id); !errors.Is(err, ctap2.ErrBioUnknown) {
			t.Fatalf("second Remove: %v, want ErrBioUnknown", err)
		}
	})
}

func TestFingerprintConfig(t *testing.T) {
	t.Run("NoFprintd", func(t *testing.T) {
		e := fprinttest.StartWith(t, fprinttest.Options{NoFprintd: true})
		d, logs, err := fpStart(t, e, FingerprintAuto, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.Fingerprint() {
			t.Fatal("fingerprint in use without fprintd")
		}
		if n := strings.Count(logs.String(), "no fingerprint reader"); n != 1 {
			t.Fatalf("auto without fprintd logged %d info lines, want 1:\n%s", n, logs)
		}
		if _, _, err := fpStart(t, e, FingerprintSystem, ""); err == nil || !strings.Contains(err.Error(), "--fingerprint system") {
			t.Fatalf("system without fprintd: %v, want a refusal", err)
		}
	})
	t.Run("NoBus", func(t *testing.T) {
		logs := new(logBuf)
		d, err := New(Config{StateDir: filepath.Join(t.TempDir(), "state"), Presence: approve{}, BootID: "boot", Fingerprint: FingerprintAuto,
			SystemBus: "unix:path=/nonexistent/bus", Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if d.Fingerprint() || !strings.Contains(logs.String(), "no fingerprint reader") {
			t.Fatalf("auto without a bus: fingerprint=%v\n%s", d.Fingerprint(), logs)
		}
	})
	t.Run("UVPin", func(t *testing.T) {
		e := fprinttest.Start(t)
		d, _, err := fpStart(t, e, FingerprintSystem, "pin")
		if err != nil {
			t.Fatal(err)
		}
		if d.Fingerprint() {
			t.Fatal("--uv pin still uses the fingerprint")
		}
		d2, _, err := fpStart(t, e, FingerprintNone, "")
		if err != nil || d2.Fingerprint() {
			t.Fatalf("--fingerprint none: %v, %v", d2, err)
		}
	})
}

func TestFingerprintFlags(t *testing.T) {
	for spec, want := range map[string]bool{"": true, "fingerprint,pin": true, " fingerprint , pin ": true, "pin": false} {
		if got, err := ParseUV(spec); err != nil || got != want {
			t.Errorf("ParseUV(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	for _, spec := range []string{"fingerprint", "pin,fingerprint", "face", "pin,pin", ","} {
		if _, err := ParseUV(spec); err == nil {
			t.Errorf("ParseUV(%q) accepted", spec)
		}
	}
	for _, spec := range []string{"", "auto", "none", "system"} {
		if err := CheckFingerprintSpec(spec); err != nil {
			t.Errorf("CheckFingerprintSpec(%q): %v", spec, err)
		}
	}
	if err := CheckFingerprintSpec("session"); err == nil {
		t.Error("CheckFingerprintSpec(session) accepted")
	}
}
