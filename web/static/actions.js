// Streams a run's output and status live (Server-Sent Events); without JavaScript the page's Refresh link does the job.
(function () {
  "use strict";
  var run = document.getElementById("run");
  if (!run || run.dataset.finished === "yes" || !window.EventSource) {
    return;
  }
  var out = document.getElementById("run-output");
  var refresh = document.getElementById("run-refresh");
  var verdicts = { fixed: "verified", failing: "not fixed", regressed: "fixed, then failed again", unverified: "not verified", skipped: "not checked", checking: "checking…" };
  var source = new EventSource(run.dataset.stream);
  var replaying = true;
  var failures = 0;
  if (refresh) {
    refresh.hidden = true;
  }

  var zone = document.body.dataset.tz || undefined;
  function localTimes(text) { // ISO UTC moments in the text, in the reader's time zone (as the page renders them)
    return String(text || "").replace(/\b(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z\b/g, function (iso) {
      var d = new Date(iso);
      return isNaN(d) ? iso : d.toLocaleString("sv-SE", { timeZone: zone, timeZoneName: "short" });
    });
  }

  function set(id, value) {
    var el = document.getElementById(id);
    if (el) {
      el.textContent = value;
    }
    return el;
  }

  source.addEventListener("output", function (event) {
    var data = JSON.parse(event.data);
    if (replaying) {
      out.textContent = ""; // the stream starts from the first line again
      replaying = false;
    }
    var follow = out.scrollTop + out.clientHeight >= out.scrollHeight - 8;
    var span = document.createElement("span");
    span.className = data.stream === "stderr" ? "stderr" : "stdout";
    span.textContent = data.text; // text only: the output never becomes markup
    out.appendChild(span);
    if (follow) {
      out.scrollTop = out.scrollHeight;
    }
  });

  source.addEventListener("status", function (event) {
    var s = JSON.parse(event.data);
    failures = 0;
    replaying = false;
    set("run-status", String(s.status).replace("_", " "));
    run.className = run.className.replace(/\brs-\S+/g, "") + " rs-" + s.status;
    set("run-exit", s.exit_code === null ? "–" : String(s.exit_code));
    set("run-duration", s.duration === null ? "–" : s.duration.toFixed(1) + " s");
    var verdict = set("run-verification", s.verification ? verdicts[s.verification] || s.verification : "–");
    if (verdict) {
      verdict.className = "badge v-" + (s.verification || "none");
    }
    set("run-verification-detail", localTimes(s.verification_detail));
    var error = set("run-error", s.error || "");
    if (error) {
      error.hidden = !s.error;
    }
  });

  source.addEventListener("end", function () {
    source.close();
    run.dataset.finished = "yes";
  });

  source.addEventListener("bye", function () {
    source.close(); // signed out (here or on another device): the Refresh link leads to the sign-in page
    if (refresh) {
      refresh.hidden = false;
    }
  });

  source.onerror = function () {
    failures += 1;
    if (failures >= 3) {
      source.close();
      if (refresh) {
        refresh.hidden = false;
      }
    }
  };
})();
