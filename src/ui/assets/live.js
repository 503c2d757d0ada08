// hookrelay web UI: refreshes the regions of a page marked `data-live`
// every few seconds, by fetching the same page and swapping them in.
// Comfort only: every page works without script (it then reloads itself
// every 5 s through a <noscript> refresh). It leaves the page alone while
// a field has the focus, so typing is never disturbed.
(function () {
  "use strict";
  var EVERY_MS = 2000;
  if (!document.querySelector("[data-live]")) return;
  var busy = false;
  function typing() {
    var a = document.activeElement;
    return a && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }
  function refresh() {
    if (busy || document.hidden || typing()) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok || r.redirected) return null;
        return r.text();
      })
      .then(function (text) {
        if (!text) return;
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) old.replaceWith(document.importNode(next, true));
        });
        var stamp = document.getElementById("refreshed-at");
        if (stamp) stamp.textContent = new Date().toLocaleTimeString();
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, EVERY_MS);
})();
