"""``deadrelu.swap_activations``: replace ReLU modules by an activation that cannot die.

For fine-tuning a network with dead units: a leaky ReLU (or ELU, GELU, SiLU) keeps a
gradient for negative inputs, so a dead unit can come back. Modules are replaced
in place; activation *functions* stored as attributes (``nn.TransformerEncoderLayer``
keeps ``F.relu`` in ``self.activation``) are replaced by the new module. Calls
written into a ``forward`` (``F.relu(x)``, ``torch.relu(x)``, ``x.relu()``) cannot be
changed from outside; they are found by reading the source of each module class
and listed with file and line, so the user can edit them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deadrelu.callsites import forward_calls
from deadrelu.errors import ConfigError

#: Target name → factory(negative_slope, inplace) of the replacement module.
TARGETS: dict[str, Callable[[float, bool], nn.Module]] = {
    "leaky_relu": lambda slope, inplace: nn.LeakyReLU(slope, inplace=inplace),
    "elu": lambda slope, inplace: nn.ELU(inplace=inplace),
    "gelu": lambda slope, inplace: nn.GELU(),
    "silu": lambda slope, inplace: nn.SiLU(inplace=inplace),
}
_RELU_FUNCTIONS = (F.relu, torch.relu)
_CALL_NAMES = frozenset({"relu", "relu_"})


@dataclass(frozen=True)
class Replaced:
    """One replaced activation: where, what it was, what it is now."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class FunctionalCall:
    """A ReLU call in a ``forward`` that cannot be replaced from outside."""

    owner: str  # module path(s) whose class makes the call
    cls: str
    call: str
    file: str | None
    line: int | None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else "source not available"
        return f"{self.call} in {self.cls}.forward ({self.owner}) at {where}"


@dataclass(frozen=True)
class SwapResult:
    """What :func:`swap_activations` replaced, and the calls it could not."""

    replaced: tuple[Replaced, ...]
    functional: tuple[FunctionalCall, ...]


def swap_activations(
    model: nn.Module,
    to: str = "leaky_relu",
    negative_slope: float = 0.01,
    layers: str | list[str] | None = None,
) -> SwapResult:
    """Replace the ``nn.ReLU`` modules (and stored ``F.relu`` functions) of ``model`` in place.

    Args:
        model: changed in place.
        to: ``leaky_relu``, ``elu``, ``gelu`` or ``silu``.
        negative_slope: the leaky ReLU's slope.
        layers: module-path glob(s) limiting what is replaced (default: everything).

    Returns:
        The replacements, and the functional ReLU calls found in ``forward`` methods
        (with file and line) that the user has to edit.

    Raises:
        ConfigError: an unknown target, or a glob that matches no module.
    """
    factory = TARGETS.get(to)
    if factory is None:
        raise ConfigError(f"unknown activation {to!r}", f"use one of: {', '.join(TARGETS)}")
    globs = [layers] if isinstance(layers, str) else list(layers or [])
    paths = [name for name, _ in model.named_modules()]
    for g in globs:
        if not any(fnmatch.fnmatchcase(p, g) for p in paths if p):
            raise ConfigError(f"layer glob {g!r} matches no module of the model",
                              f"modules: {', '.join(p for p in paths[1:13] if p)}")

    def wanted(path: str) -> bool:
        return not globs or any(fnmatch.fnmatchcase(path, g) for g in globs)

    replaced: list[Replaced] = []
    owners: dict[type, list[str]] = {}
    for parent_path, parent in list(model.named_modules()):
        owners.setdefault(type(parent), []).append(parent_path or "<model>")
        for name, child in list(parent.named_children()):
            path = f"{parent_path}.{name}" if parent_path else name
            if type(child) is nn.ReLU and wanted(path):
                new = factory(negative_slope, child.inplace)
                setattr(parent, name, new)
                replaced.append(Replaced(path, repr(child), repr(new)))
        for name, value in list(vars(parent).items()):
            path = f"{parent_path}.{name}" if parent_path else name
            if any(value is f for f in _RELU_FUNCTIONS) and wanted(path):
                new = factory(negative_slope, False)
                setattr(parent, name, new)
                if hasattr(parent, "activation_relu_or_gelu"):
                    parent.activation_relu_or_gelu = 0  # the fused fast path only knows relu/gelu
                replaced.append(Replaced(path, f"F.{value.__name__}", repr(new)))
    calls = [call for cls, where in owners.items() for call in _functional_calls(cls, where)
             if any(wanted(w) for w in where if w != "<model>") or not globs]
    return SwapResult(tuple(replaced), tuple(calls))


def _functional_calls(cls: type, owners: list[str]) -> list[FunctionalCall]:
    """ReLU calls written in ``cls.forward`` (torch's own classes call theirs through
    attributes, handled above)."""
    if cls.__module__.startswith("torch."):
        return []
    calls = forward_calls(cls, "relu")
    if calls is None:
        return [FunctionalCall(", ".join(owners), cls.__qualname__, "relu (source not available)",
                               None, None)]
    return [FunctionalCall(", ".join(owners), cls.__qualname__, c.call, c.file, c.line) for c in calls]


def describe(result: SwapResult) -> str:
    """Plain text for people: what was replaced, and what to edit by hand."""
    out = [f"replaced {len(result.replaced)} activation(s)"]
    out += [f"  {r.path}: {r.old} → {r.new}" for r in result.replaced]
    if result.functional:
        out.append("functional calls to edit by hand:")
        out += [f"  {c}" for c in result.functional]
    return "\n".join(out)


__all__ = ["FunctionalCall", "Replaced", "SwapResult", "describe", "swap_activations"]

