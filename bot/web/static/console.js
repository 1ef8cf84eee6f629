/* gridbot console: Mini App sign-in and the case map. No framework, nothing from a CDN. */
"use strict";

/* Telegram opens a Mini App with #tgWebAppData=<initData>&tgWebAppVersion=…; the server checks it. */
function gridbotSignIn(prefix, failedText) {
  var status = document.getElementById("signin-status");
  var help = document.getElementById("signin-help");
  var hash = new URLSearchParams(location.hash.slice(1));
  var initData = hash.get("tgWebAppData") ||
    (window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData) || "";
  if (!initData) { status.hidden = true; help.hidden = false; return; }
  var body = new URLSearchParams();
  body.set("init_data", initData);
  fetch(prefix + "/auth/webapp", { method: "POST", body: body, credentials: "same-origin" })
    .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
    .then(function (res) {
      if (res[1].ok) { location.replace(res[1].next); return; }
      status.textContent = failedText.replace("%s", res[1].reason || res[0]);
      status.className = "warn"; status.id = "signin-refused"; help.hidden = false;
    })
    .catch(function (e) { status.textContent = failedText.replace("%s", e); status.id = "signin-refused"; });
}

var GRIDBOT_COLOURS = { "new": "#2563eb", "accepted": "#059669", "reopened": "#d97706", "overdue": "#dc2626" };

function gridbotMap(el, search) {
  var map = L.map(el, { preferCanvas: false, zoomSnap: 0.25 });
  if (el.dataset.tiles) {
    L.tileLayer(el.dataset.tiles, { maxZoom: 19, attribution: "" }).addTo(map);
  }
  map.setView([36.06, 120.38], 14);
  fetch(el.dataset.api + search, { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (data) {
      var bounds = L.latLngBounds([]);
      data.areas.forEach(function (a) {
        var poly = L.polygon(a.ring, { color: a.level <= 1 ? "#334155" : "#64748b", weight: a.level <= 1 ? 2.5 : 1,
          fillColor: "#cbd5e1", fillOpacity: a.level >= 3 ? 0.15 : 0.05, className: "gb-area gb-level" + a.level });
        poly.bindTooltip(a.name);
        poly.addTo(map);
        bounds.extend(poly.getBounds());
      });
      data.pins.forEach(function (p) {
        var m = L.circleMarker([p.lat, p.lon], { radius: 7, color: "#fff", weight: 1.5, fillOpacity: 0.95,
          fillColor: GRIDBOT_COLOURS[p.status] || "#6b7280", className: "gb-pin gb-" + p.status });
        m.bindTooltip("#" + p.id + " · " + p.area);
        m.on("click", function () { location.href = el.dataset.case + p.id; });
        m.addTo(map);
        bounds.extend([p.lat, p.lon]);
      });
      if (bounds.isValid()) { map.fitBounds(bounds, { padding: [20, 20] }); }
      document.getElementById("truncated").hidden = !data.truncated;
      el.dataset.pins = data.pins.length;
      el.dataset.areas = data.areas.length;
      el.classList.add("loaded");
    });
}
