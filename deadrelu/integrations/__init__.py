"""Send monitor reports to training frameworks and experiment trackers.

Each integration lives in its own module and imports its framework only there,
so ``import deadrelu`` never pulls in Lightning, ``transformers`` or TensorBoard:

==================  =====================================================  ====================
module              what                                                   needs
==================  =====================================================  ====================
``logging``         :class:`CallableLogger`: any ``log(dict, step=...)``    nothing
``wandb``           :class:`WandbLogger`: Weights & Biases (``wandb.log``)  ``wandb``
``tensorboard``     :class:`TensorBoardLogger`: a ``SummaryWriter``         ``tensorboard``
``lightning``       :class:`DeadReluCallback` for ``lightning.Trainer``     ``lightning``
``transformers``    :class:`DeadReluTrainerCallback` for HF ``Trainer``     ``transformers``
==================  =====================================================  ====================

A *report logger* is any object with ``log_report(report, step)``; pass it to
``Monitor(loggers=[...])``. :func:`metrics` turns a report into the flat
``{"deadrelu/<layer>/dead_fraction": ...}`` dict that all of them log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from deadrelu.report import Report

#: Per-layer values logged for each report (``<prefix>/<layer>/<name>``).
LAYER_METRICS = ("dead_fraction", "rare_fraction", "saturated_fraction")


@runtime_checkable
class ReportLogger(Protocol):
    """Receives every report a :class:`~deadrelu.monitor.Monitor` makes."""

    def log_report(self, report: Report, step: int) -> None: ...


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


def as_logger(obj: ReportLogger | Callable[..., Any]) -> ReportLogger:
    """``obj`` itself if it has ``log_report``, else a plain ``log(dict, step=...)`` callable wrapped
    in :class:`~deadrelu.integrations.logging.CallableLogger`."""
    if isinstance(obj, ReportLogger):
        return obj
    if _is_wandb_log(obj):
        from deadrelu.integrations.wandb import WandbLogger

        return WandbLogger(log_fn=obj)
    if callable(obj):
        from deadrelu.integrations.logging import CallableLogger

        return CallableLogger(obj)
    from deadrelu.errors import ConfigError

    raise ConfigError(f"a logger must have log_report(report, step) or be callable, "
                      f"got {type(obj).__name__}",
                      "pass e.g. wandb.log or TensorBoardLogger(SummaryWriter())")


def _is_wandb_log(obj: Any) -> bool:
    """Whether ``obj`` is ``wandb.log`` or a run's ``log`` (a plain ``log(dict, step=)``
    would collide with the user's own W&B steps, see :mod:`deadrelu.integrations.wandb`)."""
    owner = getattr(obj, "__self__", None)
    module = getattr(obj, "__module__", None) or ""
    owner_module = type(owner).__module__ if owner is not None else ""
    return getattr(obj, "__name__", "") == "log" and (
        module.split(".")[0] == "wandb" or owner_module.split(".")[0] == "wandb")


__all__ = ["LAYER_METRICS", "ReportLogger", "as_logger", "metrics"]


def check_log_every(log_every: int | None, default: str) -> int | None:
    """``log_every`` of a training-framework callback, checked: a positive int or ``None``
    (``default`` names what ``None`` falls back to, for the error's fix)."""
    if log_every is not None and (isinstance(log_every, bool) or not isinstance(log_every, int)
                                  or log_every < 1):
        from deadrelu.errors import ConfigError

        raise ConfigError(f"log_every must be a positive integer, got {log_every!r}",
                          f"e.g. log_every=50, or None for {default}")
    return log_every
