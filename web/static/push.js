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

  // Every step has a time limit and its own words: turning push on always ends, in "on" or in a reason and a retry.
  var LIMITS = {permission: 60000, worker: 10000, server: 10000, push: 15000};
  var retry = box.querySelector("[data-push-retry]");
  var problem = box.querySelector("[data-push-error]");

  function Failure(reason) { this.message = reason; }

  function within(promise, ms, reason) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(new Failure(reason)); }, ms);
      promise.then(function (value) { clearTimeout(timer); resolve(value); },
        function (err) { clearTimeout(timer); reject(err); });
    });
  }

  function failWith(reason) {
    return function (err) { throw err instanceof Failure ? err : new Failure(reason(err)); };
  }

  function registration() {
    var started = navigator.serviceWorker.register("/sw.js").then(function () { return navigator.serviceWorker.ready; });
    return within(started, LIMITS.worker, "the service worker did not start within " + LIMITS.worker / 1000 +
        " s (private browsing, or storage blocked for this site?)")
      .catch(failWith(function (err) { return "no service worker: " + ((err && err.message) || "it could not be registered"); }));
  }

  function send(method, path, body) {
    var headers = {"X-CSRF-Token": csrf};
    if (body) { headers["Content-Type"] = "application/json"; }
    var request = fetch(path, {method: method, credentials: "same-origin", headers: headers, body: body ? JSON.stringify(body) : undefined})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            throw new Failure("the server refused: " + (typeof data.detail === "string" ? data.detail : "HTTP " + response.status));
          }
          return data;
        });
      });
    return within(request, LIMITS.server, "the pocketnoc server did not answer within " + LIMITS.server / 1000 + " s")
      .catch(failWith(function () { return "the pocketnoc server could not be reached (offline?)"; }));
  }

  function showProblem(text) {
    if (problem) { problem.textContent = text; problem.hidden = !text; }
    if (retry) { retry.hidden = !text; }
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

  function permission() {
    say("Turning notifications on: asking for permission…");
    var asked = Promise.resolve(Notification.requestPermission());
    return within(asked, LIMITS.permission, "no answer to the permission prompt within " + LIMITS.permission / 1000 + " s")
      .then(function (answer) {
        if (answer === "denied") {
          throw new Failure("permission denied: notifications are blocked for this site. Allow them in the browser's " +
            "site settings (the icon left of the address), then try again.");
        }
        if (answer !== "granted") { throw new Failure("the permission prompt was closed without an answer: try again and choose Allow."); }
      });
  }

  function subscribe(reg, key) {
    say("Turning notifications on: asking the browser's push service…");
    var made = reg.pushManager.getSubscription().then(function (sub) {
      if (sub && !sameKey(sub.options.applicationServerKey, key)) {
        return sub.unsubscribe().then(function () { return null; });
      }
      return sub;
    }).then(function (sub) {
      return sub || reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key});
    });
    return within(made, LIMITS.push, "the browser's push service did not answer within " + LIMITS.push / 1000 +
        " s (offline, or blocked on this network?)")
      .catch(failWith(function (err) {
        return "the browser's push service could not be reached (subscribe failed: " + ((err && err.message) || "no reason given") + ")";
      }));
  }

  function turnOn() {
    on.hidden = false;
    on.disabled = true;
    showProblem("");
    permission().then(function () {
      say("Turning notifications on: starting the service worker…");
      return Promise.all([registration(), send("GET", "/api/v1/push/key")]);
    }).then(function (got) {
      return subscribe(got[0], keyBytes(got[1].public_key));
    }).then(function (sub) {
      say("Turning notifications on: saving this device on the server…");
      var json = sub.toJSON();
      return send("POST", "/api/v1/push/subscriptions", {endpoint: json.endpoint, keys: json.keys, label: label.value || guessName()});
    }).then(function (saved) {
      localStorage.setItem(ID_KEY, String(saved.id));
      location.assign("/notify?done=subscribed");
    }).catch(function (err) {
      on.disabled = false;
      on.hidden = true;  // "Try again" takes its place
      say("Notifications are off for this device.");
      showProblem("Could not turn notifications on: " + ((err && err.message) || String(err)));
    });
  }

  on.addEventListener("click", turnOn);
  if (retry) { retry.addEventListener("click", turnOn); }

  off.addEventListener("click", function () {
    var id = localStorage.getItem(ID_KEY);
    var removed = id ? send("DELETE", "/api/v1/push/subscriptions/" + encodeURIComponent(id)).catch(function () { return null; })
      : Promise.resolve(null);
    removed.then(registration).then(function (reg) { return reg.pushManager.getSubscription(); }).then(function (sub) {
      localStorage.removeItem(ID_KEY);
      return sub ? sub.unsubscribe() : true;
    }).then(function () { location.assign("/notify?done=delete"); }, function (err) {
      showProblem("Could not turn notifications off: " + ((err && err.message) || String(err)));
    });
  });

  refresh().catch(function (err) {
    say("Push is not available here.");
    showProblem("Could not check this device: " + ((err && err.message) || String(err)));
    controls.hidden = false;
    on.hidden = true;
  });
})();
