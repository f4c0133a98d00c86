package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/authd/authd/internal/nmhost"
)

const browserUsage = `usage: authctl browser install [--extension-id ID ...] [--firefox-id ID ...]
                               [--host PATH] [--dir DIR ...]
       authctl browser uninstall [--dir DIR ...]

install writes the native-messaging host manifest org.authd.nmhost.json for
Chromium, Google Chrome and Firefox (user-level locations) and the host's
allow-list ($XDG_CONFIG_HOME/authd/nmhost.json), so authd's browser extension
can start authd-nmhost.

  --extension-id ID  Chromium extension ID allowed to use the host (repeatable;
                     default: the ID pinned by the extension's key)
  --firefox-id ID    Firefox extension ID (repeatable; default: ` + nmhost.DefaultFirefoxID + `)
  --host PATH        the authd-nmhost binary (default: on PATH, else next to authctl)
  --dir DIR          also write the Chromium manifest into DIR, e.g.
                     <user-data-dir>/NativeMessagingHosts for a browser started
                     with --user-data-dir (Chromium reads only that profile's dir)
`

// manifest is a native-messaging host manifest.
type manifest struct {
	Name              string   `json:"name"`
	Description       string   `json:"description"`
	Path              string   `json:"path"`
	Type              string   `json:"type"`
	AllowedOrigins    []string `json:"allowed_origins,omitempty"`
	AllowedExtensions []string `json:"allowed_extensions,omitempty"`
}

// manifestLoc is one place a browser reads host manifests from.
type manifestLoc struct {
	Browser string
	Dir     string
	Firefox bool
}

func (l manifestLoc) path() string { return filepath.Join(l.Dir, nmhost.HostName+".json") }

// manifestLocs lists the user-level manifest directories: Chromium and
// Google Chrome under $XDG_CONFIG_HOME (default ~/.config), Firefox under
// ~/.mozilla, plus extra Chromium directories.
func manifestLocs(extra []string) ([]manifestLoc, error) {
	home, _ := os.UserHomeDir()
	config := os.Getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(config) {
		if home == "" {
			return nil, errors.New("neither $XDG_CONFIG_HOME nor $HOME is set")
		}
		config = filepath.Join(home, ".config")
	}
	if home == "" {
		return nil, errors.New("$HOME is not set")
	}
	locs := []manifestLoc{
		{"Chromium", filepath.Join(config, "chromium", "NativeMessagingHosts"), false},
		{"Google Chrome", filepath.Join(config, "google-chrome", "NativeMessagingHosts"), false},
		{"Firefox", filepath.Join(home, ".mozilla", "native-messaging-hosts"), true},
	}
	for _, d := range extra {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, err
		}
		locs = append(locs, manifestLoc{"Chromium (" + abs + ")", abs, false})
	}
	return locs, nil
}

// browserArgs are the options of `authctl browser`.
type browserArgs struct {
	sub        string
	extIDs     []string
	firefoxIDs []string
	host       string
	dirs       []string
}

func parseBrowserArgs(args []string) (browserArgs, error) {
	var b browserArgs
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		switch name {
		case "--extension-id", "--firefox-id", "--host", "--dir":
			if !hasVal {
				if i+1 >= len(args) {
					return b, fmt.Errorf("%s needs a value", name)
				}
				i++
				val = args[i]
			}
			switch name {
			case "--extension-id":
				if !nmhost.ValidExtensionID(val) {
					return b, fmt.Errorf("%q is not a Chromium extension ID (32 letters a-p, see chrome://extensions)", val)
				}
				b.extIDs = append(b.extIDs, val)
			case "--firefox-id":
				b.firefoxIDs = append(b.firefoxIDs, val)
			case "--host":
				b.host = val
			case "--dir":
				b.dirs = append(b.dirs, val)
			}
		default:
			if strings.HasPrefix(a, "-") || b.sub != "" {
				return b, fmt.Errorf("unexpected argument %s", a)
			}
			b.sub = a
		}
	}
	switch b.sub {
	case "install":
	case "uninstall":
		if len(b.extIDs)+len(b.firefoxIDs) > 0 || b.host != "" {
			return b, errors.New("uninstall takes only --dir")
		}
	case "":
		return b, errors.New("browser needs install or uninstall")
	default:
		return b, fmt.Errorf("unknown browser command %q", b.sub)
	}
	return b, nil
}

