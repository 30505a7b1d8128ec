// pocketnoc Web Push (imported by /sw.js): show alert notifications, and act on Acknowledge / Snooze 1 h
// straight from the notification. The action is posted with the notification's own single-use token:
// no session cookie is sent (credentials: "omit"), and a used or expired token is refused by the server.
"use strict";

function pnSafePath(value) {
  var path = String(value || "/alerts");
  return path.charAt(0) === "/" && path.charAt(1) !== "/" && path.indexOf("\\") < 0 ? path : "/alerts";
}

function pnShow(data) {
  var actions = Array.isArray(data.actions) ? data.actions.slice(0, 2) : [];
  var options = {
    body: String(data.body || "").slice(0, 400),
    tag: String(data.tag || "pocketnoc").slice(0, 100),
    renotify: Boolean(data.renotify),
    silent: Boolean(data.silent),
    requireInteraction: data.severity === "critical" && data.kind !== "resolve",
    timestamp: Date.now(),
    data: {url: pnSafePath(data.url), token: data.token || null, alertId: data.alert_id || null, kind: data.kind || ""},
    actions: actions.map(function (a) { return {action: String(a.action), title: String(a.title).slice(0, 40)}; })
  };
  return self.registration.showNotification(String(data.title || "pocketnoc").slice(0, 160), options);
}

self.addEventListener("push", function (event) {
  var data;
  try {
    data = event.data ? event.data.json() : {};
  } catch (err) {
    data = {title: "pocketnoc", body: event.data ? event.data.text().slice(0, 400) : ""};
  }
  event.waitUntil(pnShow(data || {}));
});

function pnAct(notification, action) {
  var d = notification.data || {};
  var verb = action === "ack" ? "acknowledge" : "snooze";
  notification.close();
  return fetch("/api/v1/push/action", {
    method: "POST",
    credentials: "omit",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: d.token, action: action})
  }).then(function (response) {
    return response.json().catch(function () { return {}; }).then(function (body) {
      if (response.ok) { return action === "ack" ? "Acknowledged" : "Snoozed for 1 hour"; }
      return typeof body.detail === "string" ? body.detail : "Could not " + verb + " (HTTP " + response.status + ")";
    });
  }, function () {
    return "No connection: open pocketnoc to " + verb;
  }).then(function (text) {
    return self.registration.showNotification(text, {body: notification.title, tag: notification.tag, silent: true,
                                                     data: {url: d.url, token: null}});
  });
}

function pnOpen(notification) {
  var target = new URL(pnSafePath((notification.data || {}).url), self.location.origin).href;
  notification.close();
  // Reuse an open pocketnoc window (navigate it, then bring it forward); open a new one only when there is none.
  return self.clients.matchAll({type: "window"}).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if (new URL(list[i].url).origin === self.location.origin && "navigate" in list[i]) {
        var client = list[i];
        return client.navigate(target).then(function (moved) {
          return (moved || client).focus().catch(function () { return moved || client; });
        });
      }
    }
    return self.clients.openWindow(target);
  });
}

self.addEventListener("notificationclick", function (event) {
  var n = event.notification;
  var work = (event.action === "ack" || event.action === "snooze") && n.data && n.data.token ? pnAct(n, event.action) : pnOpen(n);
  try {
    event.waitUntil(work);
  } catch (err) {
    // An event not made by the browser cannot be extended; the work still runs.
  }
});
