package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/keystore"
	"github.com/authd/authd/uv"
	"github.com/authd/authd/uv/fprint"
)

// Fingerprint selections (Config.Fingerprint, authd --fingerprint).
const (
	FingerprintAuto   = "auto"   // fprintd on the system bus when it has a device, else none (one info line)
	FingerprintNone   = "none"   // no built-in UV, no bioEnrollment
	FingerprintSystem = "system" // fprintd on the system bus, or refuse to start
)

// UV methods (Config.UV, authd --uv), in order of preference.
const (
	UVFingerprint = "fingerprint"
	UVPIN         = "pin"
	// UVDefault is authd's default --uv.
	UVDefault = UVFingerprint + "," + UVPIN
)

// CheckFingerprintSpec reports whether spec is a valid --fingerprint value.
func CheckFingerprintSpec(spec string) error {
	switch spec {
	case "", FingerprintAuto, FingerprintNone, FingerprintSystem:
		return nil
	}
	return fmt.Errorf("daemon: --fingerprint %q: want auto, none or system", spec)
}

// ParseUV parses a --uv list ("" is UVDefault) and reports whether the
// fingerprint is used for CTAP's built-in user verification. Two lists are
// accepted: "fingerprint,pin" (built-in UV offered while a finger is
// enrolled, clientPin is the fallback) and "pin" (no built-in UV). The PIN
// cannot be left out (clientPin is CTAP's fallback and what unblocks a
// blocked built-in UV), and it cannot come first: CTAP clients use built-in
// UV whenever getInfo says uv=true, so an authenticator cannot ask them to
// prefer the PIN while offering a fingerprint.
func ParseUV(spec string) (fingerprint bool, err error) {
	if spec == "" {
		spec = UVDefault
	}
	var list []string
	for _, m := range strings.Split(spec, ",") {
		m = strings.TrimSpace(m)
		if m != UVFingerprint && m != UVPIN {
			return false, fmt.Errorf("daemon: --uv %q: unknown method %q (want fingerprint and/or pin)", spec, m)
		}
		if slices.Contains(list, m) {
			return false, fmt.Errorf("daemon: --uv %q: %s listed twice", spec, m)
		}
		list = append(list, m)
	}
	switch strings.Join(list, ",") {
	case UVFingerprint + "," + UVPIN:
		return true, nil
	case UVPIN:
		return false, nil
	case UVFingerprint:
		return false, fmt.Errorf("daemon: --uv %q: the PIN cannot be turned off (it is CTAP's fallback and unblocks the fingerprint); use fingerprint,pin", spec)
	default:
		return false, fmt.Errorf("daemon: --uv %q: CTAP clients always prefer built-in UV when it is offered; use fingerprint,pin or pin", spec)
	}
}

// openFingerprint connects to fprintd as spec and the UV policy say. It
// returns nil (and no error) when no fingerprint is to be used.
func openFingerprint(log *slog.Logger, spec, busAddr, uvSpec string, names nameStore) (*fprintUV, *dbus.Conn, error) {
	if err := CheckFingerprintSpec(spec); err != nil {
		return nil, nil, err
	}
	useFP, err := ParseUV(uvSpec)
	if err != nil {
		return nil, nil, err
	}
	if spec == "" || spec == FingerprintNone {
		return nil, nil, nil
	}
	if !useFP {
		log.Info("authd: fingerprint not used for user verification (--uv pin)")
		return nil, nil, nil
	}
	fail := func(err error) (*fprintUV, *dbus.Conn, error) {
		if spec == FingerprintSystem {
			return nil, nil, fmt.Errorf("daemon: --fingerprint system: %w", err)
		}
		log.Info("authd: no fingerprint reader; user verification by PIN only", "reason", err.Error())
		return nil, nil, nil
	}
	var conn *dbus.Conn
	if busAddr != "" {
		conn, err = dbus.Connect(busAddr)
	} else {
		conn, err = dbus.ConnectSystemBus()
	}
	if err != nil {
		return fail(fmt.Errorf("system bus: %w", err))
	}
	c, err := fprint.Dial(conn)
	if err != nil {
		conn.Close()
		return fail(err)
	}
	log.Info("authd: fingerprint reader via fprintd", "device", c.Path())
	return &fprintUV{c: c, names: names, log: log}, conn, nil
}

