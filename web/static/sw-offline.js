// Offline support: the app shell (static files) cache-first, pages network-first with their last copy
// kept as "the last known state", served marked as cached (app.js shows its age) when the network fails.
"use strict";
const SHELL = "pn-shell-v1";
const PAGES = "pn-pages-v1";
const MAX_PAGES = 40;
const NAV_TIMEOUT_MS = 6000; // on a bad connection, show the saved copy rather than a spinner
const PRECACHE = ["/offline", "/static/icons/icon.svg", "/static/icons/icon-192.png"];
const NEVER = ["/live", "/sw.js", "/login", "/logout", "/metrics", "/healthz", "/offline", "/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("pn-") && k !== SHELL && k !== PAGES).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

async function fromShell(request) {
  const cache = await caches.open(SHELL);
  const hit = await cache.match(request);
  const versioned = new URL(request.url).searchParams.has("v");
  const network = fetch(request).then(async (response) => {
    if (response.ok && response.type === "basic") {
      if (versioned) { // drop older versions of the same file
        const path = new URL(request.url).pathname;
        for (const old of await cache.keys()) if (new URL(old.url).pathname === path && old.url !== request.url) cache.delete(old);
      }
      await cache.put(request, response.clone());
    }
    return response;
  });
  if (hit) {
    if (!versioned) network.catch(() => {}); // refresh unversioned files (icons) in the background
    return hit;
  }
  return network;
}

// Account and user pages (a pending TOTP secret, recovery codes, sessions, passkeys) are never kept for offline use.
const PRIVATE = ["/account", "/admin/users"];

function storable(request, response) {
  const html = (response.headers.get("content-type") || "").startsWith("text/html");
  const path = new URL(request.url).pathname;
  return response.ok && response.type === "basic" && !response.redirected && html && !NEVER.includes(path)
    && !PRIVATE.some((p) => path === p || path.startsWith(p + "/"));
}

async function remember(request, response) {
  const cache = await caches.open(PAGES);
  await cache.put(request.url, response);
  const keys = await cache.keys();
  for (const old of keys.slice(0, Math.max(0, keys.length - MAX_PAGES))) await cache.delete(old);
}

async function savedCopy(url) {
  const cache = await caches.open(PAGES);
  const hit = await cache.match(url);
  if (!hit) return null;
  const html = (await hit.text()).replace("<body ", '<body data-cached="1" ');
  return new Response(html, { headers: { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" } });
}

async function page(event) {
  const request = event.request;
  const network = fetch(request).then((response) => {
    if (storable(request, response)) event.waitUntil(remember(request, response.clone()));
    return response;
  });
  if (request.mode !== "navigate") return network; // app.js refreshing a region: it needs the real answer or an error
  let timer;
  const slow = new Promise((resolve) => { timer = setTimeout(resolve, NAV_TIMEOUT_MS, null); });
  try {
    const first = await Promise.race([network, slow.then(() => savedCopy(request.url))]);
    if (first) return first;
    return await network;
  } catch {
    return (await savedCopy(request.url)) || (await caches.match("/offline")) || Response.error();
  } finally {
    clearTimeout(timer);
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method === "POST" && url.pathname === "/logout") {
    event.waitUntil(caches.delete(PAGES)); // a signed-out phone keeps no copy of what it saw
    return;
  }
  if (request.method !== "GET") return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(fromShell(request));
    return;
  }
  if (request.mode === "navigate") {
    event.respondWith(page(event)); // kept only if it is an app page (not sign-in, not a redirect)
    return;
  }
  if (NEVER.includes(url.pathname) || url.pathname.startsWith("/api/")) return;
  if (request.headers.has("X-Live")) event.respondWith(page(event));
});

// The first page a phone opens was loaded before this worker ran: app.js asks for it and its shell to be kept.
async function keep(urls) {
  const shell = await caches.open(SHELL);
  for (const raw of urls.slice(0, 8)) {
    const url = new URL(raw, self.location.origin);
    if (url.origin !== self.location.origin) continue;
    if (url.pathname.startsWith("/static/")) {
      if (!(await shell.match(url.href))) await shell.add(url.href).catch(() => {});
    } else if (!(await (await caches.open(PAGES)).match(url.href))) {
      const request = new Request(url.href, { credentials: "same-origin" });
      const response = await fetch(request).catch(() => null);
      if (response && storable(request, response)) await remember(request, response);
    }
  }
}

self.addEventListener("message", (event) => {
  if (event.data === "forget") event.waitUntil(caches.delete(PAGES));
  else if (event.data && Array.isArray(event.data.keep)) event.waitUntil(keep(event.data.keep));
});
