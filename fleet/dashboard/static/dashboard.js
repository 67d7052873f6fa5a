// Refreshes the device list every 30 s (server-rendered rows, escaped by the server).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const table = document.getElementById("devices");
  if (!table) { return; }
  const seconds = Number(table.dataset.refresh) || 30;
  window.setInterval(function () {
    fetch(window.location.href, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("#devices tbody");
        if (fresh) { table.querySelector("tbody").replaceWith(document.adoptNode(fresh)); }
      })
      .catch(function () { /* keep the last rows; the next round tries again */ });
  }, seconds * 1000);
});