// nameStore keeps bio-enrollment friendly names (*keystore.Store).
type nameStore interface {
	Settings() (keystore.Settings, error)
	UpdateSettings(fn func(*keystore.Settings) error) error
}

// fprintUV adapts an fprintd device to the engine's ctap2.Verifier and
// ctap2.BioEnroller. Template IDs are fprintd finger names
// ("left-thumb", ...) as bytes; friendly names are kept in the store's
// settings (Settings.FingerNames), and a template without one is reported
// under its finger name.
//
// While VerifyUser waits for a finger, inform (the daemon's Presence, when
// it is a uv.Informer) shows what for: CTAP's built-in UV has no prompt of
// its own.
type fprintUV struct {
	c      *fprint.Client
	names  nameStore
	log    *slog.Logger
	inform uv.Informer // nil: nothing is shown during a scan

	notices sync.WaitGroup // scan notices still shown or being withdrawn

	mu  sync.Mutex
	enr *fprint.Enrollment // the enrollment in progress
}

var (
	_ ctap2.Verifier    = (*fprintUV)(nil)
	_ ctap2.BioEnroller = (*fprintUV)(nil)
)

// availableTimeout bounds the fprintd query behind Available (getInfo asks
// it without a deadline).
const availableTimeout = 5 * time.Second

// Available is true while fprintd is reachable and the user has a finger
// enrolled (asked on every call).
func (f *fprintUV) Available(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, availableTimeout)
	defer cancel()
	return f.c.Available(ctx)
}

// VerifyUser waits for one matching or non-matching scan. Retry statuses
// (swipe too short, ...) keep it waiting. Meanwhile a notice says that
// authd waits for a finger, for op on rpID and for which program (ctx's
// uv.Requester); it is gone when VerifyUser returns.
func (f *fprintUV) VerifyUser(ctx context.Context, op, rpID string) error {
	defer f.showScan(ctx, op, rpID)()
	err := f.c.VerifyFeedback(ctx, func(status string) {
		f.log.Debug("fingerprint: scan again", "status", status, "rp", rpID)
	})
	if errors.Is(err, fprint.ErrNoMatch) {
		return fmt.Errorf("%w: %w", ctap2.ErrUVNoMatch, err)
	}
	return err
}

// showScan shows the notice for a scan, best effort, and returns the
// function that ends it. The notice is shown and withdrawn on a goroutine
// of its own, so that neither the scan nor VerifyUser's return waits for a
// slow notification server; Inform is bounded, and a notice still being
// shown when the scan ends is withdrawn as soon as it is.
func (f *fprintUV) showScan(ctx context.Context, op, rpID string) (end func()) {
	if f.inform == nil {
		return func() {}
	}
	// The text is made now: a uv.WithRequesterFunc answers for the request
	// in flight.
	title, body := uv.VerifyText(ctx, op, rpID)
	// A context of our own: the engine's per-scan context must not be used
	// after VerifyUser returned.
	nctx, cancel := context.WithCancel(ctx)
	f.notices.Add(1)
	go func() {
		defer f.notices.Done()
		done := f.inform.Inform(nctx, title, body)
		<-nctx.Done()
		done()
	}()
	return cancel
}

// waitNotices waits until every scan notice is withdrawn, or ctx ends.
func (f *fprintUV) waitNotices(ctx context.Context) error {
	done := make(chan struct{})
	go func() { f.notices.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fingerprint: scan notice still shown: %w", ctx.Err())
	}
}

// fingerprintKind values of getFingerprintSensorInfo.
const (
	fpKindTouch = 1
	fpKindSwipe = 2
)

