// Directory accounts: results as you type (the search form works without it) and the copy button of a new password.
(function () {
  "use strict";
  var box = document.querySelector("[data-live-search]");
  if (box && window.fetch) {
    var target = document.getElementById(box.dataset.liveTarget);
    var timer = null;
    var asked = 0;
    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var q = box.value.trim();
        var mine = ++asked;
        fetch(box.dataset.liveSearch + "?q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.text(); })
          .then(function (html) {
            if (mine === asked && target) {
              target.innerHTML = html; // rendered and escaped by the server
            }
          })
          .catch(function () { /* offline: the Search button still works */ });
      }, 250);
    });
  }
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copy).textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      } else {
        var range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
      }
    });
  });
})();
