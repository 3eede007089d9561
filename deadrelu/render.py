"""The terminal report: a :class:`~deadrelu.report.Report` as rich renderables.

Presentation only: every number shown is read from the report (``layer_records``,
``verdicts``, ``summary``, ``findings``, ``meta``); nothing is recomputed from a
model. The plain-text helpers (:func:`histogram`, :func:`sparkline`,
:func:`verdict`, :func:`summary_line`) are shared with :mod:`deadrelu.export`, so
the terminal, Markdown and CSV outputs can never disagree. rich is imported inside
the functions that build renderables, so ``deadrelu.export`` works without it.

Layout, top to bottom: header panel (model, data, samples, device, time; a bold
red warning if the scan was interrupted), the per-layer table in forward order,
a legend for its columns, the findings with their fixes, one summary line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deadrelu.wording import percent

if TYPE_CHECKING:
    from rich.console import RenderableType

    from deadrelu.report import Report

#: Eighth-block characters, lowest to highest, for the fire-rate histogram.
BLOCKS = "▁▂▃▄▅▆▇█"
#: A bin with no units.
EMPTY = "·"
#: Bins of the fire-rate histogram over [0, 1].
BINS = 10

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "blue"}
_SEVERITY_ICON = {"error": "✖", "warning": "▲", "info": "●"}


# -- plain helpers (no rich) ----------------------------------------------------------------


def histogram(fire_rate: np.ndarray, bins: int = BINS) -> list[int]:
    """Unit counts per fire-rate bin: ``bins`` equal bins over [0, 1], 1.0 in the last."""
    values = np.clip(np.asarray(fire_rate, dtype=float), 0.0, 1.0)
    index = np.minimum((values * bins).astype(int), bins - 1)
    return [int(c) for c in np.bincount(index, minlength=bins)]


def sparkline(counts: Sequence[int]) -> str:
    """One character per bin, height proportional to its count (any non-empty bin shows)."""
    top = max(counts, default=0)
    if top <= 0:
        return EMPTY * len(counts)
    chars = []
    for count in counts:
        if count <= 0:
            chars.append(EMPTY)
        else:
            level = max(1, math.ceil(count / top * len(BLOCKS)))
            chars.append(BLOCKS[level - 1])
    return "".join(chars)


def verdict(record: Mapping[str, Any]) -> tuple[str, str]:
    """Short verdict for one layer record and its style: ``("87% dead", "bold red")``.

    The most serious state comes first; a second one is added only when it covers at
    least 10% of the units (the columns give the exact counts).
    """
    units = int(record["units"]) or 1
    parts: list[tuple[str, str, float]] = []
    if record["nonfinite"]:
        parts.append((f"{record['nonfinite']:,} NaN/Inf", "bold red", 1.0))
    if record["dead"]:
        share = record["dead"] / units
        parts.append((f"{percent(share)} dead",
                      "bold red" if share >= 0.5 else "red" if share >= 0.2 else "yellow", share))
    for key, label, style in (("saturated", "saturated", "magenta"), ("rare", "rare", "yellow"),
                              ("always_on", "always on", "cyan")):
        if record[key]:
            share = record[key] / units
            parts.append((f"{percent(share)} {label}", style, share))
    if not parts:
        return "healthy", "green"
    shown = [parts[0]] + [p for p in parts[1:] if p[2] >= 0.1][:1]
    return ", ".join(text for text, _, _ in shown), parts[0][1]


def summary_line(report: Report) -> str:
    """One line: how many layers and units are dead, on how many samples."""
    records = report.layer_records()
    samples = f"{report.samples:,} sample{'s' if report.samples != 1 else ''}"
    prefix = "PARTIAL: " if report.partial else ""
    if not records:
        return prefix + "no activation sites were seen before the scan stopped."
    units = sum(r["units"] for r in records)
    dead = sum(r["dead"] for r in records)
    layers_dead = sum(1 for r in records if r["dead"])
    if dead:
        text = (f"{layers_dead} of {len(records)} layer{'s' if len(records) != 1 else ''} "
                f"{'have' if layers_dead != 1 else 'has'} dead units: {dead:,} of {units:,} units "
                f"({dead / units:.1%}) never fired on {samples}")
    else:
        text = f"no dead units: all {units:,} units in {len(records)} layers fired on {samples}"
    nonfinite = sum(r["nonfinite"] for r in records)
    if nonfinite:
        text += f"; {nonfinite:,} units produced NaN/Inf"
    return prefix + text + "."


def format_seconds(seconds: float) -> str:
    """``0.042`` → ``"0.04 s"``, ``75`` → ``"1 min 15 s"``."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def header_rows(report: Report) -> list[tuple[str, str]]:
    """(label, value) pairs for the header, in display order."""
    meta = report.meta
    rows = [("model", str(meta.get("model", "?"))), ("data", str(meta.get("data", "?")))]
    scanned = f"{report.samples:,} (model in {meta.get('mode', 'eval')} mode)"
    if meta.get("tokens"):  # text: a sample is a sequence, a position a real token
        scanned = (f"{report.samples:,} sequences, {int(meta['tokens']):,} tokens "
                   f"(padding excluded; model in {meta.get('mode', 'eval')} mode)")
    if meta.get("merged_from"):
        scanned += f", merged from {meta['merged_from']} reports"
    rows.append(("samples", scanned))
    where = str(meta.get("device", "?"))
    if "seconds" in meta:
        where += f", scan took {format_seconds(float(meta['seconds']))}"
    rows.append(("device", where))
    return rows


