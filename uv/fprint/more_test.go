package fprint_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/authd/authd/internal/fprinttest"
	"github.com/authd/authd/uv/fprint"
)

func TestNoFprintd(t *testing.T) {
	e := fprinttest.StartWith(t, fprinttest.Options{NoFprintd: true})
	_, err := fprint.Dial(e.Conn(t))
	if !errors.Is(err, fprint.ErrNoDevice) {
		t.Fatalf("Dial without fprintd: %v, want ErrNoDevice", err)
	}
	t.Log(err)
}

// TestEnrollFeedback enrolls on a 3-stage device with every retry status in
// between, checking Remaining after each.
func TestEnrollFeedback(t *testing.T) {
	e := fprinttest.Start(t)
	c := dial(t, e)
	ctx := testCtx(t)

	// SET_ENROLL_STAGES applies to the open device, and stays after it is
	// closed: set it during a claim of another connection, before EnrollStart
	// (sent during an enrollment it would change that enrollment's stages).
	raw := e.Conn(t)
	obj := raw.Object(fprint.BusName, c.Path())
	if err := obj.Call("net.reactivated.Fprint.Device.Claim", 0, "").Err; err != nil {
		t.Fatal(err)
	}
	e.SetEnrollStages(t, 3)
	e.SetScanType(t, fprint.ScanPress)
	if err := obj.Call("net.reactivated.Fprint.Device.Release", 0).Err; err != nil {
		t.Fatal(err)
	}

	en, err := c.EnrollBegin(ctx, "left-thumb")
	if err != nil {
		t.Fatal(err)
	}
	defer en.Cancel()
	if en.Stages() != 3 || en.Remaining() != 3 || en.Finger() != "left-thumb" {
		t.Fatalf("Stages %d Remaining %d Finger %q, want 3 3 left-thumb", en.Stages(), en.Remaining(), en.Finger())
	}
	steps := []struct {
		cmd, status string
		done        bool
		remaining   int
	}{
		{"SCAN p1", fprint.EnrollStagePassed, false, 2},
		{"RETRY 1", fprint.EnrollSwipeTooShort, false, 2},
		{"RETRY 2", fprint.EnrollFingerNotCentered, false, 2},
		{"RETRY 3", fprint.EnrollRemoveAndRetry, false, 2},
		{"RETRY 0", fprint.EnrollRetryScan, false, 2},
		{"SCAN p1", fprint.EnrollStagePassed, false, 1},
		{"SCAN p1", fprint.EnrollCompleted, true, 0},
	}
	for _, s := range steps {
		e.MustSend(t, s.cmd)
		st, done, err := en.Next(ctx)
		if err != nil || st != s.status || done != s.done || en.Remaining() != s.remaining {
			t.Fatalf("%s: Next = %q, %v, %v, Remaining %d; want %q, %v, nil, %d",
				s.cmd, st, done, err, en.Remaining(), s.status, s.done, s.remaining)
		}
		if isRetry := s.status != fprint.EnrollStagePassed && s.status != fprint.EnrollCompleted; fprint.IsRetry(st) != isRetry {
			t.Fatalf("IsRetry(%q) = %v", st, !isRetry)
		}
	}
	if _, _, err := en.Next(ctx); err == nil {
		t.Fatal("Next after completion: no error")
	}
	in, err := c.Info(ctx)
	if err != nil || in.EnrollStages != 3 || in.ScanType != fprint.ScanPress {
		t.Fatalf("Info = %+v, %v; want 3 stages, press", in, err)
	}

	// The device is released after completion: a second enrollment works.
	// (fprintd 1.94 does not detect duplicate prints on a device without
	// storage, so the same print id enrolls again.)
	enroll(t, e, c, "left-index-finger", "p2", 3)
	f, err := c.Enrolled(ctx)
	slices.Sort(f)
	if err != nil || !slices.Equal(f, []string{"left-index-finger", "left-thumb"}) {
		t.Fatalf("Enrolled = %v, %v", f, err)
	}
	// Delete one of two fingers.
	if err := c.Delete(ctx, "left-thumb"); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Enrolled(ctx); err != nil || !slices.Equal(f, []string{"left-index-finger"}) {
		t.Fatalf("Enrolled after deleting left-thumb = %v, %v", f, err)
	}
	if err := c.Delete(ctx, "left-thumb"); !errors.Is(err, fprint.ErrNotEnrolled) {
		t.Fatalf("second Delete: %v, want ErrNotEnrolled", err)
	}
}

func TestEnrollCancelWhileWaiting(t *testing.T) {
	e := fprinttest.Start(t)
	c := dial(t, e)
	ctx := testCtx(t)

	en, err := c.EnrollBegin(ctx, "right-thumb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnrollBegin(ctx, "left-thumb"); !errors.Is(err, fprint.ErrBusy) {
		t.Fatalf("EnrollBegin during an enrollment: %v, want ErrBusy", err)
	}
	if _, err := c.EnrollBegin(ctx, "no-such-finger"); !errors.Is(err, fprint.ErrInvalidFinger) {
		t.Fatalf("EnrollBegin(no-such-finger): %v, want ErrInvalidFinger", err)
	}
	nd := make(chan error, 1)
	go func() { _, _, err := en.Next(ctx); nd <- err }()
	if err := en.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := <-nd; !errors.Is(err, fprint.ErrCanceled) {
		t.Fatalf("Next during Cancel: %v, want ErrCanceled", err)
	}
	if f, err := c.Enrolled(ctx); err != nil || len(f) != 0 {
		t.Fatalf("Enrolled after a cancelled enrollment = %v, %v", f, err)
	}
	// Released: a new enrollment on the same client works.
	enroll(t, e, c, "right-thumb", "p1", 5)
}

func TestVerifyErrors(t *testing.T) {
	e := fprinttest.Start(t)
	c := dial(t, e)
	ctx := testCtx(t)
	enroll(t, e, c, "right-index-finger", "p1", 5)

	// A device error ends the verification with a StatusError.
	done := make(chan error, 1)
	go func() { done <- c.Verify(ctx) }()
	e.MustSend(t, "ERROR 0")
	err := <-done
	var se *fprint.StatusError
	if !errors.As(err, &se) || se.Status != fprint.VerifyUnknownError {
		t.Fatalf("Verify with a device error: %v, want StatusError verify-unknown-error", err)
	}
	verifyWith(t, e, c, "p1", nil)

	// Polkit refuses.
	if err := e.SetAllowed(); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(ctx); !errors.Is(err, fprint.ErrPermissionDenied) {
		t.Fatalf("Verify denied by polkit: %v, want ErrPermissionDenied", err)
	}
	if _, err := c.Enrolled(ctx); !errors.Is(err, fprint.ErrPermissionDenied) {
		t.Fatalf("Enrolled denied by polkit: %v, want ErrPermissionDenied", err)
	}
	if c.Available(ctx) {
		t.Fatal("Available while polkit refuses")
	}
	if err := e.AllowAll(); err != nil {
		t.Fatal(err)
	}

	// fprintd dies mid-verify.
	started := watchVerifyStarted(t, e)
	go func() { done <- c.Verify(ctx) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Verify returned early: %v", err)
	}
	e.KillFprintd()
	if err := <-done; !errors.Is(err, fprint.ErrNoDevice) {
		t.Fatalf("Verify when fprintd dies: %v, want ErrNoDevice", err)
	}
}
