"""The flat scalars every logger integration logs for a report (``metrics``).

A module of its own, below the loggers that use it, so that
:func:`deadrelu.integrations.as_logger` can import the loggers without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deadrelu.report import Report

__all__ = ["LAYER_METRICS", "metrics"]

#: Per-layer values logged for each report (``<prefix>/<layer>/<name>``).
LAYER_METRICS = ("dead_fraction", "rare_fraction", "saturated_fraction")


def metrics(report: Report, prefix: str = "deadrelu", *, worst: int | None = None) -> dict[str, float]:
    """Flat scalars for a logger: per layer ``<prefix>/<layer>/{dead,rare,saturated}_fraction``,
    and model-wide ``<prefix>/dead_fraction`` and ``<prefix>/dead_units``.

    Layers that saw no samples in the report's window are left out.

    Args:
        report: a monitor (or scan) report.
        prefix: first part of every key.
        worst: keep the per-layer keys of only this many layers, those with the most
            dead units (layers with none are left out); ``None``: every layer. A
            compact set for loggers that keep every key of every step (Hugging Face).
    """
    out: dict[str, float] = {}
    records = [rec for rec in report.layer_records() if rec["samples"]]
    if worst is not None:
        ranked = sorted((rec for rec in records if rec["dead"]),
                        key=lambda rec: -float(rec["dead_fraction"]))
        keep = {rec["layer"] for rec in ranked[:worst]}
        layers = [rec for rec in records if rec["layer"] in keep]
    else:
        layers = records
    for rec in layers:
        units = rec["units"] or 1
        layer = f"{prefix}/{rec['layer']}"
        out[f"{layer}/dead_fraction"] = float(rec["dead_fraction"])
        out[f"{layer}/rare_fraction"] = rec["rare"] / units
        out[f"{layer}/saturated_fraction"] = rec["saturated"] / units
    if records:
        summary = report.summary()
        out[f"{prefix}/dead_fraction"] = float(summary["dead_fraction"])
        out[f"{prefix}/dead_units"] = float(summary["dead"])
    return out
