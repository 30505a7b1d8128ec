// Turn Web Push on or off for this browser from the notifications page (no inline script: strict CSP).
(function () {
  "use strict";
  var box = document.querySelector("[data-push]");
  if (!box) { return; }
  var state = box.querySelector("[data-push-state]");
  var controls = box.querySelector("[data-push-controls]");
  var on = box.querySelector("[data-push-on]");
  var off = box.querySelector("[data-push-off]");
  var label = box.querySelector("[data-push-label]");
  var csrf = box.getAttribute("data-csrf") || "";
  var ID_KEY = "pocketnoc-push-id";

  function say(text) { state.textContent = text; }

  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !window.isSecureContext) {
    say("This browser cannot get push notifications here: it needs HTTPS (or http://localhost). " +
        "On an iPhone, add pocketnoc to the Home Screen first and open it from there.");
    return;
  }

  function keyBytes(b64) {
    var padded = (b64 + "===".slice((b64.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }

  function sameKey(buffer, bytes) {
    if (!buffer) { return false; }
    var a = new Uint8Array(buffer);
    if (a.length !== bytes.length) { return false; }
    for (var i = 0; i < a.length; i++) { if (a[i] !== bytes[i]) { return false; } }
    return true;
  }

  function guessName() {
    var ua = navigator.userAgent;
    var os = /iPhone|iPad/.test(ua) ? "iPhone/iPad" : /Android/.test(ua) ? "Android" : /Mac/.test(ua) ? "Mac" :
      /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "device";
    var browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom/.test(ua) ? "Chrome" :
      /Safari\//.test(ua) ? "Safari" : "browser";
    return os + " · " + browser;
  }

  function registration() {
    return navigator.serviceWorker.register("/sw.js").then(function () { return navigator.serviceWorker.ready; });
  }

  function send(method, path, body) {
    var headers = {"X-CSRF-Token": csrf};
    if (body) { headers["Content-Type"] = "application/json"; }
    return fetch(path, {method: method, credentials: "same-origin", headers: headers, body: body ? JSON.stringify(body) : undefined})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) { throw new Error(typeof data.detail === "string" ? data.detail : "HTTP " + response.status); }
          return data;
        });
      });
  }

  function refresh() {
    return registration().then(function (reg) { return reg.pushManager.getSubscription(); }).then(function (sub) {
      var known = sub && localStorage.getItem(ID_KEY);
      on.hidden = Boolean(known);
      off.hidden = !sub;
      if (!label.value) { label.value = guessName(); }
      controls.hidden = false;
      say(known ? "Notifications are on for this device." : "Notifications are off for this device.");
    });
  }

  on.addEventListener("click", function () {
    on.disabled = true;
    say("Turning notifications on…");
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") { throw new Error("notifications are blocked for this site in the browser settings"); }
      return Promise.all([registration(), send("GET", "/api/v1/push/key")]);
    }).then(function (got) {
      var reg = got[0];
      var key = keyBytes(got[1].public_key);
      return reg.pushManager.getSubscription().then(function (sub) {
        if (sub && !sameKey(sub.options.applicationServerKey, key)) {
          return sub.unsubscribe().then(function () { return null; });
        }
        return sub;
      }).then(function (sub) {
        return sub || reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key});
      });
    }).then(function (sub) {
      var json = sub.toJSON();
      return send("POST", "/api/v1/push/subscriptions", {endpoint: json.endpoint, keys: json.keys, label: label.value || guessName()});
    }).then(function (saved) {
      localStorage.setItem(ID_KEY, String(saved.id));
      location.assign("/notify?done=subscribed");
    }).catch(function (err) {
      on.disabled = false;
      say("Could not turn notifications on: " + err.message);
    });
  });

  off.addEventListener("click", function () {
    var id = localStorage.getItem(ID_KEY);
    var removed = id ? send("DELETE", "/api/v1/push/subscriptions/" + encodeURIComponent(id)).catch(function () { return null; })
      : Promise.resolve(null);
    removed.then(registration).then(function (reg) { return reg.pushManager.getSubscription(); }).then(function (sub) {
      localStorage.removeItem(ID_KEY);
      return sub ? sub.unsubscribe() : true;
    }).then(function () { location.assign("/notify?done=delete"); });
  });

  refresh().catch(function (err) { say("Push is not available: " + err.message); });
})();
