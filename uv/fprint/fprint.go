// Package fprint talks to fprintd, the fingerprint daemon, over D-Bus
// (bus name net.reactivated.Fprint, normally on the system bus).
//
// It follows fprintd's D-Bus API as documented in fprintd's interface files
// (/usr/share/dbus-1/interfaces/net.reactivated.Fprint.Manager.xml and
// net.reactivated.Fprint.Device.xml, https://fprint.freedesktop.org/fprintd-dev/):
//
//   - Manager.GetDefaultDevice() → the device object path;
//   - Device.Claim(username) / Device.Release(): a claim belongs to the D-Bus
//     connection that made it; username "" means the calling user;
//   - Device.VerifyStart(finger) with finger "any", then VerifyStatus(result,
//     done) signals until done, then Device.VerifyStop(), which must be called
//     on every path once VerifyStart succeeded;
//   - Device.EnrollStart(finger), EnrollStatus(result, done) signals per
//     stage, Device.EnrollStop(), which must also be called after
//     "enroll-completed" (otherwise the next VerifyStart fails with
//     AlreadyInUse);
//   - Device.ListEnrolledFingers(username), Device.DeleteEnrolledFinger(finger)
//     (fprintd ≥ 1.92) or Device.DeleteEnrolledFingers2();
//   - properties name, num-enroll-stages (only defined while claimed) and
//     scan-type ("press" or "swipe").
//
// Fingers use fprintd's names ("right-index-finger", ...; see Fingers).
// Status signals are accepted only from the current owner of
// net.reactivated.Fprint, so another client on the bus cannot forge a
// "verify-match".
//
// The package imports no other authd package. The connection is injected
// (the daemon passes the system bus, tests a private bus from
// internal/fprinttest); the Client never closes it.
package fprint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// D-Bus names used by fprintd.
const (
	BusName      = "net.reactivated.Fprint"
	managerPath  = dbus.ObjectPath("/net/reactivated/Fprint/Manager")
	managerIface = "net.reactivated.Fprint.Manager"
	deviceIface  = "net.reactivated.Fprint.Device"
	errPrefix    = "net.reactivated.Fprint.Error."
)

// Errors. Every error from this package wraps one of these where one
// applies (test with errors.Is).
var (
	// ErrNoDevice: fprintd is not running/installed, has no device, or the
	// device went away (verify-disconnected, enroll-disconnected).
	ErrNoDevice = errors.New("fprint: no fingerprint device")
	// ErrNoMatch: a finger was scanned and matched no enrolled print.
	ErrNoMatch = errors.New("fprint: fingerprint did not match")
	// ErrBusy: the device is claimed by another client (or another operation
	// of this Client is in progress).
	ErrBusy = errors.New("fprint: fingerprint device busy")
	// ErrNotEnrolled: no print enrolled (for the user, or for that finger).
	ErrNotEnrolled = errors.New("fprint: no fingerprint enrolled")
	// ErrPermissionDenied: polkit refused the action.
	ErrPermissionDenied = errors.New("fprint: permission denied by polkit")
	// ErrInvalidFinger: the finger name is not one of Fingers.
	ErrInvalidFinger = errors.New("fprint: invalid finger name")
	// ErrDuplicate: enrollment found the finger already enrolled
	// (enroll-duplicate).
	ErrDuplicate = errors.New("fprint: fingerprint already enrolled")
	// ErrStorageFull: no room for another print (enroll-data-full).
	ErrStorageFull = errors.New("fprint: fingerprint storage full")
	// ErrCanceled: the enrollment was cancelled with Enrollment.Cancel.
	ErrCanceled = errors.New("fprint: enrollment cancelled")
	// ErrUnsupported: the running fprintd cannot do this (for example delete
	// one finger out of several before fprintd 1.92).
	ErrUnsupported = errors.New("fprint: not supported by this fprintd")
)

// Fingers are fprintd's finger names.
var Fingers = []string{
	"left-thumb", "left-index-finger", "left-middle-finger", "left-ring-finger", "left-little-finger",
	"right-thumb", "right-index-finger", "right-middle-finger", "right-ring-finger", "right-little-finger",
}

// ValidFinger reports whether name is one of Fingers.
func ValidFinger(name string) bool { return slices.Contains(Fingers, name) }

