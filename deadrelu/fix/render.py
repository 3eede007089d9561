"""Rich rendering of a :class:`~deadrelu.fix.prune.PruneResult` (stderr/stdout tables)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.fix.prune import PruneResult


def _ratio(before: float | None, after: float | None) -> str:
    if not before or after is None:
        return ""
    change = (after - before) / before
    return f" ({change:+.1%})".replace("-", "−")


def _num(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _ms(value: float | None) -> str:
    return "not measured" if value is None else f"{value * 1e3:.3f} ms"


def summary_lines(result: PruneResult) -> list[str]:
    """Plain lines: units removed, parameters, multiply-adds, latency, output difference."""
    lines = [f"removed {result.units_removed} unit(s) from {len(result.removed)} layer(s); "
             f"{result.units_kept} dead/constant unit(s) kept"]
    lines.append(f"parameters: {_num(result.params_before)} → {_num(result.params_after)}"
                 f"{_ratio(result.params_before, result.params_after)}")
    if result.macs_before is not None:
        lines.append(f"multiply-adds per sample: {_num(result.macs_before)} → "
                     f"{_num(result.macs_after)}{_ratio(result.macs_before, result.macs_after)}")
    if result.latency_before is not None:
        lines.append(f"latency (batch of {result.latency_batch}, median of 9, alternating): "
                     f"{_ms(result.latency_before)} → {_ms(result.latency_after)}")
    if result.max_abs_diff is not None:
        lines.append(f"max |output difference| on {result.samples} samples: {result.max_abs_diff:.3g} "
                     f"(largest |output| {result.output_scale:.3g})")
    return lines


def render_prune(result: PruneResult) -> Iterator[Any]:
    from rich.table import Table
    from rich.text import Text

    if result.removed:
        table = Table(title="removed", title_justify="left", show_edge=False)
        for col in ("layer", "producer", "units", "constant"):
            table.add_column(col)
        for r in result.removed:
            values = sorted(set(r.values))
            table.add_row(r.layer, r.producer, str(len(r.units)),
                          ", ".join(f"{v:g}" for v in values))
        yield table
    if result.kept:
        table = Table(title="kept (not removable exactly)", title_justify="left", show_edge=False)
        for col in ("layer", "units", "reason"):
            table.add_column(col)
        for k in result.kept:
            table.add_row(k.layer, str(len(k.units)), k.reason)
        yield table
    for line in summary_lines(result):
        yield Text(line)
