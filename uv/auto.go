package uv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/authd/authd/uv/notify"
	"github.com/authd/authd/uv/pinentry"
)

// Timings of AutoPresence's look for someone to ask.
const (
	// autoPoll is how often a prompt with nobody to ask looks again. A look
	// costs a failed connect or one D-Bus round trip.
	autoPoll = 750 * time.Millisecond
	// autoProbeTimeout bounds one look at the session bus, so that a
	// notification server that is slow to activate delays a poll, not the
	// whole prompt.
	autoProbeTimeout = 3 * time.Second
)

// Methods AutoPresence can resolve to, and the state of waiting for one.
const (
	autoNotify   = "desktop notifications"
	autoPinentry = "pinentry"
	autoTerminal = "the terminal"
	autoWait     = "waiting"
)

// AutoPresence is --presence auto: it picks how to ask at every prompt, not
// once at start, because authd may start before the graphical session (a
// systemd user service, the uhid device at login) and the notification
// server may appear later or restart.
//
// Each prompt asks, in this order: through desktop notifications when a
// notification server with actions answers on the session bus (the
// connection is kept and reused while it lasts; the bus address is read
// again whenever it must reconnect); else with pinentry when a display is
// set (DISPLAY or WAYLAND_DISPLAY) and pinentry is installed; else on
// Terminal when there is one. When nobody can be asked yet, the prompt
// waits for a session, looking again every autoPoll, and asks as soon as
// someone can be asked; when ctx ends or Timeout passes first it returns an
// error wrapping ctx.Err() (context.DeadlineExceeded for the timeout) that
// says what was missing.
//
// Timeout bounds the wait and the prompt together, like the engine's
// deadline on ctx. A change of method is logged once, not at every prompt.
//
// AutoPresence is a Chooser: Choose asks through the method resolved as
// for ConfirmPresence. It is safe for concurrent use and must not be copied.
type AutoPresence struct {
	// Terminal is asked when neither notifications nor pinentry can be;
	// nil means there is no terminal (stdin is not one).
	Terminal *TerminalPresence
	// Pinentry is the pinentry program (a name in $PATH or an absolute
	// path); "" means pinentry.DefaultProgram.
	Pinentry string
	Logger   *slog.Logger  // nil means slog.Default()
	Timeout  time.Duration // zero means DefaultNotifyTimeout

	mu       sync.Mutex       // guards the fields below; held while looking, not while asking
	conn     *dbus.Conn       // session bus connection, nil when there is none
	notifier *notify.Notifier // on conn
	program  pinentry.Program // resolved pinentry, zero until found
	state    string           // method (or autoWait) last logged, "" before the first
}

var (
	_ Presence = (*AutoPresence)(nil)
	_ Chooser  = (*AutoPresence)(nil)
)

// autoMethod is how one prompt is asked.
type autoMethod struct {
	kind     string // autoNotify, autoPinentry or autoTerminal
	notifier *notify.Notifier
	program  pinentry.Program
}

// newAutoPresence returns the AutoPresence for ParsePresence("auto") and
// logs what can be asked now, saying it is checked again at every request.
func newAutoPresence(stdin *os.File, log *slog.Logger) *AutoPresence {
	a := &AutoPresence{Logger: log}
	if stdin != nil && isTerminal(stdin) {
		a.Terminal = &TerminalPresence{In: stdin, Out: terminalOut(), Logger: log}
	}
	ctx, cancel := context.WithTimeout(context.Background(), autoProbeTimeout)
	defer cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	m, missing := a.resolveLocked(ctx)
	a.state = m.kind
	switch m.kind {
	case "":
		a.state = autoWait
		log.Warn("user presence (--presence auto): nobody can be asked yet: " + strings.Join(missing, "; ") +
			"; each request will wait for a notification server until it times out, and the method is checked again at every request" +
			"; to choose one, use --presence notify|pinentry|terminal|command:PATH|allow")
	case autoPinentry:
		log.Info("user presence (--presence auto): pinentry is available now; the method is checked again at every request",
			"program", m.program.Path)
	case autoTerminal:
		log.Info("user presence (--presence auto): the terminal is available now; the method is checked again at every request")
	default:
		log.Info("user presence (--presence auto): desktop notifications are available now; the method is checked again at every request")
	}
	return a
}

