// End-to-end test of authd's browser extension in headless Chromium.
// Started by browser_test.go, which provides authd on a private session bus,
// the demo RP, the host manifest in the user-data-dir and these variables:
// CHROMIUM, EXT_DIR, USER_DATA_DIR, RP_URL, DENY_FILE, OTHER_FILE (while it
// exists authd's prompt answers "use another device"), HOLD_FILE (while it
// exists the prompt waits; HOLD_FILE.waiting gets a line per prompt), ARTIFACTS, and for the
// fallback phase USER_DATA_DIR_NO_AUTHD (a second profile with the host
// manifest) and EMPTY_BUS_ADDRESS (a session bus where nobody owns
// org.authd.Authenticator1, i.e. authd is not running).
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const EXPECTED_ID = "okpgeddokidegbjehdpldcghndcghafp"; // pinned by "key" in manifest.json
const env = (k) => { const v = process.env[k]; if (!v) throw new Error(k + " is not set"); return v; };
const RP = env("RP_URL"), EXT = env("EXT_DIR"), ART = env("ARTIFACTS"), DENY = env("DENY_FILE"), OTHER = env("OTHER_FILE"), HOLD = env("HOLD_FILE");
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function check(cond, what) { if (!cond) throw new Error("FAILED: " + what); log("ok:", what); }

async function status(page, want) {
  await page.waitForFunction(() => ["ok", "error"].includes(document.getElementById("status").dataset.state), null, { timeout: 20000 });
  const st = await page.$eval("#status", (e) => ({ state: e.dataset.state, text: e.textContent }));
  log("status:", st.state, "-", st.text);
  if (want) check(st.state === want, `#status is ${want} (${st.text})`);
  return st;
}
// virtualAuthenticator enables Chromium's DevTools WebAuthn domain on the
// page's CDP session and adds a CTAP2 virtual authenticator: the browser's own
// WebAuthn path, which the extension must fall back to.
async function virtualAuthenticator(ctx, page, transport) {
  const cdp = await ctx.newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: {
    protocol: "ctap2", ctap2Version: "ctap2_1", transport, hasResidentKey: true, hasUserVerification: true,
    isUserVerified: true, automaticPresenceSimulation: true } });
  const creds = async () => (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials
    .map((c) => ({ ...c, id: Buffer.from(c.credentialId, "base64").toString("base64url") }));
  return { cdp, authenticatorId, creds };
}
// authdList is what authd holds, read through the management page (profile
// with authd).
async function authdList(mgmt) {
  await mgmt.reload();
  await mgmt.waitForSelector("body[data-loaded]", { timeout: 15000 });
  const rows = await mgmt.$$eval("#list li.passkey", (l) => l.map((e) => e.textContent));
  // Not vacuous: authd answered and still lists the throwaway "shape" passkey.
  check(rows.some((x) => x.includes("shape")), `authd's list was read (${rows.length} passkeys)`);
  return rows;
}
async function signOut(page) {
  await page.evaluate(() => fetch("/logout", { method: "POST", credentials: "same-origin" }));
  await page.goto(RP);
}

const launchOptions = {
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", `--load-extension=${EXT}`, `--disable-extensions-except=${EXT}`],
  viewport: { width: 900, height: 700 },
};

