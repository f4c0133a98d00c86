package dbusapi_test

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/authd/authd/ipc"
	dbusapi "github.com/authd/authd/ipc/dbus"
	"github.com/authd/authd/ipc/dbus/dbustest"
)

// setup starts a bus, serves f on it and returns a client object.
func setup(t *testing.T, f *dbustest.Backend) (*dbustest.Bus, *dbusapi.Server, dbus.BusObject) {
	t.Helper()
	bus := dbustest.NewBus(t)
	srv, err := dbusapi.Start(bus.Connect(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return bus, srv, bus.Connect().Object(dbusapi.BusName, dbusapi.Path)
}

func method(name string) string { return dbusapi.Interface + "." + name }

func call(t *testing.T, obj dbus.BusObject, name string, args ...any) *dbus.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return obj.CallWithContext(ctx, method(name), 0, args...)
}

func errName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		return dp.Name
	}
	return ""
}

func errMessage(err error) string {
	var de dbus.Error
	if errors.As(err, &de) && len(de.Body) > 0 {
		s, _ := de.Body[0].(string)
		return s
	}
	return ""
}

func fixture() *dbustest.Backend {
	return &dbustest.Backend{
		Creds: []ipc.CredentialInfo{
			{ID: []byte("cred-one"), RPID: "example.com", RPName: "Example", UserName: "alice", UserDisplayName: "Alice A",
				Created: time.Unix(1700000000, 0), LastUsed: time.Unix(1700001000, 0), Discoverable: true, Backend: "tpm"},
			{ID: []byte("cred-two"), RPID: "github.com", RPName: "GitHub", UserName: "bob", Created: time.Unix(1700000500, 0),
				Backend: "software", Protected: true},
		},
		Caps: map[string]bool{"userVerifyingPlatformAuthenticator": true, "extension:prf": false},
		St: map[string]any{"tpm": "none", "backends": map[string]int{"tpm": 1, "software": 1},
			"pin_set": true, "started": time.Unix(1700000000, 0), "n": 3},
	}
}

// TestIntrospectionXML checks that the exported methods and their signatures
// are exactly those of the committed XML, and that the bus serves that XML.
func TestIntrospectionXML(t *testing.T) {
	var node introspect.Node
	if err := xml.Unmarshal([]byte(dbusapi.IntrospectionXML), &node); err != nil {
		t.Fatal(err)
	}
	if len(node.Interfaces) != 1 || node.Interfaces[0].Name != dbusapi.Interface {
		t.Fatalf("XML interfaces: %+v", node.Interfaces)
	}
	sig := func(ms []introspect.Method) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			var in, outs []string
			for _, a := range m.Args {
				if a.Direction == "out" {
					outs = append(outs, a.Type)
				} else {
					in = append(in, a.Type)
				}
			}
			out[m.Name] = "(" + strings.Join(in, "") + ")→(" + strings.Join(outs, "") + ")"
		}
		return out
	}
	want := sig(node.Interfaces[0].Methods)
	got := sig(dbusapi.ExportedMethods())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("exported methods differ from org.authd.Authenticator1.xml:\n got  %v\n want %v", got, want)
	}
	// The list, spelled out once more.
	spec := map[string]string{
		"MakeCredential": "(ssa{sv})→(s)", "GetAssertion": "(ssa{sv})→(s)", "Cancel": "()→()",
		"GetCapabilities": "()→(a{sv})", "ListCredentials": "(s)→(aa{sv})", "DeleteCredential": "(s)→()",
		"SetProtected": "(sb)→()", "GetStatus": "()→(a{sv})", "SetPIN": "()→()", "ChangePIN": "()→()", "Reset": "()→()",
	}
	if !reflect.DeepEqual(want, spec) {
		t.Errorf("XML differs from the API contract:\n xml  %v\n spec %v", want, spec)
	}

	_, _, obj := setup(t, fixture())
	var served string
	if err := obj.Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&served); err != nil {
		t.Fatal(err)
	}
	if served != dbusapi.IntrospectionXML {
		t.Errorf("served introspection differs from the committed XML")
	}
}

