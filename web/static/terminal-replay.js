// Replays a terminal recording (asciicast v2) in xterm.js: play at a speed, or skip to the end.
(function () {
  "use strict";
  var box = document.getElementById("replay");
  if (!box || !window.Terminal) return;
  var state = document.getElementById("replay-state");
  var header = null, events = [], timer = null, at = 0, playing = false;
  var term = new window.Terminal({fontSize: 13, scrollback: 10000, disableStdin: true, convertEol: false});
  term.open(document.getElementById("replay-term"));
  window.pnReplay = term;

  function speed() { return parseFloat(box.querySelector("[data-act=speed]").value) || 1; }

  function reset() {
    clearTimeout(timer); term.reset(); at = 0;
    if (header) term.resize(Math.min(header.width || 80, 300), Math.min(header.height || 24, 100));
  }

  function step() {
    while (at < events.length) {
      var e = events[at];
      if (e[1] === "o") term.write(e[2]);
      else if (e[1] === "r") { var wh = String(e[2]).split("x"); term.resize(+wh[0] || 80, +wh[1] || 24); }
      at++;
      if (at < events.length) {
        var wait = Math.min((events[at][0] - e[0]) / speed(), 2) * 1000;
        if (wait > 10) { timer = setTimeout(step, wait); return; }
      }
    }
    playing = false; state.textContent = "end of the recording"; box.dataset.done = "1";
  }

  function toEnd() {
    clearTimeout(timer);
    while (at < events.length) { var e = events[at++]; if (e[1] === "o") term.write(e[2]); }
    playing = false; state.textContent = "end of the recording"; box.dataset.done = "1";
  }

  box.addEventListener("click", function (ev) {
    var b = ev.target.closest("button");
    if (!b || !header) return;
    if (b.dataset.act === "play") { reset(); playing = true; state.textContent = "playing"; box.dataset.done = ""; step(); }
    if (b.dataset.act === "end") { if (!playing) reset(); toEnd(); }
  });

  fetch(box.dataset.cast, {credentials: "same-origin"}).then(function (r) {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.text();
  }).then(function (text) {
    var lines = text.split("\n");
    try { header = JSON.parse(lines[0]); } catch (e) { state.textContent = "not a recording"; return; }
    for (var i = 1; i < lines.length; i++) {
      if (!lines[i]) continue;
      try { var ev = JSON.parse(lines[i]); if (Array.isArray(ev)) events.push(ev); } catch (e) { /* a damaged line is skipped */ }
    }
    state.textContent = events.length + " events";
    box.dataset.ready = "1";
    reset();
  }).catch(function (e) { state.textContent = "cannot load the recording: " + e.message; });
})();
