"""A Lightning callback that monitors dead units during ``trainer.fit``.

::

    from deadrelu.integrations.lightning import DeadReluCallback

    trainer = lightning.Trainer(callbacks=[DeadReluCallback(every=10)])
    trainer.fit(module, loader)

Every ``every``-th training batch is recorded (train mode, the batches of one
optimizer step together); every ``log_every`` steps (default: the trainer's
``log_every_n_steps``) the window's per-layer dead, rare and saturated fractions go
to every logger of the trainer (``deadrelu/<layer>/dead_fraction``...) and into
``trainer.callback_metrics``, so ``EarlyStopping`` or ``ModelCheckpoint`` can watch
``deadrelu/dead_fraction``. ``callback.monitor.history`` holds every report.

Steps are the trainer's: a report at ``trainer.global_step == 100`` covers optimizer
steps up to 99 and is logged at step 99, where Lightning logs the loss of that step.
The callback's state (the history, the baseline of the jump check, the findings
already announced) is saved in the trainer's checkpoints and restored when a run
resumes (``state_dict``/``load_state_dict``), so the history goes on.

Needs ``lightning`` (``pip install deadrelu[lightning]``); falls back to the older
``pytorch_lightning`` package when ``lightning`` is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the standalone package
    try:
        from pytorch_lightning import Callback  # type: ignore[assignment]
    except ImportError as exc:
        raise ImportError(
            "deadrelu.integrations.lightning needs Lightning: pip install 'deadrelu[lightning]'"
        ) from exc

from deadrelu.integrations import check_log_every
from deadrelu.integrations.metrics import metrics

if TYPE_CHECKING:
    import pandas as pd

    from deadrelu.monitor import Monitor
    from deadrelu.report import Report


class DeadReluCallback(Callback):
    """Attaches a :class:`~deadrelu.monitor.Monitor` to the LightningModule during fit.

    Args:
        every: record one optimizer step in every ``every``.
        log_every: report and log every this many optimizer steps (default: the
            trainer's ``log_every_n_steps``); windows with no sampled step are skipped.
        prefix: first part of the logged keys.
        **monitor_kwargs: passed to :class:`~deadrelu.monitor.Monitor` (``jump``,
            ``on_jump``, ``thresholds``, ``unit_axis``, ``exclude_layers``, ``loggers``...).
    """

    def __init__(self, every: int = 10, log_every: int | None = None, *,
                 prefix: str = "deadrelu", **monitor_kwargs: Any) -> None:
        super().__init__()
        self.every = every
        self.log_every = check_log_every(log_every, "the trainer's log_every_n_steps")
        self.prefix = prefix
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self._reported_at = -1
        self._restored: dict[str, Any] | None = None

    @property
    def history(self) -> pd.DataFrame:
        """The monitor's history (one row per layer per report)."""
        if self.monitor is None:
            raise RuntimeError("the callback has not seen a fit yet")
        return self.monitor.history

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        from deadrelu.monitor import Monitor

        if self.monitor is None or self.monitor.module is not pl_module:
            kwargs = dict(self.monitor_kwargs)
            optimizers = getattr(trainer, "optimizers", None) or []
            if optimizers and "optimizer" not in kwargs:
                kwargs["optimizer"] = optimizers[0]  # for advice that names its lr
                configs = getattr(trainer, "lr_scheduler_configs", None) or []
                if configs:
                    kwargs.setdefault("scheduler", getattr(configs[0], "scheduler", None))
            self.monitor = Monitor(pl_module, every=self.every, auto_step=False, **kwargs)
        if self._restored is not None:
            self.monitor.load_state_dict(self._restored)
            self._restored = None
        if not self.monitor.attached:
            self.monitor.attach()
        self.monitor.step(trainer.global_step)
        # the starting step (0, or the step a run resumes at) has not happened yet: with
        # gradient accumulation its first micro-batch ends while global_step still equals it
        self._reported_at = trainer.global_step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        monitor = self.monitor
        if monitor is None or not monitor.attached:
            return
        step = trainer.global_step
        monitor.step(step)
        every = self.log_every or max(1, int(getattr(trainer, "log_every_n_steps", 50)))
        if step % every or step == self._reported_at or not monitor.window_steps:
            return
        self._reported_at = step
        report = monitor.report(reset=True)
        self._log(trainer, pl_module, report, report.meta["step"])

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state, saved in the trainer's checkpoint."""
        if self.monitor is not None:
            return self.monitor.state_dict()
        return dict(self._restored or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the monitor's state from a checkpoint (applied when training starts)."""
        if not state_dict:
            return
        if self.monitor is not None:
            self.monitor.load_state_dict(state_dict)
        else:
            self._restored = dict(state_dict)

    def _log(self, trainer: Any, pl_module: Any, report: Report, step: int) -> None:
        values = metrics(report, self.prefix)
        if not values:
            return
        # callback_metrics (for EarlyStopping/ModelCheckpoint), then every logger at this step.
        pl_module.log_dict(values, on_step=True, on_epoch=False, logger=False, prog_bar=False,
                           batch_size=1)
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None:
            self.monitor.detach()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.monitor is not None:
            self.monitor.detach()
