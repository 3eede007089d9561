"""``deadrelu.prune``: remove units whose output was constant on the data, outputs unchanged.

Invariants:

* Only units the report saw output one exact constant on every scanned position are
  candidates (:mod:`deadrelu.fix.constant`): a dead ReLU's 0, a ReLU6 stuck at 6.
* A candidate is removed from every layer its channel passes through
  (:mod:`deadrelu.fix.depgraph`), and only when every layer that *reads* it read one
  constant there (measured on the data, so BatchNorm shifts, depthwise biases and
  residual additions are accounted for); that constant times the layer's weights
  is folded into the layer's bias, so its output is the same as before.
* The input model is never changed: the pruned model is a copy.
* After pruning, both models run over the data; if any output moved by more than
  ``tolerance`` relative to the output's scale, nothing is pruned and the error
  names the layer whose removal broke it.
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deadrelu.analyzer import rule_out_rate, samples_needed
from deadrelu.errors import ConfigError, ModelError
from deadrelu.fix import measure
from deadrelu.fix.constant import constant_units
from deadrelu.fix.depgraph import ChannelGraph, Member, group_key, space_key

if TYPE_CHECKING:
    from deadrelu.report import Report

#: Default for ``min_samples``: 100 samples leave an unseen unit a 95% bound of ~3% firing.
MIN_SAMPLES = 100
#: Largest output change accepted, relative to the largest |output| (float32 rounding level).
TOLERANCE = 1e-5
#: Integer attributes that describe a layer's width (recorded in the plan of new widths).
WIDTH_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "groups",
               "num_features", "num_parameters")


@dataclass(frozen=True)
class RemovedUnits:
    """Units of one activation site that were removed, and the constant they output."""

    layer: str
    producer: str
    units: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class KeptUnits:
    """Dead or constant units of one site that could not be removed exactly, and why."""

    layer: str
    units: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` removed, what it left and why, and what it measured.

    Attributes:
        removed / kept: per activation site.
        samples: samples the verification ran over.
        params_before, params_after: parameter counts.
        macs_before, macs_after: multiply-adds per sample (``None`` if not countable).
        latency_before, latency_after: median seconds of one forward of ``latency_batch``
            samples on the model's device (``None`` when not measured).
        max_abs_diff: largest |pruned output − original output| on the data.
        output_scale: largest |original output| on the data.
        widths: layer path → its changed width attributes (``out_features``...) and
            ``"bias": True`` where a bias was added to take a folded constant.
    """

    removed: tuple[RemovedUnits, ...] = ()
    kept: tuple[KeptUnits, ...] = ()
    samples: int = 0
    params_before: int = 0
    params_after: int = 0
    macs_before: int | None = None
    macs_after: int | None = None
    latency_before: float | None = None
    latency_after: float | None = None
    latency_batch: int = 0
    max_abs_diff: float | None = None
    output_scale: float | None = None
    widths: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def units_removed(self) -> int:
        return sum(len(r.units) for r in self.removed)

    @property
    def units_kept(self) -> int:
        return sum(len(k.units) for k in self.kept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "units_removed": self.units_removed, "units_kept": self.units_kept,
            "removed": [{"layer": r.layer, "producer": r.producer, "units": list(r.units),
                         "values": list(r.values)} for r in self.removed],
            "kept": [{"layer": k.layer, "units": list(k.units), "reason": k.reason} for k in self.kept],
            "samples": self.samples,
            "params": {"before": self.params_before, "after": self.params_after},
            "macs_per_sample": {"before": self.macs_before, "after": self.macs_after},
            "latency_seconds": {"before": self.latency_before, "after": self.latency_after,
                                "batch": self.latency_batch},
            "max_abs_diff": self.max_abs_diff, "output_scale": self.output_scale,
            "widths": self.widths,
        }

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from deadrelu.fix.render import render_prune

        yield from render_prune(self)


