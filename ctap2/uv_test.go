package ctap2

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeFinger is a scriptable Verifier and BioEnroller: the test queues what
// the next scans will be.
type fakeFinger struct {
	mu        sync.Mutex
	enrolled  map[string]string // template id → name
	scans     []error           // next VerifyUser results (nil = match)
	asked     []string          // "op rpID" of every VerifyUser call
	block     bool
	enrolling string
	left      int
	nextID    int
}

func (f *fakeFinger) Available(context.Context) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.enrolled) > 0
}

func (f *fakeFinger) VerifyUser(ctx context.Context, op, rpID string) error {
	f.mu.Lock()
	f.asked = append(f.asked, op+" "+rpID)
	if f.block {
		f.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	if len(f.scans) == 0 {
		f.mu.Unlock()
		return fmt.Errorf("no scan: %w", ErrUVNoMatch)
	}
	r := f.scans[0]
	f.scans = f.scans[1:]
	f.mu.Unlock()
	return r
}

func (f *fakeFinger) SensorInfo(context.Context) (int, int, error) { return 1, 3, nil }

func (f *fakeFinger) EnrollBegin(ctx context.Context, timeout time.Duration) ([]byte, int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.enrolling, f.left = fmt.Sprintf("finger-%d", f.nextID), 2
	return []byte(f.enrolling), 0, f.left, nil
}

func (f *fakeFinger) EnrollNext(ctx context.Context, id []byte, timeout time.Duration) (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left--
	if f.left == 0 {
		if f.enrolled == nil {
			f.enrolled = map[string]string{}
		}
		f.enrolled[f.enrolling] = ""
	}
	return 0, f.left, nil
}

func (f *fakeFinger) EnrollCancel() { f.mu.Lock(); f.enrolling = ""; f.mu.Unlock() }

func (f *fakeFinger) Templates(context.Context) ([]Template, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Template
	for id, name := range f.enrolled {
		out = append(out, Template{ID: []byte(id), Name: name})
	}
	return out, nil
}

func (f *fakeFinger) SetName(_ context.Context, id []byte, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.enrolled[string(id)]; !ok {
		return ErrBioUnknown
	}
	f.enrolled[string(id)] = name
	return nil
}

func (f *fakeFinger) Remove(_ context.Context, id []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.enrolled[string(id)]; !ok {
		return ErrBioUnknown
	}
	delete(f.enrolled, string(id))
	return nil
}

func (f *fakeFinger) queue(r ...error) { f.mu.Lock(); f.scans = append(f.scans, r...); f.mu.Unlock() }

func withFinger(e *env) *fakeFinger {
	f := &fakeFinger{}
	e.a.cfg.Verifier, e.a.cfg.BioEnroller = f, f
	return f
}

// uvToken asks for a token through built-in UV (clientPIN 0x06).
func (e *env) uvToken(version int, perms int, rpID string) (StatusCode, []byte) {
	pl := e.platform(version)
	req := map[int]any{1: version, 2: pinGetTokenUsingUV, 3: pl.keyAgr, 9: perms}
	if rpID != "" {
		req[10] = rpID
	}
	st, m := e.call(cmdClientPIN, req)
	if st != StatusOK {
		return st, nil
	}
	return st, pl.dec(m[2].([]byte))
}

func bioReq(e *env, tok []byte, sub int, params map[int]any) map[int]any {
	req := map[int]any{1: 1, 2: sub}
	msg := []byte{1, byte(sub)}
	if params != nil {
		req[3] = params
		msg = append(msg, mustCBOR(e.t, params)...)
	}
	if tok != nil {
		req[4], req[5] = 2, e.pv2().Authenticate(tok, msg)
	}
	return req
}

func (e *env) pv2() interface{ Authenticate(key, msg []byte) []byte } {
	p := e.platform(2)
	return p.p
}

func TestBuiltInUVAndBioEnrollment(t *testing.T) {
	e := newEnv(t)
	f := withFinger(e)
	info := e.must(cmdGetInfo, nil)
	opts := info[4].(map[any]any)
	if opts["uv"] != false || opts["bioEnroll"] != false || info[18] != uint64(uvModalityFingerprint) {
		t.Fatalf("getInfo before enrollment: %v modality %v", opts, info[18])
	}
	// Nothing enrolled: UV tokens are not allowed; uv=true is an invalid option.
	if st, _ := e.uvToken(2, permMC, "example.com"); st != ErrNotAllowed {
		t.Fatalf("UV token without enrollment: %v", st)
	}
	uvMC := mcParams("example.com", []byte{1}, true)
	uvMC[7] = map[string]bool{"rk": true, "uv": true}
	e.expect(ErrInvalidOption, cmdMakeCredential, uvMC)

	// Enroll through authenticatorBioEnrollment with a PIN token (be).
	e.setPIN(2, "1234")
	_, tok, _ := e.token(2, "1234", permBE, "")
	e.expect(ErrPUATRequired, cmdBioEnrollment, bioReq(e, nil, bioEnrollBegin, nil))
	sensor := e.must(cmdBioEnrollment, map[int]any{1: 1, 2: bioGetSensorInfo})
	if sensor[2] != uint64(1) || sensor[3] != uint64(3) {
		t.Fatalf("sensor info %v", sensor)
	}
	m := e.must(cmdBioEnrollment, bioReq(e, tok, bioEnrollBegin, map[int]any{3: 5000}))
	id := m[4].([]byte)
	if m[6] != uint64(2) || m[5] != uint64(0) {
		t.Fatalf("enrollBegin %v", m)
	}
	e.expect(ErrInvalidParameter, cmdBioEnrollment, bioReq(e, tok, bioEnrollCaptureNext, map[int]any{1: []byte("other")}))
	for left := 1; left >= 0; left-- {
		m = e.must(cmdBioEnrollment, bioReq(e, tok, bioEnrollCaptureNext, map[int]any{1: id}))
		if m[6] != uint64(left) {
			t.Fatalf("remaining %v, want %d", m[6], left)
		}
	}
	e.must(cmdBioEnrollment, bioReq(e, tok, bioSetFriendlyName, map[int]any{1: id, 2: "right index"}))
	list := e.must(cmdBioEnrollment, bioReq(e, tok, bioEnumerate, nil))[7].([]any)
	if len(list) != 1 || list[0].(map[any]any)[uint64(2)] != "right index" {
		t.Fatalf("enumerate %v", list)
	}
	e.expect(ErrInvalidOption, cmdBioEnrollment, bioReq(e, tok, bioRemove, map[int]any{1: []byte("nope")}))
	if e.must(cmdGetInfo, nil)[4].(map[any]any)["uv"] != true {
		t.Fatal("uv not true after enrollment")
	}

	// A matching scan: token with the UV flag.
	f.queue(nil)
	st, utok := e.uvToken(2, permMC|permGA, "example.com")
	if st != StatusOK {
		t.Fatalf("UV token: %v", st)
	}
	mc := mcParams("example.com", []byte{2}, true)
	mc[8], mc[9] = e.pv2().Authenticate(utok, cdh), 2
	c := parseMC(t, e.must(cmdMakeCredential, mc), "example.com")
	if c.authDat[32]&flagUV == 0 {
		t.Fatal("no UV flag")
	}
	// uv=true in getAssertion uses the fingerprint and sets UV without a prompt.
	f.queue(nil)
	ops := len(e.up.ops)
	ga := e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}})
	if ga[2].([]byte)[32]&(flagUV|flagUP) != flagUV|flagUP || len(e.up.ops) != ops {
		t.Fatalf("built-in UV assertion flags %02x, presence prompts %d", ga[2].([]byte)[32], len(e.up.ops)-ops)
	}
	// Non-matching scans cost uvRetries; the client is told to use the PIN.
	f.queue(ErrUVNoMatch, ErrUVNoMatch, ErrUVNoMatch)
	e.expect(ErrPUATRequired, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}})
	if n := e.must(cmdClientPIN, map[int]any{1: 2, 2: pinGetUVRetries})[5]; n != uint64(5) {
		t.Fatalf("uvRetries %v after 3 misses", n)
	}
	f.queue(ErrUVNoMatch)
	if st, _ := e.uvToken(2, permGA, "example.com"); st != ErrUVInvalid {
		t.Fatalf("UV token, no match: %v", st)
	}
	// Block UV entirely, then the PIN still works and gives UV its retries back.
	for i := 0; i < 4; i++ {
		f.queue(ErrUVNoMatch)
		e.call(cmdClientPIN, map[int]any{1: 2, 2: pinGetTokenUsingUV, 3: e.platform(2).keyAgr, 9: permGA})
	}
	if st, _ := e.uvToken(2, permGA, "example.com"); st != ErrUVBlocked {
		t.Fatalf("UV token when blocked: %v", st)
	}
	e.expect(ErrPUATRequired, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}})
	if st, _, _ := e.token(2, "1234", permGA, "example.com"); st != StatusOK {
		t.Fatalf("PIN fallback: %v", st)
	}
	if n := e.must(cmdClientPIN, map[int]any{1: 2, 2: pinGetUVRetries})[5]; n != uint64(maxUVRetries) {
		t.Fatalf("uvRetries %v after the PIN", n)
	}
	// Cancel while waiting for a finger.
	f.mu.Lock()
	f.block = true
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if st, _ := e.callCtx(ctx, cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}}); st != ErrKeepaliveCancel {
		t.Fatalf("cancelled UV: %v", st)
	}
	f.mu.Lock()
	f.block = false
	f.mu.Unlock()
	// Remove the template: uv false again.
	_, tok, _ = e.token(2, "1234", permBE, "")
	e.must(cmdBioEnrollment, bioReq(e, tok, bioRemove, map[int]any{1: id}))
	if e.must(cmdGetInfo, nil)[4].(map[any]any)["uv"] != false {
		t.Fatal("uv still true with nothing enrolled")
	}
	e.expect(ErrInvalidOption, cmdBioEnrollment, bioReq(e, tok, bioEnumerate, nil))
	// The 0x40 prototype behaves the same; without a BioEnroller the command is unknown.
	e.must(cmdBioEnrollmentPreview, map[int]any{1: 1, 2: bioGetSensorInfo})
	e.a.cfg.BioEnroller = nil
	e.expect(ErrInvalidCommand, cmdBioEnrollment, map[int]any{1: 1, 2: bioGetSensorInfo})
}

