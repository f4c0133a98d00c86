// Package notify asks a yes/no question (Ask), or for a choice among a few
// items (AskChoice), or says what authd waits for (Inform), through a
// desktop notification
// (the freedesktop.org Desktop Notifications Specification 1.2, D-Bus name
// org.freedesktop.Notifications on the session bus).
//
// A Notifier shows a notification with two actions, "Allow" and "Deny", and
// waits for the notification server's ActionInvoked or NotificationClosed
// signal for that notification. When ctx ends first the notification is
// withdrawn with CloseNotification, so that a stale prompt cannot be clicked
// later.
//
// Signals are accepted only from the connection that owned
// org.freedesktop.Notifications when the notification was shown, and only
// for the notification's own id: another program on the session bus cannot
// answer by emitting a look-alike signal.
package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// The notification server's well-known name, object path and interface.
const (
	BusName    = "org.freedesktop.Notifications"
	ObjectPath = dbus.ObjectPath("/org/freedesktop/Notifications")
	Interface  = "org.freedesktop.Notifications"
)

// Action keys sent with every notification.
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"
	// ActionOther is the third action AskOther adds ("use another device").
	ActionOther = "other"
)

// Reasons of the NotificationClosed signal (specification, "Signals").
const (
	ReasonExpired   uint32 = 1
	ReasonDismissed uint32 = 2
	ReasonClosed    uint32 = 3 // by a CloseNotification call
	ReasonUndefined uint32 = 4
)

// callTimeout bounds each method call to the server when the caller's
// context does not end sooner, so that a hung server cannot hang a prompt.
const callTimeout = 10 * time.Second

var (
	// ErrNoActions is returned by Ask when the server cannot show actions
	// (buttons), so the question could not be answered.
	ErrNoActions = errors.New("notify: the notification server does not support actions")
	// ErrClosed is wrapped by Ask's error when the notification was closed
	// (dismissed, expired, closed by the server) without an answer.
	ErrClosed = errors.New("notify: notification closed without an answer")
	// ErrNoServer is wrapped when no notification server is on the bus.
	ErrNoServer = errors.New("notify: no notification server")
)

// Notifier asks questions through notifications. It is safe for concurrent
// use; each Ask shows its own notification.
type Notifier struct {
	conn *dbus.Conn

	// AppName is the application name sent with each notification; New
	// sets it to "authd".
	AppName string
	// Icon is an icon name or file:// URI; New sets it to
	// "dialog-password".
	Icon string
}

// New returns a Notifier using conn, normally the session bus. It subscribes
// conn to the server's signals (a bus match rule for the notification
// interface, sent by the owner of org.freedesktop.Notifications); Close
// removes the rule. New does not need a server to be running.
func New(conn *dbus.Conn) (*Notifier, error) {
	if conn == nil {
		return nil, errors.New("notify: nil connection")
	}
	if err := conn.AddMatchSignal(matchOptions()...); err != nil {
		return nil, fmt.Errorf("notify: subscribe to notification signals: %w", err)
	}
	return &Notifier{conn: conn, AppName: "authd", Icon: "dialog-password"}, nil
}

func matchOptions() []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender(BusName),
		dbus.WithMatchObjectPath(ObjectPath),
		dbus.WithMatchInterface(Interface),
	}
}

// Close removes the bus match rule added by New. It does not close the
// connection.
func (n *Notifier) Close() error {
	return n.conn.RemoveMatchSignal(matchOptions()...)
}

// Capabilities returns the server's capabilities (GetCapabilities), such as
// "actions" and "body-markup".
func (n *Notifier) Capabilities(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var caps []string
	err := n.conn.Object(BusName, ObjectPath).CallWithContext(ctx, Interface+".GetCapabilities", 0).Store(&caps)
	if err != nil {
		return nil, fmt.Errorf("notify: GetCapabilities: %w", noServer(err))
	}
	return caps, nil
}