// Verify statuses (VerifyStatus signal) and enroll statuses (EnrollStatus).
const (
	VerifyMatch             = "verify-match"
	VerifyNoMatch           = "verify-no-match"
	VerifyRetryScan         = "verify-retry-scan"
	VerifySwipeTooShort     = "verify-swipe-too-short"
	VerifyFingerNotCentered = "verify-finger-not-centered"
	VerifyRemoveAndRetry    = "verify-remove-and-retry"
	VerifyDisconnected      = "verify-disconnected"
	VerifyUnknownError      = "verify-unknown-error"

	EnrollCompleted         = "enroll-completed"
	EnrollFailed            = "enroll-failed"
	EnrollStagePassed       = "enroll-stage-passed"
	EnrollRetryScan         = "enroll-retry-scan"
	EnrollSwipeTooShort     = "enroll-swipe-too-short"
	EnrollFingerNotCentered = "enroll-finger-not-centered"
	EnrollRemoveAndRetry    = "enroll-remove-and-retry"
	EnrollDataFull          = "enroll-data-full"
	EnrollDuplicate         = "enroll-duplicate"
	EnrollDisconnected      = "enroll-disconnected"
	EnrollUnknownError      = "enroll-unknown-error"
)

// Scan types (the scan-type property).
const (
	ScanPress = "press"
	ScanSwipe = "swipe"
)

// IsRetry reports whether a verify or enroll status asks for another scan
// (the operation keeps running).
func IsRetry(status string) bool {
	switch status {
	case VerifyRetryScan, VerifySwipeTooShort, VerifyFingerNotCentered, VerifyRemoveAndRetry,
		EnrollRetryScan, EnrollSwipeTooShort, EnrollFingerNotCentered, EnrollRemoveAndRetry:
		return true
	}
	return false
}

// StatusError is a final failure status reported by fprintd (for example
// "verify-unknown-error" or "enroll-duplicate"). It unwraps to the matching
// sentinel where there is one (ErrNoDevice, ErrDuplicate, ErrStorageFull).
type StatusError struct {
	Status string
}

func (e *StatusError) Error() string { return "fprint: fprintd reported " + e.Status }

func (e *StatusError) Unwrap() error {
	switch e.Status {
	case VerifyDisconnected, EnrollDisconnected:
		return ErrNoDevice
	case EnrollDuplicate:
		return ErrDuplicate
	case EnrollDataFull:
		return ErrStorageFull
	case VerifyNoMatch:
		return ErrNoMatch
	}
	return nil
}

// cleanupTimeout bounds VerifyStop/EnrollStop/Release, which run with their
// own context because the caller's may already be cancelled.
const cleanupTimeout = 5 * time.Second

// dialTimeout bounds Dial (fprintd may be D-Bus activated and probe devices).
const dialTimeout = 25 * time.Second

// Client is one fprintd device, reached over one D-Bus connection. Only one
// claiming operation (Verify, an Enrollment, Delete, Info's short claim) runs
// at a time; another one meanwhile fails with ErrBusy.
type Client struct {
	conn *dbus.Conn
	dev  dbus.ObjectPath
	obj  dbus.BusObject

	op sync.Mutex // held while this Client has the device claimed

	mu     sync.Mutex
	stages int // num-enroll-stages seen while claimed; 0 = not yet known
}

// Dial finds fprintd's default device on conn (the system bus). It returns
// an error wrapping ErrNoDevice when fprintd is not available or has no
// device.
func Dial(conn *dbus.Conn) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	return DialContext(ctx, conn)
}

// DialContext is Dial with a context.
func DialContext(ctx context.Context, conn *dbus.Conn) (*Client, error) {
	var dev dbus.ObjectPath
	err := conn.Object(BusName, managerPath).
		CallWithContext(ctx, managerIface+".GetDefaultDevice", 0).Store(&dev)
	if err != nil {
		return nil, mapErr("GetDefaultDevice", err)
	}
	if !dev.IsValid() || dev == "/" {
		return nil, fmt.Errorf("fprint: GetDefaultDevice returned %q: %w", dev, ErrNoDevice)
	}
	return &Client{conn: conn, dev: dev, obj: conn.Object(BusName, dev)}, nil
}

// Path is the device's object path.
func (c *Client) Path() dbus.ObjectPath { return c.dev }