def fire_rate_counts(report: Report, name: str) -> list[int]:
    """The fire-rate histogram of site ``name``."""
    return histogram(report.verdicts[name].fire_rate)


def on_sat(record: Mapping[str, Any]) -> int:
    """Units that are always on (ReLU family) or saturated (bounded kinds); a unit is never both."""
    return int(record["always_on"]) + int(record["saturated"])


def legend_rows(report: Report) -> list[tuple[str, str]]:
    """(column, meaning) pairs explaining the layer table, with the thresholds actually used."""
    t = report.thresholds
    n = report.samples
    return [
        ("units", "neurons (Linear layers) or channels (conv layers)"),
        ("dead", f"never fired (pre-activation above 0) on any of the {n:,} samples"),
        ("rare", f"fired on fewer than {_share(t.rare)} of the samples"),
        ("on/sat", f"ReLU-type: fire on ≥ {_share(t.always_on)} of inputs, so act linearly; "
                   f"sigmoid/tanh-type: in a flat region ≥ {_share(t.saturated)} of the time"),
        ("fire rate", f"how many units fire how often: 0% at the left to 100% at the right "
                      f"({EMPTY} = no units)"),
        ("–", "does not apply to this kind of activation"),
    ]


def caution(report: Report) -> str:
    """What "dead" can and cannot mean with this many samples (the rule of three)."""
    n = report.samples
    if not n:
        return ""
    from deadrelu.analyzer import rule_out_rate

    return (f"With {n:,} sample{'s' if n != 1 else ''}, a unit never seen firing may still fire "
            f"on up to {_share(rule_out_rate(n), digits=1)} of inputs (95% confidence).")


def legend(report: Report) -> str:
    """The legend as one paragraph (for Markdown)."""
    parts = [f"{name}: {meaning}." for name, meaning in legend_rows(report)]
    return " ".join([*parts, caution(report)]).strip()


def _share(value: float, digits: int = 0) -> str:
    text = f"{value * 100:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value * 100:g}"
    return f"{text}%"


def table_rows(report: Report) -> list[dict[str, Any]]:
    """Display rows of the layer table (strings), shared by the terminal and Markdown reports."""
    rows = []
    for record, site in zip(report.layer_records(), report.sites, strict=True):
        can_die = site.info.can_die
        bounded = site.info.bounded
        text, style = verdict(record)
        rows.append({
            "layer": record["layer"], "kind": record["kind"], "units": f"{record['units']:,}",
            "dead": f"{record['dead']:,}" if can_die else "–",
            "rare": f"{record['rare']:,}" if can_die else "–",
            "on/sat": f"{on_sat(record):,}" if (can_die or bounded) else "–",
            "fire rate": sparkline(fire_rate_counts(report, record["layer"])),
            "verdict": text, "style": style,
        })
    return rows


