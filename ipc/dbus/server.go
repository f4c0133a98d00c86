// Package dbusapi serves an ipc.Backend on D-Bus as org.authd.Authenticator1
// (object /org/authd/Authenticator1, interface org.authd.Authenticator1; the
// contract is org.authd.Authenticator1.xml in this directory, also served by
// org.freedesktop.DBus.Introspectable).
//
// It is a translator only: it checks who calls (same UID as the daemon, by
// GetConnectionCredentials on every call), turns D-Bus arguments into ipc
// types and back, gives long calls a context that ends when their caller
// disconnects or calls Cancel(), and maps errors to D-Bus error names
// (*ipc.Error → org.authd.Error.<Name>, anything else → UnknownError). The
// WebAuthn logic lives behind ipc.Backend.
package dbusapi

import (
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/authd/authd/ipc"
)

// Names on the bus.
const (
	BusName   = "org.authd.Authenticator1"
	Path      = dbus.ObjectPath("/org/authd/Authenticator1")
	Interface = "org.authd.Authenticator1"
	// ErrorPrefix precedes the DOMException name in D-Bus error names.
	ErrorPrefix = "org.authd.Error."
	// AccessDenied is the error for callers of another UID.
	AccessDenied = "org.freedesktop.DBus.Error.AccessDenied"
)

// IntrospectionXML is the committed interface description.
//
//go:embed org.authd.Authenticator1.xml
var IntrospectionXML string

// Server is the exported object. Its D-Bus methods live on an unexported type
// so that exactly the interface's methods are exported.
type Server struct {
	conn *dbus.Conn
	b    ipc.Backend
	log  *slog.Logger
	uid  uint32

	ctx  context.Context // ends when the server closes
	stop context.CancelFunc

	mu      sync.Mutex
	calls   map[string]map[*call]struct{} // sender → its long calls in flight
	signals chan *dbus.Signal
	done    chan struct{}
}

type call struct {
	method string
	cancel context.CancelCauseFunc
}

// Errors carried as a cancellation cause.
var (
	errCancelled    = errors.New("cancelled by the caller (Cancel)")
	errDisconnected = errors.New("the caller disconnected")
	errClosed       = errors.New("the D-Bus service is shutting down")
)

// Serve exports b on conn, requests the well-known name (an error if another
// connection owns it) and serves until conn is closed. It returns nil then;
// setup errors are returned at once.
func Serve(conn *dbus.Conn, b ipc.Backend, log *slog.Logger) error {
	s, err := Start(conn, b, log)
	if err != nil {
		return err
	}
	<-conn.Context().Done()
	s.Close()
	return nil
}

// Start is Serve without the wait: it returns once the name is owned. Close
// releases the name and cancels every call in flight.
func Start(conn *dbus.Conn, b ipc.Backend, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{
		conn: conn, b: b, log: log, uid: uint32(os.Getuid()),
		ctx: ctx, stop: stop,
		calls:   make(map[string]map[*call]struct{}),
		signals: make(chan *dbus.Signal, 64),
		done:    make(chan struct{}),
	}
	// Disconnects are seen as NameOwnerChanged(unique name, old, "").
	if err := conn.AddMatchSignal(
		dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"),
	); err != nil {
		stop()
		return nil, fmt.Errorf("dbusapi: watch NameOwnerChanged: %w", err)
	}
	conn.Signal(s.signals)
	go s.watch()

	// Export before RequestName, so that a call queued during activation
	// finds the object.
	if err := conn.Export(&object{s}, Path, Interface); err != nil {
		s.teardown()
		return nil, fmt.Errorf("dbusapi: export: %w", err)
	}
	if err := conn.Export(introspect.Introspectable(IntrospectionXML), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		s.teardown()
		return nil, fmt.Errorf("dbusapi: export introspection: %w", err)
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		s.teardown()
		return nil, fmt.Errorf("dbusapi: request name %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		s.teardown()
		return nil, fmt.Errorf("dbusapi: the name %s is already taken on this bus (is another authd running?)", BusName)
	}
	log.Info("dbus: serving", "name", BusName, "path", string(Path), "uid", s.uid)
	return s, nil
}

// Close releases the name, unexports the object and cancels calls in flight.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	if s.conn.Connected() {
		s.conn.ReleaseName(BusName)
	}
	s.teardown()
}