// Enrolled lists the calling user's enrolled fingers (ListEnrolledFingers
// with username ""). No enrolled finger is an empty list, not an error.
func (c *Client) Enrolled(ctx context.Context) ([]string, error) {
	var fingers []string
	err := c.obj.CallWithContext(ctx, deviceIface+".ListEnrolledFingers", 0, "").Store(&fingers)
	if err != nil {
		err = mapErr("ListEnrolledFingers", err)
		if errors.Is(err, ErrNotEnrolled) {
			return nil, nil
		}
		return nil, err
	}
	return fingers, nil
}

// Available reports whether the device is reachable and at least one finger
// is enrolled for the calling user.
func (c *Client) Available(ctx context.Context) bool {
	f, err := c.Enrolled(ctx)
	return err == nil && len(f) > 0
}

// Info describes the device.
type Info struct {
	Name     string // e.g. "Virtual device for debugging"
	ScanType string // ScanPress or ScanSwipe
	// EnrollStages is num-enroll-stages: how many successful scans an
	// enrollment needs; -1 when unknown (fprintd defines it only while the
	// device is claimed, and the device was busy).
	EnrollStages int
}

// Info reads the device's properties. fprintd defines num-enroll-stages only
// while the device is claimed, so when it has not been seen yet Info claims
// the device briefly (if it is free) to read it.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var in Info
	if err := c.prop(ctx, "name", &in.Name); err != nil {
		return in, err
	}
	if err := c.prop(ctx, "scan-type", &in.ScanType); err != nil {
		return in, err
	}
	var n int32
	if err := c.prop(ctx, "num-enroll-stages", &n); err != nil {
		return in, err
	}
	if n > 0 {
		c.setStages(int(n))
		in.EnrollStages = int(n)
		return in, nil
	}
	if in.EnrollStages = c.knownStages(); in.EnrollStages > 0 {
		return in, nil
	}
	in.EnrollStages = -1
	if !c.op.TryLock() {
		return in, nil
	}
	defer c.op.Unlock()
	if err := c.claim(ctx); err != nil {
		if errors.Is(err, ErrBusy) {
			return in, nil
		}
		return in, err
	}
	defer c.release()
	if err := c.prop(ctx, "num-enroll-stages", &n); err != nil {
		return in, err
	}
	if n > 0 {
		c.setStages(int(n))
		in.EnrollStages = int(n)
	}
	return in, nil
}

// Verify waits for a finger on the device and checks it against all the
// calling user's enrolled prints (VerifyStart "any"). It returns nil on
// verify-match, ErrNoMatch on verify-no-match, an error wrapping
// ErrNotEnrolled when nothing is enrolled, ErrBusy when the device is
// claimed elsewhere, a *StatusError for verify-disconnected (wrapping
// ErrNoDevice) and verify-unknown-error, and ctx.Err() when ctx ends first.
// Retry statuses (swipe too short, ...) keep it waiting. The device is
// stopped and released on every path. Timeouts are the caller's: fprintd
// waits for a finger indefinitely.
func (c *Client) Verify(ctx context.Context) error { return c.VerifyFeedback(ctx, nil) }

// VerifyFeedback is Verify that also calls onRetry (if not nil) with each
// non-final status, such as VerifySwipeTooShort, so a prompt can tell the
// user to scan again. onRetry runs on Verify's goroutine.
func (c *Client) VerifyFeedback(ctx context.Context, onRetry func(status string)) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.op.TryLock() {
		return fmt.Errorf("fprint: verify: another operation is in progress: %w", ErrBusy)
	}
	defer c.op.Unlock()

	if err := c.claim(ctx); err != nil {
		return err
	}
	defer c.release()
	sub, err := c.subscribe(ctx, "VerifyStatus")
	if err != nil {
		return err
	}
	defer sub.close()

	if err := c.obj.CallWithContext(ctx, deviceIface+".VerifyStart", 0, "any").Err; err != nil {
		if ctx.Err() != nil {
			// The call may have reached fprintd: stop it to be sure.
			c.stopCall("VerifyStop")
			return ctx.Err()
		}
		return mapErr("VerifyStart", err)
	}
	defer c.stopCall("VerifyStop")

	for {
		status, done, err := sub.next(ctx, nil)
		if err != nil {
			return err
		}
		switch {
		case status == VerifyMatch:
			return nil
		case status == VerifyNoMatch:
			return ErrNoMatch
		case done:
			return &StatusError{Status: status}
		default:
			if onRetry != nil {
				onRetry(status)
			}
		}
	}
}