// browser runs `authctl browser ...`.
func (c *cli) browser(args []string) int {
	for _, a := range args {
		if a == "-h" || a == "--help" {
			fmt.Fprint(c.stdout, browserUsage)
			return exitOK
		}
	}
	b, err := parseBrowserArgs(args)
	if err != nil {
		fmt.Fprintf(c.stderr, "authctl: %v\n\n%s", err, browserUsage)
		return exitUsage
	}
	if b.sub == "uninstall" {
		return c.browserUninstall(b)
	}
	return c.browserInstall(b)
}

// hostPath finds authd-nmhost: --host, else on PATH, else next to authctl.
func (c *cli) hostPath(flag string) (string, error) {
	return c.findProgram(flag, "authd-nmhost", "--host")
}

func (c *cli) browserInstall(b browserArgs) int {
	host, err := c.hostPath(b.host)
	if err != nil {
		return c.fail("browser install", err)
	}
	if len(b.extIDs) == 0 {
		b.extIDs = []string{nmhost.DefaultExtensionID}
	}
	if len(b.firefoxIDs) == 0 {
		b.firefoxIDs = []string{nmhost.DefaultFirefoxID}
	}
	var origins []string
	for _, id := range b.extIDs {
		origins = append(origins, nmhost.ChromeOrigin(id))
	}
	locs, err := manifestLocs(b.dirs)
	if err != nil {
		return c.fail("browser install", err)
	}
	for _, l := range locs {
		m := manifest{Name: nmhost.HostName, Description: "authd passkeys (FIDO2 platform authenticator)", Path: host, Type: "stdio"}
		if l.Firefox {
			m.AllowedExtensions = b.firefoxIDs
		} else {
			m.AllowedOrigins = origins
		}
		data, _ := json.MarshalIndent(m, "", "  ")
		if err := writeFile(l.path(), append(data, '\n')); err != nil {
			return c.fail("browser install", err)
		}
		fmt.Fprintf(c.stdout, "wrote %s (%s)\n", l.path(), l.Browser)
	}
	cfgPath, err := nmhost.ConfigPath(os.Getenv)
	if err != nil {
		return c.fail("browser install", err)
	}
	data, _ := json.MarshalIndent(nmhost.Config{AllowedOrigins: origins, AllowedExtensions: b.firefoxIDs}, "", "  ")
	if err := writeFile(cfgPath, append(data, '\n')); err != nil {
		return c.fail("browser install", err)
	}
	fmt.Fprintf(c.stdout, "wrote %s (the host's allow-list)\n", cfgPath)
	fmt.Fprintf(c.stdout, "The extension (%s) can now start %s. Check with: authctl doctor\n", strings.Join(origins, " "), host)
	return exitOK
}

func (c *cli) browserUninstall(b browserArgs) int {
	locs, err := manifestLocs(b.dirs)
	if err != nil {
		return c.fail("browser uninstall", err)
	}
	paths := make([]string, 0, len(locs)+1)
	for _, l := range locs {
		paths = append(paths, l.path())
	}
	if cfg, err := nmhost.ConfigPath(os.Getenv); err == nil {
		paths = append(paths, cfg)
	}
	failed := false
	for _, p := range paths {
		switch err := os.Remove(p); {
		case err == nil:
			fmt.Fprintf(c.stdout, "removed %s\n", p)
		case errors.Is(err, fs.ErrNotExist):
		default:
			fmt.Fprintf(c.stderr, "authctl: browser uninstall: %v\n", err)
			failed = true
		}
	}
	if failed {
		return exitFail
	}
	return exitOK
}

// doctorBrowser checks, for each browser, the user-level host manifest
// (there, valid, pointing to an executable host, allowing authd's
// extension) and then starts that host the way the browser does and asks
// it for authd's status, which shows whether it reaches authd on the bus.
func (c *cli) doctorBrowser(report reporter) {
	locs, err := manifestLocs(nil)
	if err != nil {
		report("info", "browser host", "%v", err)
		return
	}
	for _, l := range locs {
		what := "NM " + l.Browser
		b, err := os.ReadFile(l.path())
		if errors.Is(err, fs.ErrNotExist) {
			report("info", what, "%s not installed (run `authctl browser install`)", l.path())
			continue
		}
		var m manifest
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			report("FAIL", what, "%s: %v: run `authctl browser install` again", l.path(), err)
			continue
		}
		if problem := checkManifest(m, l); problem != "" {
			report("FAIL", what, "%s: %s: run `authctl browser install` again", l.path(), problem)
			continue
		}
		caller, allowed := authdCaller(m, l)
		if allowed {
			report("ok", what, "%s → %s (allows %s)", l.path(), m.Path, caller)
		} else {
			// A manifest for other builds of the extension only: authd's own
			// cannot start the host. Probe with what it allows.
			report("warn", what, "%s allows %s but not authd's extension %s: run `authctl browser install` (with --extension-id/--firefox-id for your other builds)",
				l.path(), strings.Join(append(m.AllowedOrigins, m.AllowedExtensions...), " "), authdExtension(l))
		}
		args := []string{caller}
		if l.Firefox {
			// Firefox starts a host as HOST MANIFEST-PATH EXTENSION-ID.
			args = []string{l.path(), caller}
		}
		hostWhat := "host " + l.Browser
		rep, stderr, err := c.probeHost(m.Path, args)
		switch {
		case err != nil:
			report("FAIL", hostWhat, "%s %s: %v%s", m.Path, strings.Join(args, " "), err, lastLine(stderr))
		case rep.OK:
			report("ok", hostWhat, "answers, and reaches authd (status request)")
		case rep.Error != nil && rep.Error.Name == nmhost.NotReachable:
			report("warn", hostWhat, "answers, but cannot reach authd: %s (the extension falls back to the browser's own WebAuthn)", rep.Error.Message)
		default:
			report("FAIL", hostWhat, "answers status with an error: %s: %s", rep.Error.Name, rep.Error.Message)
		}
	}
}