// ConfirmPresence asks through the method available now, waiting for one
// when there is none yet.
func (a *AutoPresence) ConfirmPresence(ctx context.Context, op, rpID, userName string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	wctx, cancel, deadline := a.budget(ctx)
	defer cancel()
	m, err := a.await(wctx, ctx)
	if err != nil {
		return err
	}
	log := logger(a.Logger)
	rest := time.Until(deadline)
	if rest <= 0 && m.kind != autoTerminal {
		return fmt.Errorf("uv: no time left to ask with %s: %w", m.kind, context.DeadlineExceeded)
	}
	switch m.kind {
	case autoNotify:
		return NotifyPresence{Notifier: m.notifier, Logger: log, Timeout: rest}.ConfirmPresence(ctx, op, rpID, userName)
	case autoPinentry:
		return PinentryPresence{Program: m.program, Logger: log, Timeout: rest}.ConfirmPresence(ctx, op, rpID, userName)
	default:
		return a.Terminal.ConfirmPresence(wctx, op, rpID, userName)
	}
}

// Choose asks for a choice through the method available now, waiting for
// one when there is none yet. pinentry cannot show a choice, so when it is
// the method the first item is returned, as callers do for a Presence that
// is not a Chooser, and a debug line says so.
func (a *AutoPresence) Choose(ctx context.Context, title, body string, items []string) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	if len(items) == 0 {
		return -1, fmt.Errorf("%w: nothing to choose from", ErrDeclined)
	}
	wctx, cancel, deadline := a.budget(ctx)
	defer cancel()
	m, err := a.await(wctx, ctx)
	if err != nil {
		return -1, err
	}
	log := logger(a.Logger)
	rest := time.Until(deadline)
	if rest <= 0 && m.kind == autoNotify {
		return -1, fmt.Errorf("uv: no time left to ask with %s: %w", m.kind, context.DeadlineExceeded)
	}
	switch m.kind {
	case autoNotify:
		return NotifyPresence{Notifier: m.notifier, Logger: log, Timeout: rest}.Choose(ctx, title, body, items)
	case autoPinentry:
		log.Debug("pinentry cannot show a choice, so the first item was used (--presence auto)", "items", len(items))
		return 0, nil
	default:
		return a.Terminal.Choose(wctx, title, body, items)
	}
}

// Close closes the session bus connection, if one is open. A later prompt
// opens a new one.
func (a *AutoPresence) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dropLocked()
}

// budget returns ctx bounded by Timeout, which covers both the wait and the
// prompt, and its deadline.
func (a *AutoPresence) budget(ctx context.Context) (context.Context, context.CancelFunc, time.Time) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultNotifyTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	return wctx, cancel, deadline
}

// await returns the method to ask with, polling until there is one. wctx
// bounds the wait; ctx is the caller's, whose cancellation is returned
// as is. Any other end of the wait (a deadline) returns an error wrapping
// context.DeadlineExceeded that says what was missing.
func (a *AutoPresence) await(wctx, ctx context.Context) (autoMethod, error) {
	log := logger(a.Logger)
	start := time.Now()
	for {
		a.mu.Lock()
		m, missing := a.resolveLocked(wctx)
		a.noteLocked(m, missing)
		a.mu.Unlock()
		if m.kind != "" {
			return m, nil
		}
		select {
		case <-wctx.Done():
		case <-time.After(autoPoll):
			continue
		}
		if err := ctx.Err(); errors.Is(err, context.Canceled) {
			return autoMethod{}, err
		}
		reason := "nobody could be asked: " + strings.Join(missing, "; ")
		log.Warn("presence not confirmed: "+reason+
			"; configure user presence with --presence notify|pinentry|terminal|command:PATH|allow",
			"waited", time.Since(start).Round(time.Millisecond))
		return autoMethod{}, fmt.Errorf("uv: %s: %w", reason, context.DeadlineExceeded)
	}
}

