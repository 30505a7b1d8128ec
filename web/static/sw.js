// pocketnoc service worker, served at /sw.js so it controls the whole app.
// The offline app shell lives in sw-offline.js, Web Push handling in sw-push.js.
importScripts("/static/sw-offline.js", "/static/sw-push.js");