@dataclass(frozen=True)
class _Accepted:
    layer: str
    producer: str
    unit: int
    value: float
    members: tuple[Member, ...]
    folds: tuple[tuple[str, tuple[int, ...], torch.Tensor], ...]


def prune(
    model: nn.Module,
    report: Report,
    data: Any,
    *,
    layers: str | list[str] | None = None,
    min_samples: int = MIN_SAMPLES,
    tolerance: float = TOLERANCE,
    batch_size: int = 256,
    timing: bool = True,
) -> tuple[nn.Module, PruneResult]:
    """Remove the units whose output was exactly constant on the scanned data.

    Args:
        model: the scanned model; never modified (the pruned model is a copy).
        report: its scan (:func:`deadrelu.scan`) over ``data``.
        data: the data the report was scanned on (tensor, DataLoader, list of
            batches): read once to measure what each layer reads, once to verify.
        layers: activation-site name glob(s) to prune (default: all).
        min_samples: refuse to prune on a report of fewer samples.
        tolerance: the largest output change accepted, relative to the largest
            |output|; above it nothing is pruned.
        batch_size: samples per forward when ``data`` is one tensor.
        timing: measure CPU/GPU latency before and after.

    Returns:
        ``(pruned_model, result)``; with nothing removable, a plain copy and a result
        whose ``kept`` says why.

    Raises:
        ConfigError: too few samples, a glob matching no layer, a report of another
            model, one-shot data, torch-pruning missing.
        ModelError: the model cannot be traced or run, or a removal changed the output.
    """
    from deadrelu.identity import model_signature, unwrap

    measure.reiterable(data)
    model, _ = unwrap(model)
    _check_report(model, report, min_samples, model_signature)
    sites = select_sites(report, layers)
    candidates = []
    kept: list[KeptUnits] = []
    for site in sites:
        found = constant_units(site)
        if found.varying:
            kept.append(KeptUnits(site.info.name, found.varying,
                                  f"{site.info.kind} output is not constant where the unit does "
                                  "not fire, so removing it would change the output"))
        if found.values:
            candidates.append((site, found.values))
    params = measure.count_params(model)
    if not candidates:
        return copy.deepcopy(model), PruneResult(kept=tuple(kept), samples=report.samples,
                                                 params_before=params, params_after=params)
    ranges, samples, first = measure.consumer_ranges(model, data, batch_size)
    if samples != report.samples:
        warnings.warn(f"the data has {samples} samples but the report was scanned on "
                      f"{report.samples}: prune with the data the report was scanned on",
                      UserWarning, stacklevel=2)
    pruned = copy.deepcopy(model)
    graph = ChannelGraph(pruned, first)
    accepted, refused = _plan(pruned, graph, candidates, ranges)
    kept.extend(refused)
    if not accepted:
        return pruned, PruneResult(kept=tuple(kept), samples=samples, params_before=params,
                                   params_after=params)
    _apply(pruned, graph, accepted)
    diff = measure.compare_outputs(model, pruned, data, batch_size)
    if not diff.within(tolerance):
        _blame(model, first, accepted, data, batch_size, tolerance)
    timed = measure.latencies(model, pruned, first) if timing else (None, None)
    result = PruneResult(
        removed=_removed(accepted), kept=tuple(kept), samples=samples,
        params_before=params, params_after=measure.count_params(pruned),
        macs_before=measure.count_macs(model, first), macs_after=measure.count_macs(pruned, first),
        latency_before=timed[0], latency_after=timed[1],
        latency_batch=measure.batches.batch_size(first),
        max_abs_diff=diff.max_abs, output_scale=diff.scale, widths=widths(model, pruned),
    )
    return pruned, result


