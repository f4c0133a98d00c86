package fprint_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/internal/fprinttest"
	"github.com/authd/authd/uv/fprint"
)

const finger = "right-index-finger"

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, e *fprinttest.Env) *fprint.Client {
	t.Helper()
	c, err := fprint.Dial(e.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// watchVerifyStarted reports on the returned channel each VerifyFingerSelected
// signal fprintd emits (it does so on VerifyStart), seen from a separate
// connection.
func watchVerifyStarted(t *testing.T, e *fprinttest.Env) <-chan struct{} {
	t.Helper()
	conn := e.Conn(t)
	if err := conn.AddMatchSignal(
		dbus.WithMatchInterface("net.reactivated.Fprint.Device"),
		dbus.WithMatchMember("VerifyFingerSelected"),
	); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 16)
	conn.Signal(sigs)
	out := make(chan struct{}, 16)
	go func() {
		for s := range sigs {
			if s.Name == "net.reactivated.Fprint.Device.VerifyFingerSelected" {
				out <- struct{}{}
			}
		}
	}()
	return out
}

// enroll enrolls finger with print id through EnrollBegin/Next, checking the
// stages, and returns the statuses seen.
func enroll(t *testing.T, e *fprinttest.Env, c *fprint.Client, finger, id string, stages int) []string {
	t.Helper()
	ctx := testCtx(t)
	en, err := c.EnrollBegin(ctx, finger)
	if err != nil {
		t.Fatalf("EnrollBegin: %v", err)
	}
	defer en.Cancel()
	if en.Stages() != stages {
		t.Fatalf("Stages = %d, want %d", en.Stages(), stages)
	}
	if en.Remaining() != stages {
		t.Fatalf("Remaining = %d before any scan, want %d", en.Remaining(), stages)
	}
	var got []string
	for i := 0; ; i++ {
		if i > 2*stages+4 {
			t.Fatalf("enrollment does not end: %v", got)
		}
		e.Scan(t, id)
		st, done, err := en.Next(ctx)
		got = append(got, st)
		if err != nil {
			t.Fatalf("Next: %q %v %v (so far %v)", st, done, err, got)
		}
		if done {
			if st != fprint.EnrollCompleted {
				t.Fatalf("final status %q", st)
			}
			break
		}
		if st != fprint.EnrollStagePassed {
			t.Fatalf("status %q", st)
		}
		if want := stages - len(got); en.Remaining() != want {
			t.Fatalf("Remaining = %d after %d stages, want %d", en.Remaining(), len(got), want)
		}
	}
	if len(got) != stages {
		t.Fatalf("got %d statuses for %d stages: %v", len(got), stages, got)
	}
	if en.Remaining() != 0 {
		t.Fatalf("Remaining = %d after completion", en.Remaining())
	}
	return got
}

func TestFprintd(t *testing.T) {
	e := fprinttest.Start(t)
	c := dial(t, e)
	ctx := testCtx(t)

	t.Run("NothingEnrolled", func(t *testing.T) {
		if c.Available(ctx) {
			t.Fatal("Available with nothing enrolled")
		}
		f, err := c.Enrolled(ctx)
		if err != nil || len(f) != 0 {
			t.Fatalf("Enrolled = %v, %v", f, err)
		}
		if err := c.Verify(ctx); !errors.Is(err, fprint.ErrNotEnrolled) {
			t.Fatalf("Verify with nothing enrolled: %v, want ErrNotEnrolled", err)
		}
		if err := c.Delete(ctx, finger); !errors.Is(err, fprint.ErrNotEnrolled) {
			t.Fatalf("Delete with nothing enrolled: %v, want ErrNotEnrolled", err)
		}
	})

	t.Run("Info", func(t *testing.T) {
		in, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", in)
		if in.EnrollStages != 5 || in.ScanType != fprint.ScanSwipe || in.Name == "" {
			t.Fatalf("Info = %+v, want 5 stages, swipe", in)
		}
	})

	t.Run("Enroll", func(t *testing.T) {
		got := enroll(t, e, c, finger, "print-A", 5)
		t.Logf("statuses: %v", got)
		f, err := c.Enrolled(ctx)
		if err != nil || !slices.Equal(f, []string{finger}) {
			t.Fatalf("Enrolled = %v, %v", f, err)
		}
		if !c.Available(ctx) {
			t.Fatal("not Available after enrolling")
		}
	})

	t.Run("VerifyMatch", func(t *testing.T) {
		verifyWith(t, e, c, "print-A", nil)
	})

	t.Run("VerifyNoMatch", func(t *testing.T) {
		err := verifyWith(t, e, c, "print-B", fprint.ErrNoMatch)
		t.Logf("no match: %v", err)
	})

	t.Run("VerifyRetryThenMatch", func(t *testing.T) {
		var mu sync.Mutex
		var retries []string
		done := make(chan error, 1)
		go func() {
			done <- c.VerifyFeedback(ctx, func(s string) {
				mu.Lock()
				retries = append(retries, s)
				mu.Unlock()
			})
		}()
		e.Retry(t, 1) // too short
		e.Scan(t, "print-A")
		if err := <-done; err != nil {
			t.Fatalf("Verify after a retry: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(retries, []string{fprint.VerifySwipeTooShort}) {
			t.Fatalf("retries = %v", retries)
		}
	})

	t.Run("VerifyCancel", func(t *testing.T) {
		started := watchVerifyStarted(t, e)
		vctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Verify(vctx) }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("Verify returned before cancel: %v", err)
		case <-ctx.Done():
			t.Fatal("verify did not start")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Verify: %v, want context.Canceled", err)
		}
		// Released: another connection can claim, and this client verifies.
		other := dial(t, e)
		if err := other.Delete(ctx, "left-thumb"); !errors.Is(err, fprint.ErrNotEnrolled) {
			t.Fatalf("other connection after cancel: %v, want ErrNotEnrolled (device released)", err)
		}
		verifyWith(t, e, c, "print-A", nil)
	})

	t.Run("Busy", func(t *testing.T) {
		other := dial(t, e)
		en, err := other.EnrollBegin(ctx, "left-thumb")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Verify(ctx); !errors.Is(err, fprint.ErrBusy) {
			t.Fatalf("Verify while another connection enrolls: %v, want ErrBusy", err)
		}
		if _, err := other.EnrollBegin(ctx, "left-thumb"); !errors.Is(err, fprint.ErrBusy) {
			t.Fatalf("second EnrollBegin on the same client: %v, want ErrBusy", err)
		}
		if err := en.Cancel(); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if _, _, err := en.Next(ctx); !errors.Is(err, fprint.ErrCanceled) {
			t.Fatalf("Next after Cancel: %v", err)
		}
		if err := en.Cancel(); err != nil {
			t.Fatalf("second Cancel: %v", err)
		}
		verifyWith(t, e, c, "print-A", nil)
	})

	t.Run("Delete", func(t *testing.T) {
		if err := c.Delete(ctx, "bad-finger"); !errors.Is(err, fprint.ErrInvalidFinger) {
			t.Fatalf("Delete(bad-finger): %v", err)
		}
		if err := c.Delete(ctx, finger); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		f, err := c.Enrolled(ctx)
		if err != nil || len(f) != 0 {
			t.Fatalf("Enrolled after Delete = %v, %v", f, err)
		}
		if c.Available(ctx) {
			t.Fatal("Available after Delete")
		}
	})
}

// verifyWith starts Verify, scans id and checks the result.
func verifyWith(t *testing.T, e *fprinttest.Env, c *fprint.Client, id string, want error) error {
	t.Helper()
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() { done <- c.Verify(ctx) }()
	e.Scan(t, id)
	err := <-done
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("Verify with scan %q: %v, want %v", id, err, want)
	}
	return err
}
