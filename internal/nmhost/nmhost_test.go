package nmhost

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/ipc"
	dbusapi "github.com/authd/authd/ipc/dbus"
	"github.com/authd/authd/ipc/dbus/dbustest"
)

func frame(b []byte) []byte {
	out := make([]byte, 4+len(b))
	binary.LittleEndian.PutUint32(out, uint32(len(b)))
	copy(out[4:], b)
	return out
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	msgs := [][]byte{[]byte(`{"a":1}`), {}, []byte(`"ünïcödé"`), bytes.Repeat([]byte("x"), 70000)}
	for _, m := range msgs {
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	// One byte at a time: split reads must not matter.
	r := iotestOneByte{&buf}
	for _, m := range msgs {
		got, err := ReadFrame(r, DefaultMaxRequest)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("ReadFrame = %d bytes, %v; want %d bytes", len(got), err, len(m))
		}
	}
	if _, err := ReadFrame(r, DefaultMaxRequest); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	if err := WriteFrame(io.Discard, make([]byte, ReplyLimit+1)); err == nil {
		t.Fatal("WriteFrame accepted a reply above 1 MiB")
	}
}

type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestFrameErrors(t *testing.T) {
	var tl *ErrTooLarge
	var ds *ErrDesync
	big := frame(make([]byte, 100))
	if _, err := ReadFrame(bytes.NewReader(append(big, frame([]byte("{}"))...)), 10); !errors.As(err, &tl) {
		t.Fatalf("oversized: %v", err)
	}
	r := bytes.NewReader(append(big, frame([]byte("{}"))...))
	ReadFrame(r, 10)
	if m, err := ReadFrame(r, 10); err != nil || string(m) != "{}" {
		t.Fatalf("after oversized: %q %v (stream must stay in sync)", m, err)
	}
	hdr := make([]byte, 4)
	binary.LittleEndian.PutUint32(hdr, BrowserLimit+1)
	if _, err := ReadFrame(bytes.NewReader(hdr), 10); !errors.As(err, &ds) {
		t.Fatalf("beyond 64 MiB: %v", err)
	}
	for name, in := range map[string][]byte{
		"short header":    {1, 0},
		"short body":      frame([]byte("{}"))[:5],
		"short oversized": big[:50],
	} {
		if _, err := ReadFrame(bytes.NewReader(in), 10); err != ErrTruncated {
			t.Errorf("%s: %v, want ErrTruncated", name, err)
		}
	}
}

// env is a host served on pipes, talking to a fake authd on a private bus.
type env struct {
	t       *testing.T
	f       *dbustest.Backend
	bus     *dbustest.Bus
	in      *io.PipeWriter
	out     *io.PipeReader
	done    chan error
	log     *bytes.Buffer
	mu      sync.Mutex
	replies map[string]Reply
	rc      chan Reply
}

type syncBuf struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

func newEnv(t *testing.T, serve bool, dial func(*dbustest.Bus) func() (*dbus.Conn, error), setup ...func(*dbustest.Backend)) *env {
	t.Helper()
	e := &env{t: t, bus: dbustest.NewBus(t), done: make(chan error, 1), log: &bytes.Buffer{}, rc: make(chan Reply, 100)}
	e.f = &dbustest.Backend{
		Creds: []ipc.CredentialInfo{{ID: []byte("cred-1"), RPID: "example.com", RPName: "Example", UserName: "alice",
			Created: time.Unix(1700000000, 0), Discoverable: true, Backend: "tpm"}},
		Caps: map[string]bool{"userVerifyingPlatformAuthenticator": true},
		St:   map[string]any{"tpm": "/dev/tpmrm0", "backends": map[string]int{"tpm": 1}},
	}
	for _, f := range setup {
		f(e.f)
	}
	if serve {
		srv, err := dbusapi.Start(e.bus.Connect(), e.f, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
	}
	d := func() (*dbus.Conn, error) { return dbus.Connect(e.bus.Addr) }
	if dial != nil {
		d = dial(e.bus)
	}
	h := &Host{Dial: d, Log: slogTo(&syncBuf{b: e.log}), MaxRequest: 4096}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	e.in, e.out = inW, outR
	go func() { e.done <- h.Serve(context.Background(), inR, outW); outW.Close() }()
	go func() {
		for {
			m, err := ReadFrame(outR, ReplyLimit)
			if err != nil {
				close(e.rc)
				return
			}
			var rep Reply
			if err := json.Unmarshal(m, &rep); err != nil {
				t.Errorf("host wrote non-JSON %q", m)
			}
			e.rc <- rep
		}
	}()
	t.Cleanup(func() { inW.Close(); <-e.done })
	return e
}

func (e *env) send(raw []byte) {
	e.t.Helper()
	if _, err := e.in.Write(raw); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) req(v any) {
	e.t.Helper()
	b, _ := json.Marshal(v)
	e.send(frame(b))
}

func (e *env) next() Reply {
	e.t.Helper()
	select {
	case r, ok := <-e.rc:
		if !ok {
			e.t.Fatal("host closed its output")
		}
		return r
	case <-time.After(10 * time.Second):
		e.t.Fatal("no reply")
	}
	return Reply{}
}

func errName(r Reply) string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Name
}

