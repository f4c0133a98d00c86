package nmhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/ipc"
	dbusapi "github.com/authd/authd/ipc/dbus"
)

// NotReachable is the error name for "authd cannot be reached": the
// extension falls back to the browser's own WebAuthn.
const NotReachable = "NotReachable"

// Request is one message from the extension.
type Request struct {
	ID           json.RawMessage `json:"id"`
	Type         string          `json:"type"`
	Origin       string          `json:"origin"`
	TopOrigin    string          `json:"topOrigin,omitempty"`
	Options      json.RawMessage `json:"options,omitempty"`
	TimeoutMs    *float64        `json:"timeoutMs,omitempty"`
	Filter       string          `json:"filter,omitempty"`
	CredentialID string          `json:"credentialId,omitempty"`
	// Target is the id of the create/get request a "cancel" aborts.
	Target json.RawMessage `json:"target,omitempty"`
}

// ReplyError is the error member of a failed reply.
type ReplyError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

// Reply is one message to the extension.
type Reply struct {
	ID     json.RawMessage `json:"id"`
	OK     bool            `json:"ok"`
	Result any             `json:"result,omitempty"`
	Error  *ReplyError     `json:"error,omitempty"`
}

// Credential is one entry of a "list" result.
type Credential struct {
	ID              string `json:"id"` // base64url
	RPID            string `json:"rpId"`
	RPName          string `json:"rpName"`
	UserName        string `json:"userName"`
	UserDisplayName string `json:"userDisplayName"`
	Created         int64  `json:"created"`  // unix seconds
	LastUsed        int64  `json:"lastUsed"` // unix seconds, 0 = never
	Discoverable    bool   `json:"discoverable"`
	Protected       bool   `json:"protected"`
	Backend         string `json:"backend"` // "tpm" or "software"
}

// Host serves one native-messaging port.
type Host struct {
	// Dial connects to the bus that serves authd (called lazily, again
	// after the connection broke).
	Dial func() (*dbus.Conn, error)
	// Log gets operational lines (never options, results or PINs).
	Log *slog.Logger
	// MaxRequest bounds request size (default DefaultMaxRequest).
	MaxRequest int
	// MaxInFlight bounds concurrent requests (default 32).
	MaxInFlight int
	// CallTimeout bounds calls that do not wait for the user (default 25 s).
	CallTimeout time.Duration

	wmu  sync.Mutex
	w    io.Writer
	cmu  sync.Mutex
	conn *dbus.Conn // shared by the short calls
	done bool       // Serve ended: dial no more
	// ceremonies are the create/get requests in flight, by request id.
	ceremonies map[string]*ceremony
}

// ceremony is one create/get in flight. It runs on a bus connection of its
// own, so that aborting it (Cancel() on that connection, which authd
// applies to the calling connection's calls) leaves the port's other
// requests alone.
type ceremony struct {
	cancel  context.CancelFunc
	mu      sync.Mutex
	conn    *dbus.Conn // once dialled
	aborted bool
}

