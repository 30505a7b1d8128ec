// The browser terminal: xterm.js over a WebSocket to an SSH shell; phone keys, font size, copy/paste, resume after a drop.
(function () {
  "use strict";
  var page = document.getElementById("term-page");
  if (!page || !window.Terminal) return;
  var FRAME = 16 * 1024;  // input is sent in pieces well under the server's 64 KB frame limit
  var PASTE_MAX = 1024 * 1024;
  var KEYS = {esc: "\x1b", tab: "\t", up: "\x1b[A", down: "\x1b[B", right: "\x1b[C", left: "\x1b[D"};
  var state = document.getElementById("term-state");
  var saved = parseInt(localStorage.getItem("pn-term-font") || "", 10);
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  var term = new window.Terminal({
    fontSize: saved >= 8 && saved <= 32 ? saved : 14, scrollback: 5000, cursorBlink: true, convertEol: false,
    theme: dark ? {background: "#0f1216", foreground: "#e9ebee"} : {background: "#ffffff", foreground: "#14171b", cursor: "#14171b", selectionBackground: "#b7d3ff"}
  });
  var fit = window.FitAddon ? new window.FitAddon.FitAddon() : null;
  if (fit) term.loadAddon(fit);
  term.open(document.getElementById("term"));
  if (fit) fit.fit();
  var ws = null, resume = null, graceUntil = 0, graceMs = 0, finished = false, mods = {ctrl: false, alt: false};
  var encoder = new TextEncoder();
  window.pnTerminal = term;  // for tests and the curious: the page's terminal

  function say(text, cls) { state.textContent = text; state.className = "term-state sub " + (cls || ""); }

  function url(query) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/terminal/ws?" + query +
      "&cols=" + term.cols + "&rows=" + term.rows;
  }

  function connect(query) {
    ws = new WebSocket(url(query));
    ws.binaryType = "arraybuffer";
    ws.onmessage = function (ev) {
      if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
      var msg; try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.t === "ready") {
        resume = msg.resume; graceUntil = 0; graceMs = Math.max(0, (msg.grace || 0) * 1000 - 2000); say("connected", "ok");
        page.dataset.session = msg.session;
        sendResize();
        term.focus();
      } else if (msg.t === "error") {
        finished = true; say(msg.message, "err"); term.write("\r\n\x1b[31m" + msg.message + "\x1b[0m\r\n");
      } else if (msg.t === "end") {
        finished = true; say("ended: " + msg.reason, "warn"); term.write("\r\n\x1b[33m[session ended: " + msg.reason + "]\x1b[0m\r\n");
      }
    };
    ws.onclose = function () {
      if (finished) return;
      if (!resume) { say("could not connect", "err"); finished = true; return; }
      if (!graceUntil) graceUntil = Date.now() + graceMs;
      if (Date.now() > graceUntil) { say("connection lost", "err"); finished = true; return; }
      say("reconnecting…", "warn");
      setTimeout(function () { connect("resume=" + encodeURIComponent(resume)); }, 1000);
    };
  }

  function send(text) {
    if (!ws || ws.readyState !== 1) { say("not connected: input not sent", "warn"); return; }
    var bytes = encoder.encode(text);
    for (var i = 0; i < bytes.length; i += FRAME) ws.send(bytes.slice(i, i + FRAME));
  }

  function withMods(data) {
    if (mods.ctrl && data.length === 1) {
      var c = data.toUpperCase().charCodeAt(0);
      if (c >= 64 && c <= 95) data = String.fromCharCode(c - 64);
      else if (data === " ") data = "\x00";
    }
    if (mods.alt) data = "\x1b" + data;
    if (mods.ctrl || mods.alt) {
      mods.ctrl = mods.alt = false;
      page.querySelectorAll("[data-mod]").forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
    }
    return data;
  }

  function sendResize() {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({t: "r", c: term.cols, r: term.rows}));
  }

  function paste(text) {
    if (text.length > PASTE_MAX) { say("paste refused: over 1 MB", "err"); return; }
    send(text);
  }

  term.onData(function (d) { if (d.length > PASTE_MAX) { say("paste refused: over 1 MB", "err"); return; } send(withMods(d)); });
  term.onBinary(function (d) { if (ws && ws.readyState === 1) ws.send(Uint8Array.from(d, function (c) { return c.charCodeAt(0); })); });
  function refit() { if (fit) { fit.fit(); sendResize(); } }
  window.addEventListener("resize", refit);
  if (screen.orientation) screen.orientation.addEventListener("change", refit);

  page.addEventListener("click", function (ev) {
    var b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.key) { send(withMods(KEYS[b.dataset.key] || b.dataset.key)); term.focus(); return; }
    if (b.dataset.mod) {
      mods[b.dataset.mod] = !mods[b.dataset.mod];
      b.setAttribute("aria-pressed", String(mods[b.dataset.mod]));
      term.focus();
      return;
    }
    var act = b.dataset.act;
    if (act === "font+" || act === "font-") {
      var size = Math.max(8, Math.min(32, term.options.fontSize + (act === "font+" ? 2 : -2)));
      term.options.fontSize = size; localStorage.setItem("pn-term-font", String(size)); refit();
    } else if (act === "copy") {
      var sel = term.getSelection();
      if (sel && navigator.clipboard) navigator.clipboard.writeText(sel).then(function () { say("copied", "ok"); });
    } else if (act === "paste") {
      if (navigator.clipboard && navigator.clipboard.readText) navigator.clipboard.readText().then(paste, function () { say("paste not allowed here: long-press in the terminal", "warn"); });
    } else if (act === "landscape") {
      var el = document.documentElement;
      if (el.requestFullscreen) el.requestFullscreen().then(function () {
        if (screen.orientation && screen.orientation.lock) screen.orientation.lock("landscape").catch(function () {});
        setTimeout(refit, 300);
      }).catch(function () {});
    } else if (act === "end") {
      if (ws && ws.readyState === 1) ws.send(JSON.stringify({t: "x"}));
    }
  });
  connect("ticket=" + encodeURIComponent(page.dataset.ticket));
})();