func TestRequests(t *testing.T) {
	e := newEnv(t, true, nil)
	e.req(map[string]any{"id": 1, "type": "capabilities"})
	if r := e.next(); !r.OK || string(r.ID) != "1" || !strings.Contains(mustJSON(r.Result), `"userVerifyingPlatformAuthenticator":true`) {
		t.Fatalf("capabilities: %+v", r)
	}
	e.req(map[string]any{"id": "s", "type": "status"})
	if r := e.next(); !r.OK || !strings.Contains(mustJSON(r.Result), `"tpm":"/dev/tpmrm0"`) {
		t.Fatalf("status: %+v %s", r, mustJSON(r.Result))
	}
	e.req(map[string]any{"id": "l", "type": "list", "filter": "exam"})
	r := e.next()
	if !r.OK || !strings.Contains(mustJSON(r.Result), `"rpId":"example.com"`) || !strings.Contains(mustJSON(r.Result), `"created":1700000000`) {
		t.Fatalf("list: %s", mustJSON(r))
	}
	id := dbusapi.EncodeID([]byte("cred-1"))
	e.req(map[string]any{"id": 2, "type": "protect", "credentialId": id})
	if r := e.next(); !r.OK {
		t.Fatalf("protect: %s", mustJSON(r))
	}
	e.req(map[string]any{"id": 3, "type": "delete", "credentialId": id})
	if r := e.next(); r.OK || errName(r) != "InvalidStateError" {
		t.Fatalf("delete protected: %s", mustJSON(r))
	}
	e.req(map[string]any{"id": 4, "type": "unprotect", "credentialId": id})
	e.next()
	e.req(map[string]any{"id": 5, "type": "delete", "credentialId": id})
	if r := e.next(); !r.OK {
		t.Fatalf("delete: %s", mustJSON(r))
	}
	e.req(map[string]any{"id": 6, "type": "create", "origin": "https://example.com", "topOrigin": "https://top.example",
		"timeoutMs": 60000, "options": map[string]any{"challenge": "AAAA", "rp": map[string]any{"id": "example.com"}}})
	r = e.next()
	if !r.OK || !strings.Contains(mustJSON(r.Result), `"echo":{"challenge":"AAAA"`) {
		t.Fatalf("create: %s", mustJSON(r))
	}
	e.req(map[string]any{"id": 7, "type": "get", "origin": "https://example.com", "options": map[string]any{"challenge": "BBBB"}})
	if r := e.next(); !r.OK {
		t.Fatalf("get: %s", mustJSON(r))
	}
	calls := strings.Join(e.f.Calls(), "\n")
	for _, want := range []string{"MakeCredential https://example.com", "GetAssertion https://example.com", "ListCredentials exam", "Status"} {
		if !strings.Contains(calls, want) {
			t.Errorf("calls %q lack %q", calls, want)
		}
	}
	if h := e.f.Hints(); len(h) == 0 || h[0].TopOrigin != "https://top.example" || h[0].Timeout != time.Minute {
		t.Errorf("hints = %+v", h)
	}
	if strings.Contains(e.log.String(), "AAAA") {
		t.Errorf("options were logged: %s", e.log.String())
	}
	e.f.SetErr("MakeCredential", ipc.Errorf(ipc.NotAllowedError, "the user said no"))
	e.req(map[string]any{"id": 8, "type": "create", "origin": "https://example.com", "options": map[string]any{}})
	if r := e.next(); errName(r) != "NotAllowedError" || r.Error.Message != "the user said no" {
		t.Fatalf("denied: %s", mustJSON(r))
	}
}