func TestRoundTrip(t *testing.T) {
	f := fixture()
	_, _, obj := setup(t, f)
	exe, _ := os.Executable()

	var cred string
	if err := call(t, obj, "MakeCredential", "https://example.com", `{"a":1}`, map[string]dbus.Variant{
		"top_origin": dbus.MakeVariant("https://top.example"), "timeout_ms": dbus.MakeVariant(uint32(1500)),
		"parent_window": dbus.MakeVariant("x11:0x1234"), "future_hint": dbus.MakeVariant(int32(7)),
	}).Store(&cred); err != nil {
		t.Fatal(err)
	}
	if cred != `{"type":"public-key","echo":{"a":1}}` {
		t.Errorf("MakeCredential → %s", cred)
	}
	if h := f.Hints(); len(h) != 1 || h[0] != (ipc.Hints{TopOrigin: "https://top.example", Timeout: 1500 * time.Millisecond, ParentWindow: "x11:0x1234"}) {
		t.Errorf("hints %+v", h)
	}
	if err := call(t, obj, "GetAssertion", "https://example.com", `{"b":2}`, map[string]dbus.Variant{}).Store(&cred); err != nil {
		t.Fatal(err)
	}
	if cred != `{"type":"public-key","echo":{"b":2}}` {
		t.Errorf("GetAssertion → %s", cred)
	}
	for _, p := range f.Peers() {
		if p.UID != uint32(os.Getuid()) || p.PID != uint32(os.Getpid()) || p.Exe != exe {
			t.Errorf("peer %+v, want uid %d pid %d exe %s", p, os.Getuid(), os.Getpid(), exe)
		}
	}

	var caps map[string]dbus.Variant
	if err := call(t, obj, "GetCapabilities").Store(&caps); err != nil {
		t.Fatal(err)
	}
	if caps["userVerifyingPlatformAuthenticator"].Value() != true || caps["extension:prf"].Value() != false {
		t.Errorf("caps %v", caps)
	}

	var list []map[string]dbus.Variant
	if err := call(t, obj, "ListCredentials", "").Store(&list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("list %v", list)
	}
	want := map[string]any{
		"id": dbusapi.EncodeID([]byte("cred-one")), "rp_id": "example.com", "rp_name": "Example", "user_name": "alice",
		"user_display_name": "Alice A", "created": int64(1700000000), "last_used": int64(1700001000),
		"discoverable": true, "protected": false, "backend": "tpm",
	}
	got := map[string]any{}
	for k, v := range list[0] {
		got[k] = v.Value()
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("credential 0:\n got  %v\n want %v", got, want)
	}
	if list[1]["last_used"].Value() != int64(0) || list[1]["protected"].Value() != true {
		t.Errorf("credential 1: %v", list[1])
	}
	if err := call(t, obj, "ListCredentials", "GITHUB").Store(&list); err != nil || len(list) != 1 || list[0]["rp_id"].Value() != "github.com" {
		t.Errorf("filtered list %v, %v", list, err)
	}

	idTwo := dbusapi.EncodeID([]byte("cred-two"))
	if err := call(t, obj, "SetProtected", idTwo, false).Err; err != nil {
		t.Fatal(err)
	}
	if err := call(t, obj, "DeleteCredential", idTwo+"=").Err; err != nil { // padding accepted
		t.Fatal(err)
	}

	var st map[string]dbus.Variant
	if err := call(t, obj, "GetStatus").Store(&st); err != nil {
		t.Fatal(err)
	}
	if st["tpm"].Value() != "none" || st["pin_set"].Value() != true || st["started"].Value() != int64(1700000000) || st["n"].Value() != int64(3) {
		t.Errorf("status %v", st)
	}
	if b, ok := st["backends"].Value().(map[string]dbus.Variant); !ok || b["tpm"].Value() != int64(1) {
		t.Errorf("status backends %#v", st["backends"].Value())
	}

	for _, m := range []string{"SetPIN", "ChangePIN", "Reset", "Cancel"} {
		if err := call(t, obj, m).Err; err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	wantCalls := []string{"MakeCredential https://example.com", "GetAssertion https://example.com", "Capabilities",
		"ListCredentials ", "ListCredentials GITHUB", "SetProtected " + idTwo + " false", "DeleteCredential " + idTwo,
		"Status", "SetPIN", "ChangePIN", "Reset"}
	if got := f.Calls(); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("backend calls\n got  %q\n want %q", got, wantCalls)
	}
}

