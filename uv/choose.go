package uv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/authd/authd/uv/notify"
)

// Chooser is a Presence that can also ask the user to pick one of several
// items, such as the account to sign in with when several passkeys match.
//
// Choose shows title, body and items and returns the index of the chosen
// item; an error wrapping ErrDeclined when the user refused or cancelled
// (or the choice could not be shown); ctx.Err() when ctx ended first, after
// taking the question down. title, body and items are untrusted display
// text: implementations sanitise them.
type Chooser interface {
	Choose(ctx context.Context, title, body string, items []string) (int, error)
}

var (
	_ Chooser = NotifyPresence{}
	_ Chooser = (*TerminalPresence)(nil)
)

// Limits on the text of a choice.
const (
	maxTitleRunes = 128
	maxBodyRunes  = 512
	maxItemRunes  = 64
)

// ChoiceNotifier is a Notifier that can also ask for a choice among labels
// (at most notify.MaxChoices) with a Cancel action. *notify.Notifier
// satisfies it. AskChoice returns the chosen index; an error wrapping
// notify.ErrDeclined on Cancel; ctx.Err() when ctx ended first, after
// withdrawing the notification.
type ChoiceNotifier interface {
	AskChoice(ctx context.Context, title, body string, labels []string) (int, error)
}

// Choose shows a notification whose actions are the items (the first
// notify.MaxChoices of them; the body says how many more were left out)
// and Cancel. The body also lists the items shown, numbered, for servers
// that show only a few buttons. Cancel, a click on the notification itself,
// dismissing it, or a notifier that cannot show actions decline
// (ErrDeclined); Timeout applies as for ConfirmPresence.
func (p NotifyPresence) Choose(ctx context.Context, title, body string, items []string) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	log := logger(p.Logger)
	if len(items) == 0 {
		return -1, fmt.Errorf("%w: nothing to choose from", ErrDeclined)
	}
	cn, ok := p.Notifier.(ChoiceNotifier)
	if !ok {
		log.Warn("choice declined: the notifier cannot show a choice")
		return -1, fmt.Errorf("%w: the notifier cannot show a choice", ErrDeclined)
	}
	shown := items[:min(len(items), notify.MaxChoices)]
	labels := make([]string, len(shown))
	var b strings.Builder
	b.WriteString(bodyLines(body))
	for i, it := range shown {
		labels[i] = Sanitize(it, maxItemRunes)
		fmt.Fprintf(&b, "\n%d. %s", i+1, labels[i])
	}
	if more := len(items) - len(shown); more > 0 {
		fmt.Fprintf(&b, "\n(%d more not shown)", more)
	}
	if prog := Sanitize(Requester(ctx), maxProgramRunes); prog != "" {
		b.WriteString("\nRequested by: " + prog)
	}

	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultNotifyTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	i, err := cn.AskChoice(tctx, Sanitize(title, maxTitleRunes), strings.TrimSpace(b.String()), labels)
	switch {
	case err == nil && i >= 0 && i < len(shown):
		log.Info("choice made in a desktop notification", "index", i)
		return i, nil
	case ctx.Err() != nil:
		return -1, ctx.Err()
	case tctx.Err() != nil:
		log.Info("choice not made: the notification was not answered in time", "timeout", timeout)
		return -1, fmt.Errorf("uv: notification not answered within %s: %w", timeout, context.DeadlineExceeded)
	case errors.Is(err, notify.ErrDeclined):
		log.Info("choice declined in a desktop notification")
		return -1, fmt.Errorf("%w: %v", ErrDeclined, err)
	case err != nil:
		log.Info("choice declined: notification failed", "err", err)
		return -1, fmt.Errorf("%w: notification: %v", ErrDeclined, err)
	default:
		return -1, fmt.Errorf("%w: the notifier returned choice %d of %d", ErrDeclined, i, len(shown))
	}
}