// Delete removes the calling user's print of finger (DeleteEnrolledFinger,
// fprintd ≥ 1.92). With an older fprintd it uses DeleteEnrolledFingers2 when
// finger is the only enrolled one and fails with ErrUnsupported otherwise.
// A finger that is not enrolled gives an error wrapping ErrNotEnrolled.
func (c *Client) Delete(ctx context.Context, finger string) error {
	if !ValidFinger(finger) {
		return fmt.Errorf("fprint: delete %q: %w", finger, ErrInvalidFinger)
	}
	if !c.op.TryLock() {
		return fmt.Errorf("fprint: delete: another operation is in progress: %w", ErrBusy)
	}
	defer c.op.Unlock()
	if err := c.claim(ctx); err != nil {
		return err
	}
	defer c.release()

	err := c.obj.CallWithContext(ctx, deviceIface+".DeleteEnrolledFinger", 0, finger).Err
	if err == nil {
		return nil
	}
	if !isDBusError(err, "org.freedesktop.DBus.Error.UnknownMethod") {
		return mapErr("DeleteEnrolledFinger", err)
	}
	// fprintd < 1.92: only "delete all" exists.
	enrolled, lerr := c.Enrolled(ctx)
	if lerr != nil {
		return lerr
	}
	switch {
	case !slices.Contains(enrolled, finger):
		return fmt.Errorf("fprint: delete %s: %w", finger, ErrNotEnrolled)
	case len(enrolled) != 1:
		return fmt.Errorf("fprint: delete one of several fingers needs fprintd ≥ 1.92: %w", ErrUnsupported)
	}
	if err := c.obj.CallWithContext(ctx, deviceIface+".DeleteEnrolledFingers2", 0).Err; err != nil {
		return mapErr("DeleteEnrolledFingers2", err)
	}
	return nil
}

// ---- enrollment ----

// Enrollment is a running fprintd enrollment (EnrollStart..EnrollStop).
// The device stays claimed until the enrollment ends: a final status from
// Next, or Cancel.
type Enrollment struct {
	c      *Client
	finger string
	stages int
	sub    *subscription

	stop     chan struct{} // closed by Cancel
	stopOnce sync.Once
	endOnce  sync.Once
	endErr   error

	next   sync.Mutex // serializes Next
	mu     sync.Mutex
	passed int
	ended  bool
}

// EnrollBegin claims the device and starts enrolling finger for the calling
// user. Drive it with Next until done; Cancel stops it early. Errors wrap
// ErrInvalidFinger, ErrBusy, ErrPermissionDenied or ErrNoDevice.
func (c *Client) EnrollBegin(ctx context.Context, finger string) (_ *Enrollment, err error) {
	if !ValidFinger(finger) {
		return nil, fmt.Errorf("fprint: enroll %q: %w", finger, ErrInvalidFinger)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !c.op.TryLock() {
		return nil, fmt.Errorf("fprint: enroll: another operation is in progress: %w", ErrBusy)
	}
	claimed := false
	var sub *subscription
	defer func() {
		if err == nil {
			return
		}
		if sub != nil {
			sub.close()
		}
		if claimed {
			c.release()
		}
		c.op.Unlock()
	}()

	if err := c.claim(ctx); err != nil {
		return nil, err
	}
	claimed = true
	var n int32
	if err := c.prop(ctx, "num-enroll-stages", &n); err != nil {
		return nil, err
	}
	stages := -1
	if n > 0 {
		stages = int(n)
		c.setStages(stages)
	}
	sub, err = c.subscribe(ctx, "EnrollStatus")
	if err != nil {
		return nil, err
	}
	if err := c.obj.CallWithContext(ctx, deviceIface+".EnrollStart", 0, finger).Err; err != nil {
		if ctx.Err() != nil {
			c.stopCall("EnrollStop")
			return nil, ctx.Err()
		}
		return nil, mapErr("EnrollStart", err)
	}
	return &Enrollment{c: c, finger: finger, stages: stages, sub: sub, stop: make(chan struct{})}, nil
}

// Finger is the finger being enrolled.
func (e *Enrollment) Finger() string { return e.finger }

// Stages is the device's num-enroll-stages, or -1 when fprintd did not say.
func (e *Enrollment) Stages() int { return e.stages }

// Remaining is the number of successful scans still needed (Stages minus the
// enroll-stage-passed statuses seen so far), 0 once completed, or -1 when
// the number of stages is unknown.
func (e *Enrollment) Remaining() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stages < 0 {
		return -1
	}
	return max(e.stages-e.passed, 0)
}