// noteLocked logs a change of method (or the start of a wait), once.
func (a *AutoPresence) noteLocked(m autoMethod, missing []string) {
	state := m.kind
	if state == "" {
		state = autoWait
	}
	if state == a.state {
		return
	}
	a.state = state
	log := logger(a.Logger)
	switch state {
	case autoWait:
		log.Info("user presence: no session yet: waiting for a notification server (--presence auto)",
			"missing", strings.Join(missing, "; "))
	case autoPinentry:
		log.Info("user presence: pinentry is now the way to ask (--presence auto)", "program", m.program.Path)
	case autoTerminal:
		log.Info("user presence: the terminal is now the way to ask (--presence auto)")
	default:
		log.Info("user presence: desktop notifications are now available (--presence auto)")
	}
}

// resolveLocked returns the method to ask with now, or a zero autoMethod
// and why each method is unavailable.
func (a *AutoPresence) resolveLocked(ctx context.Context) (autoMethod, []string) {
	var missing []string
	n, err := a.notifierLocked(ctx)
	if err == nil {
		return autoMethod{kind: autoNotify, notifier: n}, nil
	}
	missing = append(missing, err.Error())
	if os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "" {
		if a.program.Path == "" {
			p, err := NewPinentryPresence(a.Pinentry, a.Logger)
			if err != nil {
				missing = append(missing, "no pinentry program ("+err.Error()+")")
			}
			a.program = p.Program
		}
		if a.program.Path != "" {
			return autoMethod{kind: autoPinentry, program: a.program}, nil
		}
	} else {
		missing = append(missing, "no display for pinentry")
	}
	if a.Terminal != nil {
		return autoMethod{kind: autoTerminal}, nil
	}
	return autoMethod{}, append(missing, "stdin is not a terminal")
}

// notifierLocked returns the session bus's notifier when its notification
// server can show actions, connecting first when there is no live
// connection. The connection is kept while the bus lasts: a server that
// goes away and comes back is found on it again.
func (a *AutoPresence) notifierLocked(ctx context.Context) (*notify.Notifier, error) {
	ctx, cancel := context.WithTimeout(ctx, autoProbeTimeout)
	defer cancel()
	if a.conn != nil && !a.conn.Connected() {
		a.dropLocked()
	}
	if a.conn == nil {
		conn, err := dialSession(ctx)
		if err != nil {
			return nil, fmt.Errorf("no notification server on the session bus (%v)", err)
		}
		n, err := notify.New(conn)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("no notification server on the session bus (%v)", err)
		}
		a.conn, a.notifier = conn, n
	}
	caps, err := a.notifier.Capabilities(ctx)
	switch {
	case err != nil:
		return nil, fmt.Errorf("no notification server on the session bus (%v)", err)
	case !slices.Contains(caps, "actions"):
		return nil, errors.New("the notification server cannot show Allow/Deny actions")
	}
	return a.notifier, nil
}

// dropLocked forgets the session bus connection.
func (a *AutoPresence) dropLocked() error {
	if a.conn == nil {
		return nil
	}
	a.notifier.Close() // fails on a dead connection; closing it is what matters
	err := a.conn.Close()
	a.conn, a.notifier = nil, nil
	if err != nil {
		return fmt.Errorf("uv: close session bus connection: %w", err)
	}
	return nil
}

// dialSession connects to the session bus at the address it has now
// (SessionBusAddress), never autolaunching one. ctx bounds the connecting
// only: godbus's WithContext would close the connection when ctx ends, so
// a connection that is still being set up when ctx ends is closed here
// once it is.
func dialSession(ctx context.Context) (*dbus.Conn, error) {
	addr := SessionBusAddress()
	if addr == "" {
		return nil, errors.New("no session bus")
	}
	type result struct {
		conn *dbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := dbus.Connect(addr)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to the session bus: %w", r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("connect to the session bus %s: %w", addr, ctx.Err())
	}
}