(async () => {
  const ctx = await chromium.launchPersistentContext(env("USER_DATA_DIR"), launchOptions);
  try {
    const sw = ctx.serviceWorkers()[0] || (await ctx.waitForEvent("serviceworker", { timeout: 15000 }));
    const extId = sw.url().split("/")[2];
    check(extId === EXPECTED_ID, `extension id pinned (${extId})`);

    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error") log("page console:", m.text()); });
    await page.goto(RP);

    // The shim is in place and the capabilities come from authd.
    const caps = await page.evaluate(async () => ({
      uvpaa: await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable(),
      cond: await PublicKeyCredential.isConditionalMediationAvailable(),
      caps: PublicKeyCredential.getClientCapabilities ? await PublicKeyCredential.getClientCapabilities() : null,
    }));
    log("capabilities:", JSON.stringify(caps));
    check(caps.cond === false, "isConditionalMediationAvailable() is false");

    // Register.
    await page.fill("#username", "alice");
    await page.click("#register");
    await status(page, "ok");
    await page.screenshot({ path: path.join(ART, "1-registered.png") });

    // The result looks like the browser's own (checked on a second, throwaway registration).
    const shape = await page.evaluate(async () => {
      const rnd = (n) => crypto.getRandomValues(new Uint8Array(n));
      const c = await navigator.credentials.create({ publicKey: {
        challenge: rnd(32), rp: { id: "localhost", name: "shape" }, user: { id: rnd(16), name: "shape", displayName: "shape" },
        pubKeyCredParams: [{ type: "public-key", alg: -7 }], authenticatorSelection: { residentKey: "discouraged" } } });
      const j = c.toJSON();
      return { pkc: c instanceof PublicKeyCredential, att: c.response instanceof AuthenticatorAttestationResponse,
        rawId: c.rawId instanceof ArrayBuffer, cdj: c.response.clientDataJSON instanceof ArrayBuffer,
        transports: c.response.getTransports(), ext: typeof c.getClientExtensionResults(), attachment: c.authenticatorAttachment,
        jsonId: j.id === c.id, origin: JSON.parse(new TextDecoder().decode(c.response.clientDataJSON)).origin };
    });
    log("credential shape:", JSON.stringify(shape));
    check(shape.pkc && shape.att && shape.rawId && shape.cdj && shape.jsonId && shape.ext === "object" && Array.isArray(shape.transports), "genuine-looking PublicKeyCredential");
    check(shape.origin === new URL(RP).origin, "clientDataJSON origin is the page's origin (from sender.origin)");

    // Sign out, sign in with a discoverable passkey.
    await signOut(page);
    await page.click("#login");
    await status(page, "ok");
    check((await page.textContent("#user")) === "alice", "signed in as alice (discoverable)");
    await page.screenshot({ path: path.join(ART, "2-signed-in.png") });
    const me = await page.goto(RP + "/me");
    check(me.status() === 200 && (await page.textContent("#user")).includes("alice"), "/me shows alice");
    await page.screenshot({ path: path.join(ART, "3-me.png") });

    // Sign out, sign in by username (allowCredentials).
    await signOut(page);
    await page.fill("#username", "alice");
    await page.click("#login");
    await status(page, "ok");
    check((await page.textContent("#user")) === "alice", "signed in as alice (by username)");

    // The user denies: NotAllowedError.
    fs.writeFileSync(DENY, "");
    await signOut(page);
    await page.fill("#username", "alice");
    await page.click("#login");
    const denied = await status(page, "error");
    check(/denied|cancelled/.test(denied.text), "denial shown as NotAllowedError's message");
    const name = await page.evaluate(() => navigator.credentials.get({ publicKey: { challenge: new Uint8Array(32), rpId: "localhost" } })
      .then(() => "resolved", (e) => e.name + (e instanceof DOMException ? " (DOMException)" : "")));
    check(name === "NotAllowedError (DOMException)", `direct get() rejects with ${name}`);
    await page.screenshot({ path: path.join(ART, "4-denied.png") });
    fs.unlinkSync(DENY);

    // AbortSignal rejects with AbortError and authd stays usable.
    const aborted = await page.evaluate(() => {
      const ac = new AbortController();
      const p = navigator.credentials.get({ publicKey: { challenge: new Uint8Array(32), rpId: "localhost" }, signal: ac.signal });
      ac.abort();
      return p.then(() => "resolved", (e) => e.name);
    });
    check(aborted === "AbortError", "aborted get() rejects with AbortError");

    // Two sign-ins wait for the user; aborting one cancels only that one in
    // authd, and the other completes when the user approves.
    fs.writeFileSync(HOLD, "");
    await page.evaluate(() => {
      const get = (signal) => navigator.credentials.get({ publicKey: { challenge: new Uint8Array(32), rpId: "localhost" }, signal });
      window.e2eAC = new AbortController();
      window.e2eAB = { a: "", b: "" };
      get(window.e2eAC.signal).then(() => "resolved", (e) => e.name).then((r) => { window.e2eAB.a = r; });
      get().then((c) => "resolved " + c.type, (e) => e.name).then((r) => { window.e2eAB.b = r; });
    });
    for (let i = 0; !(fs.existsSync(HOLD + ".waiting") && fs.readFileSync(HOLD + ".waiting", "utf8")); i++) {
      if (i > 300) throw new Error("no prompt for the two sign-ins");
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 200)); // the second request reaches authd
    await page.evaluate(() => window.e2eAC.abort());
    await page.waitForFunction(() => window.e2eAB.a !== "", null, { timeout: 10000 });
    await new Promise((r) => setTimeout(r, 300)); // room for a wrong cancel to reach the other one
    const ab = await page.evaluate(() => ({ ...window.e2eAB }));
    check(ab.a === "AbortError" && ab.b === "", `aborting one of two sign-ins rejects it (${ab.a}) and leaves the other waiting`);
    fs.unlinkSync(HOLD);
    await page.waitForFunction(() => window.e2eAB.b !== "", null, { timeout: 10000 });
    const b = await page.evaluate(() => window.e2eAB.b);
    check(b === "resolved public-key", `the other sign-in completes after the user approves (${b})`);

    // Management page.
    const mgmt = await ctx.newPage();
    mgmt.on("dialog", (d) => d.accept());
    await mgmt.goto(`chrome-extension://${extId}/options.html`);
    await mgmt.waitForSelector("body[data-loaded]", { timeout: 15000 });
    const rows = () => mgmt.$$eval("#list li.passkey", (l) => l.map((e) => e.textContent));
    let r = await rows();
    log("management rows:", r.length);
    check(r.some((x) => x.includes("alice") && x.includes("localhost")), "management page lists alice's passkey");
    await mgmt.screenshot({ path: path.join(ART, "5-manage.png") });
    await mgmt.fill("#filter", "nobody-here");
    check((await rows()).length === 0, "filter hides it");
    await mgmt.fill("#filter", "ALI");
    r = await rows();
    check(r.length === 1 && r[0].includes("alice"), "filter shows it again");
    await mgmt.screenshot({ path: path.join(ART, "6-manage-filtered.png") });
    // Protect, then unprotect, then delete.
    await mgmt.click("#list li.passkey .protect");
    await mgmt.waitForFunction(() => document.querySelector("#list li.passkey .tag.protected"), null, { timeout: 10000 });
    check(await mgmt.$eval("#list li.passkey .delete", (b) => b.disabled), "protected passkey cannot be deleted");
    await mgmt.click("#list li.passkey .protect");
    await mgmt.waitForFunction(() => !document.querySelector("#list li.passkey .tag.protected"), null, { timeout: 10000 });
    await mgmt.click("#list li.passkey .delete");
    await mgmt.waitForFunction(() => document.getElementById("message").dataset.state !== "busy" && !Array.from(document.querySelectorAll("#list li.passkey")).some((e) => e.textContent.includes("alice")), null, { timeout: 15000 });
    log("message:", await mgmt.textContent("#message"));
    check(!(await rows()).some((x) => x.includes("alice")), "delete removed alice's passkey");
    await mgmt.fill("#filter", "");
    await mgmt.screenshot({ path: path.join(ART, "7-manage-deleted.png") });

    // The next sign-in fails cleanly.
    await signOut(page);
    await page.fill("#username", "alice");
    await page.click("#login");
    await status(page, "error");
    await page.screenshot({ path: path.join(ART, "8-signin-after-delete.png") });

    // (b) authd running, the page asks for a cross-platform authenticator: the
    // browser's own WebAuthn answers (a virtual USB security key), not authd.
    const usb = await virtualAuthenticator(ctx, page, "usb");
    await page.bringToFront(); // WebAuthn needs the focused page (the management page was in front)
    const xp = await page.evaluate(async () => {
      const rnd = (n) => crypto.getRandomValues(new Uint8Array(n));
      const c = await navigator.credentials.create({ publicKey: {
        challenge: rnd(32), rp: { id: "localhost", name: "xplat" }, user: { id: rnd(16), name: "carol-xplat", displayName: "carol-xplat" },
        pubKeyCredParams: [{ type: "public-key", alg: -7 }],
        authenticatorSelection: { authenticatorAttachment: "cross-platform", residentKey: "required", userVerification: "required" } } });
      return { id: c.id, attachment: c.authenticatorAttachment, transports: c.response.getTransports(),
        native: Object.getOwnPropertyNames(c).length === 0 };
    });
    log("cross-platform credential:", JSON.stringify(xp));
    let vcreds = await usb.creds();
    log("virtual USB authenticator holds:", JSON.stringify(vcreds.map((c) => ({ id: c.id, rpId: c.rpId, userName: c.userName }))));
    check(vcreds.some((c) => c.id === xp.id && c.rpId === "localhost"), "cross-platform create() is in the virtual authenticator (WebAuthn.getCredentials)");
    check(xp.native && xp.attachment === "cross-platform" && xp.transports.includes("usb"), "cross-platform credential is the browser's own (usb, cross-platform)");
    r = await authdList(mgmt);
    check(!r.some((x) => x.includes("carol-xplat")), "cross-platform credential is not in authd's list");
    await usb.cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: usb.authenticatorId });

    // (c) authd running, the user picks "use another device" in authd's
    // prompt: the extension hands the page's original request to the
    // browser's own WebAuthn (a virtual platform authenticator).
    fs.writeFileSync(OTHER, "");
    const other = await virtualAuthenticator(ctx, page, "internal");
    await page.bringToFront();
    await signOut(page);
    await page.fill("#username", "dave-other");
    await page.click("#register");
    await status(page, "ok");
    await page.screenshot({ path: path.join(ART, "8b-use-another-device-registered.png") });
    const asked = fs.existsSync(OTHER + ".asked") ? fs.readFileSync(OTHER + ".asked", "utf8").trim().split("\n") : [];
    check(asked.includes("makeCredential"), `authd's prompt was asked and answered "use another device" (${asked.join(",")})`);
    vcreds = await other.creds();
    log("virtual platform authenticator holds:", JSON.stringify(vcreds.map((c) => ({ id: c.id, rpId: c.rpId, userName: c.userName }))));
    check(vcreds.length === 1 && vcreds[0].rpId === "localhost", "after \"use another device\" the registration went to the browser's own WebAuthn (WebAuthn.getCredentials)");
    check((await page.textContent("#user")) === "dave-other", "the demo RP registered dave-other");
    r = await authdList(mgmt);
    check(!r.some((x) => x.includes("dave-other")), "the other device's credential is not in authd's list");
    await other.cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: other.authenticatorId });
    fs.unlinkSync(OTHER);

    // (a) authd not running: a second profile whose host finds a session bus
    // where nobody owns org.authd.Authenticator1. Register and sign in on the
    // demo RP through the browser's own WebAuthn (a virtual platform
    // authenticator).
    const ctx2 = await chromium.launchPersistentContext(env("USER_DATA_DIR_NO_AUTHD"), {
      ...launchOptions, env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: env("EMPTY_BUS_ADDRESS") },
    });
    try {
      const sw2 = ctx2.serviceWorkers()[0] || (await ctx2.waitForEvent("serviceworker", { timeout: 15000 }));
      check(sw2.url().split("/")[2] === EXPECTED_ID, "second profile (no authd) has the extension");
      const p2 = await ctx2.newPage();
      p2.on("console", (m) => { if (m.type() === "error") log("page2 console:", m.text()); });
      await p2.goto(RP);
      const hostSays = await sw2.evaluate(() => new Promise((resolve) => {
        const port = chrome.runtime.connectNative("org.authd.nmhost");
        port.onMessage.addListener((m) => { resolve(m); port.disconnect(); });
        port.onDisconnect.addListener(() => resolve({ disconnected: chrome.runtime.lastError && chrome.runtime.lastError.message }));
        port.postMessage({ id: "probe", type: "status" });
      }));
      log("host in the second profile:", JSON.stringify(hostSays));
      check(hostSays && hostSays.error && hostSays.error.name === "NotReachable", "the host answers NotReachable (authd not on its bus)");
      const plat = await virtualAuthenticator(ctx2, p2, "internal");
      await p2.bringToFront();
      await p2.fill("#username", "bob-native");
      await p2.click("#register");
      await status(p2, "ok");
      await p2.screenshot({ path: path.join(ART, "9-fallback-registered.png") });
      vcreds = await plat.creds();
      log("virtual platform authenticator holds:", JSON.stringify(vcreds.map((c) => ({ id: c.id, rpId: c.rpId, userName: c.userName, signCount: c.signCount }))));
      check(vcreds.length === 1 && vcreds[0].rpId === "localhost" && vcreds[0].isResidentCredential, "registration without authd went to the browser's own WebAuthn (WebAuthn.getCredentials)");
      const count0 = vcreds[0].signCount;
      await signOut(p2);
      await p2.click("#login");
      await status(p2, "ok");
      check((await p2.textContent("#user")) === "bob-native", "signed in as bob-native without authd (discoverable, browser's own WebAuthn)");
      await signOut(p2);
      await p2.fill("#username", "bob-native");
      await p2.click("#login");
      await status(p2, "ok");
      check((await p2.textContent("#user")) === "bob-native", "signed in as bob-native without authd (by username)");
      await p2.screenshot({ path: path.join(ART, "10-fallback-signed-in.png") });
      vcreds = await plat.creds();
      check(vcreds.length === 1 && vcreds[0].signCount >= count0 + 2, `the virtual authenticator signed both sign-ins (signCount ${count0} → ${vcreds[0].signCount})`);
      r = await authdList(mgmt);
      check(!r.some((x) => x.includes("bob-native")), "the fallback credential is not in authd's list");
    } finally {
      await ctx2.close();
    }
    log("PASS in", ((Date.now() - t0) / 1000).toFixed(1), "s");
  } finally {
    await ctx.close();
  }
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
