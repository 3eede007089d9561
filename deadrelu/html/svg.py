"""Charts as inline SVG text, drawn by our own few lines instead of a plotting library.

Why not matplotlib: its SVG output writes every glyph as a path and every bar as a
styled element (tens of kB per chart), so a page with one chart per layer of a
ResNet would pass a megabyte; it also adds a dependency to a core feature. The
charts here are bars and lines on fixed axes, which a few ``<rect>``/``<path>``
elements say exactly. Every chart is ``role="img"`` with a ``<title>`` and a
``<desc>`` (the text alternative) and repeats its numbers in a table beside it.

Colours are the Okabe–Ito palette (distinguishable with the common colour-vision
deficiencies); states are also told apart by position (dead always leftmost) and
by the legend's text, never by colour alone.
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

#: Unit states in stacking order (most serious first) with their label and colour.
STATES: tuple[tuple[str, str, str], ...] = (
    ("nonfinite", "NaN/Inf", "#000000"),
    ("dead", "dead", "#D55E00"),
    ("rare", "rare", "#E69F00"),
    ("saturated", "saturated", "#CC79A7"),
    ("always_on", "always on", "#0072B2"),
    ("healthy", "healthy", "#C8C8C8"),
)
#: One character per state in the unit-view data (see assets.JS).
STATE_CODE = {"nonfinite": "n", "dead": "d", "rare": "r", "saturated": "s", "always_on": "a",
              "healthy": "h"}
#: Line colours for the trend chart (Okabe–Ito without black, which marks the model total).
SERIES = ("#D55E00", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442")

_esc = html.escape


def _svg(width: float, height: float, title: str, desc: str, body: str, cls: str) -> str:
    ident = f"c{zlib.crc32(f'{title}|{desc}|{width}|{height}'.encode()):08x}"  # stable ids
    return (f'<svg class="{cls}" viewBox="0 0 {width:g} {height:g}" width="{width:g}" '
            f'height="{height:g}" role="img" aria-labelledby="{ident}t {ident}d" '
            f'xmlns="http://www.w3.org/2000/svg"><title id="{ident}t">{_esc(title)}</title>'
            f'<desc id="{ident}d">{_esc(desc)}</desc>{body}</svg>')


def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def overview_chart(records: Sequence[Mapping[str, Any]], *, width: int = 900) -> str:
    """Stacked horizontal bar per layer, forward order top to bottom: state shares of its units.

    Args:
        records: :meth:`Report.layer_records` rows.
        width: drawing width in px (the page scales it down on narrow screens).
    """
    longest = max((len(str(r["layer"])) for r in records), default=8)
    row, label_w, right_w = 16, min(250, 24 + 7 * min(longest, 38)), 90
    bar_w = width - label_w - right_w
    top = 18
    height = top + row * max(1, len(records)) + 6
    parts = [f'<g font-size="11" fill="#333"><text x="{label_w}" y="12">0%</text>'
             f'<text x="{label_w + bar_w}" y="12" text-anchor="end">100% of units</text></g>']
    worst: list[str] = []
    for i, rec in enumerate(records):
        y = top + i * row
        units = int(rec["units"]) or 1
        counts = {key: int(rec.get(key, 0)) for key, _, _ in STATES}
        tip = f"{rec['layer']} ({rec['units']:,} units): " + ", ".join(
            f"{counts[k]:,} {label}" for k, label, _ in STATES if counts[k])
        seg = []
        x = float(label_w)
        for key, _, color in STATES:
            if not counts[key]:
                continue
            w = bar_w * counts[key] / units
            seg.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{max(w, 0.6):.1f}" '
                       f'height="{row - 4}" fill="{color}"/>')
            x += w
        dead = counts["dead"] / units
        if counts["dead"]:
            worst.append(f"{rec['layer']} {dead:.0%}")
        parts.append(
            f'<g><title>{_esc(tip)}</title>'
            f'<text x="{label_w - 6}" y="{y + row - 4}" text-anchor="end" font-size="11">'
            f'{_esc(_short(str(rec["layer"]), 38))}</text>{"".join(seg)}'
            f'<text x="{label_w + bar_w + 6}" y="{y + row - 4}" font-size="11">'
            f'{dead:.0%} dead</text></g>')
    desc = (f"{len(records)} layers in forward order, top to bottom; each bar splits the layer's "
            "units into dead, rare, saturated, always-on and healthy. "
            + (f"Layers with dead units: {'; '.join(worst)}." if worst else "No layer has dead units."))
    return _svg(width, height, "Unit states per layer, in forward order", desc, "".join(parts),
                "chart overview")


def legend() -> str:
    """The colour key of the state charts as HTML (text, not only colour)."""
    items = "".join(f'<li><span class="sw" style="background:{color}"></span>{label}</li>'
                    for _, label, color in STATES)
    return f'<ul class="legend" aria-label="colour key">{items}</ul>'


def histogram_chart(counts: Sequence[int], layer: str, *, width: int = 240,
                    height: int = 56) -> str:
    """Fire-rate histogram of one layer: unit counts per equal bin over [0, 1], one path."""
    bins = len(counts)
    top = max(counts, default=0) or 1
    plot_h = height - 14
    bw = width / bins
    path = []
    for i, c in enumerate(counts):
        if c:
            h = max(1.0, plot_h * c / top)
            path.append(f"M{i * bw:.1f} {plot_h:.1f}h{bw - 1:.1f}v{-h:.1f}h{-(bw - 1):.1f}z")
    step = 100 // bins
    desc = (f"Units of {layer} per fire-rate bin of {step}%: "
            + ", ".join(f"{i * step}-{(i + 1) * step}%: {c}" for i, c in enumerate(counts) if c))
    body = (f'<path d="{"".join(path)}" fill="#0072B2"/>'
            f'<line x1="0" x2="{width}" y1="{plot_h + 0.5}" y2="{plot_h + 0.5}" stroke="#666"/>'
            f'<g font-size="10" fill="#333"><text x="0" y="{height - 2}">0%</text>'
            f'<text x="{width / 2}" y="{height - 2}" text-anchor="middle">fire rate</text>'
            f'<text x="{width}" y="{height - 2}" text-anchor="end">100%</text></g>')
    return _svg(width, height, f"Fire-rate distribution of {layer}", desc, body, "chart hist")


def trend_chart(steps: Sequence[int], series: Mapping[str, Sequence[float | None]],
                highlighted: Sequence[str], total: str, jump_step: int | None,
                *, width: int = 900, height: int = 320) -> tuple[str, dict[str, str]]:
    """Dead fraction per layer against step; returns the SVG and the colour of each highlighted line.

    Args:
        steps: checkpoint steps, increasing.
        series: layer → dead fraction per step (``None`` where the layer was absent).
        highlighted: layers drawn in colour (those that jumped); the rest are thin grey.
        total: the name of the whole-model series, drawn black and dashed.
        jump_step: the step of the first jump, marked with a vertical line.
    """
    left, right, top, bottom = 46, 12, 12, 34
    pw, ph = width - left - right, height - top - bottom
    lo, hi = min(steps), max(steps)
    span = (hi - lo) or 1

    def x(step: int) -> float:
        return left + pw * (step - lo) / span if hi > lo else left + pw / 2

    def y(value: float) -> float:
        return top + ph * (1 - value)

    parts = ['<g font-size="11" fill="#333">']
    for pct in (0, 25, 50, 75, 100):
        yy = y(pct / 100)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" '
                     f'stroke="#e3e3e3"/><text x="{left - 6}" y="{yy + 4:.1f}" '
                     f'text-anchor="end">{pct}%</text>')
    for step in steps:
        parts.append(f'<text x="{x(step):.1f}" y="{top + ph + 16}" text-anchor="middle">{step}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 2}" text-anchor="middle">step</text></g>')
    if jump_step is not None:
        jx = x(jump_step)
        parts.append(f'<line x1="{jx:.1f}" x2="{jx:.1f}" y1="{top}" y2="{top + ph}" stroke="#D55E00" '
                     f'stroke-dasharray="4 3"/><text x="{jx + 4:.1f}" y="{top + 12}" font-size="11" '
                     f'fill="#D55E00">first jump (step {jump_step})</text>')
    colors: dict[str, str] = {}
    for i, name in enumerate(highlighted):
        colors[name] = SERIES[i % len(SERIES)]
    order = [n for n in series if n not in colors and n != total] + list(colors) + [total]
    for name in order:
        if name not in series:
            continue
        pts = [(x(s), y(v)) for s, v in zip(steps, series[name], strict=True) if v is not None]
        if not pts:
            continue
        d = "M" + "L".join(f"{a:.1f} {b:.1f}" for a, b in pts)
        if name == total:
            style = 'stroke="#000" stroke-width="2.5" stroke-dasharray="6 3"'
        elif name in colors:
            style = f'stroke="{colors[name]}" stroke-width="2"'
        else:
            style = 'stroke="#999" stroke-width="1" opacity="0.6"'
        marks = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>' for a, b in pts) \
            if name in colors or name == total else ""
        fill = "#000" if name == total else colors.get(name, "#999")
        parts.append(f'<g><title>{_esc(name)}</title><path d="{d}" fill="none" {style}/>'
                     f'<g fill="{fill}">{marks}</g></g>')
    desc = (f"Dead units (%) of {len(series) - 1} layers and the whole model across "
            f"{len(steps)} checkpoints, steps {lo} to {hi}. "
            + (f"The first jump is at step {jump_step}; layers that jumped: "
               f"{', '.join(highlighted) or 'none (the whole model only)'}."
               if jump_step is not None else "No layer's dead fraction jumped."))
    return _svg(width, height, "Dead fraction per layer over checkpoints", desc,
                "".join(parts), "chart trend"), colors
