"""Registry of activation functions: what deadrelu can see, and what "fires" means for each.

Invariants:

* Every activation call reaches the collector as one of the callables in
  :data:`FUNCTIONS` (``nn.ReLU`` calls ``F.relu``, ``nn.ReLU6`` calls
  ``F.hardtanh``, ``x.relu_()`` is ``Tensor.relu_``...). A callable is registered
  once; registering it twice is a bug and raises.
* A unit *fires* at a position when its pre-activation is > 0 (above the
  threshold for ``F.threshold``, above the lower bound for a clipping
  ``hardtanh`` with bound ≥ 0). Where the output tells that exactly — ``y > level``
  with ``level = f(0)``, for ReLU, ReLU6, GELU, SiLU, ELU... — it is read off the
  *output*: that keeps in-place activations correct and costs nothing extra (the
  fused ReLU path depends on it). Where it does not, the kind has an
  ``input_level`` and firing is read off the *input*, ``x > input_level``, before
  the call runs: PReLU and RReLU (learned or random slopes, negative ones
  included), leaky ReLU, ELU and CELU with a negative slope or alpha,
  ``F.threshold`` with a replacement value above its threshold, and softplus
  (its linear-region threshold, and float rounding of ``log 2`` at 0).
* Saturation is the flat region of a bounded activation: ``y <= sat_low`` or
  ``y >= sat_high``. For ReLU6 only the upper bound counts, since its lower flat
  region is "not firing" and is already counted as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Kinds whose output is never negative, so sum |y| equals sum y (one reduction saved).
_NONNEG = frozenset({"relu", "relu6", "softplus", "hardsigmoid", "sigmoid"})

#: Kinds with a flat, zero-gradient region for negative inputs: "dead" is meaningful.
_RECTIFIERS = frozenset(
    {"relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu",
     "silu", "mish", "hardswish", "softplus", "threshold"}
)


@dataclass(frozen=True)
class ActivationKind:
    """How to read one activation site's output.

    Attributes:
        name: canonical lowercase kind, e.g. ``"relu"``.
        level: output value at zero pre-activation; ``y > level`` means "fires".
        sat_low: outputs ``<= sat_low`` are saturated (``None``: no lower flat region counted).
        sat_high: outputs ``>= sat_high`` are saturated (``None``: no upper flat region).
        can_die: the activation has a flat region below zero, so "dead" applies.
        nonneg: the output is never negative.
        input_level: where set, a unit fires where its *input* is above this (the
            output does not tell: see the module docstring); ``level`` then says nothing
            about firing.
    """

    name: str
    level: float = 0.0
    sat_low: float | None = None
    sat_high: float | None = None
    can_die: bool = True
    nonneg: bool = False
    input_level: float | None = None

    @property
    def bounded(self) -> bool:
        """Whether saturation is measured for this kind."""
        return self.sat_low is not None or self.sat_high is not None


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: float) -> float:
    if len(args) > index and not isinstance(args[index], bool):
        return float(args[index])
    value = kwargs.get(name, default)
    return float(value)


def make_kind(op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], margin: float) -> ActivationKind:
    """Resolve the kind of one call from its op name and arguments.

    Args:
        op: the registered op name (see :data:`FUNCTIONS`).
        args, kwargs: the call's arguments (``args[0]`` is the input tensor).
        margin: width of the saturation band of smooth bounded activations
            (sigmoid: output within ``margin`` of 0 or 1; tanh: of ±1).
    """
    if op == "hardtanh":
        lo = _arg(args, kwargs, 1, "min_val", -1.0)
        hi = _arg(args, kwargs, 2, "max_val", 1.0)
        if lo == 0.0 and hi == 6.0:
            return ActivationKind("relu6", 0.0, None, 6.0, can_die=True, nonneg=True)
        if lo >= 0.0:  # a clipped ReLU: flat below lo, so it can die like one
            return ActivationKind("hardtanh", min(lo, hi), None, hi, can_die=True, nonneg=True)
        return ActivationKind("hardtanh", min(max(0.0, lo), hi), lo, hi, can_die=False)
    if op == "relu6":
        return ActivationKind("relu6", 0.0, None, 6.0, can_die=True, nonneg=True)
    if op == "threshold":
        # y = x above the threshold, else value: with value <= threshold, y > threshold
        # exactly when x is; a replacement value above the threshold hides inputs in
        # (threshold, value], so then the input is read
        th = _arg(args, kwargs, 1, "threshold", 0.0)
        value = _arg(args, kwargs, 2, "value", 0.0)
        return ActivationKind("threshold", max(th, value), can_die=True,
                              input_level=th if value > th else None)
    if op == "softplus":
        beta = _arg(args, kwargs, 1, "beta", 1.0)
        return ActivationKind("softplus", math.log(2.0) / beta, can_die=True, nonneg=True,
                              input_level=0.0)
    if op in ("prelu", "rrelu"):  # slopes learned or drawn at random: any sign
        return ActivationKind(op, 0.0, can_die=True, input_level=0.0)
    if op == "leaky_relu" and _arg(args, kwargs, 1, "negative_slope", 0.01) < 0:
        return ActivationKind(op, 0.0, can_die=True, input_level=0.0)
    if op in ("elu", "celu") and _arg(args, kwargs, 1, "alpha", 1.0) < 0:
        return ActivationKind(op, 0.0, can_die=True, input_level=0.0)
    if op == "sigmoid":
        return ActivationKind("sigmoid", 0.5, margin, 1.0 - margin, can_die=False, nonneg=True)
    if op == "tanh":
        return ActivationKind("tanh", 0.0, -1.0 + margin, 1.0 - margin, can_die=False)
    if op == "hardsigmoid":
        return ActivationKind("hardsigmoid", 0.5, 0.0, 1.0, can_die=False, nonneg=True)
    return ActivationKind(op, 0.0, can_die=op in _RECTIFIERS, nonneg=op in _NONNEG)


def _resolve(path: str) -> Any:
    obj: Any = {"torch": torch, "F": F}[path.split(".", 1)[0]]
    for part in path.split(".")[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


#: Callables seen through ``__torch_function__`` → canonical op name. Paths that a
#: torch version lacks are skipped.
_FUNCTION_PATHS: dict[str, tuple[str, ...]] = {
    "relu": ("F.relu", "F.relu_", "torch.relu", "torch.relu_", "torch.Tensor.relu",
             "torch.Tensor.relu_"),
    "relu6": ("F.relu6",),
    "leaky_relu": ("F.leaky_relu", "F.leaky_relu_", "torch._C._nn.leaky_relu",
                   "torch._C._nn.leaky_relu_"),
    "prelu": ("F.prelu", "torch.prelu", "torch.Tensor.prelu"),
    "rrelu": ("F.rrelu", "F.rrelu_", "torch.rrelu", "torch.rrelu_"),
    "elu": ("F.elu", "F.elu_", "torch._C._nn.elu", "torch._C._nn.elu_"),
    "selu": ("F.selu", "F.selu_", "torch.selu", "torch.selu_"),
    "celu": ("F.celu", "F.celu_", "torch.celu", "torch.celu_"),
    "gelu": ("F.gelu",),
    "silu": ("F.silu",),
    "mish": ("F.mish",),
    "hardswish": ("F.hardswish",),
    "softplus": ("F.softplus",),
    "threshold": ("F.threshold", "F.threshold_", "torch.threshold", "torch.threshold_"),
    "hardtanh": ("F.hardtanh", "F.hardtanh_"),
    "hardsigmoid": ("F.hardsigmoid",),
    "sigmoid": ("torch.sigmoid", "torch.sigmoid_", "torch.Tensor.sigmoid",
                "torch.Tensor.sigmoid_", "torch.special.expit", "F.sigmoid"),
    "tanh": ("torch.tanh", "torch.tanh_", "torch.Tensor.tanh", "torch.Tensor.tanh_", "F.tanh"),
}


class _Registry(dict[Callable[..., Any], str]):
    """callable → op name; refuses to register one callable under two names."""

    def register(self, func: Callable[..., Any], op: str) -> None:
        known = self.get(func)
        if known is not None and known != op:
            raise ValueError(f"{func!r} is already registered as {known!r}, not {op!r}")
        self[func] = op


#: aten overloads called by ``torch.export`` programs (``ExportedProgram.module()``).
_ATEN_OPS: dict[str, tuple[str, ...]] = {
    "relu": ("relu", "relu_"), "relu6": (), "leaky_relu": ("leaky_relu", "leaky_relu_"),
    "prelu": ("prelu", "_prelu_kernel"), "rrelu": ("rrelu", "rrelu_with_noise"),
    "elu": ("elu", "elu_"), "selu": ("selu", "selu_"), "celu": ("celu", "celu_"),
    "gelu": ("gelu", "gelu_"), "silu": ("silu", "silu_"), "mish": ("mish", "mish_"),
    "hardswish": ("hardswish", "hardswish_"), "softplus": ("softplus",),
    "threshold": ("threshold", "threshold_"), "hardtanh": ("hardtanh", "hardtanh_"),
    "hardsigmoid": ("hardsigmoid", "hardsigmoid_"), "sigmoid": ("sigmoid", "sigmoid_"),
    "tanh": ("tanh", "tanh_"),
}


def _build() -> _Registry:
    registry = _Registry()
    for op, paths in _FUNCTION_PATHS.items():
        for path in paths:
            func = _resolve(path)
            if func is not None and callable(func):
                registry.register(func, op)
    for op, names in _ATEN_OPS.items():
        for name in names:
            packet = getattr(torch.ops.aten, name, None)
            overload = getattr(packet, "default", None) if packet is not None else None
            if overload is not None:
                registry.register(overload, op)
    return registry


#: The callables the collector intercepts.
FUNCTIONS: Mapping[Callable[..., Any], str] = _build()

#: Activation module classes → op name of the call their forward makes. A site
#: for one of these is named by the module's path rather than by the call.
MODULES: Mapping[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu",
    nn.RReLU: "rrelu", nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu", nn.GELU: "gelu",
    nn.SiLU: "silu", nn.Mish: "mish", nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid",
    nn.Hardtanh: "hardtanh", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Softplus: "softplus",
    nn.Threshold: "threshold",
}


# -- activations composed from other ops -------------------------------------------------------

#: Activation classes implemented in Python from ``tanh``/``sigmoid``/``erf`` (or wrapping
#: one call), by qualified name so that nothing is imported → their kind. Such a module
#: is one site of that kind, counted on its input (it fires where x > 0), and the calls
#: inside it are not sites of their own. ``ACT2FN`` entries of transformers are these.
COMPOSITE_CLASSES: Mapping[str, str] = {
    **{f"transformers.activations.{name}": "gelu" for name in (
        "NewGELUActivation", "GELUActivation", "FastGELUActivation", "QuickGELUActivation",
        "ClippedGELUActivation", "AccurateGELUActivation", "GELUTanh", "PytorchGELUTanh",
    )},
    "transformers.activations.SiLUActivation": "silu",
    "transformers.activations.MishActivation": "mish",
    "transformers.activations.ReLUSquaredActivation": "relu",
    "transformers.activations.SqrtSoftplusActivation": "softplus",
    # transformers' own copies under models/ (older releases), and timm's
    "transformers.models.gpt2.modeling_gpt2.NewGELUActivation": "gelu",
    "timm.layers.activations.GELUTanh": "gelu",
    "timm.layers.activations.QuickGELU": "gelu",
    "timm.layers.activations.Swish": "silu",
    "timm.layers.activations.Mish": "mish",
    "timm.layers.activations.HardSwish": "hardswish",
}


def class_name(cls: type) -> str:
    """``module.QualName`` of a class, the key of :data:`COMPOSITE_CLASSES`."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


