"""Log monitor reports to Weights & Biases without touching the user's own steps.

::

    import wandb
    run = wandb.init(project="p")
    monitor = deadrelu.Monitor(model, every=50, report_every=500, loggers=[wandb.log])

W&B keeps one step counter per run, and ``log(values, step=s)`` drops values for a
step below the run's current one. Logging a report with ``step=`` would therefore
collide with the user's own calls: if the user logs twice per step (the counter
runs ahead of the training step), the report is dropped; if the user logs with
``step=``, a report at a later step makes the user's next values look old, and
they are dropped. So a report never moves the counter:

* its values go in with ``commit=False``, into the row the user is writing, and
* they carry their own x axis: ``define_metric("deadrelu/*", step_metric="deadrelu/step")``,
  with ``deadrelu/step`` the training step of the report, so charts plot them
  against the training step whatever W&B's counter says.

``loggers=[wandb.log]`` (or ``run.log``) is wrapped in :class:`WandbLogger`
automatically. Needs ``wandb`` (``pip install 'deadrelu[wandb]'``) only for the run
itself; this module imports it only to find ``wandb.run``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deadrelu.integrations.metrics import metrics

if TYPE_CHECKING:
    from deadrelu.findings import Finding
    from deadrelu.report import Report


class WandbLogger:
    """Logs every report into a W&B run on its own step axis (see the module docstring).

    Args:
        run: the ``wandb`` run (default: the run of ``log_fn``, else ``wandb.run`` at
            the first report).
        log_fn: ``wandb.log`` or ``run.log``, as passed in ``Monitor(loggers=[...])``.
        prefix: first part of every key (``deadrelu/<layer>/dead_fraction``).
        worst: log the per-layer keys of only this many layers with the most dead
            units (``None``: every layer).
    """

    def __init__(self, run: Any = None, *, log_fn: Callable[..., Any] | None = None,
                 prefix: str = "deadrelu", worst: int | None = None) -> None:
        self.run = run if run is not None else getattr(log_fn, "__self__", None)
        self.prefix = prefix
        self.worst = worst
        self._defined: Any = None
        self._pending_at: int | None = None

    def _current_run(self) -> Any:
        run = self.run
        if run is None:
            import wandb

            run = wandb.run
        if run is None:
            from deadrelu.errors import ConfigError

            raise ConfigError("no W&B run to log the monitor's report to",
                              "call wandb.init() before the monitor's first report")
        if self._defined is not run:
            step_key = f"{self.prefix}/step"
            run.define_metric(step_key)
            run.define_metric(f"{self.prefix}/*", step_metric=step_key)
            self._defined = run
        return run

    def log_report(self, report: Report, step: int) -> None:
        values: dict[str, Any] = dict(metrics(report, self.prefix, worst=self.worst))
        if not values:
            return
        values[f"{self.prefix}/step"] = step
        run = self._current_run()
        # Two reports with no user log between them would share one pending row, the
        # second overwriting the first: commit the first row then (rare: a report at the
        # end of a with block right after a scheduled one).
        commit = self._pending_at is not None and self._pending_at == run.step
        run.log(values, commit=commit)
        self._pending_at = None if commit else run.step

    def log_finding(self, finding: Finding, step: int) -> None:
        """A finding during training, as text (``deadrelu/<layer>/finding``), in the row of
        the report that found it."""
        self._current_run().log(
            {f"{self.prefix}/{finding.layer}/finding": f"{finding.code}: {finding.cause}"},
            commit=False)

    def __repr__(self) -> str:
        return f"WandbLogger(prefix={self.prefix!r})"
