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
  A report's ``step`` is the last step that ran in its window, numbered as the
  user's loop numbers it: automatic counting is 0-based (the report after the
  1,000th forward is step 999), ``step(n)`` numbers the step that comes next.
* **No false alarms.** A dead fraction is compared between windows only when both
  saw enough samples for "dead" to mean "fires on fewer than ``thresholds.rare``
  of inputs" at 95% confidence (the bound of the report's DR011): about 300
  samples at the default 1%.
"""

from __future__ import annotations

import fnmatch
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from deadrelu.analyzer import Thresholds
from deadrelu.collector import Collector
from deadrelu.diagnose.selection import excluding
from deadrelu.errors import ConfigError
from deadrelu.guard import ForwardGuard
from deadrelu.report import Report

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from deadrelu.findings import Finding
    from deadrelu.integrations import ReportLogger

#: ``on_jump(layer, before, after, step)``: called when a layer's dead fraction jumps.
JumpCallback = Callable[[str, float, float, int], None]

#: Columns of :attr:`Monitor.history`, in order.
HISTORY_COLUMNS = (
    "step", "layer", "kind", "units", "samples", "sampled_steps", "dead", "dead_fraction",
    "rare_fraction", "saturated_fraction", "always_on_fraction", "dormant_fraction",
    "nonfinite", "fire_rate_mean", "fire_rate_bound", "conclusive",
)

#: Causes that a finding during training names as likely; the others (no evidence, too
#: few samples, a design remark) are left to the full report.
_ACTIONABLE_SKIP = frozenset({"unknown", "insufficient_data", "architecture"})


class DeadUnitsWarning(UserWarning):
    """A layer's dead fraction jumped between two monitor windows, or a window's
    diagnosis found dead units with a likely cause.

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

        with deadrelu.Monitor(model, every=50, report_every=1000) as monitor:
            for epoch in range(epochs):
                for x, y in loader:
                    loss = F.cross_entropy(model(x), y)   # one forward = one step
                    loss.backward(); opt.step(); opt.zero_grad()
        monitor.history   # one row per layer per report, the last window included

    Args:
        model: the network as it is called in the training loop; DDP, DataParallel
            and ``torch.compile`` wrappers are watched through the module inside
            (sampled steps of a compiled model run eagerly, see ``docs/monitor.md``).
        every: record one step in every ``every`` (1 records every step).
        jump: warn when a layer's dead fraction rises by at least this much (an
            absolute share, 0.1 = 10 points) from one conclusive report to the next
            (both windows saw enough samples, see the module docstring); ``None``
            turns the check off.
        on_jump: called as ``on_jump(layer, before, after, step)`` instead of a
            :class:`DeadUnitsWarning`.
        report_every: if set, call :meth:`report` (``reset=True``) by itself every
            ``report_every`` steps, at the step boundary (after steps
            ``report_every - 1``, ``2 * report_every - 1``...).
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
        optimizer: the training loop's optimizer (and ``scheduler`` its LR scheduler):
            read as data at each report (``deadrelu.loading.recipe``), so advice names
            the optimizer, its learning rate and the warm-up ("trained with Adam, lr
            3e-2 at step 4,000 (no warm-up found): try lr ≤ 3e-3 ...").
        findings: warn (:class:`DeadUnitsWarning`) and tell loggers that have
            ``log_finding(finding, step)`` once per rule and layer when a conclusive
            window's diagnosis finds dead or saturated units with a likely cause.
        recycle: after each report, recycle the units it finds dead with
            :func:`deadrelu.recycle` (ReDo); ``True``, or a dict of its keyword arguments
            (``{"definition": "redo", "tau": 0.025}``). Results go to :attr:`recycled`;
            the ``optimizer``'s state for recycled slices is zeroed.
        exclude_layers: site-name globs (``fnmatch``, e.g. ``"head.*"``) whose findings
            are never reported, as in :func:`deadrelu.scan`: no report's findings, no
            finding warnings or ``log_finding`` calls, and no jump warning (nor
            ``on_jump`` call) for those layers. Their counters stay in the reports and
            in :attr:`history`; ``recycle=True`` still recycles their dead units.

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
        findings: bool = True,
        optimizer: Any = None,
        scheduler: Any = None,
        recycle: bool | Mapping[str, Any] = False,
        exclude_layers: Sequence[str] | str = (),
    ) -> None:
        from deadrelu.identity import unwrap
        from deadrelu.integrations import as_logger

        _check_options(model, every, report_every, jump, on_jump)
        # validated now, with scan's error, rather than at the first report mid-training
        self._selection = excluding(None, exclude_layers) if exclude_layers else None
        #: the globs of ``exclude_layers``, as a tuple
        self.exclude_layers: tuple[str, ...] = (
            tuple(self._selection.per_layer_ignores) if self._selection is not None else ())
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
        #: (step, RecycleResult) of every recycling done by ``recycle=True``; step as in :attr:`history`
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
        self._guard: ForwardGuard | None = None
        self._window_start = 0
        self._window_sampled = 0
        self._window_started_at = time.perf_counter()
        self.findings = findings
        self.optimizer = optimizer
        self.scheduler = scheduler
        self._rows: list[dict[str, Any]] = []
        # layer -> (dead fraction, step) of its last conclusive window: the jump baseline
        self._last_dead: dict[str, tuple[float, int]] = {}
        self._announced: set[tuple[str, str | None]] = set()
        self._ran = False  # a train-mode forward started in the current step
        self._window_train = 0  # forwards of the monitored model in this window, by mode
        self._window_eval = 0
        self._exit_report: Report | None = None

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
        # _outer_always is skipped by a KeyboardInterrupt; the guard runs it then.
        self._guard = ForwardGuard(outer, lambda: self._outer_always(outer, (), None))
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
        self.collector.detach()  # its guard (if on the same module) goes first
        if self._guard is not None:
            self._guard.remove()
            self._guard = None
        self._leave_stance()
        self._attached = False
        self._recording = False
        self._in_forward = False

    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.detach()
        if exc_type is None and self.window_steps:
            # the steps since the last report would otherwise never reach the history
            self._exit_report = self.report(reset=True)

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
        if changed:
            self._ran = False
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
        self._ran = True
        return True

    def _outer_pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._in_forward = True
        if not _in_backward():
            if self.module.training:
                self._window_train += 1
                self._ran = True
            else:
                self._window_eval += 1
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
        from deadrelu.assemble import assemble_report
        from deadrelu.scanning import InsufficientDataWarning

        if self._exit_report is not None and not self.window_steps:
            # the with block already reported the last window; nothing ran since
            return self._exit_report
        self._exit_report = None
        sites = self.collector.snapshot()
        sampled = self.window_steps
        sync = self.sync if self.sync is not None else distributed.is_distributed()
        if sync:
            sites = distributed.reduce_sites(sites)
        samples = max((s.stats.samples for s in sites), default=0)
        start = self._window_start
        # the last step that ran: the current one if a forward started in it, else the one before
        last = max(self._step if self._ran else self._step - 1, 0)
        if samples == 0:
            warnings.warn(self._empty_window_reason(start, last), InsufficientDataWarning,
                          stacklevel=2)
        device = next((str(t.device) for t in self.module.parameters()), "cpu")
        run: dict[str, Any] = {
            "model": self.name,
            "data": f"training steps {start}-{last}",
            "device": device,
            "seconds": round(time.perf_counter() - self._window_started_at, 4),
            "samples": samples,
            "partial": False,
            "mode": "train",
            "step": last,
            "window": [start, last],
            "every": self.every,
            "sampled_steps": sampled,
            "notes": list(self.notes),
        }
        measured: dict[str, Any] = {}
        if sync:
            measured["world_size"] = distributed.get_world_size()
        if self._selection is not None:  # kept, so that re-diagnosis leaves them out too
            measured["selection"] = self._selection.to_dict()
        recipe = self._recipe(last)
        if recipe:
            measured["recipe"] = recipe
        report = assemble_report(self.module, sites, self.thresholds, run, measured)
        self._record(report)
        for logger in self.loggers:
            logger.log_report(report, last)
        if self.recycle_options is not None:
            from deadrelu.fix.recycle import recycle

            done = recycle(self.module, report, self.optimizer, **self.recycle_options)
            self.recycled.append((last, done))
        if reset:
            self.collector.reset()
            self._window_start = self._step
            self._window_sampled = 0
            self._window_train = self._window_eval = 0
            self._recorded = False
            self._window_started_at = time.perf_counter()
        self.last_report = report
        return report

    def _recipe(self, step: int) -> dict[str, Any] | None:
        """The optimizer's (and scheduler's) settings now, read as data, for the advice."""
        from deadrelu.loading.recipe import read_recipe

        state: dict[str, Any] = {"step": step}
        for key, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler)):
            state_dict = getattr(obj, "state_dict", None)
            if callable(state_dict):
                state[key] = state_dict()
        return read_recipe(state) if len(state) > 1 else None

    def _empty_window_reason(self, start: int, last: int) -> str:
        """Why a window recorded nothing, in the words of the likely cause."""
        if self._window_eval and not self._window_train:
            return (f"{self.name} ran {self._window_eval} forward"
                    f"{'s' if self._window_eval != 1 else ''} since step {start}, all in eval "
                    "mode, so nothing was recorded (the monitor records training, i.e. train-mode "
                    "forwards): call model.train() before training — model.eval() for validation "
                    "leaves the model in eval mode until model.train() is called again")
        return (f"no sampled step in steps {start}-{last} (every={self.every} records steps "
                f"0, {self.every}, {2 * self.every}...): the report is empty; report less "
                "often or sample more often")

    def _conclusive(self, samples: int) -> bool:
        """Whether ``samples`` samples make "dead" mean "fires on < ``rare``" at 95% confidence."""
        from deadrelu.analyzer import rule_out_rate

        return samples > 0 and rule_out_rate(samples) <= self.thresholds.rare

    def _record(self, report: Report) -> None:
        from deadrelu.analyzer import rule_out_rate
        from deadrelu.wording import percent

        step, sampled = report.meta["step"], report.meta["sampled_steps"]
        causes = self._likely_causes(report)
        jumps = []
        for rec in report.layer_records():
            if rec["samples"] == 0:
                continue  # a layer that did not run in this window says nothing
            units = rec["units"] or 1
            conclusive = self._conclusive(rec["samples"])
            self._rows.append({
                "step": step, "layer": rec["layer"], "kind": rec["kind"], "units": rec["units"],
                "samples": rec["samples"], "sampled_steps": sampled, "dead": rec["dead"],
                "dead_fraction": rec["dead_fraction"], "rare_fraction": rec["rare"] / units,
                "saturated_fraction": rec["saturated"] / units,
                "always_on_fraction": rec["always_on"] / units,
                "dormant_fraction": rec["dormant_fraction"], "nonfinite": rec["nonfinite"],
                "fire_rate_mean": rec["fire_rate_mean"],
                "fire_rate_bound": rule_out_rate(rec["samples"]), "conclusive": conclusive,
            })
            if not conclusive:
                continue  # a few samples make "dead" a guess: neither a baseline nor an alarm
            after = float(rec["dead_fraction"])
            previous = self._last_dead.get(rec["layer"])
            self._last_dead[rec["layer"]] = (after, step)
            if self.jump is not None and previous is not None \
                    and not self._excluded(rec["layer"]) \
                    and after - previous[0] >= self.jump - 1e-12:
                jumps.append((rec["layer"], previous[0], previous[1], after, rec["samples"]))
        for layer, before, since, after, samples in jumps:
            if self.on_jump is not None:
                self.on_jump(layer, before, after, step)
                continue
            finding = causes.get(layer)
            if finding is not None:
                self._announced.add((finding.code, layer))
                why = f"likely cause: {finding.cause} ({finding.code}): {finding.fix}"
            else:
                why = ("often a learning rate that is too high or a loss spike; lower the "
                       "learning rate or add warm-up")
            warnings.warn(
                f"{layer}: dead units rose from {percent(before)} (window ending at step {since}) "
                f"to {percent(after)} by step {step}, in a window of {samples:,} samples (a unit "
                f"counted dead fires on under {percent(rule_out_rate(samples))} of inputs, 95% "
                f"confidence) — {why}",
                DeadUnitsWarning, stacklevel=4,
            )
        if self.findings:
            self._announce(causes, step)

    def _excluded(self, layer: str) -> bool:
        """Whether ``exclude_layers`` silences ``layer`` (matched as the selection matches)."""
        return any(fnmatch.fnmatchcase(layer, glob) for glob in self.exclude_layers)

    def _likely_causes(self, report: Report) -> dict[str, Finding]:
        """Per layer, the first finding of ``report`` that names an actionable cause for
        dead or saturated units, from windows with enough samples only."""
        out: dict[str, Finding] = {}
        samples = {rec["layer"]: rec["samples"] for rec in report.layer_records()}
        for finding in report.findings:
            if (finding.layer is None or finding.cause in _ACTIONABLE_SKIP
                    or str(finding.severity) == "info"
                    or not self._conclusive(samples.get(finding.layer, 0))):
                continue
            out.setdefault(finding.layer, finding)
        return out

    def _announce(self, causes: Mapping[str, Finding], step: int) -> None:
        """Say once per rule and layer that a window found units with a likely cause."""
        for layer, finding in causes.items():
            key = (finding.code, layer)
            if key in self._announced:
                continue
            self._announced.add(key)
            warnings.warn(f"step {step}: {finding.code} {finding.message} — likely cause: "
                          f"{finding.cause}; {finding.fix}", DeadUnitsWarning, stacklevel=4)
            for logger in self.loggers:
                log_finding = getattr(logger, "log_finding", None)
                if callable(log_finding):
                    log_finding(finding, step)

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this monitor: the history, the per-layer
        baseline of the jump check and the findings already announced (JSON-ready: plain
        lists, numbers and strings, so a trainer can store it in its checkpoint)."""
        return {
            "version": 1,
            "history": [{k: _plain(v) for k, v in row.items()} for row in self._rows],
            "baseline": {layer: [frac, step] for layer, (frac, step) in self._last_dead.items()},
            "announced": [[code, layer] for code, layer in sorted(self._announced, key=str)],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the history goes on, jumps compare with the
        last window before the checkpoint, announced findings stay announced.

        Raises:
            ConfigError: ``state`` is not a monitor state.
        """
        if not isinstance(state, Mapping) or state.get("version") != 1:
            raise ConfigError("not a deadrelu Monitor state (expected Monitor.state_dict())",
                              "pass what Monitor.state_dict() returned")
        self._rows = [dict(row) for row in state.get("history", [])]
        self._last_dead = {str(layer): (float(frac), int(step))
                           for layer, (frac, step) in state.get("baseline", {}).items()}
        self._announced = {(str(code), layer) for code, layer in state.get("announced", [])}

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
        from deadrelu.wording import MODEL

        history = self.history
        if history.empty:
            raise ConfigError("the monitor has no history to plot yet",
                              "call monitor.report() (or set report_every=) during training first")
        table = history.pivot_table(index="layer", columns="step", values="dead_fraction",
                                    sort=False)
        name = MODEL
        if total:
            sums = history.groupby("step")[["dead", "units"]].sum()
            table.loc[name] = (sums["dead"] / sums["units"].where(sums["units"] > 0)).reindex(
                table.columns).to_numpy()
        return dead_fraction_figure(table, total=name if total else None,
                                    title=f"Dead fraction per layer during training ({self.name})")

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"Monitor({self.name}, every={self.every}, step={self._step}, {state})"


def _plain(value: Any) -> Any:
    """A history value as a plain Python number (numpy scalars do not go into JSON)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _check_options(model: Any, every: Any, report_every: Any, jump: Any, on_jump: Any) -> None:
    """Refuse a monitor setting that cannot work, naming the value (see :class:`Monitor`)."""
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


def _check_positive(name: str, value: Any, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}", fix)
