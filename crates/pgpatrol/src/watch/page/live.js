// pgpatrol's status page: live from /events/stream, sortable and filterable. Without this
// script the page is a plain table that a reload refreshes.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");
  var badge = document.getElementById("stream");
  var sortBy = null;
  var sortDesc = false;

  function setBadge(cls, text) {
    badge.className = "stream " + cls;
    badge.textContent = text;
  }

  function rows() {
    var t = document.getElementById("fleet");
    return t ? Array.prototype.slice.call(t.tBodies[0].rows) : [];
  }

  function applyFilter() {
    var f = document.getElementById("filter");
    var u = document.getElementById("unhealthy");
    if (!f || !u) { return; }
    var text = f.value.toLowerCase();
    rows().forEach(function (r) {
      var show = r.textContent.toLowerCase().indexOf(text) >= 0 &&
        (!u.checked || r.getAttribute("data-health") !== "ok");
      r.style.display = show ? "" : "none";
    });
  }

  var healthRank = { crit: 0, warn: 1, unknown: 2, ok: 3 };
  function key(r, i, how) {
    var c = r.cells[i];
    if (how === "num") { return parseFloat(c.getAttribute("data-num")) || 0; }
    if (how === "health") { return healthRank[r.getAttribute("data-health")]; }
    return c.textContent.toLowerCase();
  }

  function applySort() {
    var t = document.getElementById("fleet");
    if (!t || sortBy === null) { return; }
    var th = t.tHead.rows[0].cells[sortBy];
    var how = th.getAttribute("data-sort");
    var rs = rows();
    rs.sort(function (a, b) {
      var x = key(a, sortBy, how), y = key(b, sortBy, how);
      var d = x < y ? -1 : x > y ? 1 : 0;
      return sortDesc ? -d : d;
    });
    rs.forEach(function (r) { t.tBodies[0].appendChild(r); });
  }

  function wire() {
    var t = document.getElementById("fleet");
    if (t) {
      Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th, i) {
        if (!th.hasAttribute("data-sort")) { return; }
        th.addEventListener("click", function () {
          sortDesc = sortBy === i ? !sortDesc : false;
          sortBy = i;
          applySort();
        });
      });
    }
    ["filter", "unhealthy"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.addEventListener("input", applyFilter); el.addEventListener("change", applyFilter); }
    });
    applySort();
    applyFilter();
  }

  // Re-renders from the server: one rendering path for the page with and without script.
  var pending = null;
  var keep = {};
  function refresh() {
    if (pending) { return; }
    pending = setTimeout(function () {
      pending = null;
      fetch(location.pathname, { headers: { Accept: "text/html" }, cache: "no-store" })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
        .then(function (html) {
          var f = document.getElementById("filter");
          var u = document.getElementById("unhealthy");
          keep = { filter: f ? f.value : "", unhealthy: u ? u.checked : false };
          var doc = new DOMParser().parseFromString(html, "text/html");
          var next = doc.getElementById("main");
          if (!next) { return; }
          document.getElementById("main").innerHTML = next.innerHTML;
          f = document.getElementById("filter");
          u = document.getElementById("unhealthy");
          if (f) { f.value = keep.filter; }
          if (u) { u.checked = keep.unhealthy; }
          wire();
          document.body.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () { setBadge("lost", "cannot refresh: is watch running?"); });
    }, 250);
  }

  wire();
  if (!window.EventSource) { setBadge("", "no live updates in this browser: reload to refresh"); return; }
  setBadge("", "connecting…");
  var es = new EventSource("/events/stream");
  es.onopen = function () { setBadge("live", "live"); refresh(); };
  es.onerror = function () { setBadge("lost", "stream lost: reconnecting…"); };
  es.onmessage = function (m) {
    var e;
    try { e = JSON.parse(m.data); } catch (err) { return; }
    if (page === "fleet" || e.cluster === page) { refresh(); }
  };
  // Figures move between events (lag under the tolerance): refresh now and then too.
  setInterval(function () { if (badge.className.indexOf("live") >= 0) { refresh(); } }, 10000);
}());