// bodyLines sanitises each line of untrusted multi-line text, dropping
// empty lines, and caps the result.
func bodyLines(s string) string {
	var out []string
	n := 0
	for l := range strings.SplitSeq(s, "\n") {
		l = Sanitize(l, maxBodyRunes)
		if l == "" {
			continue
		}
		if n += len([]rune(l)); n > maxBodyRunes {
			break
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// maxChoiceTries is how many invalid answers TerminalPresence.Choose
// accepts before declining.
const maxChoiceTries = 3

// Choose prints title, body and the items numbered from 1, then reads a
// line: a number in range chooses that item. An empty line, "q", end of
// input (Ctrl-D) or maxChoiceTries invalid answers in a row (anything else,
// such as a number out of range) decline with ErrDeclined; after an invalid
// answer the question is asked again, as a new prompt, so lines typed ahead
// of the new question are discarded. Choose shares ConfirmPresence's rules:
// one prompt at a time, type-ahead flushed, and an answer typed for a
// cancelled prompt, or while no prompt was shown, discarded.
func (t *TerminalPresence) Choose(ctx context.Context, title, body string, items []string) (int, error) {
	if t.In == nil || t.Out == nil {
		return -1, fmt.Errorf("%w: terminal presence has no terminal (In or Out is nil)", ErrDeclined)
	}
	if len(items) == 0 {
		return -1, fmt.Errorf("%w: nothing to choose from", ErrDeclined)
	}
	t.once.Do(t.start)
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	defer func() { <-t.sem }()
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	select {
	case <-t.done:
		return -1, fmt.Errorf("%w: terminal input: %v", ErrDeclined, t.readErr)
	default:
	}
	log := logger(t.Logger)
	defer t.active.Store(0)

	var b strings.Builder
	fmt.Fprintf(&b, "\nauthd: %s\n", Sanitize(title, maxTitleRunes))
	if s := bodyLines(body); s != "" {
		b.WriteString(s + "\n")
	}
	for i, it := range items {
		fmt.Fprintf(&b, "  %d) %s\n", i+1, Sanitize(it, maxItemRunes))
	}
	question := fmt.Sprintf("Choose 1-%d (empty to cancel): ", len(items))
	b.WriteString(question)
	prompt := b.String()

	for try := 1; ; try++ {
		t.gen++
		gen := t.gen
		flushTypeahead(t.In) // before activating, so older keystrokes cannot answer
		t.active.Store(gen)
		if _, err := fmt.Fprint(t.Out, prompt); err != nil {
			return -1, fmt.Errorf("%w: write prompt: %v", ErrDeclined, err)
		}
		prompt = fmt.Sprintf("Not a choice. Enter a number from 1 to %d, or an empty line to cancel: ", len(items))

		var text string
	wait:
		for {
			select {
			case l := <-t.lines:
				if l.gen != gen {
					log.Debug("discarding terminal input typed for an earlier prompt")
					continue
				}
				text = strings.TrimSpace(l.text)
				break wait
			case <-t.done:
				fmt.Fprintln(t.Out)
				return -1, fmt.Errorf("%w: terminal input: %v", ErrDeclined, t.readErr)
			case <-ctx.Done():
				// Deactivate before printing, so an answer to "(cancelled)" is stale.
				t.active.Store(0)
				fmt.Fprintln(t.Out, "(cancelled)")
				log.Info("terminal choice cancelled", "err", ctx.Err())
				return -1, ctx.Err()
			}
		}
		if text == "" || strings.EqualFold(text, "q") {
			fmt.Fprintln(t.Out, "Cancelled.")
			log.Info("choice declined on terminal")
			return -1, fmt.Errorf("%w: no choice made on the terminal", ErrDeclined)
		}
		if n, err := strconv.Atoi(text); err == nil && n >= 1 && n <= len(items) {
			log.Info("choice made on terminal", "index", n-1)
			return n - 1, nil
		}
		if try == maxChoiceTries {
			fmt.Fprintln(t.Out, "Declined.")
			log.Info("choice declined on terminal: too many invalid answers")
			return -1, fmt.Errorf("%w: %d invalid answers on the terminal", ErrDeclined, try)
		}
		t.active.Store(0) // the next question is a new prompt
	}
}
