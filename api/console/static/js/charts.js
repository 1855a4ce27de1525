/* Conductor console: the DR and budget charts (uPlot, vendored), refreshed
 * from the page's JSON endpoint without a reload. Each element
 * <div class="chart" data-source="/console/.../data" data-kind="dr|burn|spend"
 *      data-refresh-ms="5000"> is drawn from that JSON; elements with
 * data-bind="a.b.c" (under the same data-source's page) get the value at that
 * path, so the figures beside the charts refresh too. */
(function () {
  "use strict";
  var COLOURS = ["#0b5cad", "#b00020", "#11683a", "#8a4b00", "#5b2a86", "#00616e"];

  function dig(obj, path) {
    return path.split(".").reduce(function (o, k) {
      return o === null || o === undefined ? undefined : o[k];
    }, obj);
  }

  function format(value, kind) {
    if (value === null || value === undefined) { return "—"; }
    if (kind === "n4" && typeof value === "number") { return value.toFixed(4); }
    if (typeof value === "boolean") { return value ? "yes" : "no"; }
    return String(value);
  }

  function drSeries(json) {
    var regions = Object.keys(json.lag || {}).sort();
    var stamps = {};
    regions.forEach(function (r) {
      json.lag[r].forEach(function (p) { stamps[p[0]] = true; });
    });
    var xs = Object.keys(stamps).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs];
    regions.forEach(function (r) {
      var at = {};
      json.lag[r].forEach(function (p) { at[p[0]] = p[1]; });
      // undefined: this region has no sample at x (joined); null: a sample with no lag (a gap)
      data.push(xs.map(function (x) { return x in at ? at[x] : undefined; }));
    });
    return { labels: regions.map(function (r) { return "region " + r + " lag (ms)"; }), data: data };
  }

  function burnSeries(json, kind) {
    var h = json.history || { t: [], burn: {}, spent: [] };
    if (kind === "spend") {
      return { labels: ["spent this period (units)"], data: [h.t, h.spent] };
    }
    var windows = json.windows || Object.keys(h.burn);
    return {
      labels: windows.map(function (w) { return "cost burn " + w; }),
      data: [h.t].concat(windows.map(function (w) { return h.burn[w] || []; }))
    };
  }

  function draw(el, json) {
    var kind = el.getAttribute("data-kind");
    var s = kind === "dr" ? drSeries(json) : burnSeries(json, kind);
    el.setAttribute("data-points", String(s.data[0].length));
    if (el._plot) {
      el._plot.setData(s.data);
      return;
    }
    var opts = {
      width: Math.max(320, el.clientWidth || 800),
      height: 260,
      scales: { x: { time: true } },
      series: [{}].concat(s.labels.map(function (label, i) {
        return { label: label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: false };
      }))
    };
    el._plot = new window.uPlot(opts, s.data, el);
  }

  function bind(source, json) {
    document.querySelectorAll('[data-bind][data-bind-source="' + source + '"]').forEach(function (el) {
      el.textContent = format(dig(json, el.getAttribute("data-bind")), el.getAttribute("data-format"));
    });
  }

  function refresh(el) {
    var source = el.getAttribute("data-source");
    return fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error(source + " answered " + r.status); }
        return r.json();
      })
      .then(function (json) {
        draw(el, json);
        bind(source, json);
        el.setAttribute("data-refreshed", new Date().toISOString());
      })
      .catch(function (err) { el.setAttribute("data-error", String(err)); });
  }

  function start() {
    if (!window.uPlot) { return; }
    document.querySelectorAll(".chart[data-source]").forEach(function (el) {
      refresh(el);
      var every = parseInt(el.getAttribute("data-refresh-ms") || "0", 10);
      if (every > 0) { setInterval(function () { refresh(el); }, every); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
