"""Log monitor reports through any ``log(dict, step=...)`` callable.

That is the signature of ``wandb.log`` (Weights & Biases), so W&B works without
deadrelu depending on it::

    import wandb
    monitor = deadrelu.Monitor(model, every=50, report_every=500, loggers=[wandb.log])

(a bare callable passed in ``loggers`` is wrapped in :class:`CallableLogger`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deadrelu.integrations.metrics import metrics

if TYPE_CHECKING:
    from deadrelu.report import Report


class CallableLogger:
    """Calls ``log_fn(metrics(report), step=step)`` for every report.

    Args:
        log_fn: e.g. ``wandb.log``, ``run.log``, or your own function.
        prefix: first part of every key (``deadrelu/<layer>/dead_fraction``).
    """

    def __init__(self, log_fn: Callable[..., Any], prefix: str = "deadrelu") -> None:
        if not callable(log_fn):
            from deadrelu.errors import ConfigError

            raise ConfigError(f"log_fn must be callable, got {type(log_fn).__name__}",
                              "pass a function called as log_fn(dict, step=...)")
        self.log_fn = log_fn
        self.prefix = prefix

    def log_report(self, report: Report, step: int) -> None:
        values = metrics(report, self.prefix)
        if values:
            self.log_fn(values, step=step)

    def __repr__(self) -> str:
        return f"CallableLogger({getattr(self.log_fn, '__qualname__', self.log_fn)!s})"