# -- rich renderables ----------------------------------------------------------------------


def render_report(report: Report) -> Iterable[RenderableType]:
    """The report as rich renderables: header, layer table, legend, findings, summary."""
    yield render_header(report)
    if report.sites:
        yield render_layers(report)
        yield render_legend(report)
    yield render_findings(report)
    yield render_summary(report)


def render_header(report: Report) -> RenderableType:
    """Panel with model, data, samples, device and time (and the partial warning)."""
    from rich import box
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    if report.partial:
        grid.add_row(Text("PARTIAL", style="bold red"), Text(
            f"the scan was interrupted: these results cover only the first "
            f"{report.samples:,} samples", style="bold red"))
    for label, value in header_rows(report):
        grid.add_row(label, value)
    notes = report.notes
    for i, note in enumerate(notes):
        grid.add_row("notes" if i == 0 else "", Text(note, style="dim"))
    return Panel(grid, title="deadrelu report", title_align="left", box=box.ROUNDED,
                 border_style="red" if report.partial else "blue", expand=False)


#: Below these console widths the layer table drops columns rather than crop the verdict.
_NARROW = 72  # no fire-rate histogram
_NARROWEST = 56  # no rare and on/sat columns either


def render_layers(report: Report, width: int | None = None) -> RenderableType:
    """The per-layer table, in forward order.

    Args:
        width: the space available; a narrow terminal drops the histogram (and below
            that the rare and on/sat columns) so the verdict is never cut off.
            ``None``: decide at render time from the console's width.
    """
    if width is None:
        return _AtWidth(render_layers, report)
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, expand=False, collapse_padding=True, show_edge=False,
                  header_style="bold",
                  title="Activation layers, in forward order", title_justify="left",
                  title_style="bold")
    show_hist = width >= _NARROW
    show_counts = width >= _NARROWEST
    rows = table_rows(report)
    # a site name is what users search their code for: never break it. When the longest
    # does not fit beside the numbers, every name goes on a line of its own.
    longest = max((len(site.info.name) for site in report.sites), default=8)
    if longest > _name_room(rows, width, show_counts, show_hist):
        return _stacked_layers(rows, width, show_counts, show_hist)
    table.add_column("layer", overflow="fold", min_width=max(8, min(longest, 40, width // 3)))
    table.add_column("kind", overflow="fold")
    table.add_column("units", justify="right", no_wrap=True)
    table.add_column("dead", justify="right", no_wrap=True)
    if show_counts:
        table.add_column("rare", justify="right", no_wrap=True)
        table.add_column("on/sat", justify="right", no_wrap=True)
    if show_hist:
        table.add_column("fire rate\n0% → 100%", no_wrap=True, justify="center")
    table.add_column("verdict", overflow="fold", min_width=10)
    for row in rows:
        cells: list[Any] = [row["layer"], row["kind"], row["units"], row["dead"]]
        if show_counts:
            cells += [row["rare"], row["on/sat"]]
        if show_hist:
            cells.append(Text(row["fire rate"], style="cyan"))
        cells.append(Text(row["verdict"], style=row["style"]))
        table.add_row(*cells)
    return table


_TITLE = "Activation layers, in forward order"
#: Header, key and alignment of the number columns, in order.
_COLUMNS = (("kind", "kind", "left"), ("units", "units", "right"), ("dead", "dead", "right"),
            ("rare", "rare", "right"), ("on/sat", "on/sat", "right"),
            ("fire rate", "fire rate", "left"))


def _columns(show_counts: bool, show_hist: bool) -> list[tuple[str, str, str]]:
    return [c for c in _COLUMNS if (show_counts or c[1] not in ("rare", "on/sat"))
            and (show_hist or c[1] != "fire rate")]


def _widths(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[int]:
    return [max([len(head), *(len(r[key]) for r in rows)]) for head, key, _ in columns]


def _name_room(rows: list[dict[str, Any]], width: int, show_counts: bool,
               show_hist: bool) -> int:
    """Columns left for the layer name beside the numbers and a 10-column verdict."""
    widths = _widths(rows, _columns(show_counts, show_hist))
    fire_rate_head = 10 if show_hist else 0  # "0% → 100%" under "fire rate"
    used = sum(widths) + max(0, fire_rate_head - (widths[-1] if show_hist else 0))
    gaps = 2 * (len(widths) + 1)  # the table's padding between columns
    return width - used - gaps - 10


def _stacked_layers(rows: list[dict[str, Any]], width: int, show_counts: bool,
                    show_hist: bool) -> RenderableType:
    """The layer table for long names (transformers: ``encoder.layer.11.intermediate.
    intermediate_act_fn:gelu``): each name on a line of its own, whole, with its numbers
    on the line below, indented, in columns aligned over the whole table."""
    from rich.console import Group
    from rich.text import Text

    columns = _columns(show_counts, show_hist)
    widths = _widths(rows, columns)

    def line(cells: list[Any], verdict_cell: Any) -> Text:
        out = Text("  ")
        for (_, _, align), w, cell in zip(columns, widths, cells, strict=True):
            text = cell if isinstance(cell, Text) else Text(str(cell))
            pad = " " * (w - text.cell_len)
            out.append_text(Text(pad) + text if align == "right" else text + Text(pad))
            out.append("  ")
        out.append_text(verdict_cell)
        return out

    parts: list[Any] = [Text(_TITLE, style="bold"), Text("layer", style="bold"),
                        line([Text(h, style="bold") for h, _, _ in columns],
                             Text("verdict", style="bold"))]
    parts.append(Text("─" * min(width, max(len(parts[-1]), 20)), style="dim"))
    for row in rows:
        parts.append(Text(row["layer"], overflow="fold"))
        cells = [Text(row[key], style="cyan") if key == "fire rate" else row[key]
                 for _, key, _ in columns]
        parts.append(line(cells, Text(row["verdict"], style=row["style"])))
    return Group(*parts)


class _AtWidth:
    """Defers building a renderable until the console's width is known."""

    def __init__(self, build: Any, report: Report) -> None:
        self.build = build
        self.report = report

    def __rich_console__(self, console: Any, options: Any) -> Iterable[Any]:
        yield self.build(self.report, options.max_width)


def render_legend(report: Report, width: int | None = None) -> RenderableType:
    """The column key under the table, dim so it stays out of the way.

    Keys of columns a narrow terminal drops (see :func:`render_layers`) are left out too.
    """
    if width is None:
        return _AtWidth(render_legend, report)
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    dropped = set()
    if width < _NARROW:
        dropped.add("fire rate")
    if width < _NARROWEST:
        dropped |= {"rare", "on/sat"}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="dim bold")
    grid.add_column(style="dim", overflow="fold")
    for name, meaning in legend_rows(report):
        if name not in dropped:
            grid.add_row(name, meaning)
    note = caution(report)
    body = Group(grid, Text(note, style="dim")) if note else grid
    return Padding(body, (1, 0, 0, 1))


def render_findings(report: Report) -> RenderableType:
    """Each finding: code, severity, layer, message and the suggested fix."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(f"Findings ({len(report.findings)})" if report.findings else "Findings",
                 style="bold")
    if not report.findings:
        return Group(Text(""), title, Text("  no problems found", style="green"))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, width=2, justify="right")
    grid.add_column(overflow="fold")
    # errors and warnings in full; info findings (nothing urgent) as one line each, at the
    # end, so a healthy model's report stays short (JSON and Markdown keep every field).
    # One rule with one cause on several layers is one entry with a per-layer list.
    from deadrelu.finding_groups import glossary, group_findings

    groups = group_findings(report.findings)
    full = [g for g in groups if g.first.severity.value != "info"]
    brief = [g for g in groups if g.first.severity.value == "info"]
    for index, group in enumerate(full):
        finding = group.first
        severity = finding.severity.value
        style = _SEVERITY_STYLE.get(severity, "")
        body = _group_head(group, style)
        if finding.cause and finding.cause != "unknown":
            body.append(f"  likely cause: {finding.cause.replace('_', ' ')}", style="dim")
        if len(group.findings) == 1:
            body.append("\n")
            body.append_text(inline_code(finding.message))
            if finding.fix:
                body.append("\nfix: ", style="bold green")
                body.append_text(inline_code(finding.fix))
        else:
            if group.common_fix:
                body.append(f"\nfix, all {len(group.findings)} layers: ", style="bold green")
                body.append_text(inline_code(group.common_fix))
            for member in group.findings:
                body.append(f"\n• {member.layer}: ", style="bold")
                body.append_text(inline_code(member.message))
                own = group.own_fix(member)
                if own:
                    body.append("\n  fix here: ", style="green")
                    body.append_text(inline_code(own))
        if index:
            grid.add_row("", "")  # a blank line between multi-line findings
        grid.add_row(Text(_SEVERITY_ICON.get(severity, "-"), style=style), body)
    if brief and full:
        grid.add_row("", "")
    for group in brief:
        style = _SEVERITY_STYLE.get("info", "")
        body = _group_head(group, style)
        if len(group.findings) == 1:
            body.append("  ")
            body.append_text(inline_code(group.first.message.split("; ")[0]))
        else:
            for member in group.findings:
                body.append(f"\n• {member.layer}: ", style="bold")
                body.append_text(inline_code(member.message.split("; ")[0]))
        grid.add_row(Text(_SEVERITY_ICON.get("info", "-"), style=style), body)
    terms = glossary(report.findings)
    if not terms:
        return Group(Text(""), title, grid)
    words = Table.grid(padding=(0, 2))
    words.add_column(no_wrap=True, style="bold dim")
    words.add_column(style="dim", overflow="fold")
    for term, meaning in terms:
        words.add_row(term, meaning)
    from rich.padding import Padding

    return Group(Text(""), title, grid, Text(""), Text(" Terms used above", style="dim"),
                 Padding(words, (0, 0, 0, 1)))


def _group_head(group: Any, style: str) -> Any:
    """``DR001 error  net.1`` for one finding, ``DR001 error  3 layers: net.1, net.3, net.5``
    for a group."""
    from dataclasses import replace

    if len(group.findings) == 1:
        return _finding_head(group.first, style)
    head = _finding_head(replace(group.first, layer=None), style)
    layers = ", ".join(str(f.layer) for f in group.findings if f.layer)
    head.append(f"  {len(group.findings)} layers: {layers}", style="bold")
    return head


def _finding_head(finding: Any, style: str) -> Any:
    """``DR001 error  layer``: what every finding line starts with."""
    from rich.text import Text

    head = Text()
    head.append(finding.code, style="bold")
    head.append(f" {finding.severity.value}", style=style)
    if finding.layer:
        head.append(f"  {finding.layer}", style="bold")
    return head


def inline_code(text: str) -> Any:
    """Rule messages mark names as Markdown code (`net.1`); show them styled, without backticks."""
    from rich.text import Text

    parts = text.split("`")
    if len(parts) % 2 == 0:  # unbalanced backticks: show the text as written
        return Text(text)
    out = Text()
    for i, part in enumerate(parts):
        out.append(part, style="cyan" if i % 2 else "")
    return out


def render_summary(report: Report) -> RenderableType:
    from rich.text import Text

    records = report.layer_records()
    style = "bold red" if report.partial or any(r["dead"] for r in records) else "bold green"
    return Text("\n" + summary_line(report), style=style)


__all__ = [
    "BINS", "BLOCKS", "EMPTY", "caution", "format_seconds", "header_rows", "histogram", "inline_code", "legend",
    "legend_rows", "percent",
    "render_findings", "render_header", "render_layers", "render_report", "render_summary",
    "sparkline", "summary_line", "table_rows", "verdict",
]