func (s *Server) teardown() {
	s.conn.Export(nil, Path, Interface)
	s.conn.Export(nil, Path, "org.freedesktop.DBus.Introspectable")
	s.conn.RemoveSignal(s.signals)
	if s.conn.Connected() {
		s.conn.RemoveMatchSignal(
			dbus.WithMatchSender("org.freedesktop.DBus"),
			dbus.WithMatchInterface("org.freedesktop.DBus"),
			dbus.WithMatchMember("NameOwnerChanged"),
		)
	}
	s.mu.Lock()
	for _, cs := range s.calls {
		for c := range cs {
			c.cancel(errClosed)
		}
	}
	s.mu.Unlock()
	s.stop()
	close(s.done)
}

// watch cancels the calls of senders that leave the bus.
func (s *Server) watch() {
	for {
		select {
		case <-s.done:
			return
		case sig, ok := <-s.signals:
			if !ok {
				return
			}
			if sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(sig.Body) != 3 {
				continue
			}
			name, _ := sig.Body[0].(string)
			newOwner, _ := sig.Body[2].(string)
			if strings.HasPrefix(name, ":") && newOwner == "" {
				s.cancelSender(name, errDisconnected)
			}
		}
	}
}

func (s *Server) cancelSender(sender string, cause error) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.calls[sender] {
		c.cancel(cause)
		n++
	}
	return n
}

// begin registers a long call of sender and returns its context.
func (s *Server) begin(sender, method string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(s.ctx)
	c := &call{method: method, cancel: cancel}
	s.mu.Lock()
	if s.calls[sender] == nil {
		s.calls[sender] = make(map[*call]struct{})
	}
	s.calls[sender][c] = struct{}{}
	s.mu.Unlock()
	// The caller may have left before the match saw it.
	var has bool
	if err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, sender).Store(&has); err == nil && !has {
		cancel(errDisconnected)
	}
	return ctx, func() {
		cancel(nil)
		s.mu.Lock()
		delete(s.calls[sender], c)
		if len(s.calls[sender]) == 0 {
			delete(s.calls, sender)
		}
		s.mu.Unlock()
	}
}

// peer checks the caller's UID and describes it.
func (s *Server) peer(sender dbus.Sender) (ipc.Peer, *dbus.Error) {
	var creds map[string]dbus.Variant
	err := s.conn.BusObject().CallWithContext(s.ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, string(sender)).Store(&creds)
	if err != nil {
		s.log.Warn("dbus: cannot identify the caller; refusing", "sender", string(sender), "err", err)
		return ipc.Peer{}, &dbus.Error{Name: AccessDenied, Body: []any{"authd: cannot identify the caller: " + err.Error()}}
	}
	uid, okU := creds["UnixUserID"].Value().(uint32)
	pid, _ := creds["ProcessID"].Value().(uint32)
	if !okU || uid != s.uid {
		s.log.Warn("dbus: refusing a caller of another user", "sender", string(sender), "peer_uid", uid, "peer_pid", pid)
		return ipc.Peer{}, &dbus.Error{Name: AccessDenied,
			Body: []any{fmt.Sprintf("authd: only processes of uid %d may use this service", s.uid)}}
	}
	p := ipc.Peer{UID: uid, PID: pid}
	if pid != 0 {
		// PIDs can be reused: this is for prompts and logs, never a decision.
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			p.Exe = exe
		}
	}
	return p, nil
}

// dbusError maps a Backend error (nil → nil).
func dbusError(err error) *dbus.Error {
	if err == nil {
		return nil
	}
	var e *ipc.Error
	if errors.As(err, &e) && validName(e.Name) {
		return &dbus.Error{Name: ErrorPrefix + e.Name, Body: []any{e.Message}}
	}
	return &dbus.Error{Name: ErrorPrefix + ipc.UnknownError, Body: []any{err.Error()}}
}

