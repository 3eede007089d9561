"""Unit-axis rules: which dimension of a tensor holds the units, and how ops move it.

Pure: reads op names and shapes, never a model or a tensor's values, so every rule
can be tested from a table of ops. The collector calls :func:`follow` for each
torch call of the first forward and :func:`unit_axis` when an activation site is
first seen.

A tensor's *layout* says what its dims mean: ``"channel"`` (units in dim 1, set by
convolutions, pooling and batch/instance/group norms), ``"feature"`` (units in the
last dim, set by Linear-like layers) or ``"other"`` (the dims were moved after the
producing layer). It is kept through ops that keep the dims in place and lost at
ops that move them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

Shape = Sequence[int]

#: Modules whose output has channels (units) in dim 1.
CHANNEL_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)
#: Modules whose output has features (units) in the last dim.
FEATURE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.RMSNorm,
)
#: Functional ops whose output has channels in dim 1, or features in the last dim.
CHANNEL_FUNCS = frozenset(
    f"{op}{d}d" for op in ("conv", "conv_transpose", "max_pool", "avg_pool", "adaptive_avg_pool",
                           "adaptive_max_pool", "lp_pool", "fractional_max_pool")
    for d in (1, 2, 3)
) | {"batch_norm", "instance_norm", "group_norm", "max_pool2d_with_indices"}
FEATURE_FUNCS = frozenset({"linear", "bilinear", "layer_norm", "rms_norm", "embedding"})
#: Ops that regroup dimensions: they keep the units only if the unit dim is untouched.
_REGROUPING_FUNCS = frozenset({
    "view", "reshape", "view_as", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze",
})
#: Ops that move dimensions: their output's axes mean something new.
_MOVING_FUNCS = frozenset({
    "transpose", "transpose_", "permute", "t", "t_", "movedim", "moveaxis", "swapaxes",
    "swapdims", "matmul", "bmm", "mm", "einsum", "__matmul__",
})


def module_layout(module: nn.Module | None) -> str | None:
    """Layout of a module's output from its class (None: the class says nothing)."""
    if isinstance(module, CHANNEL_MODULES):
        return "channel"
    if isinstance(module, FEATURE_MODULES):
        return "feature"
    return None


def follow(name: str, layout: str | None, in_shape: Shape, out_shape: Shape) -> str | None:
    """Layout of the output of op ``name`` whose input carrying ``layout`` has ``in_shape``."""
    if name in CHANNEL_FUNCS:
        return "channel"
    if name in FEATURE_FUNCS:
        return "feature"
    if layout is None:
        return None
    kept = name not in _MOVING_FUNCS and _keeps_units(layout, in_shape, out_shape,
                                                      name in _REGROUPING_FUNCS)
    return layout if kept else "other"


def _keeps_units(layout: str, x: Shape, out: Shape, regrouping: bool) -> bool:
    """Whether ``out`` still has ``x``'s unit dim where ``layout`` puts it.

    True for ops that keep the dims in place (elementwise, dropout, padding,
    upsampling, ``torch.cat``), and for regroupings that leave the batch and unit
    dims alone (``view(N, C, -1)`` of a conv output, ``flatten(0, 1)`` of features).
    """
    if not regrouping and len(out) == len(x) and len(out) >= 2 and out[0] == x[0]:
        return True
    if layout == "channel":
        return len(out) >= 3 and len(x) >= 2 and tuple(out[:2]) == tuple(x[:2])
    return len(out) >= 2 and len(x) >= 1 and out[-1] == x[-1]


def unit_axis(ndim: int, layout: str | None, producer: nn.Module | None = None) -> int:
    """The unit dim of an activation tensor of ``ndim`` dims (the default rule).

    The channel dim (1) when the tensor has ≥3 dims and came from a conv, pooling or
    batch/instance/group norm layer, or has ≥4 dims and an unknown producer;
    otherwise the last dim (features of Linear layers, also for ``(N, T, C)``).
    """
    nd = ndim
    if nd <= 2:
        return nd - 1 if nd else 0
    if layout == "channel":
        return 1
    if layout == "feature":
        return nd - 1
    if layout == "other":  # dims were moved after the producing layer: default rule
        return 1 if nd >= 4 else nd - 1
    from_module = module_layout(producer)
    if from_module == "channel":
        return 1
    if from_module == "feature":
        return nd - 1
    return 1 if nd >= 4 else nd - 1
