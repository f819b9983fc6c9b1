// The dashboards' charts (/operator, /city): fetches the figures from the page's own JSON routes
// (/operator/data/<part>, /city/data/<part>: the signed-in session, the same figures as /api/v1/dashboard/) and
// draws them with Apache ECharts. Every chart gets a text alternative (its aria-label and a table of its
// figures) and a static image for printing. In full-screen mode (大屏) the figures refresh every
// data-refresh seconds without reloading the page. Labels come translated from #dashboard-labels.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root || !window.echarts) return;
  var L = JSON.parse(document.getElementById("dashboard-labels").textContent);
  var kind = root.dataset.kind;
  var screen = root.dataset.screen === "1";
  var lang = root.dataset.lang;
  var refreshSeconds = parseInt(root.dataset.refresh, 10) || 30;
  var I18n = window.CityI18n;
  var charts = {};
  var refreshes = 0;
  var dayInput = document.getElementById("day");
  var againstInput = document.getElementById("against");
  if (screen) document.documentElement.classList.add("dash-screen");

  var params = new URLSearchParams(window.location.search);
  if (params.get("day") && /^\d{4}-\d{2}-\d{2}$/.test(params.get("day"))) dayInput.value = params.get("day");
  if (againstInput && params.get("against")) againstInput.value = params.get("against");

  var seconds = new Intl.DateTimeFormat("en-CA", {
    timeZone: I18n.zone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
  });

  function el(id) { return document.getElementById(id); }
  function text(node, value) { if (node) node.textContent = value === null || value === undefined ? "–" : String(value); }
  function fontFamily() { return window.getComputedStyle(document.body).fontFamily; }
  function reasonText(code) { return L.reasons[code] || String(code).replace(/_/g, " "); }
  function cardText(code) { return L.card_types[code] || code; }
  function consentText(code) { return L.consent[code] || code; }
  function sum(values) { return values.reduce(function (a, b) { return a + b; }, 0); }

  function chartOf(id) {
    if (!charts[id]) {
      charts[id] = window.echarts.init(el("chart-" + id), screen ? "dark" : null,
        { renderer: "canvas", locale: lang === "zh" ? "ZH" : "EN" });
    }
    return charts[id];
  }

  function fillTable(id, header, rows) {
    var table = el("table-" + id);
    if (!table) return;
    table.textContent = "";
    var head = table.createTHead().insertRow();
    header.forEach(function (name) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      head.appendChild(th);
    });
    var body = table.createTBody();
    rows.forEach(function (row) {
      var tr = body.insertRow();
      row.forEach(function (value, i) {
        var cell = i === 0 ? document.createElement("th") : document.createElement("td");
        if (i === 0) cell.scope = "row";
        cell.textContent = String(value);
        tr.appendChild(cell);
      });
    });
  }

  // Draw one chart: its option, its figures as a table and as its aria-label, its print image.
  function draw(id, option, header, rows, empty) {
    var node = el("chart-" + id);
    if (!node) return;
    var chart = chartOf(id);
    option.animation = false;
    option.textStyle = { fontFamily: fontFamily(), fontSize: screen ? 16 : 12 };
    if (screen) option.backgroundColor = "transparent";
    option.tooltip = option.tooltip || { trigger: option.series && option.series[0] && option.series[0].type === "pie" ? "item" : "axis" };
    chart.setOption(option, true);
    fillTable(id, header, rows);
    var title = node.dataset.title;
    var summary = rows.length ? rows.map(function (r) { return r.join(" "); }).join("; ") : L.none;
    node.setAttribute("aria-label", title + ": " + summary);
    var notice = el("empty-" + id);
    if (notice) {
      notice.hidden = !empty;
      if (empty) notice.textContent = empty;
    }
    node.dataset.drawn = String(refreshes + 1);
    var img = el("print-" + id);
    if (img) {
      try {
        img.src = chart.getDataURL({ type: "png", pixelRatio: 2, backgroundColor: screen ? "#100c2a" : "#fff" });
      } catch (error) { img.removeAttribute("src"); }
    }
  }

  function notAvailable(id) {
    draw(id, { series: [] }, [], [], L.not_available);
    el("chart-" + id).dataset.available = "0";
    el("chart-" + id).classList.add("unavailable");
  }

  function hourAxis(hours) {
    return { type: "category", data: hours, name: L.hour, nameLocation: "middle", nameGap: 28,
             axisLabel: { interval: screen ? 3 : 2, fontSize: screen ? 14 : 12 } };
  }

  function legend() { return { top: 0, type: "scroll" }; }
  function grid() { return { left: 16, right: 32, top: screen ? 64 : 56, bottom: 32, containLabel: true }; }

  // -- the operator ----------------------------------------------------------------------------------------
  function drawOperatorDay(d) {
    var ref = d.against === "week_average" ? L.week_average : L.previous_week;
    text(el("taps-total"), d.taps_total);
    text(el("trips-total"), d.trips_total);
    var hourRows = function (a, b) {
      return d.hours.map(function (h, i) { return [h, a[i], b[i]]; });
    };
    draw("taps", {
      legend: legend(), grid: grid(), xAxis: hourAxis(d.hours), yAxis: { type: "value", name: L.taps },
      series: [{ name: L.taps, id: "taps", type: "line", data: d.taps, smooth: false },
               { name: ref, id: "reference", type: "line", data: d.taps_reference, lineStyle: { type: "dashed" } }]
    }, [L.hour, L.taps, ref], hourRows(d.taps, d.taps_reference), d.taps_total ? null : L.none);
    draw("trips", {
      legend: legend(), grid: grid(), xAxis: hourAxis(d.hours), yAxis: { type: "value", name: L.trips },
      series: [{ name: L.trips, id: "trips", type: "bar", data: d.trips },
               { name: ref, id: "reference", type: "bar", data: d.trips_reference }]
    }, [L.hour, L.trips, ref], hourRows(d.trips, d.trips_reference), d.trips_total ? null : L.none);
    var items = d.busiest.items.slice().reverse();
    var place = d.busiest.by === "line" ? L.line : L.station;
    draw("busiest", {
      grid: grid(), yAxis: { type: "category", name: place, data: items.map(function (x) { return x.name; }) },
      xAxis: { type: "value", name: L.taps, nameLocation: "middle", nameGap: 26 },
      series: [{ name: L.taps, id: "busiest", type: "bar", data: items.map(function (x) { return x.taps; }) }]
    }, [place, L.taps], d.busiest.items.map(function (x) { return [x.name, x.taps]; }),
    items.length ? null : L.none);
    draw("cards", {
      legend: legend(),
      series: [{ name: L.card_type, id: "cards", type: "pie", radius: ["35%", "65%"], top: 24,
                 data: d.card_types.map(function (c) { return { name: cardText(c.card_type), value: c.taps, code: c.card_type }; }) }]
    }, [L.card_type, L.taps], d.card_types.map(function (c) { return [cardText(c.card_type), c.taps]; }),
    d.card_types.length ? null : L.none);
    draw("refusals", {
      grid: grid(), xAxis: { type: "value", name: L.taps, nameLocation: "middle", nameGap: 26 },
      yAxis: { type: "category", name: L.reason, data: d.refusals.map(function (r) { return reasonText(r.reason); }).reverse() },
      series: [{ name: L.reason, id: "refusals", type: "bar",
                 data: d.refusals.map(function (r) { return { value: r.taps, code: r.reason }; }).reverse() }]
    }, [L.reason, L.taps], d.refusals.map(function (r) { return [reasonText(r.reason), r.taps]; }),
    d.refusals.length ? null : L.none);
  }

  function drawGates(d) {
    text(el("records-waiting"), d.records_waiting);
    text(el("gates-offline"), d.offline);
    var body = el("gates-table").tBodies[0];
    body.textContent = "";
    d.gates.forEach(function (g) {
      var tr = body.insertRow();
      tr.dataset.gate = g.gate_id;
      var state = g.offline ? L.offline : (g.late ? L.late : L.ok);
      if (g.offline || g.late) tr.className = "bad";
      tr.dataset.state = g.offline ? "offline" : (g.late ? "late" : "ok");
      [g.gate_id, g.records, g.late_records, I18n.dateTime(g.last_upload), state].forEach(function (v, i) {
        var cell = tr.insertCell();
        cell.textContent = String(v);
        if (i === 4 && (g.offline || g.late)) cell.className = "state-bad";
      });
    });
    var empty = el("empty-gates");
    empty.hidden = d.gates.length > 0;
    empty.textContent = L.none;
  }

  function drawClearing(d) {
    var s = d.statement;
    el("empty-clearing").hidden = !!s;
    el("statement").hidden = !s;
    if (!s) return;
    text(el("st-records"), s.records);
    text(el("st-duplicates"), s.duplicates);
    text(el("st-trips"), s.trips);
    text(el("st-charged"), (s.charged_total / 100).toFixed(2));
    text(el("st-computed"), I18n.dateTime(s.computed_at));
    text(el("st-sha256"), s.sha256);
    el("st-csv").href = s.page_csv_url || s.csv_url;
    text(el("st-api-csv"), s.csv_url);
  }

  // -- the city's data office ----------------------------------------------------------------------------
  function drawCityDay(d) {
    var series = [];
    var rows = [];
    d.checks.forEach(function (c) {
      series.push({ name: c.department_name + " · " + L.yes, id: c.department + ":yes", type: "bar",
                    stack: c.department, data: c.yes });
      series.push({ name: c.department_name + " · " + L.no, id: c.department + ":no", type: "bar",
                    stack: c.department, data: c.no });
      d.days.forEach(function (day, i) { rows.push([c.department_name, day, c.yes[i], c.no[i]]); });
    });
    draw("checks", {
      legend: legend(), grid: grid(), xAxis: { type: "category", nameLocation: "middle", nameGap: 28, name: L.day, data: d.days },
      yAxis: { type: "value", name: L.checks }, series: series
    }, [L.department, L.day, L.yes, L.no], rows, series.length ? null : L.none);

    if (Array.isArray(d.shows)) {
      var showSeries = [];
      var showRows = [];
      d.shows.forEach(function (s) {
        showSeries.push({ name: s.department_name + " · " + L.shows, id: s.department + ":show", type: "bar",
                          stack: s.department, data: s.show });
        showSeries.push({ name: s.department_name + " · " + L.pulls, id: s.department + ":pull", type: "bar",
                          stack: s.department, data: s.pull });
        d.days.forEach(function (day, i) { showRows.push([s.department_name, day, s.show[i], s.pull[i]]); });
      });
      draw("shows", {
        legend: legend(), grid: grid(), xAxis: { type: "category", nameLocation: "middle", nameGap: 28, name: L.day, data: d.days },
        yAxis: { type: "value" }, series: showSeries
      }, [L.department, L.day, L.shows, L.pulls], showRows, showSeries.length ? null : L.none);
      el("chart-shows").dataset.available = "1";
      el("chart-shows").classList.remove("unavailable");
    } else {
      notAvailable("shows");
    }

    var outcomes = d.consent.by_outcome;
    draw("consent-outcome", {
      legend: legend(),
      series: [{ name: L.outcome, id: "outcome", type: "pie", radius: ["35%", "65%"], top: 24,
                 data: outcomes.map(function (o) { return { name: consentText(o.status), value: o.requests, code: o.status }; }) }]
    }, [L.outcome, L.requests], outcomes.map(function (o) { return [consentText(o.status), o.requests]; }),
    outcomes.length ? null : L.none);

    var offices = d.consent.by_office;
    var statuses = [];
    offices.forEach(function (o) {
      Object.keys(o.by_status).forEach(function (s) { if (statuses.indexOf(s) < 0) statuses.push(s); });
    });
    statuses.sort();
    draw("consent-office", {
      legend: legend(), grid: grid(), yAxis: { type: "category", name: L.office, data: offices.map(function (o) { return o.office_name; }) },
      xAxis: { type: "value", name: L.requests, nameLocation: "middle", nameGap: 26 },
      series: statuses.map(function (s) {
        return { name: consentText(s), id: s, type: "bar", stack: "all",
                 data: offices.map(function (o) { return o.by_status[s] || 0; }) };
      })
    }, [L.office, L.outcome, L.requests], offices.reduce(function (acc, o) {
      return acc.concat(Object.keys(o.by_status).sort().map(function (s) { return [o.office_name, consentText(s), o.by_status[s]]; }));
    }, []), offices.length ? null : L.none);

    var growth = d.access_log.entries_per_day;
    draw("accesslog", {
      grid: grid(), xAxis: { type: "category", nameLocation: "middle", nameGap: 28, name: L.day, data: d.days }, yAxis: { type: "value", name: L.entries },
      series: [{ name: L.entries, id: "entries", type: "line", data: growth }]
    }, [L.day, L.entries], d.days.map(function (day, i) { return [day, growth[i]]; }), sum(growth) ? null : L.none);
  }

  function drawCityState(d) {
    var log = d.access_log;
    text(el("log-entries"), log.entries);
    text(el("log-last"), log.last_entry_at ? I18n.dateTime(log.last_entry_at) : null);
    text(el("log-checkpoint"), log.last_checkpoint_seq);
    text(el("log-after"), log.entries_after_checkpoint);
    var audit = d.audit;
    if (audit && typeof audit === "object") {
      var last = audit.last;
      text(el("audit-last"), last ? (last.ok ? L.audit_ok : L.audit_failed) + " · " + I18n.dateTime(last.at) +
        " · " + last.entries_checked + (last.ok ? "" : " · " + (last.reason || "")) : L.audit_none);
      text(el("audit-runs"), audit.runs_7d);
      el("audit-last").dataset.available = "1";
    } else {
      text(el("audit-last"), L.not_available);
      text(el("audit-runs"), L.not_available);
      el("audit-last").dataset.available = "0";
    }
    var lists = d.status_lists.lists;
    draw("lists", {
      legend: legend(), grid: grid(), xAxis: { type: "category", nameLocation: "middle", nameGap: 28, name: L.list, data: lists.map(function (l) { return l.issuer; }) },
      yAxis: { type: "value", name: L.entries },
      series: [{ name: L.entries, id: "entries", type: "bar", data: lists.map(function (l) { return l.entries; }) },
               { name: L.allocated, id: "allocated", type: "bar", data: lists.map(function (l) { return l.allocated; }) }]
    }, [L.list, L.entries, L.allocated], lists.map(function (l) { return [l.issuer, l.entries, l.allocated]; }),
    lists.length ? null : L.none);
    text(el("status-ages"), L.ttl + ": " + d.status_lists.ttl_seconds + " s · " + L.validity + ": " +
      d.status_lists.validity_seconds + " s");
    var body = el("status-table").tBodies[0];
    body.textContent = "";
    lists.forEach(function (l) {
      var tr = body.insertRow();
      tr.dataset.issuer = l.issuer;
      [l.issuer, l.entries, l.allocated, l.suspended === null ? "–" : l.suspended, l.revoked].forEach(function (v) {
        tr.insertCell().textContent = String(v);
      });
    });
    var keys = el("keys-table").tBodies[0];
    keys.textContent = "";
    d.keys.keys.forEach(function (k) {
      var tr = keys.insertRow();
      tr.dataset.kid = k.kid;
      tr.dataset.state = k.due ? "due" : "ok";
      if (k.due) tr.className = "bad";
      [k.issuer, k.kid, k.age_days, I18n.dateTime(k.rotate_by), k.due ? L.due : L.not_due].forEach(function (v) {
        tr.insertCell().textContent = String(v);
      });
    });
  }

  function drawPoints(d) {
    if (!d || !Array.isArray(d.services) || !Array.isArray(d.hours)) { notAvailable("points"); return; }
    var series = [];
    var rows = [];
    d.services.forEach(function (s) {
      s.points.forEach(function (p) {
        series.push({ name: s.service_name + " · " + p.point_name, id: s.service + ":" + p.point, type: "line",
                      data: p.per_hour });
        rows.push([s.service_name + " · " + p.point_name, p.total, s.quota_per_day, s.overdraws]);
      });
    });
    draw("points", {
      legend: legend(), grid: grid(), xAxis: hourAxis(d.hours), yAxis: { type: "value", name: L.uses }, series: series
    }, [L.point, L.total, L.quota, L.overdraws], rows, series.length ? null : L.none);
    el("chart-points").dataset.available = "1";
    el("chart-points").classList.remove("unavailable");
  }

  // -- loading ------------------------------------------------------------------------------------------
  function get(part, query) {
    var url = root.dataset.url.replace("PART", part) + (query ? "?" + query : "");
    return window.fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/" + kind + "/sign-in?error=expired");
          throw new Error("signed out");
        }
        return response.json().then(function (body) { return { status: response.status, body: body }; });
      });
  }

  function ok(result) {
    if (result.status !== 200) throw new Error(result.body && result.body.message || "failed");
    return result.body;
  }

  function load() {
    var day = dayInput.value;
    var query = "day=" + encodeURIComponent(day);
    var printDay = document.querySelector(".print-day");
    if (printDay) printDay.textContent = day;
    var work;
    if (kind === "operator") {
      var against = againstInput ? againstInput.value : "last_week";
      work = Promise.all([get("day", query + "&against=" + encodeURIComponent(against)), get("gates", query),
                          get("clearing", query)])
        .then(function (r) { drawOperatorDay(ok(r[0])); drawGates(ok(r[1])); drawClearing(ok(r[2])); });
    } else {
      work = Promise.all([get("day", query), get("state", ""), get("points", query)])
        .then(function (r) {
          drawCityDay(ok(r[0]));
          drawCityState(ok(r[1]));
          drawPoints(r[2].status === 200 ? r[2].body : null);
        });
    }
    return work.then(function () {
      refreshes += 1;
      var now = new Date();
      var time = el("refreshed");
      time.textContent = seconds.format(now);
      time.dateTime = now.toISOString();
      el("load-error").hidden = true;
      root.dataset.refreshes = String(refreshes);
    }).catch(function (error) {
      var box = el("load-error");
      box.hidden = false;
      box.textContent = L.load_failed + " (" + error.message + ")";
    });
  }

  function stampPrinted() { text(el("printed-at"), I18n.dateTime(Date.now() / 1000)); }

  el("dash-controls").addEventListener("submit", function (event) {
    event.preventDefault();
    var next = new URLSearchParams(window.location.search);
    next.set("day", dayInput.value);
    if (againstInput) next.set("against", againstInput.value);
    window.history.replaceState(null, "", window.location.pathname + "?" + next.toString());
    load();
  });
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) { charts[id].resize(); });
  });
  window.addEventListener("beforeprint", stampPrinted);
  stampPrinted();
  // canvas text uses a web font only once it is loaded (the Tibetan face): draw after the page's fonts are in
  var fontsReady = document.fonts && document.fonts.ready ? document.fonts.ready : Promise.resolve();
  fontsReady.then(load, load).then(function () {
    if (screen) window.setInterval(load, refreshSeconds * 1000);
  });
})();
