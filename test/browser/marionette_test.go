package browser

// A minimal client of Firefox's Marionette protocol, enough to drive stock
// firefox-esr (Playwright cannot: it needs its own patched Firefox). The
// wire format is "<decimal length>:<JSON>"; the server greets with
// {"applicationType":"gecko","marionetteProtocol":3}; a command is
// [0, id, name, params] and its reply [1, id, error|null, result]. Command
// names and parameters are those of GeckoDriver in Firefox's
// remote/marionette/driver.sys.mjs.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// webElementKey is the WebDriver element reference key.
const webElementKey = "element-6066-11e4-a52e-4f735466cecf"

// marionetteError is an error reply: a WebDriver error code and message.
type marionetteError struct {
	Code       string `json:"error"`
	Message    string `json:"message"`
	Stacktrace string `json:"stacktrace"`
}

func (e *marionetteError) Error() string { return "marionette: " + e.Code + ": " + e.Message }

type marionette struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex // one command at a time: replies come in order
	seq  int
}

// dialMarionette connects to addr, retrying until Firefox listens or ctx
// ends, and reads the server's hello.
func dialMarionette(ctx context.Context, addr string) (*marionette, error) {
	var conn net.Conn
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("marionette: Firefox did not listen on %s: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	m := &marionette{conn: conn, r: bufio.NewReader(conn)}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(dl)
	}
	hello, err := m.readMsg()
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("marionette: reading the hello: %w", err)
	}
	var h struct {
		ApplicationType string `json:"applicationType"`
		Protocol        int    `json:"marionetteProtocol"`
	}
	if err := json.Unmarshal(hello, &h); err != nil || h.ApplicationType != "gecko" || h.Protocol != 3 {
		conn.Close()
		return nil, fmt.Errorf("marionette: unexpected hello %s", hello)
	}
	return m, nil
}

func (m *marionette) Close() error { return m.conn.Close() }

