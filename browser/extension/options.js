// authd passkeys: the management page (options page and toolbar popup).
"use strict";

let all = [];

function ask(msg) {
  return new Promise((resolve) => {
    chrome.runtime.sendMessage(msg, (rep) => {
      if (chrome.runtime.lastError || !rep) {
        resolve({ ok: false, error: { name: "NotReachable", message: (chrome.runtime.lastError && chrome.runtime.lastError.message) || "no answer" } });
      } else resolve(rep);
    });
  });
}

function say(state, text) {
  const m = document.getElementById("message");
  m.dataset.state = state;
  m.textContent = text;
}

function explain(err) {
  if (!err) return "Something went wrong.";
  if (err.name === "NotReachable") return "authd is not running or not installed (" + err.message + "). Start authd and run `authctl browser install`.";
  return err.message || err.name;
}

function when(sec) {
  if (!sec) return "never";
  return new Date(sec * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function matches(c, f) {
  if (!f) return true;
  f = f.toLowerCase();
  return [c.rpId, c.rpName, c.userName, c.userDisplayName].some((s) => (s || "").toLowerCase().includes(f));
}

function render() {
  const f = document.getElementById("filter").value.trim();
  const list = document.getElementById("list");
  const tpl = document.getElementById("row");
  list.replaceChildren();
  const shown = all.filter((c) => matches(c, f));
  for (const c of shown) {
    const li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.id = c.id;
    li.querySelector(".site-badge").textContent = (c.rpId || "?").charAt(0);
    li.querySelector(".site").textContent = c.rpId + (c.rpName && c.rpName !== c.rpId ? " — " + c.rpName : "");
    li.querySelector(".account").textContent = c.userDisplayName && c.userDisplayName !== c.userName ? `${c.userDisplayName} (${c.userName})` : (c.userName || "(no account name)");
    li.querySelector(".meta").textContent = `Created ${when(c.created)} · Last used ${when(c.lastUsed)}`;
    const tags = li.querySelector(".tags");
    const tag = (text, cls) => { const s = document.createElement("span"); s.className = "tag " + (cls || ""); s.textContent = text; tags.append(s); };
    tag(c.backend === "tpm" ? "TPM" : "Software", "backend");
    if (c.protected) tag("Protected", "protected");
    const prot = li.querySelector(".protect");
    prot.textContent = c.protected ? "Unprotect" : "Protect";
    prot.title = c.protected ? "Allow this passkey to be deleted" : "Keep this passkey from being deleted";
    prot.addEventListener("click", () => act(c.protected ? "unprotect" : "protect", c, li));
    const del = li.querySelector(".delete");
    del.disabled = !!c.protected;
    del.title = c.protected ? "Unprotect it first" : "Delete this passkey";
    del.addEventListener("click", () => {
      if (!confirm(`Delete the passkey for ${c.userName || "this account"} on ${c.rpId}? You will not be able to sign in with it any more.`)) return;
      act("delete", c, li);
    });
    list.append(li);
  }
  document.getElementById("empty").hidden = all.length !== 0;
  document.getElementById("count").textContent = f ? `${shown.length} of ${all.length}` : `${all.length} passkey${all.length === 1 ? "" : "s"}`;
}

async function act(type, c, li) {
  for (const b of li.querySelectorAll("button")) b.disabled = true;
  say("busy", type === "delete" ? "Deleting… confirm in authd's prompt." : "Saving…");
  const rep = await ask({ type, credentialId: c.id });
  if (!rep.ok) {
    say("error", explain(rep.error));
    render();
    return;
  }
  say("ok", type === "delete" ? `Deleted the passkey for ${c.userName} on ${c.rpId}.` : type === "protect" ? "Protected." : "Unprotected.");
  await load();
}

async function load() {
  const rep = await ask({ type: "list", filter: "" });
  if (!rep.ok) {
    all = [];
    say("error", explain(rep.error));
  } else {
    all = Array.isArray(rep.result) ? rep.result : [];
    all.sort((a, b) => (a.rpId || "").localeCompare(b.rpId || "") || (a.userName || "").localeCompare(b.userName || ""));
  }
  render();
  document.body.dataset.loaded = "1";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", render);
  load();
});