def select_sites(report: Report, layers: str | list[str] | None) -> list[Any]:
    """The report's sites matching ``layers`` globs; a glob that matches nothing is an error."""
    if layers is None:
        return list(report.sites)
    globs = [layers] if isinstance(layers, str) else list(layers)
    names = [s.info.name for s in report.sites]
    for g in globs:
        if not any(fnmatch.fnmatchcase(n, g) for n in names):
            raise ConfigError(f"layer glob {g!r} matches no activation layer",
                              f"layers of this model: {', '.join(names[:12])}"
                              + (", ..." if len(names) > 12 else ""))
    return [s for s in report.sites if any(fnmatch.fnmatchcase(s.info.name, g) for g in globs)]


def _check_report(model: nn.Module, report: Report, min_samples: int, signature: Any) -> None:
    known = report.meta.get("model_signature")
    if known is not None and known != signature(model):
        raise ConfigError("the report was scanned on a model of another architecture",
                          "prune the model the report was scanned on")
    if report.meta.get("mode") == "train":
        raise ConfigError("the report was taken during training (train mode: BatchNorm batch "
                          "statistics, dropout), so its constants need not hold in eval mode",
                          "scan the model with deadrelu.scan (eval mode) and prune with that report")
    if report.samples < min_samples:
        bound = rule_out_rate(report.samples)
        raise ConfigError(
            f"the report covers only {report.samples} samples: a unit never seen firing may "
            f"still fire on up to {bound:.0%} of inputs (95% bound)",
            f"scan at least {min_samples} samples (about {samples_needed(0.01)} for a 1% bound), "
            "or lower --min-samples",
        )


def _plan(model: nn.Module, graph: ChannelGraph, candidates: list[Any],
          ranges: dict[str, measure.InputRange]) -> tuple[list[_Accepted], list[KeptUnits]]:
    accepted: list[_Accepted] = []
    refused: dict[tuple[str, str], list[int]] = defaultdict(list)
    for site, values in candidates:
        name = site.info.name
        producer = site.info.input_layer
        module = _submodule(model, producer)
        width = graph.out_channels(module) if module is not None else None
        if module is None or width is None:
            refused[(name, "its input does not come straight from a layer "
                           "(a functional op or the model's input)")].extend(values)
            continue
        if width != site.info.units:
            refused[(name, f"{producer} has {width} output channels but the activation has "
                           f"{site.info.units} units")].extend(values)
            continue
        for unit, value in values.items():
            members = graph.members(module, unit)
            reason, folds = _check_group(model, members, ranges)
            if reason is not None:
                refused[(name, reason)].append(unit)
            else:
                accepted.append(_Accepted(name, str(producer), unit, value, tuple(members), folds))
    kept = [KeptUnits(layer, tuple(sorted(units)), reason) for (layer, reason), units in refused.items()]
    return accepted, kept


def _submodule(model: nn.Module, path: str | None) -> nn.Module | None:
    if not path:
        return None
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _check_group(model: nn.Module, members: list[Member], ranges: dict[str, measure.InputRange]
                 ) -> tuple[str | None, tuple[tuple[str, tuple[int, ...], torch.Tensor], ...]]:
    """Why the group cannot go (``None`` if it can), and the constants to fold per reader."""
    for m in members:
        if m.role == "blocked":
            return m.reason, ()
    readers = [m for m in members if m.role == "consumer"]
    if not readers:
        return "no layer reads it: it reaches the model's output (or an op deadrelu cannot follow)", ()
    folds = []
    for m in readers:
        seen = ranges.get(m.layer)
        constant = seen.constant(list(m.indices)) if seen is not None else None
        if constant is None:
            return (f"{m.layer} reads it where it is not constant (on the way it is added to or "
                    "multiplied with a live unit, as in a residual connection, or zero-padded "
                    "by a convolution)"), ()
        if isinstance(m.module, nn.modules.conv._ConvNd) and bool((constant != 0).any()) \
                and _zero_padded(m.module):
            return (f"{m.layer} pads with zeros, so the constant {float(constant[0]):g} it reads "
                    "cannot be folded into its bias"), ()
        folds.append((m.layer, m.indices, constant))
    return None, tuple(folds)