func TestErrorMapping(t *testing.T) {
	f := fixture()
	f.Err = map[string]error{
		"MakeCredential":  ipc.Errorf(ipc.SecurityError, "origin mismatch"),
		"GetAssertion":    ipc.Errorf(ipc.NotAllowedError, "denied"),
		"Capabilities":    errors.New("disk on fire"),
		"Status":          &ipc.Error{Name: "Not.A.Name", Message: "bad"},
		"SetPIN":          ipc.Errorf(ipc.ConstraintError, "too short"),
		"ListCredentials": wrapped{ipc.Errorf(ipc.NotSupportedError, "nope")},
	}
	_, _, obj := setup(t, f)
	idTwo := dbusapi.EncodeID([]byte("cred-two"))
	cases := []struct {
		method string
		args   []any
		name   string
		msg    string
	}{
		{"MakeCredential", []any{"https://a.example", "{}", map[string]dbus.Variant{}}, "org.authd.Error.SecurityError", "origin mismatch"},
		{"GetAssertion", []any{"https://a.example", "{}", map[string]dbus.Variant{}}, "org.authd.Error.NotAllowedError", "denied"},
		{"GetCapabilities", nil, "org.authd.Error.UnknownError", "disk on fire"},
		{"GetStatus", nil, "org.authd.Error.UnknownError", "Not.A.Name: bad"},
		{"SetPIN", nil, "org.authd.Error.ConstraintError", "too short"},
		{"ListCredentials", []any{""}, "org.authd.Error.NotSupportedError", "nope"},
		{"DeleteCredential", []any{idTwo}, "org.authd.Error.InvalidStateError", "protected"},
		{"DeleteCredential", []any{"not base64!"}, "org.authd.Error.TypeError", "base64url"},
		{"DeleteCredential", []any{""}, "org.authd.Error.TypeError", "base64url"},
		{"SetProtected", []any{"***", true}, "org.authd.Error.TypeError", "base64url"},
		{"DeleteCredential", []any{dbusapi.EncodeID([]byte("nope"))}, "org.authd.Error.NotAllowedError", "no passkey"},
		// Wrong D-Bus signature: godbus refuses it before the backend.
		{"DeleteCredential", []any{uint32(1)}, "org.freedesktop.DBus.Error.InvalidArgs", ""},
	}
	for _, c := range cases {
		err := call(t, obj, c.method, c.args...).Err
		if errName(err) != c.name || !strings.Contains(errMessage(err), c.msg) {
			t.Errorf("%s%v: got %q %q (%v), want %q containing %q", c.method, c.args, errName(err), errMessage(err), err, c.name, c.msg)
		}
	}
}

type wrapped struct{ error }

func (w wrapped) Unwrap() error { return w.error }

func TestHintTypes(t *testing.T) {
	f := fixture()
	_, _, obj := setup(t, f)
	for _, h := range []map[string]dbus.Variant{
		{"top_origin": dbus.MakeVariant(uint32(1))},
		{"timeout_ms": dbus.MakeVariant(int32(1000))},
		{"timeout_ms": dbus.MakeVariant("1000")},
		{"timeout_ms": dbus.MakeVariant(uint64(1000))},
		{"parent_window": dbus.MakeVariant(true)},
	} {
		for _, m := range []string{"MakeCredential", "GetAssertion"} {
			err := call(t, obj, m, "https://example.com", "{}", h).Err
			if errName(err) != "org.authd.Error.TypeError" {
				t.Errorf("%s hints %v: %v, want TypeError", m, h, err)
			}
		}
	}
	if c := f.Calls(); len(c) != 0 {
		t.Errorf("the backend was called despite a TypeError: %q", c)
	}
}

// pending starts a long call and waits until the backend has it.
func pending(t *testing.T, f *dbustest.Backend, obj dbus.BusObject, m string, args ...any) *dbus.Call {
	t.Helper()
	c := obj.Go(method(m), 0, make(chan *dbus.Call, 1), args...)
	select {
	case got := <-f.Started:
		if got != m {
			t.Fatalf("started %s, want %s", got, m)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never reached the backend", m)
	}
	return c
}

func ended(t *testing.T, f *dbustest.Backend) error {
	t.Helper()
	select {
	case err := <-f.Ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the backend call was never cancelled")
		return nil
	}
}

func TestCancel(t *testing.T) {
	f := fixture()
	f.Release = make(chan struct{})
	f.Started, f.Ended = make(chan string, 4), make(chan error, 4)
	bus, _, obj := setup(t, f)
	other := bus.Connect().Object(dbusapi.BusName, dbusapi.Path)

	for _, m := range []string{"MakeCredential", "GetAssertion", "SetPIN"} {
		var args []any
		if m != "SetPIN" {
			args = []any{"https://example.com", "{}", map[string]dbus.Variant{}}
		}
		c := pending(t, f, obj, m, args...)
		// Another connection's Cancel does not touch this call.
		if err := call(t, other, "Cancel").Err; err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done:
			t.Fatalf("%s ended by another connection's Cancel: %v", m, c.Err)
		case <-time.After(100 * time.Millisecond):
		}
		if err := call(t, obj, "Cancel").Err; err != nil {
			t.Fatal(err)
		}
		if err := ended(t, f); !errors.Is(err, context.Canceled) {
			t.Errorf("%s backend ctx: %v", m, err)
		}
		<-c.Done
		if errName(c.Err) != "org.authd.Error.AbortError" {
			t.Errorf("%s after Cancel: %v", m, c.Err)
		}
	}
}

