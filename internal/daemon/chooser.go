package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/authd/authd/ctap2"
	"github.com/authd/authd/ipc/webauthn"
	"github.com/authd/authd/uv"
)

// accountChooser is the WebAuthn client's AccountChooser: when several
// passkeys match a sign-in, it asks the user which account to use through
// the configured presence method, if that can show a choice (uv.Chooser:
// notify, terminal). Otherwise the first account (the most recently
// created) is used, as without a chooser, and a debug line says so.
//
// Without user verification the authenticator returns only the user id of
// each account (CTAP 2.1 §6.2.2), so names missing from the accounts are
// looked up in the store by credential id: the choice is authd's own
// prompt to the local user, and the names never reach the caller.
type accountChooser struct {
	presence ctap2.Presence
	log      *slog.Logger
	// names returns the user name and display name stored for a
	// credential id, or "" for unknown ones; nil looks nothing up.
	names func(credentialID []byte) (name, displayName string)
}

// maxRPIDRunes bounds the relying party ID in the choice's title (a domain
// name has at most 253 characters).
const maxRPIDRunes = 253

func (a accountChooser) ChooseAccount(ctx context.Context, rpID string, accounts []webauthn.Account) (int, error) {
	c, ok := a.presence.(uv.Chooser)
	if !ok {
		a.log.Debug("daemon: several accounts match; the presence method cannot show a choice, so the first account was used",
			"rp", uv.Sanitize(rpID, maxRPIDRunes), "accounts", len(accounts))
		return 0, nil
	}
	items := make([]string, len(accounts))
	for i, acc := range accounts {
		if acc.Name == "" && acc.DisplayName == "" && a.names != nil {
			acc.Name, acc.DisplayName = a.names(acc.CredentialID)
		}
		items[i] = accountLabel(acc, i)
	}
	title := "Choose an account for " + uv.Sanitize(rpID, maxRPIDRunes)
	body := fmt.Sprintf("%d passkeys for this site match. Which account do you want to sign in with?", len(accounts))
	i, err := c.Choose(ctx, title, body, items)
	if err != nil {
		return -1, err
	}
	if i < 0 || i >= len(accounts) {
		return -1, fmt.Errorf("daemon: the presence method chose account %d of %d", i, len(accounts))
	}
	return i, nil
}

// accountLabel is "name (displayName)", or whichever of the two is set (once
// when they are equal), or "account N" when neither is. The presence method
// sanitises it.
func accountLabel(acc webauthn.Account, i int) string {
	switch {
	case acc.Name != "" && acc.DisplayName != "" && acc.Name != acc.DisplayName:
		return acc.Name + " (" + acc.DisplayName + ")"
	case acc.Name != "":
		return acc.Name
	case acc.DisplayName != "":
		return acc.DisplayName
	}
	return fmt.Sprintf("account %d", i+1)
}

// storedNames returns the user name and display name stored for credential
// id, or "" when it cannot be read.
func (d *Daemon) storedNames(id []byte) (name, displayName string) {
	c, err := d.store.Get(id)
	if err != nil || c == nil {
		return "", ""
	}
	return c.UserName, c.UserDisplayName
}