// authdExtension is how the browser of l names authd's extension.
func authdExtension(l manifestLoc) string {
	if l.Firefox {
		return nmhost.DefaultFirefoxID
	}
	return nmhost.ChromeOrigin(nmhost.DefaultExtensionID)
}

// authdCaller returns the caller to probe the host with: authd's extension
// when m allows it (true), else the first extension m allows (false).
func authdCaller(m manifest, l manifestLoc) (string, bool) {
	allowed := m.AllowedOrigins
	if l.Firefox {
		allowed = m.AllowedExtensions
	}
	want := authdExtension(l)
	for _, a := range allowed {
		if a == want {
			return a, true
		}
	}
	return allowed[0], false
}

// checkManifest returns what is wrong with m ("" when nothing), following
// what Chromium rejects with "Specified native messaging host not found"
// and what Firefox's manifest schema requires.
func checkManifest(m manifest, l manifestLoc) string {
	switch {
	case m.Name != nmhost.HostName:
		return fmt.Sprintf("name %q differs from the file name", m.Name)
	case m.Type != "stdio":
		return fmt.Sprintf("type %q is not stdio", m.Type)
	case !filepath.IsAbs(m.Path):
		return fmt.Sprintf("path %q is not absolute", m.Path)
	}
	if fi, err := os.Stat(m.Path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Sprintf("the host %s is missing or not executable", m.Path)
	}
	if l.Firefox {
		if len(m.AllowedExtensions) == 0 {
			return "no allowed_extensions"
		}
		return ""
	}
	if len(m.AllowedOrigins) == 0 {
		return "no allowed_origins"
	}
	for _, o := range m.AllowedOrigins {
		id, ok := strings.CutPrefix(o, "chrome-extension://")
		if !ok || !strings.HasSuffix(id, "/") || !nmhost.ValidExtensionID(strings.TrimSuffix(id, "/")) {
			return fmt.Sprintf("allowed origin %q is not chrome-extension://ID/ (trailing slash, no wildcard)", o)
		}
	}
	return ""
}

// probeHost starts the host as a browser does (argv, cwd = its directory,
// stdio pipes, inherited environment; --bus becomes its session bus) and
// sends one status request.
func (c *cli) probeHost(path string, args []string) (nmhost.Reply, string, error) {
	var rep nmhost.Reply
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = filepath.Dir(path)
	cmd.Env = os.Environ()
	if c.bus != "" {
		cmd.Env = append(cmd.Env, "DBUS_SESSION_BUS_ADDRESS="+c.bus)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return rep, "", err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return rep, "", err
	}
	if err := cmd.Start(); err != nil {
		return rep, "", err
	}
	defer cmd.Wait()
	defer in.Close()
	if err := nmhost.WriteFrame(in, []byte(`{"id":"authctl-doctor","type":"status"}`)); err != nil {
		return rep, "", fmt.Errorf("the host did not read its request: %v", err)
	}
	msg, err := nmhost.ReadFrame(bufio.NewReader(out), nmhost.ReplyLimit)
	if err != nil {
		in.Close()
		cmd.Wait()
		if err == io.EOF || err == nmhost.ErrTruncated {
			err = fmt.Errorf("the host exited without answering (%v)", cmd.ProcessState)
		}
		return rep, stderr.String(), err
	}
	if err := json.Unmarshal(msg, &rep); err != nil {
		return rep, "", fmt.Errorf("the host answered %q: %v", msg, err)
	}
	return rep, "", nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return " (host says: " + s + ")"
}
