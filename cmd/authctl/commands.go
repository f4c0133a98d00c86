package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/godbus/dbus/v5"

	dbusapi "github.com/authd/authd/ipc/dbus"
)

var lookPath = exec.LookPath

func (c *cli) printJSON(v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return c.fail("json", err)
	}
	fmt.Fprintf(c.stdout, "%s\n", b)
	return exitOK
}

func (c *cli) status() int {
	var st map[string]dbus.Variant
	if err := c.call("GetStatus").Store(&st); err != nil {
		return c.fail("status", err)
	}
	if c.json {
		return c.printJSON(dbusapi.Plain(st))
	}
	lines := map[string]string{}
	flatten("", st, lines)
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, k := range sortedKeys(lines) {
		fmt.Fprintf(tw, "%s:\t%s\n", k, lines[k])
	}
	tw.Flush()
	return exitOK
}

func (c *cli) info() int {
	var caps map[string]dbus.Variant
	if err := c.call("GetCapabilities").Store(&caps); err != nil {
		return c.fail("info", err)
	}
	if c.json {
		return c.printJSON(dbusapi.Plain(caps))
	}
	lines := map[string]string{}
	flatten("", caps, lines)
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, k := range sortedKeys(lines) {
		fmt.Fprintf(tw, "%s\t%s\n", k, lines[k])
	}
	tw.Flush()
	return exitOK
}

// cred is one ListCredentials entry.
type cred struct {
	ID, RPID, RPName, User, Display, Backend string
	Created, LastUsed                        int64
	Discoverable, Protected                  bool
}

func toCred(m map[string]dbus.Variant) cred {
	str := func(k string) string { s, _ := m[k].Value().(string); return s }
	num := func(k string) int64 { n, _ := m[k].Value().(int64); return n }
	flag := func(k string) bool { b, _ := m[k].Value().(bool); return b }
	return cred{ID: str("id"), RPID: str("rp_id"), RPName: str("rp_name"), User: str("user_name"),
		Display: str("user_display_name"), Backend: str("backend"), Created: num("created"),
		LastUsed: num("last_used"), Discoverable: flag("discoverable"), Protected: flag("protected")}
}

func (c *cli) listRaw(filter string) ([]map[string]dbus.Variant, error) {
	var list []map[string]dbus.Variant
	err := c.call("ListCredentials", filter).Store(&list)
	return list, err
}

// shortIDs returns the shortest prefix length (from 10) that keeps the IDs
// of creds distinct.
func shortIDs(creds []cred) int {
	for n := 10; ; n += 4 {
		seen := map[string]bool{}
		dup, longest := false, 0
		for _, c := range creds {
			p := c.ID
			if len(p) > n {
				p = p[:n]
			}
			longest = max(longest, len(c.ID))
			if seen[p] {
				dup = true
			}
			seen[p] = true
		}
		if !dup || n >= longest {
			return n
		}
	}
}

func (c *cli) date(unix int64) string {
	if unix == 0 {
		return "never"
	}
	return time.Unix(unix, 0).In(c.loc).Format("2006-01-02 15:04")
}

func (c *cli) list(filter string) int {
	raw, err := c.listRaw(filter)
	if err != nil {
		return c.fail("list", err)
	}
	if c.json {
		out := make([]any, len(raw))
		for i, m := range raw {
			out[i] = dbusapi.Plain(m)
		}
		return c.printJSON(out)
	}
	if len(raw) == 0 {
		if filter != "" {
			fmt.Fprintf(c.stdout, "No passkeys match %q.\n", filter)
		} else {
			fmt.Fprintln(c.stdout, "No passkeys.")
		}
		return exitOK
	}
	creds := make([]cred, len(raw))
	for i, m := range raw {
		creds[i] = toCred(m)
	}
	n := shortIDs(creds)
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRP\tUSER\tCREATED\tLAST USED\tBACKEND\tPROTECTED")
	for _, cr := range creds {
		id := cr.ID
		if len(id) > n {
			id = id[:n]
		}
		user := cr.User
		if cr.Display != "" && cr.Display != cr.User {
			user += " (" + cr.Display + ")"
		}
		prot := ""
		if cr.Protected {
			prot = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, cr.RPID, user, c.date(cr.Created), c.date(cr.LastUsed), cr.Backend, prot)
	}
	tw.Flush()
	return exitOK
}