// Next waits for the next EnrollStatus and returns it:
//
//   - EnrollStagePassed, done=false, nil: one more stage done (Remaining
//     decreased);
//   - a retry status (EnrollRetryScan, EnrollSwipeTooShort,
//     EnrollFingerNotCentered, EnrollRemoveAndRetry), done=false, nil: the
//     scan was not usable, scan again;
//   - EnrollCompleted, done=true, nil: the print is stored;
//   - any other final status (EnrollFailed, EnrollDuplicate, EnrollDataFull,
//     EnrollDisconnected, EnrollUnknownError), done=true, a *StatusError.
//
// Once done, the enrollment is stopped and the device released (EnrollStop
// is called even after enroll-completed, as fprintd requires). When ctx ends
// first Next returns ctx.Err() and the enrollment keeps running: call Next
// again or Cancel. After Cancel, Next returns ErrCanceled.
func (e *Enrollment) Next(ctx context.Context) (status string, done bool, err error) {
	e.next.Lock()
	defer e.next.Unlock()
	e.mu.Lock()
	ended := e.ended
	e.mu.Unlock()
	if ended {
		select {
		case <-e.stop:
			return "", true, ErrCanceled
		default:
		}
		return "", true, errors.New("fprint: enrollment already finished")
	}
	status, done, err = e.sub.next(ctx, e.stop)
	if err != nil {
		if errors.Is(err, errStopped) {
			return "", true, ErrCanceled
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return "", false, err
		}
		// The connection or fprintd is gone: end the enrollment.
		e.end()
		return "", true, err
	}
	e.mu.Lock()
	if status == EnrollStagePassed {
		e.passed++
	}
	if status == EnrollCompleted && e.stages > 0 {
		e.passed = e.stages
	}
	e.mu.Unlock()
	if !done {
		return status, false, nil
	}
	if endErr := e.end(); status == EnrollCompleted {
		// The print is stored once enroll-completed is emitted; a failed
		// EnrollStop/Release is reported but does not undo it.
		return status, true, endErr
	}
	return status, true, &StatusError{Status: status}
}

// Cancel stops the enrollment (EnrollStop, Release) and makes a waiting Next
// return ErrCanceled. It is safe to call more than once and after the
// enrollment finished.
func (e *Enrollment) Cancel() error {
	e.stopOnce.Do(func() { close(e.stop) })
	return e.end()
}

// end stops the enrollment and releases the device, once.
func (e *Enrollment) end() error {
	e.endOnce.Do(func() {
		e.mu.Lock()
		e.ended = true
		e.mu.Unlock()
		err1 := e.c.stopCall("EnrollStop")
		err2 := e.c.release()
		e.sub.close()
		e.c.op.Unlock()
		e.endErr = errors.Join(err1, err2)
	})
	return e.endErr
}

// ---- plumbing ----

func (c *Client) knownStages() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stages
}

func (c *Client) setStages(n int) {
	c.mu.Lock()
	c.stages = n
	c.mu.Unlock()
}

func (c *Client) prop(ctx context.Context, name string, out any) error {
	var v dbus.Variant
	err := c.obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, deviceIface, name).Store(&v)
	if err != nil {
		return mapErr("Get "+name, err)
	}
	if err := v.Store(out); err != nil {
		return fmt.Errorf("fprint: property %s: %w", name, err)
	}
	return nil
}

// claim claims the device for the calling user. If ctx ends while the call
// is in flight the claim may still have happened, so it is released.
func (c *Client) claim(ctx context.Context) error {
	err := c.obj.CallWithContext(ctx, deviceIface+".Claim", 0, "").Err
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		c.release()
		return ctx.Err()
	}
	return mapErr("Claim", err)
}

// release releases the device with its own timeout.
func (c *Client) release() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := c.obj.CallWithContext(ctx, deviceIface+".Release", 0).Err; err != nil {
		return mapErr("Release", err)
	}
	return nil
}

// stopCall calls VerifyStop or EnrollStop with its own timeout.
// NoActionInProgress (the action already ended by itself) is not an error.
func (c *Client) stopCall(method string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := c.obj.CallWithContext(ctx, deviceIface+"."+method, 0).Err
	if err == nil || isDBusError(err, errPrefix+"NoActionInProgress") {
		return nil
	}
	return mapErr(method, err)
}

