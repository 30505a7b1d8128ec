// pocketnoc: progressive enhancement only — every page works without this file.
// Live updates over SSE with a live/reconnecting/offline indicator, region refresh without reload,
// acknowledgements queued while offline and sent when back, the offline banner, touch read-out of graphs.
"use strict";
(() => {
  const $ = (s, root = document) => root.querySelector(s);
  const $$ = (s, root = document) => Array.from(root.querySelectorAll(s));
  const body = document.body;
  const me = body.dataset.user || "";
  const QKEY = "pn-queue";
  let freshAt = Number(body.dataset.rendered) || Date.now() / 1000; // when the data on screen was rendered
  let live = null;

  // Work that can wait runs once the page has loaded and the phone is idle, so it never delays the first paint.
  const later = (fn) => {
    const go = () => ("requestIdleCallback" in window ? requestIdleCallback(fn, { timeout: 3000 }) : setTimeout(fn, 200));
    if (document.readyState === "complete") go(); else addEventListener("load", go, { once: true });
  };
  later(() => {
    if (!("serviceWorker" in navigator)) return;
    navigator.serviceWorker.register("/sw.js", { updateViaCache: "none" }).catch(() => {});
    if (!me || body.dataset.cached) return;
    navigator.serviceWorker.ready.then((reg) => { // keep this page and the files it uses for offline use
      const files = $$("link[rel=stylesheet], script[src]").map((el) => el.href || el.src);
      reg.active?.postMessage({ keep: [...files, location.href.split("#")[0]] });
    }).catch(() => {});
  });

  // ---- the user's time zone: the browser's on a first visit (the account page overrides it); times in it ----
  const zone = body.dataset.tz || undefined;
  if (me && body.dataset.tzUnset) {
    let tz = "";
    try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* no Intl: stay on UTC */ }
    if (tz) {
      const form = new URLSearchParams({ csrf_token: body.dataset.csrf || "", tz, auto: "1" });
      fetch("/account/timezone", { method: "POST", body: form, credentials: "same-origin" })
        .then((r) => { if (r.ok && tz !== zone) location.reload(); }).catch(() => {});
    }
  }

  // ---- ages and the offline banner ----
  const clock = (t) => new Date(t * 1000).toLocaleString([], { hour: "2-digit", minute: "2-digit", day: "numeric", month: "short", timeZone: zone });
  function ago(t) {
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 90) return "just now";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }
  const stale = $("#stale");
  let staleShown = false;
  function showStale(why) {
    if (!stale) return;
    staleShown = true;
    stale.hidden = false;
    stale.dataset.why = why;
    stale.textContent = `${why} — showing the last known state, from ${clock(freshAt)} (${ago(freshAt)}).`;
  }
  function hideStale() {
    if (stale) stale.hidden = true;
    staleShown = false;
  }
  if (body.dataset.cached) showStale("Offline");
  setInterval(() => staleShown && showStale(stale.dataset.why || "Offline"), 30000);

  // ---- queued actions (acknowledge / snooze made while offline) ----
  const load = () => { try { return JSON.parse(localStorage.getItem(QKEY) || "[]"); } catch { return []; } };
  const save = (q) => localStorage.setItem(QKEY, JSON.stringify(q));
  const queueBar = $("#queue");
  function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }
  let notice = null; // the last "sent" message stays up for a while, across region refreshes
  function showQueue(text, good) {
    if (text) notice = { text, good, until: Date.now() + 20000 };
    const mine = load().filter((x) => x.user === me);
    const status = $("[data-queue-status]");
    if (status) status.textContent = mine.length ? `${plural(mine.length, "action")} waiting to be sent.` : "No acknowledgements waiting to be sent.";
    if (!queueBar) return;
    if (mine.length) {
      text = `${plural(mine.length, "action")} made offline waiting to be sent: ${mine.map((x) => `${x.kind} “${x.title}”`).join(", ")}. They go out when the connection is back.`;
      good = false;
    } else if (notice && notice.until > Date.now()) ({ text, good } = notice);
    else text = "";
    queueBar.hidden = !text;
    queueBar.textContent = text;
    queueBar.classList.toggle("good", Boolean(good));
    for (const item of mine) {
      const form = $(`form[action="${CSS.escape(item.url)}"]`);
      if (form) form.closest(".arow")?.classList.add("queued");
    }
  }
  function csrfNow() { return $("input[name=csrf_token]")?.value || ""; }
  async function post(url, data) {
    const r = await fetch(url, { method: "POST", body: data, credentials: "same-origin", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    if (new URL(r.url).pathname === "/login") return "login";
    if (r.status === 403) return "forbidden";
    return r.ok ? "ok" : "error";
  }
  let flushing = false;
  async function flush() {
    if (flushing || !me) return;
    const pending = load().filter((x) => x.user === me);
    if (!pending.length) return;
    flushing = true;
    const done = [];
    let login = false;
    for (const item of pending) {
      let result;
      try {
        result = await post(item.url, new URLSearchParams(item.body));
        if (result === "forbidden" && csrfNow()) { // the session's CSRF token changed since: use the current one
          const again = new URLSearchParams(item.body);
          again.set("csrf_token", csrfNow());
          result = await post(item.url, again);
        }
      } catch { break; } // still offline
      if (result === "login") { login = true; break; }
      done.push({ ...item, result });
      save(load().filter((x) => x.id !== item.id));
    }
    flushing = false;
    const ok = done.filter((x) => x.result === "ok").length;
    if (login) showQueue("Sign in again to send the actions made offline.");
    else if (done.length) {
      const failed = done.length - ok;
      showQueue(`Sent ${plural(ok, "action")} made offline (${done.map((x) => `${x.kind} “${x.title}”`).join(", ")})${failed ? `; ${failed} refused by the server` : ""}.`, !failed);
      setTimeout(() => showQueue(), 20500);
      refresh();
    }
  }
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.queue) return;
    ev.preventDefault();
    const data = new URLSearchParams(new FormData(form));
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const r = await fetch(form.action, { method: "POST", body: data, credentials: "same-origin", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
      if (new URL(r.url).pathname === "/login") { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); return; }
      form.closest(".arow")?.classList.add("sent");
      if (r.ok) showFlash(await r.text()); // answered in place: with Undo, or "Undone" after an Undo
      else { hideFlash(); refresh(); }
    } catch {
      const stamp = new Date().toISOString().slice(0, 19) + "Z"; // ISO UTC: each reader's page shows it in their zone
      const said = data.get("note");
      data.set("note", `${said ? said + " — " : ""}${{ ack: "Acknowledged", snooze: "Snoozed", unsnooze: "Snooze ended", undo: "Undone" }[form.dataset.queue] || "Done"} offline on the phone at ${stamp}; sent when the connection came back.`);
      const q = load();
      if (q.some((x) => x.url === form.getAttribute("action") && x.user === me)) return showQueue();
      q.push({ id: `${Date.now()}-${Math.random()}`, user: me, url: form.getAttribute("action"), body: data.toString(), kind: form.dataset.queue, title: form.dataset.title || "", at: Date.now() });
      save(q);
      showQueue();
    }
  });

  // ---- the answer to an ack/snooze tap: announced, visible where the thumb is, with Undo for a few seconds ----
  const FLASH_MS = 8000;
  let holdUntil = 0; // rows stay where they are while the answer is up (the list re-sorts afterwards)
  let flashTimer = 0;
  function showFlash(pageText) {
    const box = $("#flash");
    const fresh = new DOMParser().parseFromString(pageText, "text/html").querySelector("#flash");
    if (!box || !fresh || fresh.hidden) { refresh(); return; }
    const undo = fresh.querySelector("form.undo");
    if (undo) undo.dataset.queue = "undo";
    box.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { hideFlash(); refresh(); }, FLASH_MS);
    // A list keeps its rows in place while the answer is up; an alert's own page shows its new state at once
    // (no "Acknowledge" button left under "Acknowledged: …").
    if ($("[data-alert]")) { holdUntil = 0; refresh(); } else holdUntil = Date.now() + FLASH_MS;
  }
  function hideFlash() {
    const box = $("#flash");
    if (box) { box.hidden = true; box.replaceChildren(); }
    holdUntil = 0;
  }
  if ($("#flash:not([hidden])")) { // reached after a tap without JS enhancement (e.g. a reload): let it go after a while
    const undo = $("#flash form.undo");
    if (undo) undo.dataset.queue = "undo";
    flashTimer = setTimeout(() => { $("#flash form.undo")?.remove(); }, FLASH_MS);
  }

  // ---- region refresh: re-read this page and swap the parts marked data-region ----
  let busy = false;
  let again = false;
  async function refresh() {
    if (!$("[data-region]")) { // nothing live on this page: back online, it is not "the last known state" any more
      if (!body.dataset.cached) hideStale();
      return;
    }
    if (Date.now() < holdUntil) { setTimeout(refresh, holdUntil - Date.now() + 50); return; }
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin", cache: "no-store" });
      if (new URL(r.url).pathname === "/login") { location.reload(); return; }
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const focusForm = document.activeElement?.closest?.("[data-region] form")?.getAttribute("action");
      for (const old of $$("[data-region]")) {
        const fresh = doc.querySelector(`[data-region="${CSS.escape(old.dataset.region)}"]`);
        if (!fresh || fresh.innerHTML === old.innerHTML) continue;
        if (old.querySelector(".readout:not([hidden])")) continue; // a graph is being read: the next refresh takes it
        const node = document.importNode(fresh, true);
        const opened = $$("details", old).map((el) => el.open); // keep what the reader expanded
        $$("details", node).forEach((el, n) => { if (opened[n]) el.open = true; });
        old.replaceWith(node);
        applyFilter();
        enhance(node);
      }
      if (focusForm) $(`form[action="${CSS.escape(focusForm)}"] button`)?.focus();
      document.title = doc.title;
      freshAt = Number(doc.body.dataset.rendered) || Date.now() / 1000;
      hideStale();
      showQueue();
    } catch { /* offline: the indicator says so */ } finally {
      busy = false;
      if (again) { again = false; setTimeout(refresh, 1000); }
    }
  }

  function relevant(change) {
    if (change.resync) return true;
    const device = $("[data-device]")?.dataset.device;
    const alert = $("[data-alert]")?.dataset.alert;
    if (device) return change.devices.some((d) => String(d.id) === device) || change.alerts.some((a) => String(a.device) === device);
    if (alert) return change.alerts.some((a) => String(a.id) === alert);
    return true;
  }

  // ---- live connection with back-off ----
  const indicator = $("#live");
  function setLive(cls, text) {
    if (!indicator) return;
    indicator.hidden = false;
    indicator.className = "live " + cls;
    const label = indicator.querySelector(".ltext");
    if (label.textContent !== text) label.textContent = text;
    indicator.title = cls === "on" ? "Live: changes appear as they happen" : text;
  }
  let source = null;
  let backoff = 1000;
  let timer = 0;
  let opened = false;
  let failures = 0;
  function connect() {
    clearTimeout(timer);
    if (source) source.close();
    if (!navigator.onLine) { setLive("off", "offline"); showStale("Offline"); return; }
    setLive("retry", opened ? "reconnecting" : "connecting");
    source = new EventSource("/live");
    source.addEventListener("hello", () => {
      const wasDown = opened || staleShown || body.dataset.cached;
      opened = true;
      failures = 0;
      backoff = 1000;
      setLive("on", "live");
      if (wasDown) refresh();
      flush();
    });
    source.addEventListener("change", (ev) => {
      try { if (relevant(JSON.parse(ev.data))) refresh(); } catch { refresh(); }
    });
    source.addEventListener("bye", () => { source.close(); location.reload(); });
    source.onerror = () => {
      source.close();
      failures += 1;
      const off = !navigator.onLine;
      setLive(off ? "off" : "retry", off ? "offline" : "reconnecting");
      if (failures > 1) showStale(off ? "Offline" : "No connection to the server");
      if (failures === 2 && !off) { // a signed-out session also ends the stream: go to the sign-in page then
        fetch("/api/v1/me", { credentials: "same-origin" }).then((r) => { if (r.status === 401) location.reload(); }).catch(() => {});
      }
      timer = setTimeout(connect, backoff * (0.75 + Math.random() / 2));
      backoff = Math.min(backoff * 2, 30000);
    };
  }
  if (indicator && "EventSource" in window) {
    setLive("retry", "connecting");
    later(connect);
    addEventListener("online", () => { backoff = 1000; connect(); flush(); });
    addEventListener("offline", () => { if (source) source.close(); setLive("off", "offline"); showStale("Offline"); });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && (!source || source.readyState === EventSource.CLOSED)) { backoff = 1000; connect(); }
    });
    setInterval(() => { if (document.visibilityState === "visible" && source?.readyState === EventSource.OPEN) refresh(); }, 60000);
  }
  showQueue();
  if (navigator.onLine) flush();
  setInterval(() => navigator.onLine && flush(), 15000);

  // ---- graphs: touch (or hover, or arrow keys) to read a value ----
  const units = { "b/s": [[1e9, "Gb/s"], [1e6, "Mb/s"], [1e3, "kb/s"]], B: [[2 ** 40, "TiB"], [2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]] };
  function fmt(v, unit) {
    for (const [size, name] of units[unit] || []) if (Math.abs(v) >= size) return (v / size).toFixed(1) + " " + name;
    const text = Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString();
    return unit ? `${text} ${unit}` : text;
  }
  function points(svg) {
    if (!svg._pts) {
      svg._pts = $$("polyline", svg).flatMap((p) => p.getAttribute("points").trim().split(/\s+/).map((xy) => xy.split(",").map(Number)));
      svg._pts.sort((a, b) => a[0] - b[0]);
    }
    return svg._pts;
  }
  function show(svg, index) {
    const pts = points(svg);
    if (!pts.length) return;
    index = Math.max(0, Math.min(pts.length - 1, index));
    svg._i = index;
    const [x, y] = pts[index];
    const box = svg.viewBox.baseVal;
    const d = svg.dataset;
    const t0 = Number(d.t0), t1 = Number(d.t1), lo = Number(d.lo), hi = Number(d.hi);
    const t = t0 + (x / box.width) * (t1 - t0);
    const v = hi === lo ? lo : lo + ((box.height - 3 - y) / (box.height - 6)) * (hi - lo);
    const plot = svg.parentElement;
    let cursor = $(".cursor", plot), out = $(".readout", plot);
    if (!cursor) {
      cursor = plot.appendChild(document.createElement("span"));
      cursor.className = "cursor";
      out = plot.appendChild(document.createElement("output"));
      out.className = "readout";
      out.setAttribute("aria-live", "polite");
    }
    const left = (x / box.width) * 100;
    cursor.style.left = out.style.left = `${left}%`;
    out.style.transform = `translateX(${left < 15 ? "0" : left > 85 ? "-100%" : "-50%"})`;
    const when = new Date(t * 1000).toLocaleString([], t1 - t0 > 90000 ? { weekday: "short", hour: "2-digit", minute: "2-digit", timeZone: zone } : { hour: "2-digit", minute: "2-digit", timeZone: zone });
    out.textContent = `${when} · ${fmt(v, d.unit)}`;
    cursor.hidden = out.hidden = false;
  }
  function hide(svg) {
    const plot = svg.parentElement;
    for (const el of $$(".cursor, .readout", plot)) el.hidden = true;
  }
  function nearest(svg, clientX) {
    const rect = svg.getBoundingClientRect();
    const x = ((clientX - rect.left) / rect.width) * svg.viewBox.baseVal.width;
    const pts = points(svg);
    let best = 0;
    for (let i = 1; i < pts.length; i++) if (Math.abs(pts[i][0] - x) < Math.abs(pts[best][0] - x)) best = i;
    return best;
  }
  function enhance(root) {
    for (const svg of $$("svg.spark", root)) {
      if (svg._enhanced) continue;
      svg._enhanced = true;
      svg.setAttribute("tabindex", "0");
      let hideTimer = 0;
      const move = (ev) => { clearTimeout(hideTimer); show(svg, nearest(svg, ev.clientX)); };
      svg.addEventListener("pointerdown", move);
      svg.addEventListener("pointermove", move);
      svg.addEventListener("pointerleave", () => { hideTimer = setTimeout(() => hide(svg), 2500); });
      svg.addEventListener("keydown", (ev) => {
        const step = { ArrowLeft: -1, ArrowRight: 1, Home: -1e9, End: 1e9 }[ev.key];
        if (step === undefined) return;
        ev.preventDefault();
        show(svg, (svg._i ?? points(svg).length - 1) + step);
      });
      svg.addEventListener("blur", () => hide(svg));
    }
  }
  enhance(document);

  // ---- table filter: the ?q= form filters on the server; typing filters at once here ----
  function applyFilter() {
    const box = $("[data-filter-rows]");
    if (!box) return;
    const want = box.value.trim().toLowerCase();
    for (const row of $$("[data-filter]")) row.hidden = Boolean(want) && !row.dataset.filter.includes(want);
    if (want) for (const d of $$("details.more-rows")) d.open = true;
  }
  $("[data-filter-rows]")?.addEventListener("input", applyFilter);

  // ---- 'Poll now' said what it did: a reload or a shared link must not say it again ----
  const polled = new URL(location.href);
  if (/^\/devices\/\d+$/.test(polled.pathname) && polled.searchParams.has("done") && $("[data-poll-said]")) {
    polled.searchParams.delete("done");
    history.replaceState(history.state, "", polled.pathname + polled.search + polled.hash);
  }
})();
