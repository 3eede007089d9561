"""``deadrelu.recycle``: ReDo (Sokar et al. 2023) — give dead units a fresh start mid-training.

For each selected unit: its incoming weights (the producing Linear/conv row) are
re-drawn from PyTorch's default initialisation of that layer (kaiming-uniform,
a=√5, which is what the layer was born with unless the user re-initialised it),
its bias set to 0, its BatchNorm entries (if a BatchNorm sits between producer and
activation) reset to their initial values, and its outgoing weights (the columns
of every layer that reads it) set to 0. Optimizer state for all those slices
(``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``) is zeroed.

Invariant: the network's output is unchanged at the moment of recycling, because
the unit now reaches nothing (its outgoing weights are 0) and nothing else changed.
That only holds when the unit's channel goes from producer to readers through
per-channel layers alone, so recycling follows the structure with ``torch.fx``:

    Linear/Conv ─▶ [BatchNorm] ─▶ activation ─▶ [Dropout/pooling/flatten]* ─▶ Linear/Conv readers

A unit on any other path (a residual addition, the model's output, an untraceable
forward) is skipped and listed with the reason; the output layer is never touched.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deadrelu.errors import ConfigError
from deadrelu.kinds import FUNCTIONS

if TYPE_CHECKING:
    from torch.fx import GraphModule, Node

    from deadrelu.collector import Site
    from deadrelu.monitor import Monitor
    from deadrelu.report import Report

DEFINITIONS = ("dead", "redo", "dohare")
#: Optimizer state entries that hold one value per parameter element.
_STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")
_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.Flatten,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
)
_PASS_CALLS = frozenset({
    "dropout", "flatten", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
})


@dataclass(frozen=True)
class RecycledUnits:
    """Units of one activation site that were recycled."""

    layer: str
    producer: str
    readers: tuple[str, ...]
    units: tuple[int, ...]


@dataclass(frozen=True)
class SkippedUnits:
    """Selected units that were left alone, and why."""

    layer: str
    units: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class RecycleResult:
    """What :func:`recycle` did."""

    recycled: tuple[RecycledUnits, ...]
    skipped: tuple[SkippedUnits, ...]
    definition: str
    tau: float

    @property
    def units_recycled(self) -> int:
        return sum(len(r.units) for r in self.recycled)

    def to_dict(self) -> dict[str, Any]:
        return {"definition": self.definition, "tau": self.tau,
                "units_recycled": self.units_recycled,
                "recycled": [{"layer": r.layer, "producer": r.producer, "readers": list(r.readers),
                              "units": list(r.units)} for r in self.recycled],
                "skipped": [{"layer": s.layer, "units": list(s.units), "reason": s.reason}
                            for s in self.skipped]}


@dataclass(frozen=True)
class _Path:
    producer: nn.Module
    producer_name: str
    norm: nn.modules.batchnorm._BatchNorm | None
    readers: tuple[tuple[str, nn.Module], ...]


def select_units(report: Report, definition: str, tau: float) -> dict[str, list[int]]:
    """Site name → the units to recycle under ``definition`` (``dead``, ``redo``, ``dohare``).

    ``tau``: ReDo's τ for ``redo``; for ``dohare`` the activity share below which a unit
    is dormant (0 means the report's threshold, 1% by default); unused for ``dead``.
    """
    if definition not in DEFINITIONS:
        raise ConfigError(f"unknown definition {definition!r}", f"use one of: {', '.join(DEFINITIONS)}")
    if tau < 0:
        raise ConfigError(f"tau must be ≥ 0, got {tau}", "ReDo uses 0, 0.025 or 0.1")
    if definition == "dead":
        return {s.info.name: report.units_in_state(s.info.name, "dead") for s in report.sites}
    changes: dict[str, Any] = {"dormancy": definition}
    if definition == "redo":
        changes["tau"] = tau
    elif tau > 0:
        changes["dohare"] = tau
    verdicts = report.with_thresholds(report.thresholds.replace(**changes)).verdicts
    return {s.info.name: [int(i) for i in verdicts[s.info.name].dormant.nonzero()[0]]
            for s in report.sites if s.info.can_die}


def recycle(
    model: nn.Module,
    report_or_monitor: Report | Monitor,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    tau: float = 0.0,
    definition: str = "dead",
    generator: torch.Generator | None = None,
    init: Callable[[torch.Tensor, nn.Module], None] | None = None,
) -> RecycleResult:
    """Recycle the dead (or dormant) units of ``model`` in place, ReDo-style.

    Args:
        model: the network being trained (the one the report or monitor watched).
        report_or_monitor: a :class:`~deadrelu.report.Report` of it, or a
            :class:`~deadrelu.monitor.Monitor` (its last report; one is taken if none).
        optimizer: its optimizer, whose per-element state for the touched slices is zeroed.
        tau: ReDo's τ for ``definition="redo"`` (see :func:`select_units`).
        definition: ``dead`` (never fired), ``redo`` (score ≤ τ) or ``dohare``.
        generator: random generator for the re-drawn weights (reproducible runs).
        init: ``init(rows, layer)`` fills freshly allocated incoming-weight rows in place;
            default: the layer's default kaiming-uniform initialisation.

    Returns:
        What was recycled and what was skipped (with reasons).

    Raises:
        ConfigError: an unknown definition or negative tau.
    """
    from deadrelu.report import Report

    report = report_or_monitor
    if not isinstance(report, Report):
        report = report_or_monitor.last_report or report_or_monitor.report()  # type: ignore[union-attr]
    selected = {name: units for name, units in select_units(report, definition, tau).items() if units}
    recycled: list[RecycledUnits] = []
    skipped: list[SkippedUnits] = []
    if not selected:
        return RecycleResult((), (), definition, tau)
    traces: dict[str, tuple[GraphModule | None, str | None]] = {}
    plans: list[tuple[_Path, list[int]]] = []
    for site in report.sites:
        units = selected.get(site.info.name)
        if not units:
            continue
        path, reason = _find_path(model, site, traces)
        if path is None:
            skipped.append(SkippedUnits(site.info.name, tuple(units), str(reason)))
            continue
        plans.append((path, units))
        recycled.append(RecycledUnits(site.info.name, path.producer_name,
                                      tuple(n for n, _ in path.readers), tuple(units)))
    # all incoming weights first, then all outgoing ones: a layer that is both a reader of
    # one site and the producer of the next must end with the recycled columns at zero
    touched = [t for path, units in plans for t in _redraw(path, units, generator, init)]
    touched += [t for path, units in plans for t in _zero_outgoing(path, units)]
    if optimizer is not None:
        _zero_state(optimizer, touched)
    return RecycleResult(tuple(recycled), tuple(skipped), definition, tau)


def _find_path(model: nn.Module, site: Site,
               traces: dict[str, tuple[GraphModule | None, str | None]],
               ) -> tuple[_Path | None, str | None]:
    """The site's producer and readers, from a trace of the whole model or else of the
    outermost module around the site that torch.fx can trace.

    A LightningModule with no ``forward`` of its own, or a wrapper whose forward branches
    on data, cannot be traced, while the network inside it can. Inside a submodule's
    trace, an activation whose output leaves that submodule "reaches the output" and is
    skipped, as it would be at the model's output: readers outside are unknown.
    """
    info = site.info
    parts = info.module.split(".") if info.module not in ("", "<model>") else []
    if info.op == "module":
        parts = parts[:-1]  # the activation module itself is not a scope to trace
    first_reason = None
    for depth in range(len(parts) + 1):
        prefix = ".".join(parts[:depth])
        if prefix not in traces:
            traces[prefix] = _trace(model.get_submodule(prefix) if prefix else model)
        graph, why = traces[prefix]
        if graph is None:
            first_reason = first_reason or why
            continue
        return _path(graph, site, prefix)
    return None, first_reason


def _trace(model: nn.Module) -> tuple[GraphModule | None, str | None]:
    import torch.fx

    try:
        return torch.fx.symbolic_trace(model), None
    except Exception as exc:  # data-dependent control flow and the like
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"torch.fx cannot trace the model ({first}), so its readers are unknown"


def _node_site(graph: GraphModule) -> dict[tuple[str, int], Node]:
    """(site base name, call index) → the fx node of that activation call."""
    from deadrelu.kinds import MODULES

    found: dict[tuple[str, int], Node] = {}
    counts: dict[str, int] = defaultdict(int)
    for node in graph.graph.nodes:
        base = None
        if node.op == "call_module" and type(graph.get_submodule(node.target)) in MODULES:
            base = str(node.target)
        elif node.op in ("call_function", "call_method"):
            func = node.target if node.op == "call_function" else getattr(torch.Tensor, node.target, None)
            op = FUNCTIONS.get(func) if func is not None else None
            if op is not None:
                stack = node.meta.get("nn_module_stack") or {}
                owner = next(reversed(stack.values()))[0] if stack else "<model>"
                base = f"{owner or '<model>'}:{op}"
        if base is not None:
            found[(base, counts[base])] = node
            counts[base] += 1
    return found


def _path(graph: GraphModule, site: Site, prefix: str = "") -> tuple[_Path | None, str | None]:
    """The site's path in ``graph``, a trace of the submodule at ``prefix`` ("" the model)."""
    info = site.info
    module_name = info.module
    if prefix:  # names inside the submodule's trace are relative to it
        module_name = module_name[len(prefix) + 1:] or "<model>"
    base = module_name if info.op == "module" else f"{module_name}:{info.kind}"
    node = _node_site(graph).get((base, info.call_index))
    if node is None:
        return None, "the activation call was not found in the traced graph"
    source = node.args[0] if node.args else None
    norm = None
    module = _module_of(graph, source)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if len(source.users) != 1:  # type: ignore[union-attr]
            return None, "its BatchNorm output feeds more than this activation"
        norm, source = module, source.args[0]  # type: ignore[union-attr]
        module = _module_of(graph, source)
    if not _producer(module) or len(source.users) != 1:  # type: ignore[union-attr]
        return None, ("its input is not a Linear/conv (through at most a BatchNorm) that feeds "
                      "only this activation (e.g. a residual addition)")
    readers, reason = _readers(graph, node)
    if reason is not None:
        return None, reason
    channels = _width(module, 0)
    for reader_name, reader in readers:
        if _width(reader, 1) % channels:
            return None, f"{reader_name} reads {_width(reader, 1)} inputs, not a multiple of {channels}"
    def full(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    name = full(str(source.target))  # type: ignore[union-attr]
    assert module is not None
    return _Path(module, name, norm, tuple((full(n), m) for n, m in readers)), None


def _width(module: nn.Module | None, dim: int) -> int:
    weight = getattr(module, "weight", None)
    return int(weight.shape[dim]) if isinstance(weight, torch.Tensor) else 1


def _module_of(graph: GraphModule, node: Any) -> nn.Module | None:
    if getattr(node, "op", None) != "call_module":
        return None
    return graph.get_submodule(node.target)


def _producer(module: nn.Module | None) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1 and not module.transposed


def _readers(graph: GraphModule, start: Node) -> tuple[list[tuple[str, nn.Module]], str | None]:
    readers: list[tuple[str, nn.Module]] = []
    todo, seen = [start], set()
    while todo:
        node = todo.pop()
        for user in node.users:
            if user in seen:
                continue
            seen.add(user)
            module = _module_of(graph, user)
            if _producer(module):
                if user.args[0] is not node:
                    return [], f"{user.target} reads it in a way other than its input"
                readers.append((str(user.target), module))  # type: ignore[arg-type]
            elif _passes(module, user):
                todo.append(user)
            elif user.op == "output":
                return [], "it reaches the output of the model (or of the traced module around it)"
            else:
                what = user.target if user.op == "call_module" else _name(user.target)
                return [], f"it flows into {what}, which is not a layer whose input weights can be zeroed"
    if not readers:
        return [], "no layer reads it"
    return readers, None


def _passes(module: nn.Module | None, node: Node) -> bool:
    """Whether ``node`` carries each channel through on its own (dropout, pooling, flatten)."""
    if module is not None:
        return isinstance(module, _PASS_MODULES)
    return node.op in ("call_function", "call_method") and _name(node.target) in _PASS_CALLS


def _name(target: Any) -> str:
    if isinstance(target, str):
        return target
    if target in (operator.add, operator.iadd, operator.mul):
        return target.__name__
    return str(getattr(target, "__name__", target))


_Slice = tuple[torch.Tensor, int, torch.Tensor]  # (parameter, dim, indices)


def _redraw(path: _Path, units: list[int], generator: torch.Generator | None,
            init: Callable[[torch.Tensor, nn.Module], None] | None) -> list[_Slice]:
    """New incoming weights, zero bias, fresh BatchNorm entries; returns the touched slices."""
    producer = path.producer
    weight = producer.weight
    assert isinstance(weight, torch.Tensor)
    rows = torch.as_tensor(units, dtype=torch.long, device=weight.device)
    touched: list[_Slice] = [(weight, 0, rows)]
    with torch.no_grad():
        fresh = torch.empty((len(units), *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
        if init is not None:
            init(fresh, producer)
        else:  # nn.Linear / _ConvNd reset_parameters: kaiming_uniform_(a=√5) = U(±1/√fan_in)
            fan_in = weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
            fresh.uniform_(-bound, bound, generator=generator)
        weight[rows] = fresh
        bias = producer.bias
        if isinstance(bias, torch.Tensor):
            bias[rows] = 0.0
            touched.append((bias, 0, rows))
        norm = path.norm
        if norm is not None:
            if norm.running_mean is not None and norm.running_var is not None:
                norm.running_mean[rows] = 0.0
                norm.running_var[rows] = 1.0
            if norm.weight is not None and norm.bias is not None:
                norm.weight[rows] = 1.0
                norm.bias[rows] = 0.0
                touched += [(norm.weight, 0, rows), (norm.bias, 0, rows)]
    return touched


def _zero_outgoing(path: _Path, units: list[int]) -> list[_Slice]:
    """Zero the readers' columns of ``units`` (a channel's block of features after a flatten)."""
    channels = _width(path.producer, 0)
    touched: list[_Slice] = []
    with torch.no_grad():
        for _, reader in path.readers:
            w = reader.weight
            assert isinstance(w, torch.Tensor)
            block = w.shape[1] // channels
            rows = torch.as_tensor(units, dtype=torch.long, device=w.device)
            cols = (rows[:, None] * block + torch.arange(block, device=w.device)).reshape(-1)
            w[:, cols] = 0.0
            touched.append((w, 1, cols))
    return touched


def _zero_state(optimizer: torch.optim.Optimizer, touched: list[_Slice]) -> None:
    """Zero the per-element optimizer state (Adam moments, SGD momentum) of the slices."""
    with torch.no_grad():
        for param, dim, index in touched:
            state = optimizer.state.get(param, {})
            for key in _STATE_KEYS:
                buf = state.get(key)
                if isinstance(buf, torch.Tensor) and buf.shape == param.shape:
                    buf.index_fill_(dim, index.to(buf.device), 0.0)