func TestMalformed(t *testing.T) {
	e := newEnv(t, true, nil)
	cases := []struct {
		raw  []byte
		id   string
		name string
		msg  string
	}{
		{frame(nil), "null", "TypeError", "empty"},
		{frame([]byte(`{"id":1,`)), "null", "TypeError", "malformed"},
		{frame([]byte(`[1,2]`)), "null", "TypeError", "malformed"},
		{frame([]byte("\xff\xfe")), "null", "TypeError", "UTF-8"},
		{frame([]byte(`{"id":9,"type":"frobnicate"}`)), "9", "TypeError", "unknown request type"},
		{frame([]byte(`{"id":10}`)), "10", "TypeError", "no \"type\""},
		{frame([]byte(`{"id":11,"type":"create","origin":"https://a.example"}`)), "11", "TypeError", "options"},
		{frame([]byte(`{"id":12,"type":"create","options":{}}`)), "12", "TypeError", "origin"},
		{frame([]byte(`{"id":13,"type":"delete"}`)), "13", "TypeError", "credentialId"},
		{frame([]byte(`{"id":14,"type":"delete","credentialId":"!!"}`)), "14", "TypeError", ""},
		{frame([]byte(`{"id":15,"type":"status"} {}`)), "15", "TypeError", "trailing"},
		{frame(bytes.Repeat([]byte(" "), 5000)), "null", "TypeError", "exceeds the host's limit"},
	}
	for _, c := range cases {
		e.send(c.raw)
		r := e.next()
		if r.OK || string(r.ID) != c.id || errName(r) != c.name || !strings.Contains(r.Error.Message, c.msg) {
			t.Errorf("%q: reply %s", c.raw, mustJSON(r))
		}
	}
	// The port still works.
	e.req(map[string]any{"id": "after", "type": "status"})
	if r := e.next(); !r.OK {
		t.Fatalf("after errors: %s", mustJSON(r))
	}
}

func TestDesyncAndTruncated(t *testing.T) {
	e := newEnv(t, true, nil)
	hdr := make([]byte, 4)
	binary.LittleEndian.PutUint32(hdr, 0xffffffff)
	e.send(hdr)
	if r := e.next(); errName(r) != "TypeError" || !strings.Contains(r.Error.Message, "64 MiB") {
		t.Fatalf("desync: %s", mustJSON(r))
	}
	if err := <-e.done; err == nil {
		t.Fatal("Serve returned nil after a desync")
	}
	e.done <- nil

	e2 := newEnv(t, true, nil)
	e2.send(frame([]byte(`{"id":1,"type":"status"}`))[:10])
	e2.in.Close()
	if err := <-e2.done; err != ErrTruncated {
		t.Fatalf("truncated: %v", err)
	}
	e2.done <- nil
	if !strings.Contains(e2.log.String(), "truncated") {
		t.Errorf("no log line: %s", e2.log.String())
	}
}