// SupportsActions reports whether a notification server is reachable
// (running or D-Bus activatable) and can show actions, i.e. whether Ask can
// work.
func (n *Notifier) SupportsActions(ctx context.Context) bool {
	caps, err := n.Capabilities(ctx)
	return err == nil && slices.Contains(caps, "actions")
}

// Ask shows a critical-urgency notification with summary title, body text
// and the actions Allow and Deny, and waits for the answer:
//
//   - (true, nil) when the user chose Allow;
//   - (false, nil) when the user chose Deny (or any other action, such as
//     clicking the notification itself);
//   - (false, error wrapping ErrClosed) when the notification was closed
//     without an answer (dismissed, expired);
//   - (false, ctx.Err()) when ctx ended first; the notification is then
//     withdrawn with CloseNotification;
//   - (false, other error) when the server is missing (ErrNoServer), cannot
//     show actions (ErrNoActions) or failed.
//
// body is plain text: Ask escapes '&', '<' and '>' because the server may
// interpret body markup. Both strings are made valid UTF-8 (D-Bus demands
// it). Text from untrusted sources must still be sanitised by the caller
// (control characters, length).
func (n *Notifier) Ask(ctx context.Context, title, body string) (bool, error) {
	key, withdraw, err := n.show(ctx, title, body, []string{ActionAllow, "Allow", ActionDeny, "Deny"})
	if err != nil {
		return false, err
	}
	if key == ActionAllow {
		return true, nil
	}
	// Deny, or an action we did not offer ("default", a click on the
	// notification): no consent. Make sure it goes away.
	withdraw()
	return false, nil
}

// Answer is the outcome of AskOther.
type Answer int

// AskOther's answers.
const (
	Denied  Answer = iota // Deny, or an action not offered
	Allowed               // Allow
	Other                 // the third action (ActionOther)
)

// AskOther is Ask with a third action, key ActionOther labelled otherLabel
// (for example "Use another device"), between Allow and Deny. It returns
// Allowed, Other or Denied with a nil error, or Denied with the errors Ask
// returns. The notification is withdrawn unless the answer was Allow.
func (n *Notifier) AskOther(ctx context.Context, title, body, otherLabel string) (Answer, error) {
	key, withdraw, err := n.show(ctx, title, body,
		[]string{ActionAllow, "Allow", ActionOther, clean(otherLabel), ActionDeny, "Deny"})
	if err != nil {
		return Denied, err
	}
	switch key {
	case ActionAllow:
		return Allowed, nil
	case ActionOther:
		withdraw()
		return Other, nil
	}
	withdraw()
	return Denied, nil
}

// MaxChoices is the most labels AskChoice shows: notification servers lay
// actions out as a row of buttons, and many show only a few.
const MaxChoices = 6

// ActionCancel is the key of the Cancel action AskChoice adds.
const ActionCancel = "cancel"

// ErrDeclined is wrapped by AskChoice's error when the user chose Cancel
// (or clicked the notification itself instead of an item).
var ErrDeclined = errors.New("notify: the user declined to choose")

