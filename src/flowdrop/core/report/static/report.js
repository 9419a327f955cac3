// Draws every chart of a flowdrop report from the embedded JSON (no network, plotly.js inline).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("flowdrop-data").textContent);
  var MINUTES = { minutes: 1, hours: 60, days: 1440, weeks: 10080 };
  var step = data.grid.binSize * (MINUTES[data.grid.binUnit] || 1) * 60000;
  var start = data.grid.start ? Date.parse(data.grid.start) : NaN;
  var x = [];
  for (var i = 0; i < data.grid.bins; i++) {
    x.push(isNaN(start) ? i : new Date(start + i * step).toISOString().slice(0, 16).replace("T", " "));
  }
  var plots = Array.prototype.slice.call(document.querySelectorAll("[data-chart]"));
  var syncing = false;

  function layoutFor(spec, width) {
    var traces = spec.rows.reduce(function (sum, row) { return sum + row.traces.length; }, 0);
    // The horizontal legend sits above the plot: room for its rows (about 5 names a row at
    // 1000 px, fewer in a narrow window) so it never covers the top chart.
    var perRow = Math.max(2, Math.floor((width || 1000) / 200));
    var legendRows = Math.ceil(traces / perRow);
    var n = spec.rows.length, gap = n > 1 ? 0.06 : 0, layout = {
      width: width || undefined, height: 110 + 170 * n,
      margin: { l: 64, r: 12, t: 16 + 20 * legendRows, b: 36 },
      hovermode: "x unified", showlegend: true,
      legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 0, font: { size: 11 } },
      xaxis: { anchor: "y" + (n > 1 ? n : ""), type: isNaN(start) ? "linear" : "date",
               title: isNaN(start) ? { text: "bin" } : undefined }
    };
    spec.rows.forEach(function (row, r) {
      var top = 1 - r / n, bottom = 1 - (r + 1) / n;
      layout["yaxis" + (r ? r + 1 : "")] = {
        domain: [bottom + (r < n - 1 ? gap / 2 : 0), top - (r > 0 ? gap / 2 : 0)],
        title: { text: row.title, font: { size: 11 } }, automargin: true, zeroline: false
      };
    });
    return layout;
  }

  function tracesFor(spec) {
    var traces = [];
    spec.rows.forEach(function (row, r) {
      row.traces.forEach(function (t) {
        traces.push({ x: x, y: data.values[t.key], name: t.name, type: "scatter", mode: "lines",
                      line: { width: 1.5, dash: t.dash, shape: "hv" }, yaxis: "y" + (r ? r + 1 : ""),
                      hovertemplate: "%{y:.6~g}" });
      });
    });
    return traces;
  }

  function sync(source, event) {
    if (syncing) return;
    var update = null;
    if (event["xaxis.range[0]"] !== undefined) {
      update = { "xaxis.range": [event["xaxis.range[0]"], event["xaxis.range[1]"]] };
    } else if (event["xaxis.autorange"]) {
      update = { "xaxis.autorange": true };
    }
    if (!update) return;
    syncing = true;
    var pending = plots.filter(function (p) { return p !== source && p._fullLayout; })
      .map(function (p) { return Plotly.relayout(p, update); });
    Promise.all(pending).then(function () { syncing = false; }, function () { syncing = false; });
  }

  function draw(el) {
    var spec = data.charts[Number(el.getAttribute("data-chart"))];
    Plotly.newPlot(el, tracesFor(spec), layoutFor(spec, el.clientWidth),
                   { responsive: true, displaylogo: false, scrollZoom: false });
    el.on("plotly_relayout", function (event) { sync(el, event); });
  }

  var drawn = 0;
  function drawOnce(el) {
    if (el.getAttribute("data-drawn")) return;
    el.setAttribute("data-drawn", "1");
    try { draw(el); } catch (err) { window.__flowdropError(String(err)); }
    drawn += 1;
    document.documentElement.setAttribute("data-rendered", String(drawn));
  }

  // A day of 288 bins on a hundred charts is seconds of drawing: by default only the charts
  // near the window are drawn (as they scroll into view); "#render-all" draws every chart.
  if (location.hash === "#render-all" || !("IntersectionObserver" in window)) {
    var next = 0;
    (function batch() {
      var end = Math.min(next + 6, plots.length);
      for (; next < end; next++) drawOnce(plots[next]);
      if (next < plots.length) setTimeout(batch, 0);
    })();
  } else {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { observer.unobserve(entry.target); drawOnce(entry.target); }
      });
    }, { rootMargin: "1200px 0px" });
    plots.forEach(function (p) { observer.observe(p); });
  }
})();