// SensorInfo reports the scan type and num-enroll-stages.
func (f *fprintUV) SensorInfo(ctx context.Context) (kind, samples int, err error) {
	in, err := f.c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	if in.EnrollStages <= 0 {
		return 0, 0, errors.New("fingerprint: the number of enroll stages is unknown (device busy)")
	}
	kind = fpKindTouch
	if in.ScanType == fprint.ScanSwipe {
		kind = fpKindSwipe
	}
	return kind, in.EnrollStages, nil
}

// lastEnrollSampleStatus codes (CTAP 2.1 §6.7.4).
const (
	fpGood           = 0x00 // FP_GOOD
	fpPoorQuality    = 0x07 // FP_POOR_QUALITY
	fpTooSkewed      = 0x08 // FP_TOO_SKEWED
	fpTooShort       = 0x09 // FP_TOO_SHORT
	fpNoUpTransition = 0x0E // NO_UP_TRANSITION
)

// sampleStatus maps an fprintd enroll status that keeps the enrollment
// running to lastEnrollSampleStatus. fprintd gives no direction for a
// finger that is off-centre, so that is reported as TOO_SKEWED (badly
// placed); a generic retry is POOR_QUALITY; "remove the finger and retry"
// is NO_UP_TRANSITION (the finger was not lifted).
func sampleStatus(status string) int {
	switch status {
	case fprint.EnrollStagePassed:
		return fpGood
	case fprint.EnrollSwipeTooShort:
		return fpTooShort
	case fprint.EnrollFingerNotCentered:
		return fpTooSkewed
	case fprint.EnrollRemoveAndRetry:
		return fpNoUpTransition
	default: // fprint.EnrollRetryScan and anything new
		return fpPoorQuality
	}
}

// EnrollBegin enrolls the first finger (in fprint.Fingers order) the user
// has not enrolled yet and waits for its first sample. An enrollment still
// in progress is abandoned first.
func (f *fprintUV) EnrollBegin(ctx context.Context, timeout time.Duration) ([]byte, int, int, error) {
	f.EnrollCancel()
	enrolled, err := f.c.Enrolled(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	finger := ""
	for _, name := range fprint.Fingers {
		if !slices.Contains(enrolled, name) {
			finger = name
			break
		}
	}
	if finger == "" {
		return nil, 0, 0, fmt.Errorf("fingerprint: all %d fingers enrolled: %w", len(fprint.Fingers), ctap2.ErrBioFull)
	}
	e, err := f.c.EnrollBegin(ctx, finger)
	if err != nil {
		return nil, 0, 0, mapBioErr(err)
	}
	// A name left from a print of this finger removed outside authd.
	f.setName(finger, "")
	f.mu.Lock()
	f.enr = e
	f.mu.Unlock()
	f.log.Info("fingerprint: enrollment started", "finger", finger, "stages", e.Stages())
	status, remaining, err := f.capture(ctx, e, timeout)
	if err != nil {
		// The client has no template ID yet, so it cannot continue.
		f.EnrollCancel()
		return nil, 0, 0, err
	}
	return []byte(finger), status, remaining, nil
}

// EnrollNext captures the next sample of the enrollment in progress.
func (f *fprintUV) EnrollNext(ctx context.Context, id []byte, timeout time.Duration) (int, int, error) {
	f.mu.Lock()
	e := f.enr
	f.mu.Unlock()
	if e == nil || e.Finger() != string(id) {
		return 0, 0, fmt.Errorf("fingerprint: no enrollment of %q in progress", id)
	}
	return f.capture(ctx, e, timeout)
}

// capture waits (at most timeout) for one enroll status. A timeout leaves
// the enrollment running (the client may capture again or cancel); a
// cancelled request (CTAPHID_CANCEL, client gone) abandons it, as does any
// final status.
func (f *fprintUV) capture(ctx context.Context, e *fprint.Enrollment, timeout time.Duration) (status, remaining int, err error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		st, done, err := e.Next(tctx)
		if err != nil && !done {
			if ctx.Err() != nil {
				f.EnrollCancel()
				return 0, 0, ctx.Err()
			}
			return 0, 0, err // timeout: the enrollment keeps running
		}
		if done {
			f.finish(e)
			if st == fprint.EnrollCompleted {
				if err != nil {
					f.log.Warn("fingerprint: enrollment stored, but stopping it failed", "err", err)
				}
				f.log.Info("fingerprint: enrolled", "finger", e.Finger())
				return fpGood, 0, nil
			}
			return 0, 0, mapBioErr(err)
		}
		r := e.Remaining()
		if st == fprint.EnrollStagePassed && r == 0 {
			continue // the last stage: enroll-completed follows
		}
		if r < 0 {
			r = 1 // stages unknown: at least one more
		}
		if st != fprint.EnrollStagePassed {
			f.log.Debug("fingerprint: enroll sample not usable", "status", st)
		}
		return sampleStatus(st), r, nil
	}
}

