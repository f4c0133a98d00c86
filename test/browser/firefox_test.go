package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// firefoxUUID is the internal UUID the test profile gives the extension
// (pref extensions.webextensions.uuids), so its pages have a known
// moz-extension:// URL.
const firefoxUUID = "6b1e1a5e-7d6c-4f2a-9a51-a0d1c0ffee01"

// firefoxPrefs are the profile's user.js: Marionette on a chosen port, no
// first-run pages, updates, telemetry or background traffic; virtual
// WebAuthn authenticators (the softtoken) for the fallback phase.
func firefoxPrefs(port int) string {
	prefs := map[string]any{
		"marionette.port":                            port,
		"extensions.webextensions.uuids":             fmt.Sprintf(`{"passkeys@authd.org":"%s"}`, firefoxUUID),
		"browser.shell.checkDefaultBrowser":          false,
		"browser.startup.page":                       0,
		"browser.startup.homepage_override.mstone":   "ignore",
		"browser.aboutwelcome.enabled":               false,
		"app.update.disabledForTesting":              true,
		"app.update.auto":                            false,
		"app.normandy.enabled":                       false,
		"datareporting.policy.dataSubmissionEnabled": false,
		"datareporting.healthreport.uploadEnabled":   false,
		"toolkit.telemetry.reportingpolicy.firstRun": false,
		"extensions.update.enabled":                  false,
		"extensions.getAddons.cache.enabled":         false,
		"network.captive-portal-service.enabled":     false,
		"network.connectivity-service.enabled":       false,
		"browser.safebrowsing.update.enabled":        false,
		"services.settings.server":                   "data:,#remote-settings-dummy/v1",
		"security.webauth.webauthn_enable_softtoken": true,
		"security.webauth.webauthn_enable_usbtoken":  false,
		"toolkit.startup.max_resumed_crashes":        -1,
		// Short, so that the test sees the event page outlive it.
		"extensions.background.idle.timeout": 1000,
	}
	var b strings.Builder
	for k, v := range prefs {
		switch x := v.(type) {
		case string:
			fmt.Fprintf(&b, "user_pref(%q, %q);\n", k, x)
		default:
			fmt.Fprintf(&b, "user_pref(%q, %v);\n", k, x)
		}
	}
	return b.String()
}

// startFirefox starts headless firefox-esr on a fresh profile and returns a
// Marionette session on it.
func startFirefox(t *testing.T, s *stack, firefox string) *marionette {
	t.Helper()
	profile := filepath.Join(s.tmp, "ff-profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs(port)), 0o600); err != nil {
		t.Fatal(err)
	}
	// -remote-allow-system-access: the chrome context, to open the
	// extension's page in a tab (web content cannot navigate there).
	ff := exec.Command(firefox, "--headless", "--marionette", "-remote-allow-system-access", "--no-remote", "--profile", profile)
	ff.Env = append(s.env, "MOZ_HEADLESS=1", "MOZ_HEADLESS_WIDTH=900", "MOZ_HEADLESS_HEIGHT=700", "TMPDIR="+s.tmp, "MOZ_CRASHREPORTER_DISABLE=1")
	start(t, "firefox", ff)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := dialMarionette(ctx, fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Ask Firefox to quit; start's cleanup waits for it (and kills it
		// if it does not).
		m.call(5*time.Second, "Marionette:Quit", map[string]any{"flags": []string{"eForceQuit"}}, nil)
		m.Close()
	})
	if err := m.newSession(); err != nil {
		t.Fatal(err)
	}
	return m
}

// ff is a Firefox session in a test: Marionette plus the checks' helpers.
type ff struct {
	*marionette
	t   *testing.T
	s   *stack
	t0  time.Time
	ext string // moz-extension://UUID/
	// WebDriver handles of the demo RP's tab and of the management page's
	// tab (once opened).
	page, mgmt string
}

func (f *ff) logf(format string, args ...any) {
	f.t.Helper()
	f.t.Logf("[%4.1fs] "+format, append([]any{time.Since(f.t0).Seconds()}, args...)...)
}

func (f *ff) check(ok bool, format string, args ...any) {
	f.t.Helper()
	if !ok {
		f.shot("failure")
		f.t.Fatalf("FAILED: "+format, args...)
	}
	f.logf("ok: "+format, args...)
}

func (f *ff) must(err error) {
	f.t.Helper()
	if err != nil {
		f.shot("failure")
		f.t.Fatal(err)
	}
}