#: Known composites a parameter-free module's forward may compute, checked on its first
#: call (in float64) → kind. GELU in its erf, tanh and sigmoid forms; the tolerance
#: tells them from each other and from SiLU and Mish by far.
COMPOSITE_PROBES: tuple[tuple[str, Callable[[torch.Tensor], torch.Tensor]], ...] = (
    ("gelu", F.gelu),
    ("gelu", lambda x: F.gelu(x, approximate="tanh")),
    ("gelu", _quick_gelu),
    ("silu", F.silu),
    ("mish", F.mish),
    ("hardswish", F.hardswish),
    ("softplus", F.softplus),
    ("relu", F.relu),
)


_PROBE_VALUES = 1 << 16


def identify_composite(x: torch.Tensor, y: torch.Tensor) -> str | None:
    """The kind of activation ``y = f(x)`` is, if it is one of :data:`COMPOSITE_PROBES`.

    Only decided where the input shows both sides clearly (values below -1 and
    above 1, where the candidates differ most), so an identity or a scaling is never
    taken for an activation.
    """
    if x.shape != y.shape or not x.is_floating_point() or not y.is_floating_point():
        return None
    # the first 64k values decide: enough to tell the candidates apart, and cheap on
    # the first forward of a large model
    xs = x.detach().reshape(-1)[:_PROBE_VALUES].double()
    ys = y.detach().reshape(-1)[:_PROBE_VALUES].double()
    if not bool((xs < -1.0).any()) or not bool((xs > 1.0).any()) or not bool(ys.isfinite().all()):
        return None
    for kind, f in COMPOSITE_PROBES:
        if torch.allclose(ys, f(xs), rtol=1e-3, atol=1e-4):
            return kind
    return None
