"""Which layers share a unit's channel, found with torch-pruning's dependency graph.

A unit of a hidden layer is one output channel of its producer (a Linear row, a
conv filter), carried through per-channel layers (BatchNorm, activations, pooling,
depthwise convs, flatten, residual additions, concatenations, gating products)
to the layers that read it (a Linear column, a conv input channel). Removing it
means removing it from all of them at once: torch-pruning's ``DependencyGraph``
traces the model once (through autograd) and returns that *group* for any
channel, with the index mapping through flatten and concatenation worked out.

This module only asks the graph and sorts each member of a group into one of:

* ``producer``: an output channel of a Linear/conv; removed with the unit.
* ``consumer``: an input column/channel of a Linear/conv (groups=1); removable
  exactly when what it read there was constant (checked by the caller).
* ``passthrough``: per-channel layers and tensor ops; removed with the unit.
* ``blocked``: a member that mixes or normalises across units (LayerNorm,
  attention, grouped convs, raw parameters...): the unit stays, with the reason.

The graph itself is an optional dependency (``pip install 'deadrelu[prune]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from deadrelu.errors import ConfigError, ModelError

Role = Literal["producer", "consumer", "passthrough", "blocked"]

_PIP = "pip install 'deadrelu[prune]'  (or: pip install torch-pruning)"


def torch_pruning() -> Any:
    """The ``torch_pruning`` module, or a one-line error naming the pip command."""
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise ConfigError("pruning needs the optional package torch-pruning", _PIP) from exc
    return tp


@dataclass(frozen=True)
class Member:
    """One layer (or tensor op) of a channel group and the indices it loses."""

    layer: str
    module: nn.Module | None
    role: Role
    direction: str  # "in" or "out"
    indices: tuple[int, ...]
    reason: str | None = None


def _is_depthwise(conv: nn.modules.conv._ConvNd) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def classify(layer: str, module: Any, direction: str) -> tuple[Role, str | None]:
    """The role of one group member (see the module docstring) and, if blocked, why."""
    if type(module).__module__.startswith("torch_pruning"):
        return "passthrough", None  # a traced tensor op: add, mul, relu, flatten, cat...
    if isinstance(module, nn.Linear):
        return ("consumer" if direction == "in" else "producer"), None
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        if module.groups == 1:
            return ("consumer" if direction == "in" else "producer"), None
        if _is_depthwise(module):
            return "passthrough", None
        return "blocked", (f"{layer} is a grouped convolution (groups={module.groups}): "
                           "removing one channel would unbalance its groups")
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.PReLU, nn.Dropout, nn.Identity)):
        return "passthrough", None
    kind = type(module).__name__ if isinstance(module, nn.Module) else "a raw parameter"
    return "blocked", f"the unit also feeds {layer or '<model>'} ({kind}), which mixes or normalises units"


class ChannelGraph:
    """torch-pruning's dependency graph of ``model``, traced on ``example_inputs``.

    The model is traced in eval mode with gradients on (the graph is read from
    autograd); its weights are not changed until :meth:`remove` is called.

    Raises:
        ConfigError: torch-pruning is not installed.
        ModelError: the model cannot be traced.
    """

    def __init__(self, model: nn.Module, example_inputs: Any) -> None:
        tp = torch_pruning()
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules()}
        from deadrelu.collector import eval_mode

        try:  # eval mode: a train-mode trace would update BatchNorm running statistics
            with eval_mode(model), torch.enable_grad():
                self.graph = tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_inputs, verbose=False)
        except Exception as exc:  # tracing runs the user's forward
            raise ModelError(f"cannot trace the model's layer dependencies: {type(exc).__name__}: "
                             f"{exc}".split("\n")[0],
                             "prune a model whose forward runs on the scanned data") from exc

    def out_channels(self, module: nn.Module) -> int | None:
        """Output channels of ``module`` as the graph sees them (``None``: not prunable)."""
        if self.graph.get_pruner_of_module(module) is None:
            return None
        value = self.graph.get_out_channels(module)
        return int(value) if value is not None else None

    def _group(self, module: nn.Module, indices: list[int]) -> Any:
        pruner = self.graph.get_pruner_of_module(module)
        return self.graph.get_pruning_group(module, pruner.prune_out_channels, indices)

    def members(self, module: nn.Module, index: int) -> list[Member]:
        """The group of output channel ``index`` of ``module``, each member classified."""
        out = []
        for item in self._group(module, [index]).items:
            dep = item.dep
            target = dep.target.module
            direction = "in" if self.graph.is_in_channel_pruning_fn(dep.handler) else "out"
            layer = self.names.get(id(target), str(getattr(dep.target, "name", "?")))
            role, reason = classify(layer, target, direction)
            out.append(Member(layer, target, role, direction,
                              tuple(int(i) for i in item.idxs), reason))
        return out

    def remove(self, module: nn.Module, indices: list[int]) -> None:
        """Remove output channels ``indices`` of ``module`` from every layer of their group."""
        self._group(module, sorted(set(indices))).prune()


def group_key(members: list[Member]) -> frozenset[tuple[str, str, tuple[int, ...]]]:
    """Identifies a channel group independently of the layer it was asked from."""
    return frozenset((m.layer, m.direction, m.indices) for m in members)


def space_key(members: list[Member]) -> frozenset[tuple[str, str]]:
    """Identifies the channel *space* (the layers) of a group, whatever its indices."""
    return frozenset((m.layer, m.direction) for m in members)