// shot writes test-artifacts/firefox-NAME.png.
func (f *ff) shot(name string) {
	png, err := f.screenshot()
	if err != nil {
		f.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(f.s.artifacts, "firefox-"+name+".png"), png, 0o644); err != nil {
		f.t.Logf("screenshot %s: %v", name, err)
	}
}

// status waits for the demo RP's #status to settle and returns "ok: text"
// or "error: text".
func (f *ff) status(want string) string {
	f.t.Helper()
	st, err := f.waitFor(20*time.Second, "the demo RP's status",
		`const e = document.getElementById("status"); return e && ["ok", "error"].includes(e.dataset.state) ? e.dataset.state + ": " + e.textContent : "";`)
	f.must(err)
	f.logf("status: %s", st)
	if want != "" {
		f.check(strings.HasPrefix(st, want+": "), "#status is %s (%s)", want, st)
	}
	return st
}

func (f *ff) text(css string) string {
	f.t.Helper()
	var s string
	f.must(f.exec(`const e = document.querySelector(arguments[0]); return e ? e.textContent : null;`, &s, css))
	return s
}

func (f *ff) signOut() {
	f.t.Helper()
	f.must(f.execAsync(10*time.Second, `const done = arguments[arguments.length - 1];
		fetch("/logout", { method: "POST", credentials: "same-origin" }).then(() => done(true), (e) => done(String(e)));`, nil))
	f.must(f.navigate(f.s.rpURL))
}

// pageAsync runs an async function body in the page (Marionette's default
// sandbox sees the page's own navigator.credentials, i.e. the extension's
// MAIN-world wrapper) and decodes what it returns.
func (f *ff) pageAsync(body string, out any) {
	f.t.Helper()
	f.must(f.execAsync(20*time.Second, `const done = arguments[arguments.length - 1];
		(async () => {`+body+`})().then(done, (e) => done({ thrown: String(e && e.stack || e) }));`, out))
}

// virtualAuthenticator adds a WebDriver virtual authenticator: Firefox's
// own WebAuthn path, which the extension must fall back to.
func (f *ff) virtualAuthenticator(transport string) string {
	f.t.Helper()
	var id string
	f.must(f.call(cmdTimeout, "WebAuthn:AddVirtualAuthenticator", map[string]any{
		"protocol": "ctap2", "transport": transport, "hasResidentKey": true, "hasUserVerification": true,
		"isUserConsenting": true, "isUserVerified": true}, &id))
	return id
}

type virtualCred struct {
	CredentialID         string `json:"credentialId"`
	RPID                 string `json:"rpId"`
	IsResidentCredential bool   `json:"isResidentCredential"`
	SignCount            int    `json:"signCount"`
}

func (f *ff) virtualCreds(id string) []virtualCred {
	f.t.Helper()
	var creds []virtualCred
	f.must(f.call(cmdTimeout, "WebAuthn:GetCredentials", map[string]any{"authenticatorId": id}, &creds))
	return creds
}

// manage shows the extension's management page and returns its rows. Web
// content may not navigate to moz-extension:// URLs (neither may
// WebDriver:Navigate), so the first call opens it in a new tab from the
// browser chrome, as the toolbar button would; later calls reload it.
func (f *ff) manage() []string {
	f.t.Helper()
	if f.mgmt == "" {
		var before []string
		f.must(f.call(cmdTimeout, "WebDriver:GetWindowHandles", nil, &before))
		f.must(f.setContext("chrome"))
		f.must(f.exec(`const w = Services.wm.getMostRecentWindow("navigator:browser");
			w.gBrowser.selectedTab = w.gBrowser.addTab(arguments[0], { triggeringPrincipal: Services.scriptSecurityManager.getSystemPrincipal() });`,
			nil, f.ext+"options.html"))
		f.must(f.setContext("content"))
		var after []string
		f.must(f.call(cmdTimeout, "WebDriver:GetWindowHandles", nil, &after))
		f.check(len(after) == len(before)+1, "the management page opened in a new tab")
		f.page, f.mgmt = before[0], after[len(after)-1]
	}
	f.switchTo(f.mgmt)
	var url string
	f.must(f.call(cmdTimeout, "WebDriver:GetCurrentURL", nil, &url))
	if url == f.ext+"options.html" {
		f.must(f.call(cmdTimeout, "WebDriver:Refresh", nil, nil))
	}
	_, err := f.waitFor(15*time.Second, "the management page", `return location.href === arguments[0] && document.body && document.body.dataset.loaded || "";`, f.ext+"options.html")
	f.must(err)
	return f.rows()
}

