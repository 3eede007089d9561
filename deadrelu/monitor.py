"""``deadrelu.Monitor``: watch units die while a model trains, at a cost low enough to leave on.

Invariants (the reasons are in ``docs/monitor.md``):

* **Steps.** One step in every ``every`` is *sampled* (steps ``0, every, 2*every...``).
  Without explicit stepping a step is one forward of the monitored model in train
  mode; the first call of :meth:`Monitor.step` switches to explicit stepping for good
  (for loops with several forwards per step, or frameworks with their own counter).
* **Nothing on unsampled steps.** The collector's hooks are on the model only from
  the boundary before a sampled step to the boundary after it; otherwise the model
  carries just the monitor's hooks on its outermost module. Hooks are only added or
  removed at step boundaries (``step()``, or after the outermost forward returned),
  never while a forward is running.
* **Train mode only.** A forward is recorded only while the monitored module is in
  train mode, never during ``backward`` (activation checkpointing re-runs forwards
  there) and never under the eval-mode forwards of validation. Statistics therefore
  see BatchNorm batch statistics and dropout: ``report().meta["mode"] == "train"``.
* **No interference.** Statistics are computed under ``no_grad`` from detached
  outputs (see :mod:`deadrelu.collector`), so autograd and in-place activations
  behave exactly as without the monitor.
* **Windows.** :meth:`Monitor.report` covers the sampled steps since the last
  ``report(reset=True)``; under ``torch.distributed`` it is a collective (every
  rank must call it at the same step) and returns the counters of all ranks.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from deadrelu.analyzer import Thresholds
from deadrelu.collector import Collector
from deadrelu.errors import ConfigError
from deadrelu.report import Report

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from deadrelu.integrations import ReportLogger

#: ``on_jump(layer, before, after, step)``: called when a layer's dead fraction jumps.
JumpCallback = Callable[[str, float, float, int], None]

#: Columns of :attr:`Monitor.history`, in order.
HISTORY_COLUMNS = (
    "step", "layer", "kind", "units", "samples", "sampled_steps", "dead", "dead_fraction",
    "rare_fraction", "saturated_fraction", "always_on_fraction", "dormant_fraction",
    "nonfinite", "fire_rate_mean",
)


class DeadUnitsWarning(UserWarning):
    """A layer's dead fraction jumped between two monitor windows.

    Usually the sign of a learning rate that is too high (or a loss spike): units
    pushed below zero for every input by one large update never recover.
    """


def _in_backward() -> bool:
    """True while autograd runs a backward pass (checkpointed forwards re-run there)."""
    task_id = getattr(torch._C, "_current_graph_task_id", None)
    return task_id is not None and task_id() != -1


def _compiled_wrapper(model: nn.Module) -> nn.Module | None:
    """The first ``torch.compile`` wrapper (OptimizedModule) in ``model``'s wrapper chain."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            return model
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
            continue
        return None


