package dbusapi

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/authd/authd/ipc"
)

// object carries exactly the D-Bus methods of org.authd.Authenticator1
// (godbus exports every exported method whose last result is *dbus.Error).
type object struct{ s *Server }

// long runs fn for a call that may wait for the user: its context ends when
// the caller disconnects, calls Cancel() or the server closes, and a
// cancelled call is an AbortError whatever fn returned.
func (o *object) long(msg dbus.Message, method string, fn func(context.Context, ipc.Peer) error) *dbus.Error {
	s := o.s
	sender, derr := checkSignature(msg, method)
	if derr != nil {
		return derr
	}
	peer, derr := s.peer(sender)
	if derr != nil {
		return derr
	}
	ctx, done := s.begin(string(sender), method)
	defer done()
	start := time.Now()
	err := fn(ctx, peer)
	if err != nil && ctx.Err() != nil && ipc.NameOf(err) != ipc.AbortError {
		err = ipc.Errorf(ipc.AbortError, "the operation was aborted: %v", context.Cause(ctx))
	}
	s.logCall(method, sender, peer, start, err)
	return dbusError(err)
}

// short runs a call that does not wait for the user.
func (o *object) short(msg dbus.Message, method string, fn func(context.Context, ipc.Peer) error) *dbus.Error {
	s := o.s
	sender, derr := checkSignature(msg, method)
	if derr != nil {
		return derr
	}
	peer, derr := s.peer(sender)
	if derr != nil {
		return derr
	}
	start := time.Now()
	err := fn(s.ctx, peer)
	s.logCall(method, sender, peer, start, err)
	return dbusError(err)
}

func (s *Server) logCall(method string, sender dbus.Sender, p ipc.Peer, start time.Time, err error) {
	attrs := []any{"method", method, "sender", string(sender), "pid", p.PID, "exe", p.Exe,
		"duration", time.Since(start).Round(time.Microsecond)}
	if err != nil {
		s.log.Info("dbus: call failed", append(attrs, "error", ipc.NameOf(err), "msg", err.Error())...)
		return
	}
	s.log.Debug("dbus: call", attrs...)
}

func (o *object) MakeCredential(msg dbus.Message, origin, options string, hints map[string]dbus.Variant) (string, *dbus.Error) {
	var out []byte
	derr := o.long(msg, "MakeCredential", func(ctx context.Context, p ipc.Peer) error {
		h, err := ParseHints(hints)
		if err != nil {
			return err
		}
		out, err = o.s.b.MakeCredential(ctx, p, origin, []byte(options), h)
		return err
	})
	return string(out), derr
}

func (o *object) GetAssertion(msg dbus.Message, origin, options string, hints map[string]dbus.Variant) (string, *dbus.Error) {
	var out []byte
	derr := o.long(msg, "GetAssertion", func(ctx context.Context, p ipc.Peer) error {
		h, err := ParseHints(hints)
		if err != nil {
			return err
		}
		out, err = o.s.b.GetAssertion(ctx, p, origin, []byte(options), h)
		return err
	})
	return string(out), derr
}

// Cancel ends the caller's own calls in flight.
func (o *object) Cancel(msg dbus.Message) *dbus.Error {
	return o.short(msg, "Cancel", func(context.Context, ipc.Peer) error {
		sender := senderOf(msg)
		if n := o.s.cancelSender(string(sender), errCancelled); n > 0 {
			o.s.log.Info("dbus: cancelled calls on request", "sender", string(sender), "calls", n)
		}
		return nil
	})
}

func (o *object) GetCapabilities(msg dbus.Message) (map[string]dbus.Variant, *dbus.Error) {
	var out map[string]dbus.Variant
	derr := o.short(msg, "GetCapabilities", func(ctx context.Context, _ ipc.Peer) error {
		caps, err := o.s.b.Capabilities(ctx)
		if err != nil {
			return err
		}
		out = make(map[string]dbus.Variant, len(caps))
		for k, v := range caps {
			out[k] = dbus.MakeVariant(v)
		}
		return nil
	})
	return out, derr
}