// resolve finds the passkey with id, or the only one whose id starts with
// it. It returns ok=false after printing why when that fails.
func (c *cli) resolve(what, id string) (cred, bool) {
	raw, err := c.listRaw("")
	if err != nil {
		c.fail(what, err)
		return cred{}, false
	}
	var matches []cred
	for _, m := range raw {
		cr := toCred(m)
		if cr.ID == id || cr.ID == strings.TrimRight(id, "=") {
			return cr, true
		}
		if strings.HasPrefix(cr.ID, id) {
			matches = append(matches, cr)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], true
	case 0:
		fmt.Fprintf(c.stderr, "authctl: %s: no passkey has the ID %q\nhint: `authctl list` shows the IDs (a unique prefix is enough)\n", what, id)
	default:
		fmt.Fprintf(c.stderr, "authctl: %s: %q matches %d passkeys:\n", what, id, len(matches))
		for _, m := range matches {
			fmt.Fprintf(c.stderr, "  %s  %s  %s\n", m.ID, m.RPID, m.User)
		}
		fmt.Fprintln(c.stderr, "hint: give more of the ID")
	}
	return cred{}, false
}

func describe(cr cred) string {
	return fmt.Sprintf("%s (%s)", cr.RPID, cr.User)
}

func (c *cli) delete(id string) int {
	cr, ok := c.resolve("delete", id)
	if !ok {
		return exitFail
	}
	if err := c.call("DeleteCredential", cr.ID).Err; err != nil {
		code := c.fail("delete "+describe(cr), err)
		if name, _, _ := dbusError(err); cr.Protected && name != "org.freedesktop.DBus.Error.AccessDenied" {
			fmt.Fprintf(c.stderr, "hint: this passkey is protected; to delete it, run `authctl unprotect %s` first\n", cr.ID)
		}
		return code
	}
	fmt.Fprintf(c.stdout, "Deleted the passkey for %s.\n", describe(cr))
	return exitOK
}

func (c *cli) protect(id string, on bool) int {
	verb := map[bool]string{true: "protect", false: "unprotect"}[on]
	cr, ok := c.resolve(verb, id)
	if !ok {
		return exitFail
	}
	if err := c.call("SetProtected", cr.ID, on).Err; err != nil {
		return c.fail(verb+" "+describe(cr), err)
	}
	if on {
		fmt.Fprintf(c.stdout, "The passkey for %s is protected: it cannot be deleted until you unprotect it.\n", describe(cr))
	} else {
		fmt.Fprintf(c.stdout, "The passkey for %s is no longer protected.\n", describe(cr))
	}
	return exitOK
}

func (c *cli) pin(op string) int {
	method, done := "SetPIN", "PIN set."
	if op == "change" {
		method, done = "ChangePIN", "PIN changed."
	}
	fmt.Fprintln(c.stderr, "authd will ask for the PIN in its own prompt (PINs never pass through authctl).")
	if err := c.longCall(method); err != nil {
		return c.fail("pin "+op, err)
	}
	fmt.Fprintln(c.stdout, done)
	return exitOK
}

func (c *cli) reset() int {
	fmt.Fprintln(c.stderr, "Reset erases every passkey and the PIN. authd will ask you to confirm.")
	if err := c.longCall("Reset"); err != nil {
		return c.fail("reset", err)
	}
	fmt.Fprintln(c.stdout, "authd was reset: every passkey and the PIN are gone.")
	return exitOK
}
