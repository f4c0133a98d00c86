// authd passkeys: the MAIN-world shim, run at document_start before the
// page's scripts. It answers navigator.credentials.create/get for publicKey
// requests through authd and leaves everything else (passwords, federated
// credentials, security keys, phones) to the browser's own implementation.
"use strict";
(() => {
  const TAG = "authd-webauthn-v1";
  const C = window.CredentialsContainer;
  const PKC = window.PublicKeyCredential;
  if (!C || !PKC || !navigator.credentials) return; // not a secure context
  const origCreate = C.prototype.create;
  const origGet = C.prototype.get;
  const orig = {
    uvpaa: PKC.isUserVerifyingPlatformAuthenticatorAvailable,
    caps: PKC.getClientCapabilities,
    cond: PKC.isConditionalMediationAvailable,
  };

  // --- messaging with the isolated-world bridge
  const nonce = Math.random().toString(36).slice(2);
  let seq = 0;
  const waiting = new Map();
  window.addEventListener("message", (e) => {
    if (e.source !== window) return;
    const d = e.data;
    if (!d || typeof d !== "object" || d.tag !== TAG || d.dir !== "res") return;
    const done = waiting.get(d.id);
    if (!done) return;
    waiting.delete(d.id);
    done(d.msg || { ok: false, error: { name: "NotReachable", message: "empty answer" } });
  });
  function send(msg) {
    const id = nonce + ":" + ++seq;
    return new Promise((resolve) => {
      waiting.set(id, resolve);
      window.postMessage({ tag: TAG, dir: "req", id, msg }, "*");
    });
  }

  // --- base64url <-> bytes
  function b64url(buf) {
    const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    let bin = "";
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64url(s) {
    const b64 = String(s).replace(/-/g, "+").replace(/_/g, "/") + "===".slice((String(s).length + 3) % 4);
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  // toJSONOptions turns WebAuthn options (BufferSources) into their JSON form.
  function toJSONOptions(v) {
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return b64url(v);
    if (Array.isArray(v)) return v.map(toJSONOptions);
    if (v && typeof v === "object") {
      const out = {};
      for (const k of Object.keys(v)) {
        if (k === "signal") continue;
        const x = v[k];
        if (x !== undefined && typeof x !== "function") out[k] = toJSONOptions(x);
      }
      return out;
    }
    return v;
  }

  // --- results that look like the browser's own
  function def(obj, name, value) {
    Object.defineProperty(obj, name, { value, enumerable: true, configurable: true });
  }
  function method(obj, name, fn) {
    Object.defineProperty(obj, name, { value: fn, enumerable: false, configurable: true, writable: true });
  }
  function extResults(json) {
    const r = JSON.parse(JSON.stringify(json || {}));
    if (r.prf && r.prf.results) {
      for (const k of ["first", "second"]) if (typeof r.prf.results[k] === "string") r.prf.results[k] = unb64url(r.prf.results[k]);
    }
    if (r.largeBlob && typeof r.largeBlob.blob === "string") r.largeBlob.blob = unb64url(r.largeBlob.blob);
    return r;
  }
  function credential(j, creating) {
    const jr = j.response || {};
    const R = creating ? window.AuthenticatorAttestationResponse : window.AuthenticatorAssertionResponse;
    const resp = Object.create(R.prototype);
    def(resp, "clientDataJSON", unb64url(jr.clientDataJSON));
    if (creating) {
      def(resp, "attestationObject", unb64url(jr.attestationObject));
      const transports = Array.isArray(jr.transports) ? jr.transports.slice() : ["internal"];
      method(resp, "getTransports", () => transports.slice());
      method(resp, "getAuthenticatorData", () => (jr.authenticatorData ? unb64url(jr.authenticatorData) : null));
      method(resp, "getPublicKey", () => (jr.publicKey ? unb64url(jr.publicKey) : null));
      method(resp, "getPublicKeyAlgorithm", () => (typeof jr.publicKeyAlgorithm === "number" ? jr.publicKeyAlgorithm : -7));
    } else {
      def(resp, "authenticatorData", unb64url(jr.authenticatorData));
      def(resp, "signature", unb64url(jr.signature));
      def(resp, "userHandle", jr.userHandle ? unb64url(jr.userHandle) : null);
    }
    const cred = Object.create(PKC.prototype);
    def(cred, "id", j.id);
    def(cred, "rawId", unb64url(j.rawId || j.id));
    def(cred, "type", "public-key");
    def(cred, "response", resp);
    def(cred, "authenticatorAttachment", j.authenticatorAttachment || "platform");
    method(cred, "getClientExtensionResults", () => extResults(j.clientExtensionResults));
    method(cred, "toJSON", () => {
      const out = JSON.parse(JSON.stringify(j));
      out.type = "public-key";
      out.authenticatorAttachment = out.authenticatorAttachment || "platform";
      out.clientExtensionResults = out.clientExtensionResults || {};
      return out;
    });
    return cred;
  }
  const DOM_NAMES = new Set(["NotAllowedError", "InvalidStateError", "SecurityError", "NotSupportedError",
    "ConstraintError", "AbortError", "UnknownError", "DataError", "NotReadableError", "EncodingError"]);
  function toError(e) {
    const name = (e && e.name) || "UnknownError";
    const message = (e && e.message) || name;
    if (name === "TypeError") return new TypeError(message);
    return new DOMException(message, DOM_NAMES.has(name) ? name : "UnknownError");
  }

  // --- the ceremony
  class Fallback extends Error {}
  let ceremonySeq = 0;
  function ceremony(type, options) {
    const pk = options.publicKey;
    const signal = options.signal;
    if (signal && signal.aborted) {
      return Promise.reject(signal.reason !== undefined ? signal.reason : new DOMException("The operation was aborted.", "AbortError"));
    }
    let json;
    try {
      json = toJSONOptions(pk);
    } catch (e) {
      return Promise.reject(new TypeError("authd: cannot serialise the options: " + e.message));
    }
    // ref names this ceremony, so that aborting it cancels it and no other.
    const ref = nonce + ":" + ++ceremonySeq;
    const msg = { type, options: json, ref };
    if (typeof pk.timeout === "number") msg.timeoutMs = pk.timeout;
    return new Promise((resolve, reject) => {
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        send({ type: "cancel", ref });
        reject(signal.reason !== undefined ? signal.reason : new DOMException("The operation was aborted.", "AbortError"));
      };
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
      send(msg).then((rep) => {
        if (signal) signal.removeEventListener("abort", onAbort);
        if (settled) return;
        settled = true;
        if (rep.ok) {
          try { resolve(credential(rep.result, type === "create")); } catch (e) { reject(new DOMException("authd returned an unusable credential: " + e.message, "UnknownError")); }
        } else if (rep.error && (rep.error.name === "NotReachable" || rep.error.name === "UseAnotherDevice")) {
          // authd is not there, or the user chose another device in authd's
          // prompt: the browser's own WebAuthn handles the original request.
          reject(new Fallback(rep.error.message));
        } else {
          reject(toError(rep.error));
        }
      });
    });
  }

  function wants(options) {
    return options && typeof options === "object" && options.publicKey && typeof options.publicKey === "object";
  }
  function wrap(name, fn) {
    // Look like a native function to feature detection.
    Object.defineProperty(fn, "name", { value: name });
    method(fn, "toString", function () { return "function " + name + "() { [native code] }"; });
    return fn;
  }

  method(C.prototype, "create", wrap("create", function create(options) {
    if (!wants(options)) return origCreate.apply(this, arguments);
    const sel = options.publicKey.authenticatorSelection;
    if (sel && sel.authenticatorAttachment === "cross-platform") return origCreate.apply(this, arguments);
    const self = this, args = arguments;
    return ceremony("create", options).catch((e) => {
      if (e instanceof Fallback) return origCreate.apply(self, args);
      throw e;
    });
  }));
  method(C.prototype, "get", wrap("get", function get(options) {
    if (!wants(options) || options.mediation === "conditional") return origGet.apply(this, arguments);
    const self = this, args = arguments;
    return ceremony("get", options).catch((e) => {
      if (e instanceof Fallback) return origGet.apply(self, args);
      throw e;
    });
  }));

  // --- capabilities, answered from authd (the browser's own answer when authd is not there)
  let capsPromise = null;
  function hostCaps() {
    if (!capsPromise) {
      capsPromise = send({ type: "capabilities" }).then((rep) => (rep.ok && rep.result && typeof rep.result === "object" ? rep.result : null));
      capsPromise.then((c) => { if (!c) capsPromise = null; });
    }
    return capsPromise;
  }
  method(PKC, "isUserVerifyingPlatformAuthenticatorAvailable", wrap("isUserVerifyingPlatformAuthenticatorAvailable", function () {
    return hostCaps().then((c) => {
      if (c && c.userVerifyingPlatformAuthenticator === true) return true;
      return orig.uvpaa ? orig.uvpaa.call(PKC) : false;
    });
  }));
  method(PKC, "isConditionalMediationAvailable", wrap("isConditionalMediationAvailable", function () {
    // authd does not offer autofill (conditional) sign-in; when authd is not
    // there, the browser's own answer stands.
    return hostCaps().then((c) => {
      if (c) return false;
      return orig.cond ? orig.cond.call(PKC) : false;
    });
  }));
  method(PKC, "getClientCapabilities", wrap("getClientCapabilities", function () {
    const base = orig.caps ? orig.caps.call(PKC).catch(() => ({})) : Promise.resolve({});
    return Promise.all([base, hostCaps()]).then(([b, c]) => {
      const out = Object.assign({}, b);
      if (c) {
        for (const [k, v] of Object.entries(c)) if (typeof v === "boolean") out[k] = v || out[k] === true;
        out.conditionalGet = false;
        out.conditionalCreate = false;
      }
      return out;
    });
  }));
})();
