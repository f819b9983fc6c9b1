// Keeps the resident's identity code fresh: fetch a new one before the current one expires.
(function () {
  "use strict";
  var t = window.CityI18n.t;
  var figure = document.getElementById("code");
  var image = document.getElementById("code-image");
  var status = document.getElementById("code-status");
  var expiresAt = 0;
  var timer = null;

  function secondsLeft() {
    return Math.max(0, Math.round(expiresAt - Date.now() / 1000));
  }

  function tick() {
    if (!expiresAt) return;
    var left = secondsLeft();
    status.textContent = left > 0 ? t("Valid for {seconds} s", { seconds: left }) : t("Expired — renewing…");
    figure.classList.toggle("expired", left <= 0);
  }

  function schedule(seconds) {
    clearTimeout(timer);
    timer = setTimeout(refresh, Math.max(1, seconds) * 1000);
  }

  function refresh() {
    fetch("/api/v1/me/code", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location = "/signin"; throw new Error("signed out"); }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        // Clock skew between phone and server must not shorten the code's life on screen.
        expiresAt = Date.now() / 1000 + (data.expires_at - data.issued_at);
        image.src = data.svg;
        figure.dataset.expiresAt = String(data.expires_at);
        figure.dataset.serial = String((Number(figure.dataset.serial) || 0) + 1);
        tick();
        schedule(data.refresh_in);
      })
      .catch(function () {
        status.textContent = t("No connection — retrying…");
        schedule(3);
      });
  }

  setInterval(tick, 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && secondsLeft() < 5) refresh();
  });
  refresh();
})();
