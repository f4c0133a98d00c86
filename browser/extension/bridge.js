// authd passkeys: the isolated-world bridge between the MAIN-world shim
// (window.postMessage with a tag) and the service worker
// (chrome.runtime.sendMessage). It adds nothing: the service worker takes the
// origin from the browser's sender information.
"use strict";
(() => {
  const TAG = "authd-webauthn-v1";
  window.addEventListener("message", (e) => {
    if (e.source !== window) return;
    const d = e.data;
    if (!d || typeof d !== "object" || d.tag !== TAG || d.dir !== "req") return;
    const reply = (msg) => window.postMessage({ tag: TAG, dir: "res", id: d.id, msg }, "*");
    try {
      chrome.runtime.sendMessage(d.msg, (resp) => {
        if (chrome.runtime.lastError || !resp) {
          reply({ ok: false, error: { name: "NotReachable", message: (chrome.runtime.lastError && chrome.runtime.lastError.message) || "no answer from the extension" } });
          return;
        }
        reply(resp);
      });
    } catch (err) {
      // The extension was reloaded or removed: let the page use the browser.
      reply({ ok: false, error: { name: "NotReachable", message: String(err && err.message || err) } });
    }
  });
})();