// finish forgets e as the enrollment in progress.
func (f *fprintUV) finish(e *fprint.Enrollment) {
	f.mu.Lock()
	if f.enr == e {
		f.enr = nil
	}
	f.mu.Unlock()
}

// EnrollCancel abandons the enrollment in progress, if any.
func (f *fprintUV) EnrollCancel() {
	f.mu.Lock()
	e := f.enr
	f.enr = nil
	f.mu.Unlock()
	if e != nil {
		if err := e.Cancel(); err != nil {
			f.log.Warn("fingerprint: cancelling the enrollment", "err", err)
		}
	}
}

// Templates lists the enrolled fingers with their friendly names.
func (f *fprintUV) Templates(ctx context.Context) ([]ctap2.Template, error) {
	enrolled, err := f.c.Enrolled(ctx)
	if err != nil {
		return nil, err
	}
	st, err := f.names.Settings()
	if err != nil {
		return nil, err
	}
	var out []ctap2.Template
	for _, finger := range enrolled {
		name := st.FingerNames[finger]
		if name == "" {
			name = finger
		}
		out = append(out, ctap2.Template{ID: []byte(finger), Name: name})
	}
	return out, nil
}

// SetName names an enrolled finger.
func (f *fprintUV) SetName(ctx context.Context, id []byte, name string) error {
	if err := f.known(ctx, id); err != nil {
		return err
	}
	return f.setName(string(id), name)
}

// Remove deletes an enrolled finger's print from fprintd and its name.
func (f *fprintUV) Remove(ctx context.Context, id []byte) error {
	if err := f.known(ctx, id); err != nil {
		return err
	}
	if err := f.c.Delete(ctx, string(id)); err != nil {
		return mapBioErr(err)
	}
	f.log.Info("fingerprint: removed", "finger", string(id))
	return f.setName(string(id), "")
}

// known fails with ErrBioUnknown unless id is an enrolled finger.
func (f *fprintUV) known(ctx context.Context, id []byte) error {
	if !fprint.ValidFinger(string(id)) {
		return fmt.Errorf("fingerprint: template %x: %w", id, ctap2.ErrBioUnknown)
	}
	enrolled, err := f.c.Enrolled(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(enrolled, string(id)) {
		return fmt.Errorf("fingerprint: %s is not enrolled: %w", id, ctap2.ErrBioUnknown)
	}
	return nil
}

// setName stores (or, for "", drops) a finger's friendly name.
func (f *fprintUV) setName(finger, name string) error {
	err := f.names.UpdateSettings(func(st *keystore.Settings) error {
		if name == "" {
			if _, ok := st.FingerNames[finger]; !ok {
				return errNoChange
			}
			delete(st.FingerNames, finger)
			if len(st.FingerNames) == 0 {
				st.FingerNames = nil
			}
			return nil
		}
		if st.FingerNames == nil {
			st.FingerNames = map[string]string{}
		}
		st.FingerNames[finger] = name
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	return err
}

var errNoChange = errors.New("no change")

// mapBioErr maps fprint's sentinels to the BioEnroller's.
func mapBioErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fprint.ErrStorageFull):
		return fmt.Errorf("%w: %w", ctap2.ErrBioFull, err)
	case errors.Is(err, fprint.ErrNotEnrolled), errors.Is(err, fprint.ErrInvalidFinger):
		return fmt.Errorf("%w: %w", ctap2.ErrBioUnknown, err)
	}
	return err
}
