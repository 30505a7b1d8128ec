// Passkeys: sign in, second step, step-up (data-passkey="get") and registration (data-passkey="create").
// Loaded only on pages that offer them; without JavaScript the buttons stay hidden and the forms still work.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function status(text) {
    var el = document.querySelector("[data-passkey-status]");
    if (el) el.textContent = text;
  }

  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : "the server said no (" + r.status + ")");
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (c) { return {type: c.type, id: toBytes(c.id), transports: c.transports}; });
  }

  function signIn(button) {
    var csrf = button.getAttribute("data-csrf");
    status("Waiting for your passkey…");
    post("/api/v1/auth/passkey/options", csrf).then(function (o) {
      return navigator.credentials.get({publicKey: {
        challenge: toBytes(o.challenge), rpId: o.rpId, timeout: o.timeout,
        allowCredentials: descriptors(o.allowCredentials), userVerification: o.userVerification
      }});
    }).then(function (cred) {
      var r = cred.response;
      return post("/api/v1/auth/passkey", csrf, {next: button.getAttribute("data-next") || "/", credential: {
        id: cred.id, rawId: toB64url(cred.rawId), type: cred.type,
        authenticatorAttachment: cred.authenticatorAttachment || null, clientExtensionResults: {},
        response: {
          clientDataJSON: toB64url(r.clientDataJSON), authenticatorData: toB64url(r.authenticatorData),
          signature: toB64url(r.signature), userHandle: r.userHandle ? toB64url(r.userHandle) : null
        }
      }});
    }).then(function (done) {
      status("Signed in.");
      window.location.assign(done.redirect || "/");
    }).catch(function (err) { status("Passkey: " + err.message); });
  }

  // The first passkey brings recovery codes: show them here, once, before moving on.
  function showCodes(codes, next) {
    var el = document.querySelector("[data-passkey-status]");
    if (!el) return;
    el.textContent = "Passkey added. Write these recovery codes down now; they are shown only this once:";
    var list = document.createElement("ol");
    list.className = "codes";
    codes.forEach(function (c) {
      var item = document.createElement("li"), code = document.createElement("code");
      code.textContent = c;
      item.appendChild(code);
      list.appendChild(item);
    });
    var link = document.createElement("a");
    link.href = next;
    link.textContent = "Continue";
    el.appendChild(list);
    el.appendChild(link);
  }

  function register(button) {
    var csrf = button.getAttribute("data-csrf");
    var nameField = document.querySelector("[data-passkey-name]");
    status("Follow your phone's prompt…");
    post("/api/v1/account/passkeys/options", csrf).then(function (o) {
      o.challenge = toBytes(o.challenge);
      o.user.id = toBytes(o.user.id);
      o.excludeCredentials = descriptors(o.excludeCredentials);
      return navigator.credentials.create({publicKey: o});
    }).then(function (cred) {
      var r = cred.response;
      return post("/api/v1/account/passkeys", csrf, {name: nameField ? nameField.value : "passkey", credential: {
        id: cred.id, rawId: toB64url(cred.rawId), type: cred.type,
        authenticatorAttachment: cred.authenticatorAttachment || null, clientExtensionResults: {},
        response: {
          clientDataJSON: toB64url(r.clientDataJSON), attestationObject: toB64url(r.attestationObject),
          transports: r.getTransports ? r.getTransports() : []
        }
      }});
    }).then(function (done) {
      if (!done.recovery_codes) { window.location.assign(done.redirect || "/account/passkeys"); return; }
      showCodes(done.recovery_codes, done.redirect || "/");
    }).catch(function (err) { status("Passkey: " + err.message); });
  }

  document.querySelectorAll("[data-passkey]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      if (button.getAttribute("data-passkey") === "create") register(button); else signIn(button);
    });
  });
  document.querySelectorAll("[data-passkey-form]").forEach(function (el) { el.hidden = false; });
})();