// Serve reads requests from r until it ends, answering on w. Requests run
// concurrently; replies carry the request's id. When r ends, calls in
// flight are abandoned (the bus connection closes, so authd aborts them).
// It returns nil at a clean end of stream and an error when the stream
// broke (truncated or not native messaging).
func (h *Host) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	if h.Log == nil {
		h.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	max := h.MaxRequest
	if max <= 0 {
		max = DefaultMaxRequest
	}
	inflight := h.MaxInFlight
	if inflight <= 0 {
		inflight = 32
	}
	h.w = w
	h.ceremonies = map[string]*ceremony{}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		h.cmu.Lock()
		h.done = true
		h.cmu.Unlock()
		h.closeConn()
		wg.Wait()
	}()
	sem := make(chan struct{}, inflight)
	for {
		msg, err := ReadFrame(r, max)
		var tooLarge *ErrTooLarge
		var desync *ErrDesync
		switch {
		case err == io.EOF:
			h.Log.Info("nmhost: the browser closed the port")
			return nil
		case errors.As(err, &tooLarge):
			h.Log.Warn("nmhost: refused an oversized message", "bytes", tooLarge.Len, "max", max)
			h.replyErr(nil, ipc.TypeError, fmt.Sprintf("message of %d bytes exceeds the host's limit of %d bytes", tooLarge.Len, max))
			continue
		case errors.As(err, &desync):
			h.Log.Error("nmhost: giving up on the port", "err", err)
			h.replyErr(nil, ipc.TypeError, err.Error())
			return err
		case err != nil:
			h.Log.Error("nmhost: giving up on the port", "err", err)
			return err
		}
		req, rerr := parseRequest(msg)
		if rerr != nil {
			h.Log.Warn("nmhost: refused a malformed message", "err", rerr.Message)
			h.replyErr(req.ID, rerr.Name, rerr.Message)
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			h.replyErr(req.ID, ipc.UnknownError, fmt.Sprintf("too many requests in flight (%d)", inflight))
			continue
		}
		// A ceremony is registered before its goroutine starts, so a
		// "cancel" read right after it always finds it.
		rctx, c, ok := ctx, (*ceremony)(nil), true
		if req.Type == "create" || req.Type == "get" {
			rctx, c, ok = h.register(ctx, req.ID)
			if !ok {
				<-sem
				h.replyErr(req.ID, ipc.TypeError, fmt.Sprintf("request id %s is already in flight", req.ID))
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if c != nil {
				defer h.unregister(req.ID, c)
			}
			h.handle(rctx, req, c)
		}()
	}
}

var knownTypes = map[string]bool{"create": true, "get": true, "capabilities": true, "list": true,
	"delete": true, "protect": true, "unprotect": true, "cancel": true, "status": true}