// AskChoice shows a critical-urgency notification with summary title, body
// text and one action per label (keys "0", "1", ... in order) plus
// "Cancel", and waits for the answer:
//
//   - (i, nil) when the user chose labels[i];
//   - (-1, error wrapping ErrDeclined) when the user chose Cancel or any
//     action not offered (a click on the notification itself); the
//     notification is then withdrawn;
//   - (-1, error wrapping ErrClosed) when the notification was closed
//     without an answer;
//   - (-1, ctx.Err()) when ctx ended first; the notification is withdrawn;
//   - (-1, other error) when labels is empty or longer than MaxChoices, or
//     as for Ask (ErrNoServer, ErrNoActions).
//
// Signals are trusted exactly as for Ask. body is escaped as for Ask. The
// labels are made valid D-Bus strings but otherwise sent as given: action
// labels are plain text, never markup, in the specification, so escaping
// them would show "&amp;" literally. Untrusted labels must be sanitised by
// the caller (uv.Sanitize).
func (n *Notifier) AskChoice(ctx context.Context, title, body string, labels []string) (int, error) {
	if len(labels) == 0 || len(labels) > MaxChoices {
		return -1, fmt.Errorf("notify: %d choices (want 1 to %d)", len(labels), MaxChoices)
	}
	actions := make([]string, 0, 2*len(labels)+2)
	for i, l := range labels {
		actions = append(actions, strconv.Itoa(i), clean(l))
	}
	actions = append(actions, ActionCancel, "Cancel")
	key, withdraw, err := n.show(ctx, title, body, actions)
	if err != nil {
		return -1, err
	}
	// Only the exact keys offered count ("01" or "+1" are not "1").
	if i, err := strconv.Atoi(key); err == nil && i >= 0 && i < len(labels) && key == strconv.Itoa(i) {
		return i, nil
	}
	withdraw()
	if key == ActionCancel {
		return -1, fmt.Errorf("%w: cancelled in the notification", ErrDeclined)
	}
	return -1, fmt.Errorf("%w: the notification was clicked instead of a choice", ErrDeclined)
}

// informTimeout bounds Inform: finding the server and its Notify reply. A
// notice that cannot be shown at once is not worth holding up its caller.
const informTimeout = 3 * time.Second

// Inform shows a critical-urgency notification without actions, summary
// title and body text, saying what authd waits for (a finger on the
// reader) while something else does the waiting. It returns once the
// server has shown it, within informTimeout, and a function withdrawing it
// (CloseNotification; later calls do nothing). The server never expires it
// (timeout 0) and is asked not to keep it in its history ("transient"): it
// goes when withdraw is called or ctx ends, whichever is first, or when the
// user dismisses it.
//
// It returns ctx.Err() when ctx ended before the notification was shown
// (one shown meanwhile is withdrawn), an error wrapping ErrNoServer when
// there is no server, or the Notify call's error. title and body are
// cleaned and escaped as for Ask; untrusted text must be sanitised by the
// caller.
func (n *Notifier) Inform(ctx context.Context, title, body string) (withdraw func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, informTimeout)
	owner, err := n.owner(octx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	obj := n.conn.Object(owner, ObjectPath)
	// Not abandoned halfway by ctx, as in show: the id is needed to
	// withdraw what was shown.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), informTimeout)
	var id uint32
	err = obj.CallWithContext(nctx, Interface+".Notify", 0,
		clean(n.AppName),
		uint32(0),
		clean(n.Icon),
		clean(title),
		escapeMarkup(clean(body)),
		[]string{}, // no actions: nothing to answer
		map[string]dbus.Variant{
			"urgency":   dbus.MakeVariant(byte(2)), // critical: stays until withdrawn
			"transient": dbus.MakeVariant(true),    // a stale notice in the history would mislead
		},
		int32(0),
	).Store(&id)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("notify: Notify: %w", err)
	}
	var once sync.Once
	closeIt := func() { once.Do(func() { n.withdraw(ctx, obj, id) }) }
	stop := context.AfterFunc(ctx, closeIt)
	if err := ctx.Err(); err != nil {
		stop()
		closeIt()
		return nil, err
	}
	return func() { stop(); closeIt() }, nil
}