// validName reports whether n can be the last element of an error name.
func validName(n string) bool {
	if n == "" || n[0] >= '0' && n[0] <= '9' {
		return false
	}
	for _, r := range n {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func typeError(format string, args ...any) *dbus.Error {
	return &dbus.Error{Name: ErrorPrefix + ipc.TypeError, Body: []any{fmt.Sprintf(format, args...)}}
}

// ParseHints reads the a{sv} hints of MakeCredential/GetAssertion. Unknown
// keys are ignored (newer clients); known keys of the wrong type are a
// TypeError.
func ParseHints(h map[string]dbus.Variant) (ipc.Hints, error) {
	var out ipc.Hints
	for k, v := range h {
		switch k {
		case "top_origin":
			s, ok := v.Value().(string)
			if !ok {
				return out, ipc.Errorf(ipc.TypeError, "hint top_origin must be a string (s), not %s", v.Signature())
			}
			out.TopOrigin = s
		case "timeout_ms":
			ms, ok := v.Value().(uint32)
			if !ok {
				return out, ipc.Errorf(ipc.TypeError, "hint timeout_ms must be an unsigned 32-bit integer (u), not %s", v.Signature())
			}
			out.Timeout = time.Duration(ms) * time.Millisecond
		case "parent_window":
			s, ok := v.Value().(string)
			if !ok {
				return out, ipc.Errorf(ipc.TypeError, "hint parent_window must be a string (s), not %s", v.Signature())
			}
			out.ParentWindow = s
		}
	}
	return out, nil
}

// EncodeID and DecodeID convert credential IDs to and from the API's
// base64url form (no padding; padding is accepted on input).
func EncodeID(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

// DecodeID is the inverse of EncodeID.
func DecodeID(s string) ([]byte, error) {
	id, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(id) == 0 {
		return nil, ipc.Errorf(ipc.TypeError, "credential id %q is not base64url", s)
	}
	return id, nil
}

// CredentialMap is the a{sv} form of one ListCredentials entry.
func CredentialMap(c ipc.CredentialInfo) map[string]dbus.Variant {
	return map[string]dbus.Variant{
		"id":                dbus.MakeVariant(EncodeID(c.ID)),
		"rp_id":             dbus.MakeVariant(c.RPID),
		"rp_name":           dbus.MakeVariant(c.RPName),
		"user_name":         dbus.MakeVariant(c.UserName),
		"user_display_name": dbus.MakeVariant(c.UserDisplayName),
		"created":           dbus.MakeVariant(unix(c.Created)),
		"last_used":         dbus.MakeVariant(unix(c.LastUsed)),
		"discoverable":      dbus.MakeVariant(c.Discoverable),
		"protected":         dbus.MakeVariant(c.Protected),
		"backend":           dbus.MakeVariant(c.Backend),
	}
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// vardict converts a Status map to a{sv}; values that are not D-Bus types
// are converted (ints to x, times to unix seconds, maps and slices
// recursively, anything else to its string form) so that GetStatus never
// fails on encoding.
func vardict(m map[string]any) map[string]dbus.Variant {
	out := make(map[string]dbus.Variant, len(m))
	for k, v := range m {
		out[k] = variant(v)
	}
	return out
}

func variant(v any) dbus.Variant {
	switch x := v.(type) {
	case nil:
		return dbus.MakeVariant("")
	case dbus.Variant:
		return x
	case string, bool, byte, int16, uint16, int32, uint32, int64, uint64, float64, []byte, []string:
		return dbus.MakeVariant(x)
	case int:
		return dbus.MakeVariant(int64(x))
	case uint:
		return dbus.MakeVariant(uint64(x))
	case float32:
		return dbus.MakeVariant(float64(x))
	case time.Time:
		return dbus.MakeVariant(unix(x))
	case time.Duration:
		return dbus.MakeVariant(x.String())
	case map[string]any:
		return dbus.MakeVariant(vardict(x))
	case map[string]int:
		m := make(map[string]dbus.Variant, len(x))
		for k, n := range x {
			m[k] = dbus.MakeVariant(int64(n))
		}
		return dbus.MakeVariant(m)
	case map[string]string:
		return dbus.MakeVariant(x)
	case map[string]bool:
		return dbus.MakeVariant(x)
	case []any:
		vs := make([]dbus.Variant, len(x))
		for i, e := range x {
			vs[i] = variant(e)
		}
		return dbus.MakeVariant(vs)
	case error:
		return dbus.MakeVariant(x.Error())
	case fmt.Stringer:
		return dbus.MakeVariant(x.String())
	default:
		return dbus.MakeVariant(fmt.Sprint(x))
	}
}

// ExportedMethods describes the methods exported on Interface, as godbus
// sees them (for the test that compares them with the XML).
func ExportedMethods() []introspect.Method { return introspect.Methods(&object{}) }