func TestConcurrentCreateCancel(t *testing.T) {
	e := newEnv(t, true, nil, func(f *dbustest.Backend) {
		f.Release = make(chan struct{})
		f.Started = make(chan string, 1)
	})
	e.req(map[string]any{"id": "c", "type": "create", "origin": "https://example.com", "options": map[string]any{"challenge": "x"}})
	select {
	case <-e.f.Started:
	case <-time.After(10 * time.Second):
		t.Fatal("create did not reach authd")
	}
	// Other requests are served while create waits.
	e.req(map[string]any{"id": "s", "type": "status"})
	if r := e.next(); string(r.ID) != `"s"` || !r.OK {
		t.Fatalf("status during create: %s", mustJSON(r))
	}
	// A duplicate id in flight is refused; a cancel needs a target.
	e.req(map[string]any{"id": "c", "type": "get", "origin": "https://example.com", "options": map[string]any{}})
	if r := e.next(); string(r.ID) != `"c"` || errName(r) != "TypeError" {
		t.Fatalf("duplicate id: %s", mustJSON(r))
	}
	e.req(map[string]any{"id": "x0", "type": "cancel"})
	if r := e.next(); errName(r) != "TypeError" {
		t.Fatalf("cancel without target: %s", mustJSON(r))
	}
	e.req(map[string]any{"id": "x", "type": "cancel", "target": "c"})
	got := map[string]Reply{}
	for range 2 {
		r := e.next()
		got[string(r.ID)] = r
	}
	if !got[`"x"`].OK || mustJSON(got[`"x"`].Result) != `{"cancelled":true}` {
		t.Errorf("cancel: %s", mustJSON(got[`"x"`]))
	}
	if errName(got[`"c"`]) != "AbortError" {
		t.Errorf("create after cancel: %s", mustJSON(got[`"c"`]))
	}
	// Cancelling what already ended is not an error.
	e.req(map[string]any{"id": "y", "type": "cancel", "target": "c"})
	if r := e.next(); !r.OK || mustJSON(r.Result) != `{"cancelled":false}` {
		t.Errorf("cancel after the end: %s", mustJSON(r))
	}
}