// TestVerifierOp: the Verifier is told what it verifies for, so that it can
// say so while it waits: the operation of uv=true, or of a UV token asked
// for mc or ga alone, and "" for a token for anything else.
func TestVerifierOp(t *testing.T) {
	e := newEnv(t)
	f := withFinger(e)
	f.enrolled = map[string]string{"t": "thumb"}
	mc := mcParams("example.com", []byte{1}, true)
	mc[7] = map[string]bool{"rk": true, "uv": true}
	f.queue(nil)
	e.must(cmdMakeCredential, mc)
	f.queue(nil)
	e.must(cmdGetAssertion, map[int]any{1: "example.com", 2: cdh, 5: map[string]bool{"uv": true}})
	for _, perms := range []int{permMC, permGA, permGA | permLBW, permMC | permGA, permCM} {
		f.queue(nil)
		rp := "example.org"
		if perms == permCM {
			rp = ""
		}
		if st, _ := e.uvToken(2, perms, rp); st != StatusOK {
			t.Fatalf("UV token 0x%02x: %v", perms, st)
		}
	}
	want := []string{"makeCredential example.com", "getAssertion example.com",
		"makeCredential example.org", "getAssertion example.org", "getAssertion example.org", " example.org", " "}
	if !slices.Equal(f.asked, want) {
		t.Fatalf("VerifyUser calls %q, want %q", f.asked, want)
	}
}