// switchTo selects a tab by its WebDriver handle.
func (f *ff) switchTo(handle string) {
	f.t.Helper()
	f.must(f.call(cmdTimeout, "WebDriver:SwitchToWindow", map[string]any{"handle": handle, "focus": true}, nil))
}

func (f *ff) rows() []string {
	f.t.Helper()
	var rows []string
	f.must(f.exec(`return Array.from(document.querySelectorAll("#list li.passkey"), (e) => e.textContent);`, &rows))
	return rows
}

func anyContains(rows []string, s string) bool {
	for _, r := range rows {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// TestFirefoxExtension runs the extension in Debian's firefox-esr: the
// manifest's background "scripts" (an event page, as Firefox has no
// extension service workers), the MAIN-world content script, native
// messaging with the Firefox host manifest that `authctl browser install`
// writes under $HOME/.mozilla, the management page, and the fallback to
// Firefox's own WebAuthn (WebDriver virtual authenticators).
func TestFirefoxExtension(t *testing.T) {
	gate(t)
	firefox, err := exec.LookPath("firefox-esr")
	need(t, "firefox-esr", err == nil)
	s := newStack(t)
	// The Firefox manifest goes to $HOME/.mozilla/native-messaging-hosts;
	// HOME is the test's temp dir.
	out := s.authctl(t, "browser", "install", "--host", filepath.Join(s.bin, "authd-nmhost"))
	if !strings.Contains(out, filepath.Join(s.tmp, ".mozilla", "native-messaging-hosts", "org.authd.nmhost.json")) {
		t.Fatalf("authctl browser install did not write the Firefox manifest:\n%s", out)
	}

	f := &ff{marionette: startFirefox(t, s, firefox), t: t, s: s, t0: time.Now(), ext: "moz-extension://" + firefoxUUID + "/"}
	id, err := f.installTemporaryAddon(filepath.Join(s.root, "browser", "extension"))
	f.must(err)
	f.check(id == "passkeys@authd.org", "temporary add-on installed as %s (gecko id)", id)

	f.must(f.navigate(s.rpURL))
	var caps map[string]any
	f.pageAsync(`return { uvpaa: await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable(),
		cond: await PublicKeyCredential.isConditionalMediationAvailable(),
		caps: PublicKeyCredential.getClientCapabilities ? await PublicKeyCredential.getClientCapabilities() : null };`, &caps)
	f.logf("capabilities: %v", caps)
	f.check(caps["cond"] == false, "isConditionalMediationAvailable() is false")

	// Register.
	f.must(f.typeInto("#username", "alice"))
	f.must(f.click("#register"))
	f.status("ok")
	f.shot("1-registered")

	// The result looks like Firefox's own (a second, throwaway registration).
	var shape struct {
		PKC, Att, RawID, JSONID bool
		Transports              []string
		Ext, Attachment, Origin string
		Thrown                  string
	}
	f.pageAsync(`const rnd = (n) => crypto.getRandomValues(new Uint8Array(n));
		const c = await navigator.credentials.create({ publicKey: {
			challenge: rnd(32), rp: { id: "localhost", name: "shape" }, user: { id: rnd(16), name: "shape", displayName: "shape" },
			pubKeyCredParams: [{ type: "public-key", alg: -7 }], authenticatorSelection: { residentKey: "discouraged" } } });
		return { PKC: c instanceof window.PublicKeyCredential, Att: c.response instanceof window.AuthenticatorAttestationResponse,
			RawID: Object.prototype.toString.call(c.rawId) === "[object ArrayBuffer]", JSONID: c.toJSON().id === c.id,
			Transports: c.response.getTransports(), Ext: typeof c.getClientExtensionResults(), Attachment: c.authenticatorAttachment,
			Origin: JSON.parse(new TextDecoder().decode(c.response.clientDataJSON)).origin };`, &shape)
	f.check(shape.Thrown == "" && shape.PKC && shape.Att && shape.RawID && shape.JSONID && shape.Ext == "object" &&
		shape.Attachment == "platform" && len(shape.Transports) > 0, "genuine-looking PublicKeyCredential (%+v)", shape)
	f.check(shape.Origin == s.rpURL, "clientDataJSON origin %q is the page's origin (sender.origin)", shape.Origin)

	// Sign out, sign in with the discoverable passkey; the RP verifies it.
	f.signOut()
	f.must(f.click("#login"))
	f.status("ok")
	f.check(f.text("#user") == "alice", "signed in as alice (discoverable)")
	f.shot("2-signed-in")
	f.must(f.navigate(s.rpURL + "/me"))
	f.check(strings.Contains(f.text("#user"), "alice"), "/me shows alice")
	f.shot("3-me")

	// By username (allowCredentials), after the event page's idle timeout
	// (1 s in the test profile): the open native port keeps it alive.
	f.signOut()
	time.Sleep(2500 * time.Millisecond)
	var bg struct {
		State string
		Ports bool
	}
	f.must(f.setContext("chrome"))
	f.must(f.exec(`const e = WebExtensionPolicy.getByID("passkeys@authd.org").extension;
		return { State: String(e.backgroundState), Ports: !!(e.backgroundContext && e.backgroundContext.hasActiveNativeAppPorts) };`, &bg))
	f.must(f.setContext("content"))
	f.check(bg.State == "running" && bg.Ports, "the event page outlived its idle timeout with its native port open (%+v)", bg)
	f.must(f.typeInto("#username", "alice"))
	f.must(f.click("#login"))
	f.status("ok")
	f.check(f.text("#user") == "alice", "signed in as alice (by username)")

	// The user denies: NotAllowedError, a DOMException.
	f.must(os.WriteFile(s.denyFile, nil, 0o644))
	f.signOut()
	f.must(f.typeInto("#username", "alice"))
	f.must(f.click("#login"))
	f.status("error")
	var denied string
	f.pageAsync(`try { await navigator.credentials.get({ publicKey: { challenge: new Uint8Array(32), rpId: "localhost" } }); return "resolved"; }
		catch (e) { return e.name + " " + Object.prototype.toString.call(e); }`, &denied)
	f.check(denied == "NotAllowedError [object DOMException]", "direct get() rejects with %s", denied)
	f.shot("4-denied")
	f.must(os.Remove(s.denyFile))

	// AbortSignal rejects with AbortError.
	var aborted string
	f.pageAsync(`const ac = new AbortController();
		const p = navigator.credentials.get({ publicKey: { challenge: new Uint8Array(32), rpId: "localhost" }, signal: ac.signal });
		ac.abort();
		return await p.then(() => "resolved", (e) => e.name);`, &aborted)
	f.check(aborted == "AbortError", "aborted get() rejects with %s", aborted)

	// Two sign-ins wait for the user (authd prompts for one at a time, the
	// other waits its turn inside authd); aborting one cancels only that
	// one, and the other completes when the user approves.
	const requested = "daemon: sign-in requested"
	n := strings.Count(readLog(t, "authd"), requested)
	f.must(os.WriteFile(s.holdFile, nil, 0o644))
	f.must(f.exec(`const get = (signal) => navigator.credentials.get({ publicKey: { challenge: new Uint8Array(32), rpId: "localhost" }, signal });
		window.e2eAC = new AbortController();
		window.e2eAB = { a: "", b: "" };
		get(window.e2eAC.signal).then(() => "resolved", (e) => e.name).then((r) => { window.e2eAB.a = r; });
		get().then((c) => "resolved " + c.type, (e) => e.name).then((r) => { window.e2eAB.b = r; });`, nil))
	waitFor(t, "both sign-ins in authd", func() bool { return strings.Count(readLog(t, "authd"), requested) >= n+2 })
	waitFor(t, "a prompt", func() bool { b, _ := os.ReadFile(s.holdFile + ".waiting"); return len(b) > 0 })
	f.must(f.exec(`window.e2eAC.abort();`, nil))
	a, err := f.waitFor(10*time.Second, "the aborted sign-in", `return window.e2eAB.a;`)
	f.must(err)
	time.Sleep(300 * time.Millisecond) // room for a wrong cancel to reach the other one
	var b string
	f.must(f.exec(`return window.e2eAB.b;`, &b))
	f.check(a == "AbortError" && b == "", "aborting one of two sign-ins rejects it (%s) and leaves the other waiting (%q)", a, b)
	f.must(os.Remove(s.holdFile))
	b, err = f.waitFor(10*time.Second, "the other sign-in", `return window.e2eAB.b;`)
	f.must(err)
	f.check(b == "resolved public-key", "the other sign-in completes after the user approves (%s)", b)

	// The management page lists, filters and deletes.
	rows := f.manage()
	f.check(anyContains(rows, "alice") && anyContains(rows, "localhost"), "management page lists alice's passkey (%d rows)", len(rows))
	f.shot("5-manage")
	f.must(f.typeInto("#filter", "nobody-here"))
	f.check(len(f.rows()) == 0, "filter hides it")
	f.must(f.typeInto("#filter", "ALI"))
	rows = f.rows()
	f.check(len(rows) == 1 && strings.Contains(rows[0], "alice"), "filter shows it again")
	f.must(f.click("#list li.passkey .delete"))
	f.must(f.call(cmdTimeout, "WebDriver:AcceptAlert", nil, nil)) // "Delete the passkey for alice…?"
	_, err = f.waitFor(15*time.Second, "the deletion", `const m = document.getElementById("message");
		return m.dataset.state === "ok" && !Array.from(document.querySelectorAll("#list li.passkey")).some((e) => e.textContent.includes("alice")) ? m.textContent : "";`)
	f.must(err)
	f.must(f.typeInto("#filter", ""))
	f.check(!anyContains(f.rows(), "alice"), "delete removed alice's passkey")
	f.shot("6-manage-deleted")
	f.switchTo(f.page)
	f.must(f.navigate(s.rpURL))
	f.must(f.typeInto("#username", "alice"))
	f.must(f.click("#login"))
	f.status("error")

	// One host process served the whole authd phase: Firefox keeps an event
	// page with an open native port alive, and the port is reused.
	hosts := map[string]bool{}
	for _, m := range regexp.MustCompile(`pid=(\d+) exe=\S*/authd-nmhost`).FindAllStringSubmatch(readLog(t, "authd"), -1) {
		hosts[m[1]] = true
	}
	f.check(len(hosts) == 1, "one authd-nmhost process served every request (pids %v in authd's log)", hosts)

	// authd running, the page asks for a cross-platform authenticator:
	// Firefox's own WebAuthn answers (a virtual USB key), not authd.
	usb := f.virtualAuthenticator("usb")
	var xp struct{ ID, Attachment, Thrown string }
	f.pageAsync(`const rnd = (n) => crypto.getRandomValues(new Uint8Array(n));
		const c = await navigator.credentials.create({ publicKey: {
			challenge: rnd(32), rp: { id: "localhost", name: "xplat" }, user: { id: rnd(16), name: "carol-xplat", displayName: "carol-xplat" },
			pubKeyCredParams: [{ type: "public-key", alg: -7 }],
			authenticatorSelection: { authenticatorAttachment: "cross-platform", residentKey: "required", userVerification: "required" } } });
		return { ID: c.id, Attachment: c.authenticatorAttachment };`, &xp)
	vc := f.virtualCreds(usb)
	f.check(xp.Thrown == "" && len(vc) == 1 && vc[0].CredentialID == xp.ID && vc[0].RPID == "localhost",
		"cross-platform create() went to Firefox's virtual USB authenticator (%+v, %+v)", xp, vc)
	f.must(f.call(cmdTimeout, "WebAuthn:RemoveVirtualAuthenticator", map[string]any{"authenticatorId": usb}, nil))

	// authd stops: the host answers NotReachable and the extension hands
	// the page's requests to Firefox's own WebAuthn (a virtual platform
	// authenticator): register and sign in on the demo RP without authd.
	s.authd.Process.Kill()
	s.authd.Wait()
	plat := f.virtualAuthenticator("internal")
	f.must(f.navigate(s.rpURL))
	f.must(f.typeInto("#username", "bob-native"))
	f.must(f.click("#register"))
	f.status("ok")
	f.shot("7-fallback-registered")
	vc = f.virtualCreds(plat)
	f.check(len(vc) == 1 && vc[0].RPID == "localhost" && vc[0].IsResidentCredential,
		"registration without authd went to Firefox's own WebAuthn (%+v)", vc)
	f.signOut()
	f.must(f.click("#login"))
	f.status("ok")
	f.check(f.text("#user") == "bob-native", "signed in as bob-native without authd (Firefox's own WebAuthn)")
	f.check(f.virtualCreds(plat)[0].SignCount > vc[0].SignCount, "the virtual authenticator signed the sign-in")
	f.shot("8-fallback-signed-in")
	rows = f.manage()
	_, err = f.waitFor(10*time.Second, "the management page's error", `return document.getElementById("message").dataset.state === "error" ? "y" : "";`)
	f.must(err)
	msg := f.text("#message")
	f.check(len(rows) == 0 && strings.Contains(msg, "authd is not running"), "management page says authd is not running (%q)", msg)
	f.shot("9-manage-no-authd")
}

// readLog returns the log of a process started by start.
func readLog(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(os.Getenv("AUTHD_E2E_LOGDIR"), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor polls cond until it holds, for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