// TestCancelOnlyItsOwn: two ceremonies in flight on one port; cancelling
// one ends only that one in authd (the D-Bus service sees its context end),
// and the other completes when the user answers.
func TestCancelOnlyItsOwn(t *testing.T) {
	e := newEnv(t, true, nil, func(f *dbustest.Backend) {
		f.Release = make(chan struct{})
		f.Started = make(chan string, 2)
		f.Ended = make(chan error, 2)
	})
	e.req(map[string]any{"id": 1, "type": "create", "origin": "https://a.example", "options": map[string]any{"challenge": "a"}})
	e.req(map[string]any{"id": 2, "type": "get", "origin": "https://b.example", "options": map[string]any{"challenge": "b"}})
	for range 2 {
		select {
		case <-e.f.Started:
		case <-time.After(10 * time.Second):
			t.Fatal("the ceremonies did not both reach authd")
		}
	}
	e.req(map[string]any{"id": 3, "type": "cancel", "target": 1})
	got := map[string]Reply{}
	for range 2 {
		r := e.next()
		got[string(r.ID)] = r
	}
	if !got["3"].OK || errName(got["1"]) != "AbortError" {
		t.Fatalf("cancel 1: %s / %s", mustJSON(got["3"]), mustJSON(got["1"]))
	}
	select {
	case err := <-e.f.Ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("authd's call for 1 ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("authd's call for 1 did not end")
	}
	// The other one is still waiting for the user.
	select {
	case err := <-e.f.Ended:
		t.Fatalf("a second call ended (%v): the cancel reached request 2 too", err)
	case r := <-e.rc:
		t.Fatalf("request 2 answered before the user did: %s", mustJSON(r))
	case <-time.After(300 * time.Millisecond):
	}
	close(e.f.Release)
	if r := e.next(); string(r.ID) != "2" || !r.OK || !strings.Contains(mustJSON(r.Result), `"challenge":"b"`) {
		t.Fatalf("request 2: %s", mustJSON(r))
	}
}

func TestNotReachable(t *testing.T) {
	e := newEnv(t, false, nil) // bus without authd
	e.req(map[string]any{"id": 1, "type": "create", "origin": "https://example.com", "options": map[string]any{}})
	if r := e.next(); errName(r) != NotReachable {
		t.Fatalf("no authd: %s", mustJSON(r))
	}
	e2 := newEnv(t, false, func(*dbustest.Bus) func() (*dbus.Conn, error) {
		return func() (*dbus.Conn, error) { return nil, errors.New("no session bus") }
	})
	e2.req(map[string]any{"id": 2, "type": "status"})
	if r := e2.next(); errName(r) != NotReachable || !strings.Contains(r.Error.Message, "no session bus") {
		t.Fatalf("no bus: %s", mustJSON(r))
	}
}

// busPath extracts the socket path of a unix:path= address.
func busPath(t *testing.T, addr string) string {
	for _, kv := range strings.Split(strings.TrimPrefix(addr, "unix:"), ",") {
		if p, ok := strings.CutPrefix(kv, "path="); ok {
			return p
		}
	}
	t.Skipf("bus address %s has no path", addr)
	return ""
}

func TestSessionBusAddress(t *testing.T) {
	rt := t.TempDir()
	uid := os.Getuid()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if a, err := SessionBusAddress(env(map[string]string{"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}), uid); err != nil || a != "unix:path=/x" {
		t.Fatalf("set: %q %v", a, err)
	}
	for _, v := range []string{"", "disabled:", "autolaunch:"} {
		_, err := SessionBusAddress(env(map[string]string{"DBUS_SESSION_BUS_ADDRESS": v, "XDG_RUNTIME_DIR": rt}), 1<<30)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(rt, "bus")) {
			t.Errorf("%q without socket: %v", v, err)
		}
	}
	l, err := net.Listen("unix", filepath.Join(rt, "bus"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := SessionBusAddress(env(map[string]string{"DBUS_SESSION_BUS_ADDRESS": "disabled:", "XDG_RUNTIME_DIR": rt}), uid)
	if err != nil || a != "unix:path="+filepath.Join(rt, "bus") {
		t.Fatalf("disabled: → %q %v", a, err)
	}
}

// TestDisabledEnv: the host reaches authd through $XDG_RUNTIME_DIR/bus when
// the browser set DBUS_SESSION_BUS_ADDRESS=disabled:.
func TestDisabledEnv(t *testing.T) {
	rt, err := os.MkdirTemp("", "nmrt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	e := newEnv(t, true, func(b *dbustest.Bus) func() (*dbus.Conn, error) {
		if err := os.Symlink(busPath(t, b.Addr), filepath.Join(rt, "bus")); err != nil {
			t.Fatal(err)
		}
		return func() (*dbus.Conn, error) {
			m := map[string]string{"DBUS_SESSION_BUS_ADDRESS": "disabled:", "XDG_RUNTIME_DIR": rt}
			addr, err := SessionBusAddress(func(k string) string { return m[k] }, os.Getuid())
			if err != nil {
				return nil, err
			}
			return dbus.Connect(addr)
		}
	})
	e.req(map[string]any{"id": 1, "type": "status"})
	if r := e.next(); !r.OK {
		t.Fatalf("status via $XDG_RUNTIME_DIR/bus: %s", mustJSON(r))
	}
}

func TestCheckCaller(t *testing.T) {
	cfg := Config{AllowedOrigins: []string{ChromeOrigin("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")}, AllowedExtensions: []string{"x@example.org"}}
	ok := [][]string{
		{ChromeOrigin(DefaultExtensionID)},
		{"chrome-extension://bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/"},
		{"chrome-extension://bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/", "--parent-window=0"},
		{"/home/u/.mozilla/native-messaging-hosts/org.authd.nmhost.json", DefaultFirefoxID},
		{"/home/u/.mozilla/native-messaging-hosts/org.authd.nmhost.json", "x@example.org"},
	}
	for _, a := range ok {
		if _, err := CheckCaller(a, cfg); err != nil {
			t.Errorf("%q refused: %v", a, err)
		}
	}
	bad := [][]string{nil, {""}, {"chrome-extension://cccccccccccccccccccccccccccccccc/"}, {"https://evil.example"},
		{"/path/manifest.json", "evil@example.org"}, {"/path/manifest.json"}}
	for _, a := range bad {
		if _, err := CheckCaller(a, cfg); err == nil {
			t.Errorf("%q allowed", a)
		}
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
