// The resident's pending requests: new ones appear without reloading (polled every few seconds), the
// countdown to each request's expiry runs, and a request answered or expired elsewhere is closed.
(function () {
  "use strict";
  var t = window.CityI18n.t;
  var list = document.getElementById("requests");
  if (!list) return;
  var empty = document.getElementById("no-requests");
  var url = list.dataset.pollUrl;
  var POLL_SECONDS = 3;
  var baseTitle = document.title;
  // Elders' mode: nothing may move under the finger, so a new request comes in below the ones on screen and a
  // closed card's note lies over the card (style.css) instead of pushing it down.
  var elder = document.documentElement.classList.contains("elder");

  function cards() {
    return Array.prototype.slice.call(list.querySelectorAll(".request-card"));
  }

  function openCards() {
    return cards().filter(function (c) { return !c.classList.contains("closed"); });
  }

  function close(card, text) {
    if (card.classList.contains("closed")) return;
    card.classList.add("closed");
    Array.prototype.forEach.call(card.querySelectorAll("input, button"), function (i) { i.disabled = true; });
    var note = document.createElement("p");
    note.className = "closed-note";
    note.textContent = text;
    card.insertBefore(note, card.firstChild);
  }

  function refreshTitle() {
    var n = openCards().length;
    document.title = (n ? "(" + n + ") " : "") + baseTitle;
    empty.hidden = cards().length > 0;
  }

  function tick() {
    openCards().forEach(function (card) {
      var left = Math.max(0, (Number(card.dataset.secondsLeft) || 0) - 1);
      card.dataset.secondsLeft = String(left);
      var shown = card.querySelector(".countdown");
      if (shown) shown.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (left <= 0) close(card, t("This request expired unanswered; nothing was shared."));
    });
    refreshTitle();
  }

  function wire(card) {
    var form = card.querySelector("form");
    var error = card.querySelector(".card-error");
    form.addEventListener("submit", function (event) {
      var approve = event.submitter && event.submitter.value === "approve";
      if (approve && !form.querySelector("input[name=fields]:checked")) {
        event.preventDefault();
        error.textContent = t("Tick at least one item to share, or press Refuse.");
        error.hidden = false;
        return;
      }
      // Keep the pressed button's value: disabling it now would drop it from the form.
      setTimeout(function () {
        Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
      }, 0);
    });
    form.addEventListener("change", function () { error.hidden = true; });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location = "/signin"; throw new Error("signed out"); }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        var pending = {};
        data.requests.forEach(function (r) { pending[r.id] = r; });
        cards().forEach(function (card) {
          if (!pending[card.dataset.request]) {
            close(card, t("This request is no longer waiting: it was answered or has expired."));
          }
        });
        // Newest first, as the server lists them: insert the new ones at the top, in order (in the elders'
        // mode below the cards already shown).
        var anchor = elder ? null : list.firstChild;
        data.requests.forEach(function (r) {
          if (list.querySelector('[data-request="' + r.id + '"]')) return;
          var holder = document.createElement("template");
          holder.innerHTML = r.html.trim();
          var card = holder.content.firstElementChild;
          list.insertBefore(card, anchor);
          wire(card);
        });
        refreshTitle();
      })
      .catch(function () { /* the next poll retries */ })
      .then(function () { setTimeout(poll, POLL_SECONDS * 1000); });
  }

  cards().forEach(wire);
  setInterval(tick, 1000);
  refreshTitle();
  setTimeout(poll, POLL_SECONDS * 1000);
})();
