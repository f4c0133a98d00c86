// End-to-end test of authd's browser extension in headless Chromium.
// Started by browser_test.go, which provides authd on a private session bus,
// the demo RP, the host manifest in the user-data-dir and these variables:
// CHROMIUM, EXT_DIR, USER_DATA_DIR, RP_URL, DENY_FILE, ARTIFACTS.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const EXPECTED_ID = "okpgeddokidegbjehdpldcghndcghafp"; // pinned by "key" in manifest.json
const env = (k) => { const v = process.env[k]; if (!v) throw new Error(k + " is not set"); return v; };
const RP = env("RP_URL"), EXT = env("EXT_DIR"), ART = env("ARTIFACTS"), DENY = env("DENY_FILE");
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
async function signOut(page) {
  await page.evaluate(() => fetch("/logout", { method: "POST", credentials: "same-origin" }));
  await page.goto(RP);
}

(async () => {
  const ctx = await chromium.launchPersistentContext(env("USER_DATA_DIR"), {
    executablePath: env("CHROMIUM"),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--no-first-run", `--load-extension=${EXT}`, `--disable-extensions-except=${EXT}`],
    viewport: { width: 900, height: 700 },
  });
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
    log("PASS in", ((Date.now() - t0) / 1000).toFixed(1), "s");
  } finally {
    await ctx.close();
  }
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