func TestDisconnectCancels(t *testing.T) {
	f := fixture()
	f.Release = make(chan struct{})
	f.Started, f.Ended = make(chan string, 4), make(chan error, 4)
	bus, _, _ := setup(t, f)
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	obj := conn.Object(dbusapi.BusName, dbusapi.Path)
	pending(t, f, obj, "GetAssertion", "https://example.com", "{}", map[string]dbus.Variant{})
	conn.Close()
	if err := ended(t, f); !errors.Is(err, context.Canceled) {
		t.Errorf("backend ctx after disconnect: %v", err)
	}
}

// TestReleaseCompletes checks that a long call finishes normally when the
// backend returns (no spurious AbortError).
func TestReleaseCompletes(t *testing.T) {
	f := fixture()
	f.Release = make(chan struct{})
	f.Started, f.Ended = make(chan string, 4), make(chan error, 4)
	_, _, obj := setup(t, f)
	c := pending(t, f, obj, "Reset")
	close(f.Release)
	<-c.Done
	if c.Err != nil {
		t.Fatal(c.Err)
	}
}

// TestOtherUIDRefused calls the service with dbus-send running as nobody
// (setpriv) on a bus that admits that user.
func TestOtherUIDRefused(t *testing.T) {
	// CI runs as root with every tool installed, so there this never skips.
	skip := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatal(why + " (CI is set)")
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		skip("needs root to run a client as another user with setpriv")
	}
	for _, p := range []string{"setpriv", "dbus-send"} {
		if _, err := exec.LookPath(p); err != nil {
			skip("needs " + p)
		}
	}
	f := fixture()
	bus, _, _ := setup(t, f)
	for _, m := range []string{"GetStatus", "ListCredentials string:", "Cancel", "DeleteCredential string:Y3JlZC1vbmU"} {
		name, arg, _ := strings.Cut(m, " ")
		args := []string{"--reuid=65534", "--regid=65534", "--clear-groups", "dbus-send", "--bus=" + bus.Addr,
			"--print-reply", "--dest=" + dbusapi.BusName, string(dbusapi.Path), method(name)}
		if arg != "" {
			args = append(args, arg)
		}
		out, err := exec.Command("setpriv", args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), dbusapi.AccessDenied) {
			t.Errorf("%s as uid 65534: err %v, output %s", name, err, out)
		}
	}
	// The same call as our own user works (the bus admitted nobody, we refused).
	out, err := exec.Command("dbus-send", "--bus="+bus.Addr, "--print-reply", "--dest="+dbusapi.BusName,
		string(dbusapi.Path), method("GetStatus")).CombinedOutput()
	if err != nil {
		t.Errorf("GetStatus as root: %v %s", err, out)
	}
	if got := f.Calls(); !reflect.DeepEqual(got, []string{"Status"}) {
		t.Errorf("backend calls %q: another user's calls reached the backend", got)
	}
}

func TestNameTaken(t *testing.T) {
	bus := dbustest.NewBus(t)
	squatter := bus.Connect()
	if r, err := squatter.RequestName(dbusapi.BusName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatal(r, err)
	}
	conn := bus.Connect()
	_, err := dbusapi.Start(conn, fixture(), nil)
	if err == nil || !strings.Contains(err.Error(), "already taken") {
		t.Fatalf("Start with the name taken: %v", err)
	}
	if err := dbusapi.Serve(conn, fixture(), nil); err == nil {
		t.Fatal("Serve with the name taken returned nil")
	}
	// Once the squatter leaves, a server starts; a second one is refused.
	squatter.ReleaseName(dbusapi.BusName)
	srv, err := dbusapi.Start(conn, fixture(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dbusapi.Start(bus.Connect(), fixture(), nil); err == nil {
		t.Fatal("second server started")
	}
	srv.Close()
}

func TestServeReturnsOnClose(t *testing.T) {
	bus := dbustest.NewBus(t)
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dbusapi.Serve(conn, fixture(), nil) }()
	obj := bus.Connect().Object(dbusapi.BusName, dbusapi.Path)
	deadline := time.Now().Add(10 * time.Second)
	for call(t, obj, "GetStatus").Err != nil {
		if time.Now().After(deadline) {
			t.Fatal("the service never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the connection closed")
	}
}