// subscription receives one status signal of the device, accepted only from
// fprintd's current unique name, plus fprintd's NameOwnerChanged.
type subscription struct {
	c      *Client
	member string
	owner  string
	ch     chan *dbus.Signal
	rules  [][]dbus.MatchOption
	once   sync.Once
}

var errStopped = errors.New("stopped")

// subscribe must run after a successful Claim (fprintd is then running and
// its unique name is resolved) and before the Start call.
func (c *Client) subscribe(ctx context.Context, member string) (*subscription, error) {
	s := &subscription{c: c, member: member, ch: make(chan *dbus.Signal, 64)}
	c.conn.Signal(s.ch)
	rules := [][]dbus.MatchOption{
		{
			dbus.WithMatchSender(BusName),
			dbus.WithMatchObjectPath(c.dev),
			dbus.WithMatchInterface(deviceIface),
			dbus.WithMatchMember(member),
		},
		{
			dbus.WithMatchSender("org.freedesktop.DBus"),
			dbus.WithMatchInterface("org.freedesktop.DBus"),
			dbus.WithMatchMember("NameOwnerChanged"),
			dbus.WithMatchArg(0, BusName),
		},
	}
	for _, r := range rules {
		if err := c.conn.AddMatchSignalContext(ctx, r...); err != nil {
			s.close()
			return nil, fmt.Errorf("fprint: AddMatch: %w", err)
		}
		s.rules = append(s.rules, r)
	}
	// Resolve the owner after adding the rules: if fprintd is replaced
	// from here on, NameOwnerChanged reports it.
	if err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&s.owner); err != nil {
		s.close()
		return nil, mapErr("GetNameOwner", err)
	}
	return s, nil
}

func (s *subscription) close() {
	s.once.Do(func() {
		s.c.conn.RemoveSignal(s.ch)
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for _, r := range s.rules {
			_ = s.c.conn.RemoveMatchSignalContext(ctx, r...)
		}
	})
}

// next returns the next (status, done) from fprintd, ignoring signals from
// anyone else.
func (s *subscription) next(ctx context.Context, stop <-chan struct{}) (string, bool, error) {
	want := deviceIface + "." + s.member
	for {
		select {
		case <-ctx.Done():
			return "", false, ctx.Err()
		case <-stop:
			return "", false, errStopped
		case sig, ok := <-s.ch:
			if !ok {
				return "", true, fmt.Errorf("fprint: D-Bus connection closed: %w", ErrNoDevice)
			}
			switch {
			case sig.Name == "org.freedesktop.DBus.NameOwnerChanged" && sig.Sender == "org.freedesktop.DBus":
				if len(sig.Body) == 3 {
					name, _ := sig.Body[0].(string)
					old, _ := sig.Body[1].(string)
					if name == BusName && old == s.owner {
						return "", true, fmt.Errorf("fprint: fprintd left the bus: %w", ErrNoDevice)
					}
				}
			case sig.Name == want && sig.Path == s.c.dev && sig.Sender == s.owner:
				if len(sig.Body) != 2 {
					continue
				}
				status, ok1 := sig.Body[0].(string)
				done, ok2 := sig.Body[1].(bool)
				if ok1 && ok2 {
					return status, done, nil
				}
			}
		}
	}
}

func dbusErrName(err error) (string, bool) {
	var v dbus.Error
	if errors.As(err, &v) {
		return v.Name, true
	}
	var p *dbus.Error
	if errors.As(err, &p) && p != nil {
		return p.Name, true
	}
	return "", false
}

func isDBusError(err error, name string) bool {
	n, ok := dbusErrName(err)
	return ok && n == name
}

// mapErr wraps a D-Bus error from method op with the matching sentinel.
func mapErr(op string, err error) error {
	name, ok := dbusErrName(err)
	if !ok {
		return fmt.Errorf("fprint: %s: %w", op, err)
	}
	var sentinel error
	switch name {
	case errPrefix + "AlreadyInUse":
		sentinel = ErrBusy
	case errPrefix + "NoEnrolledPrints":
		sentinel = ErrNotEnrolled
	case errPrefix + "PermissionDenied":
		sentinel = ErrPermissionDenied
	case errPrefix + "InvalidFingername":
		sentinel = ErrInvalidFinger
	case errPrefix + "NoSuchDevice",
		"org.freedesktop.DBus.Error.ServiceUnknown",
		"org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.UnknownObject":
		sentinel = ErrNoDevice
	}
	if sentinel == nil {
		return fmt.Errorf("fprint: %s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %w", sentinel, op, err)
}