func parseRequest(msg []byte) (Request, *ReplyError) {
	var req Request
	if len(msg) == 0 {
		return req, &ReplyError{ipc.TypeError, "empty message: expected a JSON object"}
	}
	if !utf8.Valid(msg) {
		return req, &ReplyError{ipc.TypeError, "message is not UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(msg))
	if err := dec.Decode(&req); err != nil {
		// Try to recover the id for the reply.
		var probe struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(msg, &probe) == nil {
			req.ID = probe.ID
		}
		return req, &ReplyError{ipc.TypeError, "malformed request: " + err.Error()}
	}
	if dec.More() {
		return req, &ReplyError{ipc.TypeError, "malformed request: trailing data after the JSON object"}
	}
	if req.Type == "" {
		return req, &ReplyError{ipc.TypeError, `request has no "type"`}
	}
	if !knownTypes[req.Type] {
		return req, &ReplyError{ipc.TypeError, fmt.Sprintf("unknown request type %q", req.Type)}
	}
	return req, nil
}

func (h *Host) reply(rep Reply) {
	if len(rep.ID) == 0 {
		rep.ID = json.RawMessage("null")
	}
	b, err := json.Marshal(rep)
	if err == nil && len(b) > ReplyLimit {
		h.Log.Warn("nmhost: reply too large for native messaging", "bytes", len(b))
		b, err = json.Marshal(Reply{ID: rep.ID, Error: &ReplyError{ipc.UnknownError,
			fmt.Sprintf("the reply (%d bytes) exceeds the 1 MiB native-messaging limit", len(b))}})
	}
	if err != nil {
		h.Log.Error("nmhost: cannot encode a reply", "err", err)
		b, _ = json.Marshal(Reply{ID: rep.ID, Error: &ReplyError{ipc.UnknownError, "the host could not encode its reply"}})
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if err := WriteFrame(h.w, b); err != nil {
		h.Log.Warn("nmhost: cannot write a reply", "err", err)
	}
}

func (h *Host) replyErr(id json.RawMessage, name, msg string) {
	h.reply(Reply{ID: id, Error: &ReplyError{name, msg}})
}

// connection returns the bus connection, dialling when needed.
func (h *Host) connection() (*dbus.Conn, error) {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	if h.done {
		return nil, errors.New("the port is closed")
	}
	if h.conn != nil && h.conn.Connected() {
		return h.conn, nil
	}
	if h.Dial == nil {
		return nil, errors.New("no bus configured")
	}
	conn, err := h.Dial()
	if err != nil {
		return nil, err
	}
	h.conn = conn
	return conn, nil
}

// register records a ceremony under id; false if that id is in flight.
func (h *Host) register(ctx context.Context, id json.RawMessage) (context.Context, *ceremony, bool) {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	key := string(id)
	if _, dup := h.ceremonies[key]; dup && key != "" {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &ceremony{cancel: cancel}
	if key != "" {
		h.ceremonies[key] = c
	}
	return ctx, c, true
}

func (h *Host) unregister(id json.RawMessage, c *ceremony) {
	h.cmu.Lock()
	if h.ceremonies[string(id)] == c {
		delete(h.ceremonies, string(id))
	}
	h.cmu.Unlock()
	c.cancel()
}

// abort cancels the ceremony with request id target, if it is in flight:
// Cancel() on its own connection makes authd end that call (and close its
// prompt), then its context ends in case authd does not answer. It reports
// whether there was such a ceremony.
func (h *Host) abort(ctx context.Context, target json.RawMessage) bool {
	h.cmu.Lock()
	c := h.ceremonies[string(target)]
	h.cmu.Unlock()
	if c == nil {
		return false
	}
	c.mu.Lock()
	c.aborted = true
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		// Best effort: the ceremony may end (and close conn) while Cancel
		// waits for its reply, and if Cancel is lost, cancelling the
		// ceremony's context below closes its connection, which authd
		// treats as a cancel too.
		if err := conn.Object(dbusapi.BusName, dbusapi.Path).CallWithContext(ctx, dbusapi.Interface+".Cancel", 0).Store(); err != nil {
			h.Log.Debug("nmhost: Cancel on the ceremony's connection", "err", err)
		}
	}
	c.cancel()
	return true
}

func (h *Host) closeConn() {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

// handle runs one request and replies.
func (h *Host) handle(ctx context.Context, req Request, c *ceremony) {
	defer func() {
		if p := recover(); p != nil {
			h.Log.Error("nmhost: internal error", "type", req.Type, "panic", fmt.Sprint(p))
			h.replyErr(req.ID, ipc.UnknownError, "internal error in the native-messaging host")
		}
	}()
	start := time.Now()
	var result any
	var rerr *ReplyError
	if c != nil {
		result, rerr = h.ceremony(ctx, req, c)
		// Before the reply: a cancel the page sends after it finds nothing.
		h.unregister(req.ID, c)
	} else {
		result, rerr = h.dispatch(ctx, req)
	}
	if rerr != nil {
		h.Log.Info("nmhost: request failed", "type", req.Type, "origin", req.Origin, "error", rerr.Name, "ms", time.Since(start).Milliseconds())
		h.replyErr(req.ID, rerr.Name, rerr.Message)
		return
	}
	h.Log.Debug("nmhost: request done", "type", req.Type, "origin", req.Origin, "ms", time.Since(start).Milliseconds())
	h.reply(Reply{ID: req.ID, OK: true, Result: result})
}

func (h *Host) dispatch(ctx context.Context, req Request) (any, *ReplyError) {
	// Argument checks before touching the bus.
	switch req.Type {
	case "delete", "protect", "unprotect":
		if req.CredentialID == "" {
			return nil, &ReplyError{ipc.TypeError, `"credentialId" is required`}
		}
	case "cancel":
		if len(req.Target) == 0 || string(req.Target) == "null" {
			return nil, &ReplyError{ipc.TypeError, `"target" (the id of the create or get to abort) is required`}
		}
		c, cancel := h.shortCtx(ctx)
		defer cancel()
		return map[string]bool{"cancelled": h.abort(c, req.Target)}, nil
	}
	conn, err := h.connection()
	if err != nil {
		h.Log.Warn("nmhost: authd not reachable", "err", err)
		return nil, &ReplyError{NotReachable, "authd is not reachable: " + err.Error()}
	}
	obj := conn.Object(dbusapi.BusName, dbusapi.Path)
	short := func() (context.Context, context.CancelFunc) { return h.shortCtx(ctx) }
	call := func(ctx context.Context, method string, args ...any) *dbus.Call {
		return obj.CallWithContext(ctx, dbusapi.Interface+"."+method, 0, args...)
	}
	switch req.Type {
	case "capabilities":
		c, cancel := short()
		defer cancel()
		var caps map[string]dbus.Variant
		if err := call(c, "GetCapabilities").Store(&caps); err != nil {
			return nil, h.mapErr(err)
		}
		return dbusapi.Plain(caps), nil
	case "status":
		c, cancel := short()
		defer cancel()
		var st map[string]dbus.Variant
		if err := call(c, "GetStatus").Store(&st); err != nil {
			return nil, h.mapErr(err)
		}
		return dbusapi.Plain(st), nil
	case "list":
		c, cancel := short()
		defer cancel()
		var list []map[string]dbus.Variant
		if err := call(c, "ListCredentials", req.Filter).Store(&list); err != nil {
			return nil, h.mapErr(err)
		}
		out := make([]Credential, 0, len(list))
		for _, m := range list {
			out = append(out, credential(m))
		}
		return out, nil
	case "delete":
		c, cancel := short()
		defer cancel()
		if err := call(c, "DeleteCredential", req.CredentialID).Store(); err != nil {
			return nil, h.mapErr(err)
		}
		return nil, nil
	case "protect", "unprotect":
		c, cancel := short()
		defer cancel()
		if err := call(c, "SetProtected", req.CredentialID, req.Type == "protect").Store(); err != nil {
			return nil, h.mapErr(err)
		}
		return nil, nil
	}
	return nil, &ReplyError{ipc.TypeError, fmt.Sprintf("unknown request type %q", req.Type)}
}

// shortCtx bounds a call that does not wait for the user.
func (h *Host) shortCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	t := h.CallTimeout
	if t <= 0 {
		t = 25 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// ceremony runs a create or get on a bus connection of its own (see
// type ceremony); the connection closes when it ends, which also makes
// authd abandon the call if the port went away.
func (h *Host) ceremony(ctx context.Context, req Request, c *ceremony) (any, *ReplyError) {
	if req.Origin == "" {
		return nil, &ReplyError{ipc.TypeError, `"origin" is required`}
	}
	if o := bytes.TrimSpace(req.Options); len(o) == 0 || o[0] != '{' {
		return nil, &ReplyError{ipc.TypeError, `"options" must be a PublicKeyCredential options JSON object`}
	}
	if req.TimeoutMs != nil && (*req.TimeoutMs < 0 || *req.TimeoutMs > 1<<32-1) {
		return nil, &ReplyError{ipc.TypeError, `"timeoutMs" out of range`}
	}
	h.cmu.Lock()
	done := h.done
	h.cmu.Unlock()
	if done || h.Dial == nil {
		return nil, &ReplyError{NotReachable, "authd is not reachable: the port is closed or no bus is configured"}
	}
	conn, err := h.Dial()
	if err != nil {
		h.Log.Warn("nmhost: authd not reachable", "err", err)
		return nil, &ReplyError{NotReachable, "authd is not reachable: " + err.Error()}
	}
	defer func() {
		// abort must not call Cancel on a connection that is closing.
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
		conn.Close()
	}()
	c.mu.Lock()
	aborted := c.aborted
	c.conn = conn
	c.mu.Unlock()
	if aborted || ctx.Err() != nil {
		return nil, &ReplyError{ipc.AbortError, "the request was aborted"}
	}

	hints := map[string]dbus.Variant{}
	if req.TopOrigin != "" {
		hints["top_origin"] = dbus.MakeVariant(req.TopOrigin)
	}
	lctx, cancel := context.WithCancel(ctx)
	if req.TimeoutMs != nil {
		ms := uint32(*req.TimeoutMs)
		hints["timeout_ms"] = dbus.MakeVariant(ms)
		// authd enforces the timeout; this only bounds a hung daemon.
		cancel()
		lctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond+time.Minute)
	}
	defer cancel()
	method := "MakeCredential"
	if req.Type == "get" {
		method = "GetAssertion"
	}
	var cred string
	err = conn.Object(dbusapi.BusName, dbusapi.Path).CallWithContext(lctx, dbusapi.Interface+"."+method, 0,
		req.Origin, string(req.Options), hints).Store(&cred)
	if err != nil {
		return nil, h.mapErr(err)
	}
	if !json.Valid([]byte(cred)) {
		return nil, &ReplyError{ipc.UnknownError, "authd returned a credential that is not JSON"}
	}
	return json.RawMessage(cred), nil
}

// notReachable are bus errors meaning authd is not there.
var notReachable = map[string]bool{
	"org.freedesktop.DBus.Error.ServiceUnknown": true,
	"org.freedesktop.DBus.Error.NameHasNoOwner": true,
	"org.freedesktop.DBus.Error.NoServer":       true,
	"org.freedesktop.DBus.Error.Disconnected":   true,
	"org.freedesktop.DBus.Error.UnknownObject":  true,
	"org.freedesktop.DBus.Error.TimedOut":       true,
	"org.freedesktop.DBus.Error.NoReply":        true,
}

// mapErr turns a call error into a reply error.
func (h *Host) mapErr(err error) *ReplyError {
	name, msg := "", ""
	var de dbus.Error
	var dp *dbus.Error
	switch {
	case errors.As(err, &de):
		name = de.Name
		if len(de.Body) > 0 {
			msg, _ = de.Body[0].(string)
		}
	case errors.As(err, &dp):
		name = dp.Name
		if len(dp.Body) > 0 {
			msg, _ = dp.Body[0].(string)
		}
	}
	if msg == "" {
		msg = err.Error()
	}
	switch {
	case name == "" && errors.Is(err, context.Canceled):
		return &ReplyError{ipc.AbortError, "the request was abandoned"}
	case name == "" && errors.Is(err, context.DeadlineExceeded):
		return &ReplyError{NotReachable, "authd did not answer in time"}
	case name == "" && (errors.Is(err, dbus.ErrClosed) || strings.Contains(err.Error(), "closed")):
		// connection() dials again when the shared connection broke.
		return &ReplyError{NotReachable, "the bus connection to authd broke: " + err.Error()}
	case notReachable[name] || strings.HasPrefix(name, "org.freedesktop.DBus.Error.Spawn."):
		h.Log.Warn("nmhost: authd not reachable", "dbus_error", name)
		return &ReplyError{NotReachable, "authd is not reachable: " + msg}
	case name == dbusapi.AccessDenied:
		return &ReplyError{ipc.NotAllowedError, "authd refused this host: " + msg}
	case strings.HasPrefix(name, dbusapi.ErrorPrefix):
		n := strings.TrimPrefix(name, dbusapi.ErrorPrefix)
		switch n {
		case ipc.NotAllowedError, ipc.InvalidStateError, ipc.SecurityError, ipc.NotSupportedError,
			ipc.ConstraintError, ipc.AbortError, ipc.TypeError, ipc.UnknownError, ipc.UseAnotherDevice:
			return &ReplyError{n, msg}
		}
		return &ReplyError{ipc.UnknownError, n + ": " + msg}
	case name == "org.freedesktop.DBus.Error.InvalidArgs":
		return &ReplyError{ipc.TypeError, msg}
	}
	if name != "" {
		msg = name + ": " + msg
	}
	return &ReplyError{ipc.UnknownError, msg}
}

func credential(m map[string]dbus.Variant) Credential {
	s := func(k string) string { v, _ := m[k].Value().(string); return v }
	b := func(k string) bool { v, _ := m[k].Value().(bool); return v }
	i := func(k string) int64 { v, _ := m[k].Value().(int64); return v }
	return Credential{ID: s("id"), RPID: s("rp_id"), RPName: s("rp_name"), UserName: s("user_name"),
		UserDisplayName: s("user_display_name"), Created: i("created"), LastUsed: i("last_used"),
		Discoverable: b("discoverable"), Protected: b("protected"), Backend: s("backend")}
}
