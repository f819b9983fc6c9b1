// The page's language for its scripts, and the city's clock. The page renders its catalog (every t("...") of
// these scripts, translated on the server: codeservice/i18n.py) as JSON into #i18n-catalog; <html> names the
// city's time zone (data-city-tz). Times are shown in one 24-hour style everywhere: 2026-12-07 12:50, 12:50.
(function () {
  "use strict";
  var node = document.getElementById("i18n-catalog");
  var catalog = {};
  try { catalog = node ? JSON.parse(node.textContent) : {}; } catch (error) { catalog = {}; }
  var zone = document.documentElement.dataset.cityTz || "Asia/Shanghai";
  var format = null;

  // t("Valid for {seconds} s", {seconds: 5}): the translation, its {names} filled in.
  function t(msgid, values) {
    var text = Object.prototype.hasOwnProperty.call(catalog, msgid) && catalog[msgid] ? catalog[msgid] : msgid;
    if (!values) return text;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  function parts(date) {
    if (!format) {
      format = new Intl.DateTimeFormat("en-CA", {
        timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23"
      });
    }
    var out = {};
    format.formatToParts(date).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }

  function toDate(value) {
    return typeof value === "number" ? new Date(value * 1000) : new Date(value);
  }

  // A moment (UNIX seconds or ISO text) in city time: "2026-12-07 12:50".
  function dateTime(value) {
    if (value === null || value === undefined || value === "") return "";
    var p = parts(toDate(value));
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute;
  }

  // Its time of day in city time: "12:50".
  function clock(value) {
    if (value === null || value === undefined || value === "") return "";
    var p = parts(toDate(value));
    return p.hour + ":" + p.minute;
  }

  window.CityI18n = { t: t, dateTime: dateTime, clock: clock, zone: zone };
})();
