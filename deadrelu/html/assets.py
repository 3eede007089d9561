"""The inline style sheet and script of the HTML report (no external files, no network).

Every rule is scoped under ``.deadrelu`` so that the same CSS can sit inside a
Jupyter output cell without restyling the notebook. The script is optional
garnish: the page reads fully without it (tables, SVG charts, text alternatives);
it sorts tables, and draws the per-unit views into ``<canvas>`` from compact data
attributes (one byte per unit) because thousands of units as SVG elements would
make the file several times larger.
"""

CSS = """
.deadrelu{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
  max-width:1000px;margin:0 auto;padding:0 12px}
.deadrelu h1{font-size:22px;margin:16px 0 8px}
.deadrelu h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.deadrelu h3{font-size:15px;margin:12px 0 6px}
.deadrelu dl.head{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
.deadrelu dl.head dt{font-weight:600}
.deadrelu dl.head dd{margin:0;overflow-wrap:anywhere}
.deadrelu .partial{color:#fff;background:#B00020;padding:6px 10px;font-weight:600}
.deadrelu .summary{font-weight:600;margin:10px 0}
.deadrelu .note{color:#555;font-size:13px}
.deadrelu svg.chart{max-width:100%;height:auto;display:block}
.deadrelu ul.legend{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px 16px;
  font-size:13px}
.deadrelu .sw{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;
  border:1px solid #555}
.deadrelu table{border-collapse:collapse;font-size:13px;margin:6px 0;width:100%}
.deadrelu th,.deadrelu td{border-bottom:1px solid #e4e4e4;padding:3px 6px;text-align:left;
  vertical-align:top}
.deadrelu td.n,.deadrelu th.n{text-align:right;font-variant-numeric:tabular-nums}
.deadrelu th button{font:inherit;font-weight:600;background:none;border:0;padding:0;cursor:pointer;
  color:inherit}
.deadrelu th[aria-sort=ascending] button::after{content:" \\25B2"}
.deadrelu th[aria-sort=descending] button::after{content:" \\25BC"}
.deadrelu .sev-error{color:#B00020;font-weight:600}
.deadrelu .sev-warning{color:#8a5a00;font-weight:600}
.deadrelu .jump{font-weight:700;color:#B00020}
.deadrelu .pass{color:#006b4f;font-weight:600}
.deadrelu .fail{color:#B00020;font-weight:700}
.deadrelu details.layer{border:1px solid #e4e4e4;border-radius:4px;margin:6px 0;padding:4px 8px}
.deadrelu details.layer summary{cursor:pointer}
.deadrelu .layerbody{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start;margin-top:6px}
.deadrelu canvas.units{display:block;max-width:100%;image-rendering:pixelated}
.deadrelu .unitinfo{font-size:12px;color:#333;min-height:1.4em}
.deadrelu .scroll{overflow-x:auto}
.deadrelu table.layers td:nth-child(2){overflow-wrap:anywhere;min-width:10em}
.deadrelu table.findings{table-layout:fixed}
.deadrelu table.findings td{overflow-wrap:anywhere}
.deadrelu table.findings th:nth-child(1){width:8%}
.deadrelu table.findings th:nth-child(2){width:7%}
.deadrelu table.findings th:nth-child(3){width:11%}
.deadrelu table.findings th:nth-child(4){width:9%}
.deadrelu table.findings th:nth-child(5){width:36%}
.deadrelu table.findings th:nth-child(6){width:29%}
.deadrelu pre{white-space:pre-wrap;font-size:12px;margin:4px 0}
.deadrelu a{color:#0057a0}
"""

JS = r"""
(function () {
  "use strict";
  // state code -> colour and name, filled in from deadrelu.html.svg.STATES
  var COLOR = __STATE_COLORS__, NAME = __STATE_NAMES__;
  function bytes(b64) {
    var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function rateText(b) {
    if (b === 0) return "0% (never fired)";
    if (b === 1) return "below 0.4%";
    return "about " + ((b - 1) / 2.54).toFixed(1) + "%";
  }
  function draw(c) {
    var rates = bytes(c.dataset.rates), st = c.dataset.states, n = rates.length;
    var per = +c.dataset.per, cols = +c.dataset.cols, rowH = +c.dataset.row, barH = rowH - 10;
    var order = [];
    for (var i = 0; i < n; i++) order.push(i);
    if (c.dataset.sorted === "1") order.sort(function (p, q) { return rates[p] - rates[q] || p - q; });
    c._order = order;
    var g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    for (var k = 0; k < n; k++) {
      var u = order[k], x = (k % cols) * per, y = Math.floor(k / cols) * rowH;
      var h = rates[u] === 0 ? 0 : Math.max(1, Math.round(barH * (rates[u] - 1) / 254));
      g.fillStyle = "#555";
      g.fillRect(x, y + barH - h, per, h);
      g.fillStyle = COLOR[st[u]] || "#888";
      g.fillRect(x, y + barH + 1, per, 6);
    }
    c.dataset.drawn = "1";
  }
  function hover(ev) {
    var c = ev.currentTarget, r = c.getBoundingClientRect();
    var sx = c.width / r.width, sy = c.height / r.height;
    var col = Math.floor((ev.clientX - r.left) * sx / +c.dataset.per);
    var row = Math.floor((ev.clientY - r.top) * sy / +c.dataset.row);
    var k = row * +c.dataset.cols + col, out = document.getElementById(c.dataset.info);
    if (!c._order || col >= +c.dataset.cols || k >= c._order.length || k < 0) return;
    var u = c._order[k], b = bytes(c.dataset.rates)[u];
    out.textContent = "unit " + u + ": " + NAME[c.dataset.states[u]] + ", fire rate " + rateText(b);
  }
  document.querySelectorAll(".deadrelu canvas.units").forEach(function (c) {
    draw(c);
    c.addEventListener("mousemove", hover);
  });
  document.querySelectorAll(".deadrelu button.sortunits").forEach(function (b) {
    b.addEventListener("click", function () {
      var c = document.getElementById(b.dataset.canvas);
      c.dataset.sorted = c.dataset.sorted === "1" ? "0" : "1";
      b.setAttribute("aria-pressed", c.dataset.sorted === "1" ? "true" : "false");
      b.textContent = c.dataset.sorted === "1" ? "unit order" : "sort by fire rate";
      draw(c);
    });
  });
  // a link from the layer table opens the folded layer it points to
  function openTarget() {
    var t = location.hash && document.getElementById(location.hash.slice(1));
    if (t && t.tagName === "DETAILS") t.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
  function key(td) {
    var v = td.getAttribute("data-v");
    return v !== null ? parseFloat(v) : td.textContent.trim().toLowerCase();
  }
  document.querySelectorAll(".deadrelu table.sortable").forEach(function (t) {
    var heads = t.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var b = th.querySelector("button");
      if (!b) return;
      b.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (p, q) {
          var x = key(p.cells[col]), y = key(q.cells[col]);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""
