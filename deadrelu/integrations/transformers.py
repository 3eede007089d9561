"""A Hugging Face ``transformers`` ``TrainerCallback`` that monitors dead units.

::

    from deadrelu.integrations.transformers import DeadReluTrainerCallback

    trainer = Trainer(model=model, args=args, train_dataset=train)
    trainer.add_callback(DeadReluTrainerCallback(trainer, every=10))
    trainer.train()

Every ``every``-th optimizer step is recorded (train mode, all micro-batches of a
step together). Every ``log_every`` steps (default: ``args.logging_steps``) the
window's per-layer dead, rare and saturated fractions (``deadrelu/<layer>/dead_fraction``...)
are logged:

* with the ``trainer`` given, through ``trainer.log`` — so they reach every
  reporting integration (TensorBoard, W&B...), ``trainer.state.log_history`` and
  the progress output, like the loss;
* without it, they are added to the ``logs`` of the trainer's next log event
  (``on_log``): ``state.log_history`` and the callbacks after this one see them,
  but reporting integrations, which run before user callbacks, do not.

Steps are the trainer's ``state.global_step`` (1 for the first optimizer step),
the step the trainer logs the loss at. Only a compact set of keys is logged: the
model-wide ``deadrelu/dead_fraction`` and ``deadrelu/dead_units`` and the per-layer
keys of the ``worst_layers`` layers with the most dead units (``callback.history``
keeps every layer).

The callback's state (history, the baseline of the jump check, the findings
already announced) is saved with each checkpoint (``trainer_state.json``,
transformers' ``ExportableState``) and restored by ``trainer.train(
resume_from_checkpoint=...)``, so the history goes on.

``callback.monitor.history`` holds every report. Needs ``transformers``
(``pip install deadrelu[transformers]``).
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as exc:  # pragma: no cover - exercised only without transformers
    raise ImportError(
        "deadrelu.integrations.transformers needs transformers: "
        "pip install 'deadrelu[transformers]'"
    ) from exc

from deadrelu.integrations import check_log_every
from deadrelu.integrations.metrics import metrics

if TYPE_CHECKING:
    import pandas as pd

    from deadrelu.monitor import Monitor

#: Monitor arguments that go into ``trainer_state.json`` with the callback (plain data).
_JSON_KWARGS = ("jump", "findings", "unit_axis", "saturation_margin", "name", "report_every",
                "exclude_layers")

#: Trainers that were passed to a callback, with that callback's monitor arguments. A
#: resumed ``Trainer`` re-creates stateful callbacks from their JSON state, which cannot
#: hold the trainer, an ``on_jump`` function or loggers: the new callback finds them here
#: by the model it is given.
_TRAINERS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


class DeadReluTrainerCallback(TrainerCallback, ExportableState):
    """Attaches a :class:`~deadrelu.monitor.Monitor` to the trained model during ``train()``.

    Args:
        trainer: the ``Trainer`` to log through (recommended, see the module docstring).
        every: record one optimizer step in every ``every``.
        log_every: report and log every this many optimizer steps (default:
            ``args.logging_steps``); windows with no sampled step are skipped.
        prefix: first part of the logged keys.
        worst_layers: log the per-layer keys of only this many layers with the most
            dead units (``None``: every layer, every logging step).
        **monitor_kwargs: passed to :class:`~deadrelu.monitor.Monitor` (``jump``,
            ``on_jump``, ``thresholds``, ``unit_axis``, ``exclude_layers``, ``loggers``...).
    """

    def __init__(self, trainer: Any = None, *, every: int = 10, log_every: int | None = None,
                 prefix: str = "deadrelu", worst_layers: int | None = 3,
                 **monitor_kwargs: Any) -> None:
        self.trainer = trainer
        self.every = every
        self.log_every = check_log_every(log_every, "args.logging_steps")
        self.prefix = prefix
        self.worst_layers = worst_layers
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self._pending: dict[str, float] | None = None
        self._reported_at = -1
        # set by a resumed Trainer from trainer_state.json (see state())
        self._monitor_state: dict[str, Any] | None = None
        self._wants_trainer = trainer is not None
        if trainer is not None:
            _TRAINERS[trainer] = monitor_kwargs

    def state(self) -> dict[str, Any]:
        """The callback's arguments and its monitor's state, for ``trainer_state.json``."""
        args: dict[str, Any] = {"every": self.every, "log_every": self.log_every,
                                "prefix": self.prefix, "worst_layers": self.worst_layers}
        args.update({k: v for k, v in self.monitor_kwargs.items() if k in _JSON_KWARGS})
        monitor_state = (self.monitor.state_dict() if self.monitor is not None
                         else self._monitor_state)
        return {"args": args, "attributes": {"_monitor_state": monitor_state,
                                             "_wants_trainer": self._wants_trainer}}

    def _saved_state(self, state: Any) -> dict[str, Any] | None:
        """The monitor state in the checkpoint a run resumes from. ``Trainer`` re-creates
        stateful callbacks only with ``restore_callback_states_from_checkpoint=True``;
        the state it loaded from ``trainer_state.json`` holds ours either way."""
        if not state.global_step:
            return None
        saved = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        for entry in saved if isinstance(saved, list) else [saved]:
            if isinstance(entry, dict) and entry.get("args", {}).get("prefix") == self.prefix:
                monitor_state = entry.get("attributes", {}).get("_monitor_state")
                return monitor_state if isinstance(monitor_state, dict) else None
        return None

    def _adopt_trainer(self, model: Any) -> None:
        """A callback re-created from a checkpoint finds the trainer (and the monitor
        arguments that are not plain data) of the callback it replaces."""
        for trainer, kwargs in list(_TRAINERS.items()):
            if getattr(trainer, "model", None) is model:
                self.trainer = trainer
                self.monitor_kwargs = {**kwargs, **self.monitor_kwargs}
                return

    @property
    def history(self) -> pd.DataFrame:
        """The monitor's history (one row per layer per report)."""
        if self.monitor is None:
            raise RuntimeError("the callback has not seen a training run yet")
        return self.monitor.history

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        from deadrelu.monitor import Monitor

        if model is None:
            return
        if self.trainer is None and self._wants_trainer:
            self._adopt_trainer(model)
        if self.monitor is None or self.monitor.module is not model:
            extra = {k: kwargs[k] for k in ("optimizer", "lr_scheduler")
                     if kwargs.get(k) is not None}  # for advice that names the lr
            if "lr_scheduler" in extra:
                extra["scheduler"] = extra.pop("lr_scheduler")
            self.monitor = Monitor(model, every=self.every, auto_step=False,
                                   **{**extra, **self.monitor_kwargs})
        saved = self._monitor_state or self._saved_state(state)
        if saved:
            self.monitor.load_state_dict(saved)
        self._monitor_state = None
        if not self.monitor.attached:
            self.monitor.attach()
        # steps are numbered as the trainer logs them: the step in progress is global_step + 1
        self.monitor.step(state.global_step + 1)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        monitor = self.monitor
        if monitor is None or not monitor.attached:
            return
        step = state.global_step
        monitor.step(step + 1)
        every = self.log_every or _steps(args.logging_steps, state.max_steps)
        if step % every or step == self._reported_at or not monitor.window_steps:
            return
        self._reported_at = step
        values = metrics(monitor.report(reset=True), self.prefix, worst=self.worst_layers)
        if not values:
            return
        if self.trainer is not None:
            # Trainer.log clears control.should_log; keep it, or the loss due at this
            # step would not be logged.
            should_log = control.should_log
            self.trainer.log(values)
            control.should_log = should_log
            self.trainer.control.should_log = should_log
        else:
            self._pending = values

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self._pending is None or logs is None or self.trainer is not None:
            return
        logs.update(self._pending)
        if state.log_history:
            state.log_history[-1].update(self._pending)
        self._pending = None

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.detach()


def _steps(logging_steps: float, max_steps: int) -> int:
    # logging_steps below 1 is a share of the run's steps (transformers' convention).
    if logging_steps < 1:
        return max(1, math.ceil(max_steps * logging_steps))
    return max(1, int(logging_steps))