func (o *object) ListCredentials(msg dbus.Message, filter string) ([]map[string]dbus.Variant, *dbus.Error) {
	out := []map[string]dbus.Variant{}
	derr := o.short(msg, "ListCredentials", func(ctx context.Context, _ ipc.Peer) error {
		creds, err := o.s.b.ListCredentials(ctx, filter)
		if err != nil {
			return err
		}
		for _, c := range creds {
			out = append(out, CredentialMap(c))
		}
		return nil
	})
	return out, derr
}

func (o *object) DeleteCredential(msg dbus.Message, id string) *dbus.Error {
	return o.short(msg, "DeleteCredential", func(ctx context.Context, _ ipc.Peer) error {
		raw, err := DecodeID(id)
		if err != nil {
			return err
		}
		return o.s.b.DeleteCredential(ctx, raw)
	})
}

func (o *object) SetProtected(msg dbus.Message, id string, protected bool) *dbus.Error {
	return o.short(msg, "SetProtected", func(ctx context.Context, _ ipc.Peer) error {
		raw, err := DecodeID(id)
		if err != nil {
			return err
		}
		return o.s.b.SetProtected(ctx, raw, protected)
	})
}

func (o *object) GetStatus(msg dbus.Message) (map[string]dbus.Variant, *dbus.Error) {
	var out map[string]dbus.Variant
	derr := o.short(msg, "GetStatus", func(ctx context.Context, _ ipc.Peer) error {
		st, err := o.s.b.Status(ctx)
		if err != nil {
			return err
		}
		out = vardict(st)
		return nil
	})
	return out, derr
}

func (o *object) SetPIN(msg dbus.Message) *dbus.Error {
	return o.long(msg, "SetPIN", func(ctx context.Context, p ipc.Peer) error { return o.s.b.SetPIN(ctx, p) })
}

func (o *object) ChangePIN(msg dbus.Message) *dbus.Error {
	return o.long(msg, "ChangePIN", func(ctx context.Context, p ipc.Peer) error { return o.s.b.ChangePIN(ctx, p) })
}

func (o *object) Reset(msg dbus.Message) *dbus.Error {
	return o.long(msg, "Reset", func(ctx context.Context, p ipc.Peer) error { return o.s.b.Reset(ctx, p) })
}

// inSignatures are the input signatures of the committed XML.
var inSignatures = func() map[string]string {
	var node introspect.Node
	if err := xml.Unmarshal([]byte(IntrospectionXML), &node); err != nil {
		panic("dbusapi: bad introspection XML: " + err.Error())
	}
	out := map[string]string{}
	for _, i := range node.Interfaces {
		if i.Name != Interface {
			continue
		}
		for _, m := range i.Methods {
			var sig strings.Builder
			for _, a := range m.Args {
				if a.Direction != "out" {
					sig.WriteString(a.Type)
				}
			}
			out[m.Name] = sig.String()
		}
	}
	return out
}()

func senderOf(msg dbus.Message) dbus.Sender {
	s, _ := msg.Headers[dbus.FieldSender].Value().(string)
	return dbus.Sender(s)
}

// checkSignature refuses arguments whose D-Bus types differ from the XML
// (godbus would otherwise convert some of them, e.g. u into s) and returns
// the caller's unique name.
func checkSignature(msg dbus.Message, method string) (dbus.Sender, *dbus.Error) {
	var got string
	if v, ok := msg.Headers[dbus.FieldSignature]; ok {
		if sig, ok := v.Value().(dbus.Signature); ok {
			got = sig.String()
		}
	}
	if want := inSignatures[method]; got != want {
		return "", &dbus.Error{Name: "org.freedesktop.DBus.Error.InvalidArgs",
			Body: []any{fmt.Sprintf("%s takes (%s), not (%s)", method, want, got)}}
	}
	return senderOf(msg), nil
}