// show shows a critical-urgency notification with actions (key, label
// pairs) and waits for the server's answer for it. It returns the key of the
// invoked action and a function withdrawing the notification; or
// ErrClosed when it was closed unanswered; or ctx.Err() when ctx ended
// first, after withdrawing it.
func (n *Notifier) show(ctx context.Context, title, body string, actions []string) (key string, withdraw func(), err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	// Resolve the server's unique name first and talk only to it: the
	// answer must come from the connection that showed the notification.
	owner, err := n.owner(ctx)
	if err != nil {
		return "", nil, err
	}
	obj := n.conn.Object(owner, ObjectPath)

	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	var caps []string
	err = obj.CallWithContext(cctx, Interface+".GetCapabilities", 0).Store(&caps)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		return "", nil, fmt.Errorf("notify: GetCapabilities: %w", err)
	}
	if !slices.Contains(caps, "actions") {
		return "", nil, ErrNoActions
	}

	// Subscribe before Notify: the answer may arrive right after the reply.
	sigs := make(chan *dbus.Signal, 16)
	n.conn.Signal(sigs)
	defer n.conn.RemoveSignal(sigs)

	// Notify must not be abandoned halfway by ctx: a notification shown
	// whose id we never learned could not be withdrawn. So it runs on a
	// context without ctx's cancellation, and ctx is checked afterwards.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	var id uint32
	err = obj.CallWithContext(nctx, Interface+".Notify", 0,
		clean(n.AppName),
		uint32(0), // replaces_id: a new notification
		clean(n.Icon),
		clean(title),
		escapeMarkup(clean(body)),
		actions,
		map[string]dbus.Variant{
			"urgency": dbus.MakeVariant(byte(2)), // critical: not expired by the server
		},
		int32(0), // expire_timeout: never; ctx decides
	).Store(&id)
	cancel()
	if err != nil {
		return "", nil, fmt.Errorf("notify: Notify: %w", err)
	}
	withdraw = func() { n.withdraw(ctx, obj, id) }

	for {
		select {
		case <-ctx.Done():
			withdraw()
			return "", nil, ctx.Err()
		case sig, ok := <-sigs:
			if !ok {
				return "", nil, errors.New("notify: connection closed while waiting for an answer")
			}
			if sig.Sender != owner || sig.Path != ObjectPath {
				continue
			}
			switch sig.Name {
			case Interface + ".ActionInvoked":
				var gotID uint32
				var key string
				if dbus.Store(sig.Body, &gotID, &key) != nil || gotID != id {
					continue
				}
				return key, withdraw, nil
			case Interface + ".NotificationClosed":
				var gotID, reason uint32
				if dbus.Store(sig.Body, &gotID, &reason) != nil || gotID != id {
					continue
				}
				return "", nil, fmt.Errorf("%w (%s)", ErrClosed, ReasonString(reason))
			}
		}
	}
}

// owner returns the unique name owning BusName, starting the server by D-Bus
// activation when it is not running.
func (n *Notifier) owner(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	bus := n.conn.BusObject()
	var owner string
	err := bus.CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
	if err == nil {
		return owner, nil
	}
	var started uint32
	if serr := bus.CallWithContext(ctx, "org.freedesktop.DBus.StartServiceByName", 0, BusName, uint32(0)).Store(&started); serr != nil {
		return "", fmt.Errorf("%w: %v", ErrNoServer, serr)
	}
	if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoServer, err)
	}
	return owner, nil
}

// withdraw closes notification id, best effort, even though ctx has ended.
func (n *Notifier) withdraw(ctx context.Context, obj dbus.BusObject, id uint32) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	obj.CallWithContext(cctx, Interface+".CloseNotification", 0, id) // nothing to do on failure
}

// noServer marks the errors meaning "nobody owns BusName".
func noServer(err error) error {
	var derr dbus.Error
	if errors.As(err, &derr) && (derr.Name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
		derr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
		return fmt.Errorf("%w: %v", ErrNoServer, err)
	}
	return err
}

// ReasonString describes a NotificationClosed reason.
func ReasonString(reason uint32) string {
	switch reason {
	case ReasonExpired:
		return "expired"
	case ReasonDismissed:
		return "dismissed by the user"
	case ReasonClosed:
		return "closed by a CloseNotification call"
	case ReasonUndefined:
		return "closed, reason undefined"
	}
	return fmt.Sprintf("closed, unknown reason %d", reason)
}

// clean makes s a valid D-Bus string: valid UTF-8 (an invalid string would
// make the bus drop the connection) without NUL bytes.
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

var markupEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeMarkup escapes the characters that start markup or entities in the
// body (specification, "Markup"): the body is shown as the text given.
func escapeMarkup(s string) string {
	return markupEscaper.Replace(s)
}
