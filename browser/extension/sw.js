// authd passkeys: the background script: Chromium's service worker, and
// Firefox's event page (manifest "background.scripts"; Firefox has no
// extension service workers). It holds ONE persistent native-messaging port
// to authd-nmhost and multiplexes requests over it by id; both browsers keep
// the background alive while that port is open. The origin passed to authd
// comes from the browser's sender information (sender.origin, set by
// Chromium and Firefox alike), never from the page's message.
"use strict";

const HOST = "org.authd.nmhost";
// What a web page (through the content scripts) may ask for.
const PAGE_TYPES = new Set(["create", "get", "capabilities", "cancel"]);
// What the extension's own pages (options/popup) may ask for.
const ADMIN_TYPES = new Set(["list", "delete", "protect", "unprotect", "status", "capabilities"]);

let port = null;
let seq = 0;
const pending = new Map(); // id (string) -> resolve(reply)
// A page's create/get in flight: "<tab>|<frame>|<document>|<origin>|<ref>"
// -> the host request id. The page names its ceremony by ref; the scope
// comes from the sender, so a page can only cancel its own.
const ceremonies = new Map();

function notReachable(message) {
  return { ok: false, error: { name: "NotReachable", message } };
}

function getPort() {
  if (port) return port;
  const p = chrome.runtime.connectNative(HOST);
  p.onMessage.addListener((m) => {
    const key = String(m && m.id);
    const resolve = pending.get(key);
    if (!resolve) return; // a reply without a request (e.g. refused frame): nothing waits
    pending.delete(key);
    resolve(m);
  });
  p.onDisconnect.addListener(() => {
    // Chromium reports why in runtime.lastError, Firefox in port.error.
    const err = chrome.runtime.lastError || p.error;
    const why = (err && err.message) || "the native host disconnected";
    if (port === p) port = null;
    for (const resolve of pending.values()) resolve(notReachable(why));
    pending.clear();
  });
  port = p;
  return p;
}

function callHost(msg, onId) {
  return new Promise((resolve) => {
    const id = ++seq;
    if (onId) onId(id);
    pending.set(String(id), resolve);
    try {
      getPort().postMessage({ ...msg, id });
    } catch (e) {
      pending.delete(String(id));
      port = null;
      resolve(notReachable(String(e && e.message || e)));
    }
  });
}

function originOf(url) {
  try { return new URL(url).origin; } catch (e) { return ""; }
}

chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  if (sender.id !== chrome.runtime.id || !msg || typeof msg.type !== "string") return false;
  const isExtensionOrigin = typeof sender.url === "string" && sender.url.startsWith(chrome.runtime.getURL(""));
  let req;
  if (isExtensionOrigin) {
    if (!ADMIN_TYPES.has(msg.type)) return false;
    req = { type: msg.type };
    if (typeof msg.filter === "string") req.filter = msg.filter;
    if (typeof msg.credentialId === "string") req.credentialId = msg.credentialId;
  } else {
    if (!PAGE_TYPES.has(msg.type)) return false;
    // The browser's view of the calling frame, never the page's claim.
    const origin = sender.origin || originOf(sender.url);
    if (!origin || origin === "null") {
      sendResponse({ ok: false, error: { name: "SecurityError", message: "opaque origins cannot use passkeys" } });
      return false;
    }
    req = { type: msg.type, origin };
    if (sender.frameId && sender.tab && sender.tab.url) {
      const top = originOf(sender.tab.url);
      if (top && top !== origin) req.topOrigin = top;
    }
    const key = typeof msg.ref === "string" && msg.ref.length <= 128
      ? [sender.tab ? sender.tab.id : "", sender.frameId || 0, sender.documentId || "", origin, msg.ref].join("|")
      : null;
    if (msg.type === "cancel") {
      // Abort only the ceremony this frame named; the host cancels it on
      // its own bus connection.
      const target = key && ceremonies.get(key);
      if (target === undefined || target === null) {
        sendResponse({ ok: true, result: { cancelled: false } });
        return false;
      }
      callHost({ type: "cancel", target }).then(sendResponse);
      return true;
    }
    if (msg.type === "create" || msg.type === "get") {
      if (!msg.options || typeof msg.options !== "object") {
        sendResponse({ ok: false, error: { name: "TypeError", message: "options missing" } });
        return false;
      }
      req.options = msg.options;
      if (typeof msg.timeoutMs === "number" && msg.timeoutMs >= 0) req.timeoutMs = msg.timeoutMs;
      if (key && !ceremonies.has(key)) {
        callHost(req, (id) => ceremonies.set(key, id)).then((rep) => {
          ceremonies.delete(key);
          sendResponse(rep);
        });
        return true;
      }
    }
  }
  callHost(req).then(sendResponse);
  return true; // async response
});