func (m *marionette) readMsg() ([]byte, error) {
	lenStr, err := m.r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(lenStr[:len(lenStr)-1])
	if err != nil || n < 0 || n > 64<<20 {
		return nil, fmt.Errorf("bad frame length %q", lenStr)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(m.r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// call sends one command and decodes its result into out (if not nil).
// The timeout bounds the wait for the reply; Marionette has no request
// cancellation, so after a timeout the connection is useless.
func (m *marionette) call(timeout time.Duration, name string, params any, out any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	id := m.seq
	if params == nil {
		params = map[string]any{}
	}
	body, err := json.Marshal([]any{0, id, name, params})
	if err != nil {
		return fmt.Errorf("marionette: %s: %w", name, err)
	}
	m.conn.SetDeadline(time.Now().Add(timeout))
	defer m.conn.SetDeadline(time.Time{})
	if _, err := m.conn.Write(append([]byte(strconv.Itoa(len(body))+":"), body...)); err != nil {
		return fmt.Errorf("marionette: sending %s: %w", name, err)
	}
	for {
		msg, err := m.readMsg()
		if err != nil {
			return fmt.Errorf("marionette: waiting for %s: %w", name, err)
		}
		var reply []json.RawMessage
		if err := json.Unmarshal(msg, &reply); err != nil || len(reply) != 4 {
			return fmt.Errorf("marionette: %s: malformed reply %.200s", name, msg)
		}
		var typ, rid int
		json.Unmarshal(reply[0], &typ)
		json.Unmarshal(reply[1], &rid)
		if typ != 1 || rid != id {
			continue // a stale reply of an earlier, timed-out command
		}
		if string(reply[2]) != "null" {
			e := &marionetteError{}
			if err := json.Unmarshal(reply[2], e); err != nil {
				return fmt.Errorf("marionette: %s: error %s", name, reply[2])
			}
			return fmt.Errorf("%s: %w", name, e)
		}
		if out == nil {
			return nil
		}
		// Most commands wrap their result as {"value": ...}.
		var wrapped struct {
			Value json.RawMessage `json:"value"`
		}
		if json.Unmarshal(reply[3], &wrapped) == nil && wrapped.Value != nil {
			return json.Unmarshal(wrapped.Value, out)
		}
		return json.Unmarshal(reply[3], out)
	}
}

const cmdTimeout = 30 * time.Second

func (m *marionette) newSession() error {
	return m.call(cmdTimeout, "WebDriver:NewSession", map[string]any{
		"capabilities": map[string]any{"alwaysMatch": map[string]any{"acceptInsecureCerts": true}},
	}, nil)
}

func (m *marionette) setContext(ctx string) error {
	return m.call(cmdTimeout, "Marionette:SetContext", map[string]any{"value": ctx}, nil)
}

// installTemporaryAddon installs an unpacked extension directory (or .xpi)
// as a temporary add-on: no signature needed, removed at shutdown.
func (m *marionette) installTemporaryAddon(path string) (string, error) {
	var id string
	err := m.call(cmdTimeout, "Addon:Install", map[string]any{"path": path, "temporary": true}, &id)
	return id, err
}

func (m *marionette) navigate(url string) error {
	return m.call(cmdTimeout, "WebDriver:Navigate", map[string]any{"url": url}, nil)
}

// exec runs a synchronous script (the body of a function called with
// args); its return value is decoded into out.
func (m *marionette) exec(script string, out any, args ...any) error {
	if args == nil {
		args = []any{}
	}
	return m.call(cmdTimeout, "WebDriver:ExecuteScript", map[string]any{"script": script, "args": args}, out)
}

// execAsync runs a script whose last argument is the callback that ends it.
func (m *marionette) execAsync(timeout time.Duration, script string, out any, args ...any) error {
	if args == nil {
		args = []any{}
	}
	if err := m.call(cmdTimeout, "WebDriver:SetTimeouts", map[string]any{"script": timeout.Milliseconds()}, nil); err != nil {
		return err
	}
	return m.call(timeout+5*time.Second, "WebDriver:ExecuteAsyncScript", map[string]any{"script": script, "args": args}, out)
}

func (m *marionette) find(css string) (string, error) {
	var el map[string]string
	if err := m.call(cmdTimeout, "WebDriver:FindElement", map[string]any{"using": "css selector", "value": css}, &el); err != nil {
		return "", err
	}
	id := el[webElementKey]
	if id == "" {
		return "", fmt.Errorf("marionette: FindElement %s: no element reference in %v", css, el)
	}
	return id, nil
}

func (m *marionette) click(css string) error {
	id, err := m.find(css)
	if err != nil {
		return err
	}
	return m.call(cmdTimeout, "WebDriver:ElementClick", map[string]any{"id": id}, nil)
}

// typeInto clears the element and types text into it.
func (m *marionette) typeInto(css, text string) error {
	id, err := m.find(css)
	if err != nil {
		return err
	}
	if err := m.call(cmdTimeout, "WebDriver:ElementClear", map[string]any{"id": id}, nil); err != nil {
		return err
	}
	return m.call(cmdTimeout, "WebDriver:ElementSendKeys", map[string]any{"id": id, "text": text}, nil)
}

// screenshot returns a PNG of the current page's viewport.
func (m *marionette) screenshot() ([]byte, error) {
	var b64 string
	if err := m.call(cmdTimeout, "WebDriver:TakeScreenshot", map[string]any{"full": false, "hash": false}, &b64); err != nil {
		return nil, err
	}
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("marionette: screenshot is not base64: %w", err)
	}
	return png, nil
}

// waitFor polls a synchronous script until it returns a non-empty string
// (the result) or the timeout passes.
func (m *marionette) waitFor(timeout time.Duration, what, script string, args ...any) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		var s string
		err := m.exec(script, &s, args...)
		var me *marionetteError
		if err != nil && !errors.As(err, &me) {
			return "", err // the connection broke
		}
		if err == nil && s != "" {
			return s, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return "", fmt.Errorf("waiting for %s: %w", what, err)
			}
			return "", fmt.Errorf("waiting for %s: timed out after %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