class _GatedCollector(Collector):
    """A :class:`Collector` that starts recording a forward only when ``gate()`` agrees."""

    def __init__(self, model: nn.Module, gate: Callable[[nn.Module], bool], **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._gate = gate

    def _starts_forward(self, module: nn.Module) -> bool:
        return self._gate(module)


class Monitor:
    """Records per-unit activation statistics of ``model`` while it trains.

    Use it as a context manager, or call :meth:`attach` and :meth:`detach`::

        with deadrelu.Monitor(model, every=50) as monitor:
            for step, (x, y) in enumerate(loader):
                loss = F.cross_entropy(model(x), y)   # one forward = one step
                loss.backward(); opt.step(); opt.zero_grad()
                if step % 1000 == 999:
                    print(monitor.report().summary())
        monitor.history   # one row per layer per report

    Args:
        model: the network as it is called in the training loop; DDP, DataParallel
            and ``torch.compile`` wrappers are watched through the module inside
            (sampled steps of a compiled model run eagerly, see ``docs/monitor.md``).
        every: record one step in every ``every`` (1 records every step).
        jump: warn when a layer's dead fraction rises by at least this much (an
            absolute share, 0.1 = 10 points) from one report to the next; ``None``
            turns the check off.
        on_jump: called as ``on_jump(layer, before, after, step)`` instead of a
            :class:`DeadUnitsWarning`.
        report_every: if set, call :meth:`report` (``reset=True``) by itself every
            ``report_every`` steps, at the step boundary.
        loggers: each report is sent to these: objects with ``log_report(report, step)``
            (see :mod:`deadrelu.integrations`) or plain ``log(dict, step=...)``
            callables such as ``wandb.log``.
        thresholds: verdict thresholds for the reports.
        unit_axis: site-name glob → unit dimension (see :class:`~deadrelu.collector.Collector`).
        saturation_margin: band width of sigmoid/tanh saturation.
        sync: reduce the counters across ``torch.distributed`` ranks in :meth:`report`;
            ``None`` (default) does so whenever a process group with more than one
            rank is initialized.
        auto_step: count one step per forward of ``model`` in train mode until the first
            :meth:`step` call; ``False``: only :meth:`step` ends a step.
        name: the model's label in report headers (default: its class name).
        recycle: after each report, recycle the units it finds dead with
            :func:`deadrelu.recycle` (ReDo); ``True``, or a dict of its keyword arguments
            (``{"definition": "redo", "tau": 0.025}``). Results go to :attr:`recycled`.
        optimizer: the training optimizer, whose state for recycled slices is zeroed.

    Raises:
        ConfigError: an invalid argument.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = 100,
        jump: float | None = 0.1,
        on_jump: JumpCallback | None = None,
        report_every: int | None = None,
        loggers: Iterable[ReportLogger | Callable[..., Any]] = (),
        thresholds: Thresholds | None = None,
        unit_axis: Mapping[str, int] | None = None,
        saturation_margin: float = 0.01,
        sync: bool | None = None,
        auto_step: bool = True,
        name: str | None = None,
        recycle: bool | Mapping[str, Any] = False,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        from deadrelu.integrations import as_logger
        from deadrelu.scanning import unwrap

        if not isinstance(model, nn.Module):
            raise ConfigError(f"expected a torch.nn.Module, got {type(model).__name__}",
                              "pass the model object itself")
        _check_positive("every", every, "e.g. every=100 records one step in 100")
        if report_every is not None:
            _check_positive("report_every", report_every, "e.g. report_every=1000, or None")
        if jump is not None and (isinstance(jump, bool) or not isinstance(jump, (int, float))
                                 or not 0.0 < jump <= 1.0):
            raise ConfigError(f"jump must be a share in (0, 1], got {jump!r}",
                              "e.g. jump=0.1 warns when 10% more of a layer's units die; None: off")
        if on_jump is not None and not callable(on_jump):
            raise ConfigError("on_jump must be callable", "pass f(layer, before, after, step)")
        if isinstance(model, nn.DataParallel) and len(model.device_ids or ()) > 1:
            raise ConfigError(
                "DataParallel runs copies of the model in several threads at once, which "
                "the monitor cannot follow",
                "use DistributedDataParallel (one process per GPU); the monitor then "
                "combines the ranks' statistics in report()",
            )
        self.model = model
        self.module, self.notes = unwrap(model)
        self.every = every
        self.jump = jump
        self.on_jump = on_jump
        self.report_every = report_every
        self.loggers = [as_logger(obj) for obj in loggers]
        self.thresholds = thresholds or Thresholds()
        self.sync = sync
        self.name = name or type(self.module).__name__
        self.collector = _GatedCollector(self.module, self._gate, unit_axis=unit_axis,
                                         saturation_margin=saturation_margin)
        self.last_report: Report | None = None
        self.recycle_options: dict[str, Any] | None = (
            dict(recycle) if isinstance(recycle, Mapping) else {} if recycle else None)
        self.optimizer = optimizer
        #: (step, RecycleResult) of every recycling done by ``recycle=True``
        self.recycled: list[tuple[int, Any]] = []
        self._compiled = _compiled_wrapper(model)
        self._step = 0
        self._manual = not auto_step
        self._attached = False
        self._recording = False
        self._recorded = False  # the current step recorded at least one forward
        self._in_forward = False
        self._stance: Any = None
        self._warned_submodule = False
        self._handles: list[RemovableHandle] = []
        self._post_handle: RemovableHandle | None = None
        self._window_start = 0
        self._window_sampled = 0
        self._window_started_at = time.perf_counter()
        self._rows: list[dict[str, Any]] = []
        self._last_dead: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._attached

    @property
    def steps(self) -> int:
        """The current training step (steps completed so far, or as set by :meth:`step`)."""
        return self._step

    @property
    def window_steps(self) -> int:
        """Sampled steps that recorded something since the last ``report(reset=True)``."""
        return self._window_sampled + (1 if self._recorded else 0)

    @property
    def sampled(self) -> bool:
        """Whether the current step is recorded."""
        return self._step % self.every == 0

    def attach(self) -> Monitor:
        """Start watching. Raises ``RuntimeError`` if already attached."""
        if self._attached:
            raise RuntimeError("this Monitor is already attached; detach() it first")
        if self._compiled is None and getattr(self.module, "_compiled_call_impl", None) is not None:
            raise ConfigError(
                "the model was compiled in place (model.compile()), so its hooks run inside "
                "the compiled graph and its activations cannot be recorded",
                "use model = torch.compile(model) instead and pass that to the Monitor",
            )
        if self._compiled is not None and not hasattr(torch.compiler, "set_stance"):
            raise ConfigError(
                f"recording a torch.compile'd model needs torch >= 2.6 (this is {torch.__version__})",
                "pass the original module to the Monitor and call that one while monitoring",
            )
        self._attached = True
        outer = self.model
        self._handles = [
            outer.register_forward_pre_hook(self._outer_pre, prepend=True),
            outer.register_forward_hook(self._outer_always, always_call=True),
        ]
        self._sync_hooks()
        return self

    def detach(self) -> None:
        """Stop watching and remove every hook; the statistics are kept. Safe to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._post_handle is not None:
            self._post_handle.remove()
            self._post_handle = None
        self.collector.detach()
        self._leave_stance()
        self._attached = False
        self._recording = False
        self._in_forward = False

    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- stepping --------------------------------------------------------------------------------

    def step(self, step: int | None = None) -> None:
        """Mark the end of a training step.

        The first call turns automatic step detection off for good. Call it once per
        training step, after the optimizer step.

        Args:
            step: the number of the step that comes next (a framework's global step
                counter, e.g. Lightning's ``trainer.global_step``); default: one more.
        """
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise ConfigError(f"step must be a non-negative integer, got {step!r}",
                              "pass the global step counter, or nothing to count one step")
        if not self._manual:
            # The first call takes over from automatic detection: it ends step 0,
            # however many forwards detection counted before it.
            self._manual = True
            if step is None:
                step = 1
        self._advance(self._step + 1 if step is None else step)

    def _advance(self, step: int) -> None:
        if self._recorded and step != self._step:
            self._window_sampled += 1
            self._recorded = False
        changed = step != self._step
        self._step = step
        if self._attached:
            self._sync_hooks()
        if changed and self.report_every is not None and step % self.report_every == 0:
            self.report(reset=True)

    def _sync_hooks(self) -> None:
        # The collector's hooks are on the model exactly for the steps that are sampled.
        want = self._attached and self.sampled
        self._recording = want
        if want and not self.collector.attached:
            self.collector.attach()
            # Keep our post-hook after the collector's, so that the collector has left
            # the forward when a step boundary reports.
            if self._post_handle is not None:
                self._post_handle.remove()
                self._post_handle = None
        elif not want and self.collector.attached:
            self.collector.detach()
        if self._post_handle is None and self._attached:
            self._post_handle = self.model.register_forward_hook(self._outer_post)

    # -- hooks -----------------------------------------------------------------------------------

    def _gate(self, module: nn.Module) -> bool:
        if not self._recording or not self.module.training or _in_backward():
            return False
        if not self._in_forward and not self._manual and not self._warned_submodule:
            self._warned_submodule = True
            warnings.warn(
                f"a submodule of {self.name} ran outside {self.name}'s own forward: automatic "
                "step detection counts only calls of the monitored model, so no step boundary "
                "is seen; call monitor.step() after each training step",
                UserWarning, stacklevel=4,
            )
        self._recorded = True
        return True

    def _outer_pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._in_forward = True
        if self._compiled is not None and self.collector.attached:
            # Hooks inside a compiled graph never fire (and would make it recompile):
            # run the forwards of a sampled step eagerly.
            self._stance = torch.compiler.set_stance("force_eager")
            self._stance.__enter__()

    def _outer_always(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        # Runs even when the forward raised; must not add or remove hooks.
        self._in_forward = False
        self._leave_stance()

    def _outer_post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._manual and self.module.training and not _in_backward():
            self._advance(self._step + 1)

    def _leave_stance(self) -> None:
        if self._stance is not None:
            stance, self._stance = self._stance, None
            stance.__exit__(None, None, None)

    # -- reports ---------------------------------------------------------------------------------

    def report(self, *, reset: bool = True) -> Report:
        """The report of the current window: every sampled step since the last reset.

        Also appends one row per layer to :attr:`history`, checks for dead-fraction
        jumps and sends the report to the loggers. Under ``torch.distributed`` this is a
        collective: call it on every rank at the same step.

        Args:
            reset: start a new window afterwards (zero the counters).

        Returns:
            A :class:`~deadrelu.report.Report` with ``meta["mode"] == "train"`` and
            ``meta["step"]``, ``meta["window"]`` (``[first, last + 1]``: the first step and one past the last) and
            ``meta["sampled_steps"]``.
        """
        from deadrelu import distributed
        from deadrelu.diagnose import collect_evidence, diagnose
        from deadrelu.scanning import InsufficientDataWarning, model_signature, weights_fingerprint

        sites = self.collector.snapshot()
        sampled = self.window_steps
        sync = self.sync if self.sync is not None else distributed.is_distributed()
        if sync:
            sites = distributed.reduce_sites(sites)
        samples = max((s.stats.samples for s in sites), default=0)
        if samples == 0:
            warnings.warn(
                f"no sampled step since step {self._window_start} (every={self.every}): the "
                "report is empty; report less often or sample more often",
                InsufficientDataWarning, stacklevel=2,
            )
        device = next((str(t.device) for t in self.module.parameters()), "cpu")
        meta: dict[str, Any] = {
            "model": self.name,
            "data": f"training steps {self._window_start}-{self._step}",
            "device": device,
            "seconds": round(time.perf_counter() - self._window_started_at, 4),
            "samples": samples,
            "partial": False,
            "mode": "train",
            "step": self._step,
            "window": [self._window_start, self._step],
            "every": self.every,
            "sampled_steps": sampled,
            "notes": list(self.notes),
            "torch_version": torch.__version__,
            "model_signature": model_signature(self.module),
            "weights_fingerprint": weights_fingerprint(self.module),
        }
        if sync:
            meta["world_size"] = distributed.get_world_size()
        base = Report(tuple(sites), self.thresholds, meta, (), collect_evidence(self.module, sites))
        report = replace(base, findings=tuple(diagnose(base)))
        self._record(report)
        for logger in self.loggers:
            logger.log_report(report, self._step)
        if self.recycle_options is not None:
            from deadrelu.fix.recycle import recycle

            done = recycle(self.module, report, self.optimizer, **self.recycle_options)
            self.recycled.append((self._step, done))
        if reset:
            self.collector.reset()
            self._window_start = self._step
            self._window_sampled = 0
            self._recorded = False
            self._window_started_at = time.perf_counter()
        self.last_report = report
        return report

    def _record(self, report: Report) -> None:
        step, sampled = report.meta["step"], report.meta["sampled_steps"]
        jumps = []
        for rec in report.layer_records():
            if rec["samples"] == 0:
                continue  # a layer that did not run in this window says nothing
            units = rec["units"] or 1
            self._rows.append({
                "step": step, "layer": rec["layer"], "kind": rec["kind"], "units": rec["units"],
                "samples": rec["samples"], "sampled_steps": sampled, "dead": rec["dead"],
                "dead_fraction": rec["dead_fraction"], "rare_fraction": rec["rare"] / units,
                "saturated_fraction": rec["saturated"] / units,
                "always_on_fraction": rec["always_on"] / units,
                "dormant_fraction": rec["dormant_fraction"], "nonfinite": rec["nonfinite"],
                "fire_rate_mean": rec["fire_rate_mean"],
            })
            before = self._last_dead.get(rec["layer"])
            after = float(rec["dead_fraction"])
            self._last_dead[rec["layer"]] = after
            if self.jump is not None and before is not None and after - before >= self.jump - 1e-12:
                jumps.append((rec["layer"], before, after))
        for layer, before, after in jumps:
            if self.on_jump is not None:
                self.on_jump(layer, before, after, step)
            else:
                warnings.warn(
                    f"{layer}: dead units rose from {before:.0%} to {after:.0%} by step {step} "
                    "— often a learning rate that is too high or a loss spike; lower the "
                    "learning rate, add warmup or clip gradients",
                    DeadUnitsWarning, stacklevel=3,
                )

    @property
    def history(self) -> pd.DataFrame:
        """One row per layer per report (columns :data:`HISTORY_COLUMNS`), oldest first."""
        import pandas as pd

        return pd.DataFrame(self._rows, columns=list(HISTORY_COLUMNS))

    def plot(self, *, total: bool = True) -> Figure:
        """Dead fraction per layer against step from :attr:`history`, as a matplotlib ``Figure``.

        Args:
            total: add the whole model's dead fraction as a black dashed line.

        Raises:
            ConfigError: no report has been taken yet, or matplotlib is not installed.
        """
        from deadrelu.plotting import dead_fraction_figure

        history = self.history
        if history.empty:
            raise ConfigError("the monitor has no history to plot yet",
                              "call monitor.report() (or set report_every=) during training first")
        table = history.pivot_table(index="layer", columns="step", values="dead_fraction",
                                    sort=False)
        name = "(model)"
        if total:
            sums = history.groupby("step")[["dead", "units"]].sum()
            table.loc[name] = (sums["dead"] / sums["units"].where(sums["units"] > 0)).reindex(
                table.columns).to_numpy()
        return dead_fraction_figure(table, total=name if total else None,
                                    title=f"Dead fraction per layer during training ({self.name})")

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"Monitor({self.name}, every={self.every}, step={self._step}, {state})"


def _check_positive(name: str, value: Any, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}", fix)
