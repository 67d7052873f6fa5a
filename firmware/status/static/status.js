// The kiosk status page: polls status.json every second and fills the page.
// Every value is set with textContent, never parsed as markup: text from the kiosk is shown, not run.
"use strict";
(function () {
  const POLL_MS = 1000;
  const token = new URLSearchParams(window.location.search).get("token");
  const headers = token ? { "Authorization": "Bearer " + token } : {};

  function el(id) { return document.getElementById(id); }
  function text(id, value) { el(id).textContent = value === null || value === undefined ? "" : String(value); }
  function row(cells, cls) {
    const tr = document.createElement("tr");
    cells.forEach(function (c, i) {
      const td = document.createElement("td");
      td.textContent = c === null || c === undefined ? "–" : String(c);
      if (cls && cls[i]) { td.className = cls[i]; }
      tr.appendChild(td);
    });
    return tr;
  }
  function fill(tableId, rows) {
    const body = el(tableId).querySelector("tbody");
    body.replaceChildren.apply(body, rows);
  }
  function age(seconds) {
    if (seconds === null || seconds === undefined) { return "–"; }
    if (seconds < 120) { return Math.round(seconds) + " s"; }
    if (seconds < 7200) { return Math.round(seconds / 60) + " min"; }
    return (seconds / 3600).toFixed(1) + " h";
  }
  function partRows(s) {
    const rows = [];
    const f = s.faults || {};
    function health(part) { return f[part] ? ["FAULT", "bad"] : ["ok", "ok"]; }
    const cam = s.camera || {};
    let h = health("camera");
    rows.push(row(["camera", h[0], (cam.fps === null ? "–" : cam.fps + " fps") + ", " + cam.dropped_frames + " dropped"], [null, h[1]]));
    if (s.display) {
      h = health("display");
      rows.push(row(["display", h[0], "round trip " + (s.display.round_trip_ms === null ? "–" : s.display.round_trip_ms + " ms") + ", " + s.display.retransmits + " retransmits"], [null, h[1]]));
    }
    if (s.eventlog) {
      h = health("eventlog");
      const q = s.eventlog.quota_bytes ? " of " + Math.round(s.eventlog.quota_bytes / 1048576) + " MiB (" + (100 * s.eventlog.quota_used).toFixed(1) + " %)" : "";
      rows.push(row(["event log", h[0], s.eventlog.events + " events, " + Math.round(s.eventlog.used_bytes / 1024) + " KiB" + q], [null, h[1]]));
    }
    if (s.uploader) {
      const u = s.uploader;
      const st = u.last_error ? ["retrying", "warn"] : ["ok", "ok"];
      rows.push(row(["uploader", st[0], u.queue_depth + " waiting; last upload " + (u.last_upload || "never") + (u.last_error ? "; " + u.last_error : "")], [null, st[1]]));
    } else {
      rows.push(row(["uploader", "offline kiosk", "no fleet configured"]));
    }
    if (s.clock) {
      const c = s.clock.trusted ? ["trusted", "ok"] : [s.clock.problem, "bad"];
      rows.push(row(["clock", c[0], s.clock.now + (s.clock.skew_s === null ? "" : ", skew " + s.clock.skew_s + " s")], [null, c[1]]));
    }
    const workers = s.workers || {};
    Object.keys(workers).forEach(function (part) {
      const w = workers[part];
      const st = w.faulted ? ["FAULT", "bad"] : w.problem ? [w.problem, "warn"] : w.running ? ["ok", "ok"] : ["not running", "warn"];
      rows.push(row([part + " thread", st[0], w.restarts + " restart(s), " + w.restarts_in_window + " in the last window; last beat " + age(w.silent_s) + " ago"], [null, st[1]]));
    });
    return rows;
  }
  function render(s) {
    text("device", s.device_id);
    document.title = "healthgate kiosk " + s.device_id + ": " + s.state;
    text("state", s.state);
    text("state-reason", s.state_reason);
    el("state-card").className = "card " + s.state;
    text("state-since", s.state_since);
    const latched = Object.keys(s.faults || {});
    text("latched", latched.length ? "latched: " + latched.map(function (p) { return p + ": " + s.faults[p]; }).join("; ") : "");
    fill("parts", partRows(s));
    const items = (s.trust && s.trust.items) || {};
    fill("trust", Object.keys(items).map(function (k) { return row([k, age(items[k].age_s), items[k].version]); }));
    text("trust-next", s.trust ? "next refresh " + (s.trust.next_refresh || "–") : "no trust sync (offline kiosk)");
    const t = s.today || {};
    text("day", t.day);
    const d = t.decisions || {};
    text("decisions", (d.granted || 0) + " granted, " + (d.denied || 0) + " denied");
    const r = t.reasons || {};
    fill("reasons", Object.keys(r).map(function (k) { return row([k, r[k]]); }));
    fill("faults", (s.recent_faults || []).map(function (x) { return row([x.part, x.problem, x.since, x.cleared || "latched"], [null, null, null, x.cleared ? "ok" : "bad"]); }));
    text("connection", "updated " + s.generated_at);
    el("connection").className = "muted";
  }
  function poll() {
    fetch("status.json", { headers: headers, cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(render)
      .catch(function (e) { text("connection", "not updated: " + e.message); el("connection").className = "bad"; })
      .finally(function () { window.setTimeout(poll, POLL_MS); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (token) {  // the links need the token too
      ["json-link", "metrics-link"].forEach(function (id) { el(id).href += "?token=" + encodeURIComponent(token); });
    }
    poll();
  });
}());
