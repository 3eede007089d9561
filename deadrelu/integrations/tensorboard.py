"""Log monitor reports to TensorBoard through a ``SummaryWriter``.

::

    from torch.utils.tensorboard import SummaryWriter
    from deadrelu.integrations.tensorboard import TensorBoardLogger

    writer = SummaryWriter("runs/exp1")
    monitor = deadrelu.Monitor(model, every=50, report_every=500,
                               loggers=[TensorBoardLogger(writer)])

Needs the ``tensorboard`` package (``pip install deadrelu[tensorboard]``). Any
writer with ``add_scalar(tag, value, global_step=...)`` works, so
``tensorboardX.SummaryWriter`` does too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deadrelu.integrations.metrics import metrics

if TYPE_CHECKING:
    from deadrelu.findings import Finding
    from deadrelu.report import Report


class TensorBoardLogger:
    """Writes ``metrics(report)`` as scalars at the report's step.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (or compatible).
        prefix: tag prefix (``deadrelu/<layer>/dead_fraction``).
        flush: flush the writer after each report.
    """

    def __init__(self, writer: Any, prefix: str = "deadrelu", *, flush: bool = False) -> None:
        if not callable(getattr(writer, "add_scalar", None)):
            from deadrelu.errors import ConfigError

            raise ConfigError(f"{type(writer).__name__} has no add_scalar method",
                              "pass a torch.utils.tensorboard.SummaryWriter")
        self.writer = writer
        self.prefix = prefix
        self.flush = flush

    def log_report(self, report: Report, step: int) -> None:
        for tag, value in metrics(report, self.prefix).items():
            self.writer.add_scalar(tag, value, global_step=step)
        if self.flush:
            self.writer.flush()

    def log_finding(self, finding: Finding, step: int) -> None:
        """A finding during training, as text (``deadrelu/findings``) when the writer has
        ``add_text``."""
        add_text = getattr(self.writer, "add_text", None)
        if callable(add_text):
            add_text(f"{self.prefix}/findings",
                     f"{finding.code} {finding.layer}: {finding.message} — fix: {finding.fix}",
                     global_step=step)
