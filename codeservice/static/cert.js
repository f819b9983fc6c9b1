// Shows a certificate (亮证): post the ticked fields, display the short-lived code, and fetch the next
// one with the same fields before it expires, without reloading the page (like code.js).
(function () {
  "use strict";
  var t = window.CityI18n.t;
  var form = document.getElementById("show-form");
  if (!form) return;
  var url = form.dataset.showUrl;
  var boxes = Array.prototype.slice.call(form.querySelectorAll("input[name=fields]"));
  var warning = document.getElementById("show-warning");
  var error = document.getElementById("show-error");
  var figure = document.getElementById("cert-code");
  var image = document.getElementById("cert-code-image");
  var status = document.getElementById("cert-code-status");
  var shows = document.getElementById("cert-code-fields");
  var chosen = null;      // the fields of the code on screen (null: none)
  var generation = 0;     // answers to an older request are dropped
  var expiresAt = 0;
  var timer = null;

  function ticked() {
    return boxes.filter(function (b) { return b.checked; });
  }

  function secondsLeft() {
    return Math.max(0, Math.round(expiresAt - Date.now() / 1000));
  }

  function tick() {
    if (!chosen || !expiresAt) return;
    var left = secondsLeft();
    status.textContent = left > 0 ? t("Valid for {seconds} s", { seconds: left }) : t("Expired — renewing…");
    figure.classList.toggle("expired", left <= 0);
  }

  // The API's reasons in the page's language (its English message for a reason not listed).
  var REASONS = {
    certificate_suspended: t("this certificate is suspended"),
    certificate_revoked: t("this certificate is revoked"),
    certificate_expired: t("this certificate has expired"),
    certificate_not_yet_valid: t("this certificate is not valid yet"),
    not_showable: t("this certificate cannot be shown now"),
    not_found: t("you hold no such certificate")
  };

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  // A date ticked beside a yes/no derived from it gives the yes/no away; say so.
  function updateWarning() {
    var notes = [];
    boxes.forEach(function (box) {
      if (box.dataset.kind !== "field" || !box.checked) return;
      var derived = boxes.filter(function (b) {
        return b.checked && b.dataset.derivedFrom === box.value;
      });
      if (derived.length) {
        notes.push(t("“{field}” is ticked too: the checker will see it, not only “{question}”.",
                     { field: box.dataset.label, question: derived[0].dataset.label }));
      }
    });
    warning.textContent = notes.join(" ");
    warning.hidden = notes.length === 0;
  }

  function stop() {
    clearTimeout(timer);
    timer = null;
    chosen = null;
    expiresAt = 0;
    generation += 1;
  }

  function hideCode() {
    stop();
    figure.hidden = true;
    image.removeAttribute("src");
    delete figure.dataset.expiresAt;
    delete figure.dataset.fields;
  }

  function schedule(seconds) {
    clearTimeout(timer);
    timer = setTimeout(fetchCode, Math.max(1, seconds) * 1000);
  }

  function fetchCode() {
    if (!chosen) return;
    var mine = generation;
    var fields = chosen;
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ fields: fields.map(function (b) { return b.value; }) })
    })
      .then(function (response) {
        if (response.status === 401) { window.location = "/signin"; throw new Error("signed out"); }
        return response.json().catch(function () { return {}; }).then(function (data) {
          return { response: response, data: data };
        });
      })
      .then(function (answer) {
        if (mine !== generation) return;
        var response = answer.response, data = answer.data;
        if (response.status >= 400 && response.status < 500) {
          // Not worth retrying: the certificate was suspended, the choice is not allowed, …
          hideCode();
          var reason = REASONS[data.error] || data.message;
          showError(reason ? t("Cannot show: {reason}.", { reason: reason })
                                 : t("Cannot show (HTTP {status}).", { status: response.status }));
          return;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        showError("");
        // Clock skew between phone and server must not shorten the code's life on screen.
        expiresAt = Date.now() / 1000 + (data.expires_at - data.issued_at);
        var first = figure.hidden;
        image.src = data.svg;
        figure.hidden = false;
        figure.dataset.expiresAt = String(data.expires_at);
        figure.dataset.fields = fields.map(function (b) { return b.value; }).join(",");
        figure.dataset.serial = String((Number(figure.dataset.serial) || 0) + 1);
        shows.textContent = t("Shows only: {fields}", { fields: fields.map(function (b) { return b.dataset.label; }).join(" · ") });
        tick();
        if (first) figure.scrollIntoView({ block: "center", behavior: "instant" });
        schedule(data.refresh_in);
      })
      .catch(function () {
        if (mine !== generation || !chosen) return;
        status.textContent = t("No connection — retrying…");
        schedule(3);
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var fields = ticked();
    hideCode();
    if (!fields.length) {
      showError(t("Tick at least one item to show."));
      return;
    }
    showError("");
    chosen = fields;
    fetchCode();
  });

  // A code shows what was ticked when it was made: a new choice needs a new press of Show.
  boxes.forEach(function (box) {
    box.addEventListener("change", function () {
      updateWarning();
      if (chosen) {
        hideCode();
        showError("");
      }
    });
  });

  setInterval(tick, 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && chosen && secondsLeft() < 5) fetchCode();
  });
  updateWarning();
})();
