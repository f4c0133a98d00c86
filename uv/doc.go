// Package uv talks to people: it asks the human at the machine whether an
// authenticator operation may go ahead.
//
// CTAP 2.1 §6.1 (authenticatorMakeCredential) and §6.2
// (authenticatorGetAssertion) require "user presence": evidence that a person,
// not just software, approved the operation. A hardware key gets it from a
// touch; authd, being software, gets it from one of the Presence modes here:
//
//   - TerminalPresence asks on a terminal and reads "y" or "n", for a daemon
//     started interactively.
//   - CommandPresence runs a helper program (a desktop dialog, a
//     notification, a fingerprint check...) whose exit status is the answer,
//     for a daemon started by a service manager.
//   - AutoPresence picks notifications, pinentry or the terminal at every
//     prompt, and waits for a session when nobody can be asked yet.
//   - DenyPresence declines everything and says how to configure presence.
//   - AllowPresence approves everything, for automated tests only: with it
//     any local process can use every credential silently.
//
// Presence modes that can show something without asking are also an
// Informer: while a fingerprint scan waits, the daemon tells the user what
// for (VerifyText), best effort.
//
// ParsePresence turns the --presence flag into one of them. Message renders
// the question asked, sanitising the website-supplied relying party ID and
// user name so that a remote site cannot inject terminal escapes.
//
// uv imports no other authd package; its Presence interface has the same
// method set as the one the CTAP2 engine consumes.
package uv

import "context"

// Presence confirms that the user is present and consents.
//
// ConfirmPresence returns nil if the user approved, ctx.Err() if ctx was
// cancelled or its deadline passed, and any other error if the user declined.
// op is one of the Op constants; rpID and userName may be empty.
type Presence interface {
	ConfirmPresence(ctx context.Context, op, rpID, userName string) error
}

// Operations passed as op to ConfirmPresence by the CTAP2 engine.
const (
	OpMakeCredential     = "makeCredential"
	OpGetAssertion       = "getAssertion"
	OpReset              = "reset"
	OpSelection          = "selection"
	OpCredentialExcluded = "credentialExcluded"
)
