// Package notifytest runs a private session bus with python-dbusmock's
// notification_daemon template, for tests of desktop-notification prompts.
// It is for tests only: nothing outside _test.go files may import it.
//
// Both the bus (dbus-daemon) and the mock server are child processes of the
// test, killed and reaped in t.Cleanup. When dbus-daemon or python3-dbusmock
// is missing the test is skipped, or failed when the CI environment variable
// is set.
package notifytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/ipc/dbus/dbustest"
)

const (
	busName    = "org.freedesktop.Notifications"
	objectPath = dbus.ObjectPath("/org/freedesktop/Notifications")
	iface      = "org.freedesktop.Notifications"
	mockIface  = "org.freedesktop.DBus.Mock"
	python     = "/usr/bin/python3" // Debian's python3-dbusmock is installed for it
)

// Caps are the capabilities of a server that can show actions.
var Caps = []string{"actions", "body", "body-markup"}

// Bus is a private session bus.
type Bus struct {
	Addr string
	Conn *dbus.Conn // a connection for the code under test
	t    testing.TB
	dir  string
}

// Server is a mock notification server on a Bus.
type Server struct {
	Bus  *Bus
	mock dbus.BusObject
	t    testing.TB
	mu   sync.Mutex
	seen int // Notify calls already returned by WaitNotify
	stop func()
}

// Notification is one Notify call received by the mock.
type Notification struct {
	ID      uint32 // the id the mock returned
	AppName string
	Icon    string
	Summary string
	Body    string
	Actions []string
	Hints   map[string]dbus.Variant
	Timeout int32
}

// Require skips tb (or fails it under CI) unless dbus-daemon and
// python3-dbusmock are installed.
func Require(tb testing.TB) {
	tb.Helper()
	var missing []string
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		missing = append(missing, "dbus-daemon (Debian: dbus-daemon)")
	}
	if err := exec.Command(python, "-c", "import dbusmock").Run(); err != nil {
		missing = append(missing, "python3-dbusmock")
	}
	if len(missing) == 0 {
		return
	}
	msg := "notification tests need " + strings.Join(missing, " and ")
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg + " (skipped; set CI=1 to fail instead)")
}

// NewBus starts a private session bus without service directories (nothing is
// D-Bus activated) and connects to it. The bus itself is dbustest's.
func NewBus(tb testing.TB) *Bus {
	tb.Helper()
	Require(tb)
	b := dbustest.NewBus(tb)
	return &Bus{Addr: b.Addr, Conn: b.Connect(), t: tb, dir: b.Dir}
}

// Connect opens another connection to the bus, closed in Cleanup.
func (b *Bus) Connect() *dbus.Conn {
	b.t.Helper()
	conn, err := dbus.Connect(b.Addr)
	if err != nil {
		b.t.Fatalf("connect to %s: %v", b.Addr, err)
	}
	b.t.Cleanup(func() { conn.Close() })
	return conn
}

// Start runs a private bus and a mock notification server with caps on it
// (Caps when nil).
func Start(tb testing.TB, caps []string) *Server {
	tb.Helper()
	return NewBus(tb).StartServer(caps)
}

// StartServer runs python-dbusmock's notification_daemon template with caps
// on b and waits until it owns org.freedesktop.Notifications.
func (b *Bus) StartServer(caps []string) *Server {
	tb := b.t
	tb.Helper()
	if caps == nil {
		caps = Caps
	}
	params := fmt.Sprintf(`{"capabilities": %q}`, strings.Join(caps, " "))
	logPath := filepath.Join(b.dir, "dbusmock.log")
	var out bytes.Buffer
	cmd := exec.Command(python, "-m", "dbusmock", "--session", "--template", "notification_daemon",
		"-p", params, "-l", logPath)
	cmd.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+b.Addr)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start dbusmock: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	tb.Cleanup(func() {
		stop()
		if tb.Failed() {
			log, _ := os.ReadFile(logPath)
			tb.Logf("dbusmock output:\n%s\ndbusmock log:\n%s", out.String(), log)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		var has bool
		err := b.Conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, busName).Store(&has)
		if err != nil {
			tb.Fatalf("NameHasOwner: %v", err)
		}
		if has {
			break
		}
		select {
		case <-exited:
			tb.Fatalf("dbusmock exited before owning %s", busName)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dbusmock did not own %s within 30 s", busName)
		}
	}
	return &Server{Bus: b, mock: b.Conn.Object(busName, objectPath), t: tb, stop: stop}
}

