"""The HTML pages: a report, a ``check`` run, a ``track`` trend, and the notebook fragment.

Presentation only, like :mod:`deadrelu.render`: every number is read from the
report (``layer_records``, ``verdicts``, ``findings``, ``meta``) or the trend; the
header, verdicts and summary line reuse the terminal report's helpers so the two
never disagree. A page is one string: inline CSS and JS (:mod:`.assets`), charts
as inline SVG (:mod:`.svg`), and a Content-Security-Policy that forbids every
network fetch, so the file is self-contained by construction.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deadrelu.html import svg
from deadrelu.html.assets import CSS, JS

if TYPE_CHECKING:
    from deadrelu.ci import CheckRun
    from deadrelu.report import Report
    from deadrelu.track_checkpoints import Trend

_esc = html.escape

#: Forbids every fetch: no script, style, image, font or connection from anywhere.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")
#: Width of the per-unit view in canvas pixels: one pixel column per unit beyond this many units.
UNIT_VIEW_WIDTH = 880
#: Height of one row of the per-unit view (30 px bar, 6 px state band, gaps).
UNIT_ROW = 40
#: Bins of the per-layer fire-rate histogram.
HIST_BINS = 20

Cell = tuple[str, float | None, str]  # (escaped HTML, sort key, css class)


# -- pages -----------------------------------------------------------------------------------


def report_page(report: Report) -> str:
    """A whole HTML document for ``report`` (``deadrelu scan --format html``)."""
    title = f"deadrelu report: {report.meta.get('model', 'model')}"
    return _document(title, f"<h1>deadrelu report</h1>{_report_body(report)}")


def check_page(run: CheckRun) -> str:
    """A whole HTML document for a ``deadrelu check`` run: the gates, then the report."""
    outcome = run.outcome
    rows: list[list[Cell]] = []
    for r in outcome.results:
        rows.append([
            (_esc(r.gate), None, ""), (_esc(r.layer or "(model)"), None, ""),
            ("pass" if r.passed else "FAIL", 0 if r.passed else 1, "pass" if r.passed else "fail"),
            (_esc(_number(r.actual)), float(r.actual), "n"), (_esc(_number(r.limit)), float(r.limit), "n"),
            (_esc(r.message), None, ""),
        ])
    verdict = "fail" if not outcome.passed else "pass"
    notes = "".join(f"<li>{_esc(n)}</li>" for n in outcome.notes)
    body = (f"<h1>deadrelu check</h1><p class='summary {verdict}'>{_esc(run.headline())}</p>"
            f"<p>{_esc(run.summary_line())}; model file {_esc(run.model_label)}"
            + (f", baseline {_esc(run.baseline_path)}" if run.baseline_path else "") + "</p>"
            + "<h2 id='gates'>Gates</h2>"
            + _table(["gate", "layer", "result", "actual", "limit", "what was measured"], rows,
                     caption="Every gate with its measured value and limit", numeric={3, 4})
            + (f"<ul class='note'>{notes}</ul>" if notes else "")
            + _report_body(run.report))
    return _document(f"deadrelu check: {run.model_label}", body)


def check_error_page(model_label: str, message: str) -> str:
    """The page ``deadrelu check --format html`` leaves when the check could not run."""
    body = (f"<h1>deadrelu check</h1><p class='partial'>the check could not run</p>"
            f"<dl class='head'><dt>model</dt><dd>{_esc(model_label)}</dd>"
            f"<dt>error</dt><dd>{_esc(message)}</dd></dl>")
    return _document(f"deadrelu check could not run: {model_label}", body)


def trend_page(trend: Trend, source: str) -> str:
    """A whole HTML document for ``deadrelu track``: trend chart, table, jumps, latest report."""
    from deadrelu.gates import units_list
    from deadrelu.wording import MODEL

    steps = trend.steps
    wide = trend.table()
    series: dict[str, list[float | None]] = {}
    for layer, row in wide.iterrows():
        values = [row.get(s) for s in steps]
        series[str(layer)] = [None if v is None or v != v else float(v) for v in values]
    jumped = [t.layer for t in trend.jumps]
    chart, colors = svg.trend_chart(steps, series, jumped, MODEL, trend.jump_step)
    key = "".join(f'<li><span class="sw" style="background:{c}"></span>{_esc(n)}</li>'
                  for n, c in colors.items())
    key += ('<li><span class="sw" style="background:#000"></span>whole model (dashed)</li>'
            '<li><span class="sw" style="background:#999"></span>layers without a jump</li>')
    jump_cells = {(t.layer, t.to_step) for t in trend.jumps}
    if trend.model_jump is not None:
        jump_cells.add((MODEL, trend.model_jump[1]))
    rows: list[list[Cell]] = []
    for layer, values in series.items():
        cells: list[Cell] = [(_esc(layer), None, "")]
        for step, v in zip(steps, values, strict=True):
            if v is None:
                cells.append(("–", -1.0, "n"))
            elif (layer, step) in jump_cells:
                cells.append((f"▲ {v * 100:.1f}", v, "n jump"))
            else:
                cells.append((f"{v * 100:.1f}", v, "n"))
        rows.append(cells)
    limit = f"{trend.min_jump * 100:g} pp"
    if trend.jumps or trend.model_jump is not None:
        items = []
        if trend.model_jump is not None:
            a, b, before, after = trend.model_jump
            items.append(f"<li><b>{_esc(MODEL)}</b>: step {a} → {b}: dead {before * 100:.1f}% → "
                         f"{after * 100:.1f}%</li>")
        items += [f"<li><b>{_esc(t.layer)}</b>: {_esc(t.describe())}</li>" for t in trend.jumps]
        jumps = (f"<p>First jump per layer (dead fraction up by at least {limit} between "
                 f"consecutive checkpoints); ▲ marks it in the table.</p><ul>{''.join(items)}</ul>")
    else:
        jumps = f"<p>No layer's dead fraction rose by {limit} or more between consecutive checkpoints.</p>"
    moves = [t for t in trend.transitions if t.died or t.revived]
    died = "".join(
        f"<li>{t.from_step} → {t.to_step} <b>{_esc(t.layer)}</b>: "
        + (f"{len(t.died)} died ({_esc(units_list(t.died, limit=12))}) " if t.died else "")
        + (f"{len(t.revived)} revived ({_esc(units_list(t.revived, limit=12))})" if t.revived else "")
        + "</li>" for t in moves)
    samples = trend.reports[0].samples if trend.reports else 0
    notes = "".join(f"<li>{_esc(n)}</li>" for n in trend.notes)
    last = trend.reports[-1]
    body = (
        "<h1>deadrelu track</h1>"
        f"<dl class='head'><dt>checkpoints</dt><dd>{_esc(source)}</dd><dt>steps</dt>"
        f"<dd>{len(steps)} checkpoints, {steps[0]} … {steps[-1]}</dd>"
        f"<dt>samples</dt><dd>{samples:,} per checkpoint</dd>"
        f"<dt>data</dt><dd>{_esc(str(last.meta.get('data', '?')))}</dd></dl>"
        "<h2 id='trend'>Dead fraction per layer over checkpoints</h2>"
        f"{chart}<ul class='legend'>{key}</ul>{jumps}"
        + _table(["layer", *[f"step {s}" for s in steps]], rows,
                 caption="Dead units per layer (%) by step; ▲ marks each layer's first jump",
                 numeric=set(range(1, len(steps) + 1)))
        + "<h2 id='moves'>Units that died or revived</h2>"
        + (f"<ul>{died}</ul>" if died else "<p>No unit changed between dead and alive.</p>")
        + (f"<h2>Notes</h2><ul class='note'>{notes}</ul>" if notes else "")
        + f"<h2 id='latest'>Latest checkpoint (step {steps[-1]})</h2>"
        + _report_body(last, level=3)
    )
    return _document(f"deadrelu track: {source}", body)


def report_fragment(report: Report) -> str:
    """Compact HTML for a notebook cell: header, overview chart, findings; no script."""
    records = report.layer_records()
    parts = [f"<style>{CSS}</style><div class='deadrelu'>", _header(report)]
    if records:
        parts += [svg.legend(), svg.overview_chart(records)]
    parts.append(_findings(report, level=3))
    parts.append("</div>")
    return "".join(parts)


# -- sections --------------------------------------------------------------------------------


def _script() -> str:
    """The page script with the state colours and names of :data:`svg.STATES` filled in."""
    colors = {svg.STATE_CODE[key]: color for key, _, color in svg.STATES}
    names = {svg.STATE_CODE[key]: label for key, label, _ in svg.STATES}
    return (JS.replace("__STATE_COLORS__", json.dumps(colors))
            .replace("__STATE_NAMES__", json.dumps(names)))


def _document(title: str, body: str) -> str:
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
            f"<main class='deadrelu'>{body}</main><script>{_script()}</script></body></html>\n")


def _report_body(report: Report, level: int = 2) -> str:
    records = report.layer_records()
    h = f"h{level}"
    parts = [_header(report)]
    if records:
        parts += [f"<{h} id='overview'>Unit states per layer</{h}>",
                  "<p class='note'>Forward order, top to bottom: the depth where units die shows "
                  "as a wide dead (vermillion) segment. The layer table below has every number.</p>",
                  svg.legend(), svg.overview_chart(records)]
    parts.append(_findings(report, level=level))
    if records:
        parts += [f"<{h} id='layers'>Layers</{h}>", _layer_table(report, records),
                  f"<{h} id='units'>Per layer: fire-rate distribution and every unit</{h}>",
                  "<p class='note'>Left: how many units fire how often. Right: one bar per unit "
                  "in unit order, height = fire rate, coloured band = state (hover for a unit's "
                  "numbers). Layers with dead units are open.</p>",
                  *_layer_details(report, records)]
    return "".join(parts)


def _header(report: Report) -> str:
    from deadrelu.analyzer import rule_out_rate
    from deadrelu.render import header_rows, summary_line

    rows = header_rows(report)
    n = report.samples
    if n:
        rows.append(("95% bound", f"a unit never seen firing in {n:,} samples may still fire on "
                                  f"up to {rule_out_rate(n):.2%} of inputs (95% confidence)"))
    positions = sorted({int(s.stats.positions) for s in report.sites})
    if positions and positions != [n]:
        span = f"{positions[0]:,}" if len(positions) == 1 else f"{positions[0]:,} … {positions[-1]:,}"
        rows.append(("positions", f"{span} per layer (samples × spatial/token positions)"))
    items = "".join(f"<dt>{_esc(label)}</dt><dd>{_esc(value)}</dd>" for label, value in rows)
    notes = "".join(f"<dt>note</dt><dd class='note'>{_esc(str(x))}</dd>"
                    for x in report.notes)
    partial = (f"<p class='partial'>PARTIAL: the scan was interrupted; these results cover only "
               f"the first {n:,} samples</p>" if report.partial else "")
    return (f"{partial}<dl class='head'>{items}{notes}</dl>"
            f"<p class='summary'>{_esc(summary_line(report))}</p>")


def _findings(report: Report, level: int) -> str:
    h = f"h{level}"
    if not report.findings:
        return f"<{h} id='findings'>Findings</{h}><p>No findings.</p>"
    rank = {"error": 2, "warning": 1, "info": 0}
    rows: list[list[Cell]] = []
    for f in report.findings:
        sev = f.severity.value
        evidence = json.dumps(_brief(dict(f.evidence)), default=str, sort_keys=True)
        rows.append([
            (sev, rank.get(sev, 0), f"sev-{sev}"), (_esc(f.code), None, ""),
            (_esc(f.layer or "(model)"), None, ""), (_esc(f.cause.replace("_", " ")), None, ""),
            (f"{_esc(f.message)}<details><summary>evidence</summary><pre>{_esc(evidence, quote=False)}</pre>"
             "</details>", None, ""),
            (_esc(f.fix), None, ""),
        ])
    return (f"<{h} id='findings'>Findings ({len(rows)})</{h}>"
            + _table(["severity", "code", "layer", "cause", "evidence", "fix"], rows,
                     caption="Diagnosed problems with their cause, evidence and fix",
                     cls="findings"))


def _layer_table(report: Report, records: Sequence[dict[str, Any]]) -> str:
    from deadrelu.render import verdict

    rows: list[list[Cell]] = []
    for i, r in enumerate(records):
        units = r["units"] or 1
        text, _ = verdict(r)
        rows.append([
            (str(r["order"]), r["order"], "n"),
            (f"<a href='#layer-{i}'>{_esc(str(r['layer']))}</a>", None, ""),
            (_esc(str(r["kind"])), None, ""),
            *[(f"{int(r[k]):,}", int(r[k]), "n")
              for k in ("units", "dead", "rare", "saturated", "always_on", "healthy")],
            (f"{r['dead'] / units:.1%}", r["dead"] / units, "n"),
            (f"{r['fire_rate_mean']:.1%}", r["fire_rate_mean"], "n"),
            (f"{int(r['positions']):,}", int(r["positions"]), "n"),
            (_esc(text), None, ""),
        ])
    heads = ["#", "layer", "kind", "units", "dead", "rare", "saturated", "always on", "healthy",
             "dead %", "mean fire rate", "positions", "verdict"]
    return _table(heads, rows, caption="Per layer, forward order (click a heading to sort)",
                  numeric={0, *range(3, 12)}, cls="layers")


def _layer_details(report: Report, records: Sequence[dict[str, Any]]) -> Iterable[str]:
    from deadrelu.gates import units_list
    from deadrelu.render import histogram, verdict

    for i, (r, site) in enumerate(zip(records, report.sites, strict=True)):
        name = str(r["layer"])
        v = report.verdicts[name]
        fire = np.nan_to_num(np.asarray(v.fire_rate, dtype=float), nan=0.0)
        text, _ = verdict(r)
        dead = [int(u) for u in np.flatnonzero(v.state == "dead")]
        hist = svg.histogram_chart(histogram(fire, HIST_BINS), name)
        units = _unit_view(f"u{i}", name, fire, v.state.astype(str))
        dead_text = (f"<p class='note'>dead units ({len(dead):,}): {_esc(units_list(dead, limit=40))}</p>"
                     if dead else "")
        yield (f"<details class='layer' id='layer-{i}'{' open' if dead else ''}><summary><b>"
               f"{_esc(name)}</b> — {_esc(str(site.info.kind))}, {r['units']:,} units, "
               f"{_esc(text)}</summary><div class='layerbody'>{hist}{units}</div>{dead_text}"
               "</details>")


def _unit_view(ident: str, name: str, fire: np.ndarray, states: np.ndarray) -> str:
    """A canvas drawn by the page script: one bar per unit, wrapping beyond UNIT_VIEW_WIDTH units."""
    n = int(fire.size)
    if n == 0:
        return ""
    if n <= UNIT_VIEW_WIDTH:
        per, cols = max(1, min(12, UNIT_VIEW_WIDTH // n)), n
    else:
        per, cols = 1, UNIT_VIEW_WIDTH
    rows = math.ceil(n / cols)
    # 0 = never fired; 1..255 = 1 + round(rate * 254), so any firing at all stays above 0
    code = np.where(fire <= 0, 0, 1 + np.round(np.clip(fire, 0, 1) * 254)).astype(np.uint8)
    rates = base64.b64encode(code.tobytes()).decode("ascii")
    state_chars = "".join(svg.STATE_CODE.get(str(s), "h") for s in states)
    counts = {label: int((states == key).sum()) for key, label, _ in svg.STATES}
    label = (f"Fire rate of each of the {n:,} units of {name} in unit order: "
             + ", ".join(f"{c:,} {k}" for k, c in counts.items() if c))
    return (f"<div><canvas class='units' id='{ident}' width='{cols * per}' height='{rows * UNIT_ROW}'"
            f" data-rates='{rates}' data-states='{state_chars}' data-per='{per}' data-cols='{cols}'"
            f" data-row='{UNIT_ROW}' data-info='{ident}i' role='img' aria-label='{_esc(label)}'>"
            f"{_esc(label)}</canvas><div class='unitinfo' id='{ident}i' aria-live='polite'></div>"
            f"<button type='button' class='sortunits' data-canvas='{ident}' aria-pressed='false'>"
            "sort by fire rate</button></div>")


def _table(heads: Sequence[str], rows: Sequence[Sequence[Cell]], *, caption: str,
           numeric: set[int] | None = None, cls: str = "") -> str:
    numeric = numeric or set()
    th = "".join(f"<th scope='col'{' class=n' if i in numeric else ''}><button type='button'>"
                 f"{_esc(h)}</button></th>" for i, h in enumerate(heads))
    body = []
    for row in rows:
        cells = []
        for text, key, cell_class in row:
            attrs = f" class='{cell_class}'" if cell_class else ""
            if key is not None:
                attrs += f" data-v='{key:.10g}'"
            cells.append(f"<td{attrs}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table class='sortable {cls}'><caption class='note'>"
            f"{_esc(caption)}</caption><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></div>")


#: Items of an evidence list shown on the page (the JSON report keeps them all).
EVIDENCE_ITEMS = 16


def _brief(value: Any) -> Any:
    """Evidence for reading: long lists cut to their first items, floats to 4 digits."""
    if isinstance(value, dict):
        return {k: _brief(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_brief(v) for v in value[:EVIDENCE_ITEMS]]
        if len(value) > EVIDENCE_ITEMS:
            items.append(f"... {len(value) - EVIDENCE_ITEMS} more")
        return items
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else str(value)
    return value


def _number(value: float) -> str:
    value = float(value)
    return f"{value:.4g}" if not value.is_integer() else f"{int(value):,}"