def _zero_padded(conv: nn.modules.conv._ConvNd) -> bool:
    if conv.padding_mode != "zeros":
        return False
    padding = conv.padding
    if isinstance(padding, str):
        return padding != "valid"
    return any(p != 0 for p in padding)


def _apply(model: nn.Module, graph: ChannelGraph, accepted: list[_Accepted]) -> None:
    """Fold the constants into the readers' biases, then remove the channels (in place)."""
    groups: dict[Any, _Accepted] = {}
    for a in accepted:
        groups.setdefault(group_key(list(a.members)), a)
    with torch.no_grad():
        for a in groups.values():
            for layer, indices, constant in a.folds:
                _fold(model.get_submodule(layer), list(indices), constant)
    spaces: dict[Any, tuple[str, list[int]]] = {}
    for a in groups.values():
        producer, units = spaces.setdefault(space_key(list(a.members)), (a.producer, []))
        units.append(a.unit)
    for producer, units in spaces.values():
        graph.remove(model.get_submodule(producer), units)


def _fold(module: nn.Module, indices: list[int], constant: torch.Tensor) -> None:
    """Add what input columns ``indices`` contributed (the constant) to ``module``'s bias."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    values = constant.to(device=weight.device, dtype=torch.float64)
    cols = weight.detach()[:, indices].double()
    if isinstance(module, nn.Linear):
        delta = cols @ values
    else:
        delta = (cols.flatten(2).sum(2) * values).sum(1)
    bias = module.bias
    if not isinstance(bias, torch.Tensor):
        bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))
        module.bias = bias
    bias.add_(delta.to(bias.dtype))


def _blame(model: nn.Module, example: Any, accepted: list[_Accepted], data: Any,
           batch_size: int, tolerance: float) -> None:
    """Find the first layer whose removal moves the output, and raise naming it."""
    order = list(dict.fromkeys(a.layer for a in accepted))
    for k in range(1, len(order) + 1):
        subset = [a for a in accepted if a.layer in order[:k]]
        trial = copy.deepcopy(model)
        _apply(trial, ChannelGraph(trial, example), subset)
        diff = measure.compare_outputs(model, trial, data, batch_size)
        if not diff.within(tolerance):
            what = (f"makes the model's forward fail ({diff.error})" if diff.error else
                    f"changed the output by {diff.max_abs:.3g} (largest |output| "
                                  f"{diff.scale:.3g}, tolerance {tolerance:g} of it)")
            raise ModelError(
                f"removing the constant units of {order[k - 1]} {what}; nothing was pruned",
                "leave that layer out (layers= / --layers)")
    raise ModelError("the pruned model's output differs from the original's; nothing was pruned",
                     "prune fewer layers with --layers")


def _removed(accepted: list[_Accepted]) -> tuple[RemovedUnits, ...]:
    by_site: dict[tuple[str, str], list[_Accepted]] = defaultdict(list)
    for a in accepted:
        by_site[(a.layer, a.producer)].append(a)
    return tuple(RemovedUnits(layer, producer, tuple(a.unit for a in items),
                              tuple(a.value for a in items))
                 for (layer, producer), items in by_site.items())


def widths(original: nn.Module, pruned: nn.Module) -> dict[str, dict[str, Any]]:
    """Layer path → the width attributes that differ after pruning (plus an added bias)."""
    before = dict(original.named_modules())
    out: dict[str, dict[str, Any]] = {}
    for name, module in pruned.named_modules():
        old = before.get(name)
        if old is None:
            continue
        changed: dict[str, Any] = {}
        for attr in WIDTH_ATTRS:
            value = getattr(module, attr, None)
            if isinstance(value, int) and value != getattr(old, attr, None):
                changed[attr] = value
        if getattr(old, "bias", 0) is None and isinstance(getattr(module, "bias", None), torch.Tensor):
            changed["bias"] = True
        if changed:
            out[name] = {"type": type(module).__name__, **changed}
    return out