// Stop kills the mock server, as when the desktop session ends or the
// notification daemon crashes, and waits until the bus has released its
// name. StartServer can start another one on the same bus.
func (s *Server) Stop() {
	s.t.Helper()
	s.stop()
	for deadline := time.Now().Add(30 * time.Second); ; {
		var has bool
		err := s.Bus.Conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, busName).Store(&has)
		if err != nil {
			s.t.Fatalf("NameHasOwner: %v", err)
		}
		if !has {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s still owned 30 s after the mock was killed", busName)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Calls returns the arguments of every call of method the mock received.
func (s *Server) Calls(method string) [][]any {
	s.t.Helper()
	var rows []struct {
		T    uint64
		Args []dbus.Variant
	}
	if err := s.mock.Call(mockIface+".GetMethodCalls", 0, method).Store(&rows); err != nil {
		s.t.Fatalf("GetMethodCalls(%s): %v", method, err)
	}
	calls := make([][]any, len(rows))
	for i, r := range rows {
		for _, v := range r.Args {
			calls[i] = append(calls[i], v.Value())
		}
	}
	return calls
}

// WaitNotify waits for the next Notify call (the first one not returned by
// an earlier WaitNotify) and returns it.
func (s *Server) WaitNotify(ctx context.Context) Notification {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		calls := s.Calls("Notify")
		if len(calls) > s.seen {
			s.seen++
			return s.decode(calls[:s.seen])
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("no Notify call: %v", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// decode decodes the last of calls; its id is the mock's counter: one more
// for every call that did not replace a notification.
func (s *Server) decode(calls [][]any) Notification {
	s.t.Helper()
	var id uint32
	for _, c := range calls {
		if len(c) == 8 && c[1] == uint32(0) {
			id++
		}
	}
	c := calls[len(calls)-1]
	if len(c) != 8 {
		s.t.Fatalf("Notify with %d arguments: %v", len(c), c)
	}
	n := Notification{ID: id}
	var ok [7]bool
	n.AppName, ok[0] = c[0].(string)
	if r, _ := c[1].(uint32); r != 0 {
		n.ID = r
	}
	n.Icon, ok[1] = c[2].(string)
	n.Summary, ok[2] = c[3].(string)
	n.Body, ok[3] = c[4].(string)
	n.Actions, ok[4] = c[5].([]string)
	n.Hints, ok[5] = c[6].(map[string]dbus.Variant)
	n.Timeout, ok[6] = c[7].(int32)
	for i, good := range ok {
		if !good {
			s.t.Fatalf("Notify argument %d has type %T", i, c[i])
		}
	}
	return n
}

// Invoke makes the server emit ActionInvoked(id, key), as when the user
// clicks an action.
func (s *Server) Invoke(id uint32, key string) {
	s.t.Helper()
	s.emit("ActionInvoked", "us", dbus.MakeVariant(id), dbus.MakeVariant(key))
}

// EmitClosed makes the server emit NotificationClosed(id, reason).
func (s *Server) EmitClosed(id, reason uint32) {
	s.t.Helper()
	s.emit("NotificationClosed", "uu", dbus.MakeVariant(id), dbus.MakeVariant(reason))
}

func (s *Server) emit(name, sig string, args ...dbus.Variant) {
	s.t.Helper()
	if err := s.mock.Call(mockIface+".EmitSignal", 0, iface, name, sig, args).Err; err != nil {
		s.t.Fatalf("EmitSignal %s: %v", name, err)
	}
}

// Spoof emits ActionInvoked(id, key) from another connection than the
// server's, as a program impersonating the notification server would.
func (s *Server) Spoof(id uint32, key string) {
	s.t.Helper()
	conn := s.Bus.Connect()
	if err := conn.Emit(objectPath, iface+".ActionInvoked", id, key); err != nil {
		s.t.Fatalf("emit spoofed ActionInvoked: %v", err)
	}
}

// Closed returns the ids passed to CloseNotification, in call order. (The
// template declares the argument as int32, the specification as uint32;
// either is accepted.)
func (s *Server) Closed() []uint32 {
	s.t.Helper()
	var ids []uint32
	for _, c := range s.Calls("CloseNotification") {
		switch v := c[0].(type) {
		case uint32:
			ids = append(ids, v)
		case int32:
			ids = append(ids, uint32(v))
		default:
			s.t.Fatalf("CloseNotification argument of type %T", v)
		}
	}
	return ids
}
