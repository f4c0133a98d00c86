// authd demo relying party: the browser half of registration and sign-in.
"use strict";

// --- base64url <-> ArrayBuffer (fallbacks for browsers without the JSON helpers)
function b64urlToBuf(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}
function bufToB64url(buf) {
  const bytes = new Uint8Array(buf);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function descriptors(list) {
  return (list || []).map((d) => ({ ...d, id: b64urlToBuf(d.id) }));
}

function creationOptions(json) {
  if (window.PublicKeyCredential && typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBuf(json.challenge),
    user: { ...json.user, id: b64urlToBuf(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}
function requestOptions(json) {
  if (window.PublicKeyCredential && typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return { ...json, challenge: b64urlToBuf(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
}

// credentialJSON is PublicKeyCredential.toJSON(), done by hand where missing.
function credentialJSON(cred) {
  if (typeof cred.toJSON === "function") {
    try { return cred.toJSON(); } catch (e) { /* fall through */ }
  }
  const r = cred.response;
  const out = {
    id: cred.id,
    rawId: bufToB64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    response: { clientDataJSON: bufToB64url(r.clientDataJSON) },
  };
  if (r.attestationObject) {
    out.response.attestationObject = bufToB64url(r.attestationObject);
    if (r.getTransports) out.response.transports = r.getTransports();
    if (r.getAuthenticatorData) out.response.authenticatorData = bufToB64url(r.getAuthenticatorData());
    if (r.getPublicKeyAlgorithm) out.response.publicKeyAlgorithm = r.getPublicKeyAlgorithm();
    if (r.getPublicKey && r.getPublicKey()) out.response.publicKey = bufToB64url(r.getPublicKey());
  } else {
    out.response.authenticatorData = bufToB64url(r.authenticatorData);
    out.response.signature = bufToB64url(r.signature);
    if (r.userHandle) out.response.userHandle = bufToB64url(r.userHandle);
  }
  return out;
}

// --- talking to the server
async function post(path, body) {
  const resp = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await resp.json(); } catch (e) { /* empty or not JSON */ }
  if (!resp.ok) {
    const err = new Error(data.error || `The server answered ${resp.status}.`);
    err.server = true;
    throw err;
  }
  return data;
}

// --- status line and messages
function setStatus(state, text) {
  const el = document.getElementById("status");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = text;
}

function explain(err, creating) {
  if (err && err.server) return err.message;
  switch (err && err.name) {
    case "NotAllowedError":
      return creating
        ? "No passkey was created: the request was cancelled, denied or timed out."
        : "Not signed in: the request was cancelled, denied or timed out, or no passkey for this site was chosen.";
    case "InvalidStateError":
      return "This authenticator already holds a passkey for this account.";
    case "AbortError":
      return "The request was aborted.";
    case "SecurityError":
      return "The browser refused the request for this site (open it at the configured origin, e.g. http://localhost:8080).";
    case "NotSupportedError":
      return "No authenticator here supports what this site asked for.";
    case "ConstraintError":
      return "The authenticator cannot meet this site's requirements (user verification or a discoverable passkey).";
    case "UnknownError":
      return "The authenticator failed: " + err.message;
    default:
      return (err && err.message) || String(err);
  }
}

function busy(on) {
  for (const id of ["register", "login"]) {
    const b = document.getElementById(id);
    if (b) b.disabled = on;
  }
}

function showSignedIn(name) {
  document.getElementById("user").textContent = name;
  document.getElementById("signed-in").hidden = false;
}

function webauthnAvailable() {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    setStatus("error", "This browser does not support passkeys (WebAuthn), or the page is not on a secure origin.");
    return false;
  }
  return true;
}

async function register() {
  const username = document.getElementById("username").value.trim();
  if (!username) {
    setStatus("error", "Enter a username to create a passkey.");
    document.getElementById("username").focus();
    return;
  }
  if (!webauthnAvailable()) return;
  busy(true);
  try {
    setStatus("busy", "Asking the server…");
    const options = await post("/register/begin", { username });
    setStatus("busy", "Confirm with your authenticator…");
    const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
    if (!cred) throw new Error("The browser returned no credential.");
    setStatus("busy", "Verifying…");
    const result = await post("/register/finish", credentialJSON(cred));
    setStatus("ok", `Passkey created for ${result.user}.`);
    showSignedIn(result.user);
  } catch (err) {
    setStatus("error", explain(err, true));
  } finally {
    busy(false);
  }
}

async function login() {
  const username = document.getElementById("username").value.trim();
  if (!webauthnAvailable()) return;
  busy(true);
  try {
    setStatus("busy", "Asking the server…");
    const options = await post("/login/begin", username ? { username } : {});
    setStatus("busy", "Confirm with your authenticator…");
    const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
    if (!cred) throw new Error("The browser returned no credential.");
    setStatus("busy", "Verifying…");
    const result = await post("/login/finish", credentialJSON(cred));
    setStatus("ok", `Signed in as ${result.user}.`);
    showSignedIn(result.user);
  } catch (err) {
    setStatus("error", explain(err, false));
  } finally {
    busy(false);
  }
}

async function logout() {
  try {
    await post("/logout");
    window.location.assign("/");
  } catch (err) {
    setStatus("error", explain(err, false));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const on = (id, fn) => { const el = document.getElementById(id); if (el) el.addEventListener("click", fn); };
  on("register", register);
  on("login", login);
  on("logout", logout);
  const form = document.getElementById("form");
  if (form) form.addEventListener("submit", (e) => { e.preventDefault(); login(); });
});
