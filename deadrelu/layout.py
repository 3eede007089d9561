"""Unit-axis rules: which dimension of a tensor holds the units, and how ops move it.

Pure: reads op names, arguments and shapes, never a model or a tensor's values, so
every rule is tested from a table of ops (tests/test_layout.py). The collector
calls :func:`follow` for each torch call of the first forward and
:func:`unit_axis` when an activation site is first seen.

Invariants:

* A tensor's *layout* is the index (≥ 0) of its unit dimension, or ``None`` when
  it is not known. Layers that define units set it: convolutions, pooling and
  batch/instance/group norms put units in dim 1 (channels), Linear-like layers in
  the last dim (features).
* An op maps a known layout to a known layout whenever the unit dim survives it:
  transposes/permutes/``movedim``/``mT`` move it, ``view``/``reshape``/``flatten``
  keep it when the dim itself is untouched (same size, same number of elements
  before it), elementwise ops, ``contiguous``, dropout, padding, ``cat``/``chunk``/
  ``split`` along other dims keep it, ``stack`` and indexing shift it,
  normalizations keep a known layout (a LayerNorm over a channels-last conv
  output normalizes the channels and leaves them in the last dim).
* Only when the unit dim is really lost (regrouped, reduced, multiplied away by a
  ``matmul``) does the layout become ``None``; an activation on such a tensor gets
  the default rule and its unit axis is marked as *guessed*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from torch import nn

Shape = Sequence[int]

#: The layout of a tensor whose unit dim was lost on the way from the layer that
#: made it (as opposed to no layout at all: nothing is known about its origin).
LOST = -1

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
#: Normalizations: they keep a known layout of their input (a LayerNorm over a
#: transposed conv output normalizes its channels); only an unknown one gets theirs.
NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm,
    nn.LayerNorm, nn.RMSNorm,
)

#: Functional ops whose output has channels in dim 1.
CHANNEL_FUNCS = frozenset(
    f"{op}{d}d" for op in ("conv", "conv_transpose", "max_pool", "avg_pool", "adaptive_avg_pool",
                           "adaptive_max_pool", "lp_pool", "fractional_max_pool")
    for d in (1, 2, 3)
) | {"batch_norm", "instance_norm", "group_norm", "max_pool2d_with_indices"}
#: Functional ops whose output has features in the last dim.
FEATURE_FUNCS = frozenset({"linear", "bilinear", "layer_norm", "rms_norm", "embedding"})
#: Functional normalizations (see NORM_MODULES).
NORM_FUNCS = frozenset({"batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm"})

#: Ops that regroup dimensions: the unit dim survives when it is itself untouched.
_REGROUPING = frozenset({
    "view", "reshape", "view_as", "reshape_as", "flatten", "unflatten", "squeeze", "squeeze_",
    "unsqueeze", "unsqueeze_", "ravel", "expand", "expand_as", "broadcast_to", "atleast_3d",
})
#: Ops that swap two dims, and the names of their dim arguments.
_SWAPS: Mapping[str, tuple[str, str]] = {
    "transpose": ("dim0", "dim1"), "transpose_": ("dim0", "dim1"),
    "swapaxes": ("axis0", "axis1"), "swapaxes_": ("axis0", "axis1"),
    "swapdims": ("dim0", "dim1"), "swapdims_": ("dim0", "dim1"),
}
#: Ops whose output dims mean something new (the unit dim is multiplied away or mixed).
_MIXING = frozenset({
    "matmul", "bmm", "mm", "einsum", "__matmul__", "__rmatmul__", "baddbmm", "addmm", "tensordot",
    "as_strided", "unfold", "fold", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
    "index_select", "gather", "take", "take_along_dim", "masked_select", "nonzero",
})
#: Reductions over ``dim`` (``keepdim`` keeps the reduced dims as size 1).
_REDUCTIONS = frozenset({
    "sum", "mean", "amax", "amin", "max", "min", "std", "var", "norm", "prod", "logsumexp",
    "median", "nanmean", "nansum", "argmax", "argmin", "all", "any", "count_nonzero",
})
#: Ops that drop one dim, given by ``dim``.
_DROP_ONE = frozenset({"select", "unbind"})


#: Ops that only rearrange one tensor's values: where the unit dim survives, each unit
#: still holds exactly the values the producing layer gave it.
REARRANGING = frozenset(
    {"t", "t_", "T", "mT", "H", "mH", "permute", "movedim", "moveaxis", "contiguous", "clone",
     "detach", "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "ravel"}
    | set(_SWAPS)
)


class AxisSource(str, Enum):
    """How a site's unit axis was decided (the ``unit_axis_source`` column)."""

    KNOWN = "known"      # followed from the layer that made the tensor
    CONFIG = "config"    # set by the user's unit_axis option
    GUESSED = "guessed"  # the default rule: nothing told where the units are

    def __str__(self) -> str:
        return self.value


def op_name(func: Any) -> str:
    """The name the rules know ``func`` by (``x.mT`` reaches torch as a ``__get__``)."""
    name: str = getattr(func, "__name__", "") or ""
    if name == "__get__":
        return str(getattr(getattr(func, "__self__", None), "__name__", name))
    return name


#: Matrix products, and where their right-hand operand is: with a weight matrix there
#: (2-d), they are a Linear written out (transformers' GPT-2 ``Conv1D`` is an ``addmm``).
_PRODUCTS: Mapping[str, int] = {"mm": 1, "matmul": 1, "__matmul__": 1, "addmm": 2}


def produced(name: str, in_layout: int | None, out_ndim: int,
             args: Sequence[Any] = ()) -> int | None:
    """Layout of the output of a layer-like functional op ``name``, or None if it defines none.

    ``args`` are the call's arguments, read for matrix products only.
    """
    at = _PRODUCTS.get(name)
    if at is not None:
        weight = args[at] if len(args) > at else None
        return out_ndim - 1 if getattr(weight, "ndim", None) == 2 and out_ndim >= 1 else None
    if name in NORM_FUNCS and in_layout is not None and in_layout < out_ndim:
        return in_layout
    if name in CHANNEL_FUNCS:
        return 1 if out_ndim >= 2 else None
    if name in FEATURE_FUNCS:
        return out_ndim - 1 if out_ndim >= 1 else None
    return None


def module_layout(module: nn.Module | None, in_layout: int | None, out_ndim: int) -> int | None:
    """Layout of a module's output (the first one of an RNN) from its class.

    None: the class says nothing, and the layout followed through the ops inside
    the module stands.
    """
    if isinstance(module, NORM_MODULES) and in_layout is not None and in_layout < out_ndim:
        return in_layout
    if isinstance(module, CHANNEL_MODULES):
        return 1 if out_ndim >= 2 else None
    if isinstance(module, (*FEATURE_MODULES, nn.RNNBase)):
        return out_ndim - 1 if out_ndim >= 1 else None
    return None


def follow(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], unit: int,
           in_shape: Shape, out_shape: Shape, *, first: bool = True) -> int | None:
    """Where unit dim ``unit`` of an input of shape ``in_shape`` is in an op's output.

    Args:
        name: the op (see :func:`op_name`).
        args, kwargs: the call's arguments; ``args[0]`` is the input for shape ops.
        unit: the input's unit dim (≥ 0).
        in_shape, out_shape: shapes of the input carrying the layout and of one output.
        first: the input carrying the layout is the call's first tensor (shape ops
            read their dims from the arguments after it).

    Returns:
        The output's unit dim, or None when the unit dim does not survive the op.
    """
    nd_in, nd_out = len(in_shape), len(out_shape)
    if not 0 <= unit < nd_in:
        return None
    rest = list(args[1:]) if first else []
    if name in _MIXING:
        return None
    if name in _SWAPS:
        a, b = (_dim(_arg(rest, kwargs, i, key), nd_in) for i, key in enumerate(_SWAPS[name]))
        if a is None or b is None:
            return None
        return b if unit == a else a if unit == b else unit
    if name in ("t", "t_"):
        return (1 - unit) if nd_in == 2 else unit
    if name in ("T", "H", "numpy_T"):
        return nd_in - 1 - unit
    if name in ("mT", "mH"):
        return {nd_in - 1: nd_in - 2, nd_in - 2: nd_in - 1}.get(unit, unit) if nd_in >= 2 else unit
    if name == "permute":
        dims = _dims_arg(rest, kwargs, "dims")
        order = [_dim(d, nd_in) for d in dims] if dims is not None else None
        return order.index(unit) if order is not None and unit in order else None
    if name in ("movedim", "moveaxis"):
        return _movedim(rest, kwargs, unit, nd_in)
    if name == "stack":
        d = _dim(_arg(rest, kwargs, 0, "dim", 0), nd_in + 1)
        return None if d is None else unit + (1 if d <= unit else 0)
    if name == "__getitem__":
        return _indexed(rest[0] if rest else None, unit, nd_in, nd_out)
    if name in _REDUCTIONS:
        return _reduced(rest, kwargs, unit, nd_in, nd_out)
    if name in _DROP_ONE:
        d = _dim(_arg(rest, kwargs, 0, "dim", 0), nd_in)
        return None if d is None or d == unit else unit - (1 if d < unit else 0)
    if name in _REGROUPING:
        return regrouped(unit, in_shape, out_shape)
    if nd_out > nd_in:  # broadcasting against a tensor of more dims: aligned at the end
        moved = unit + nd_out - nd_in
        return moved if out_shape[moved] == in_shape[unit] or in_shape[unit] == 1 else None
    if nd_out < nd_in:  # an op that drops dims and is not known here
        return None
    # elementwise, dropout, padding, upsampling, contiguous, cat/chunk/split along any
    # dim, clone/detach/to: the dims stay where they were
    return unit


def regrouped(unit: int, in_shape: Shape, out_shape: Shape) -> int | None:
    """The output dim that is the input's ``unit`` dim after a view/reshape, if any.

    It survives when some output dim has its size and the same number of elements
    before it: ``(N, C, H, W).view(N, C, -1)`` keeps C; ``view(N, -1)`` does not.
    """
    before = math.prod(in_shape[:unit])
    size = in_shape[unit]
    after = math.prod(in_shape[unit + 1:])
    prefix = 1
    for v, s in enumerate(out_shape):
        if prefix == before and s == size and math.prod(out_shape[v + 1:]) == after:
            return v
        prefix *= s
    return None


def unit_axis(ndim: int, layout: int | None, producer: nn.Module | None = None
              ) -> tuple[int, AxisSource]:
    """The unit dim of an activation tensor of ``ndim`` dims, and how it was decided.

    Args:
        ndim: dims of the activation's output.
        layout: its input's tracked layout: a dim, :data:`LOST`, or None (untracked).
        producer: the module that made the input, read only when the layout was not
            tracked at all (a module that made its output without torch ops).

    The default rule, for a tensor of ≥ 3 dims whose origin says nothing: the channel
    dim (1) from 4 dims up (images), else the last dim (``(N, T, C)`` sequences).
    A tensor of ≤ 2 dims has one dim besides the samples: it holds the units.
    """
    if ndim <= 2:
        return (ndim - 1 if ndim else 0), AxisSource.KNOWN
    if layout is not None and 0 <= layout < ndim:
        return layout, AxisSource.KNOWN
    if layout is None and producer is not None:
        from_module = module_layout(producer, None, ndim)
        if from_module is not None:
            return from_module, AxisSource.KNOWN
    return (1 if ndim >= 4 else ndim - 1), AxisSource.GUESSED


# -- argument parsing -------------------------------------------------------------------------

def _arg(rest: Sequence[Any], kwargs: Mapping[str, Any], index: int, key: str,
         default: Any = None) -> Any:
    if len(rest) > index:
        return rest[index]
    return kwargs.get(key, default)


def _dim(d: Any, nd: int) -> int | None:
    if isinstance(d, bool) or not isinstance(d, int) or not -nd <= d < max(nd, 1):
        return None
    return d % nd


def _dims_arg(rest: Sequence[Any], kwargs: Mapping[str, Any], key: str) -> list[Any] | None:
    """``x.permute(0, 2, 1)``, ``x.permute((0, 2, 1))`` and ``torch.permute(x, dims=...)``."""
    if key in kwargs:
        value = kwargs[key]
    elif len(rest) == 1 and isinstance(rest[0], (tuple, list)):
        value = rest[0]
    else:
        value = rest
    return list(value) if isinstance(value, (tuple, list)) else None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _movedim(rest: Sequence[Any], kwargs: Mapping[str, Any], unit: int, nd: int) -> int | None:
    src = _as_list(_arg(rest, kwargs, 0, "source"))
    dst = _as_list(_arg(rest, kwargs, 1, "destination"))
    src_d = [_dim(d, nd) for d in src]
    dst_d = [_dim(d, nd) for d in dst]
    if len(src_d) != len(dst_d) or None in src_d or None in dst_d:
        return None
    order: list[int | None] = [None] * nd  # output position → input dim
    for s, d in zip(src_d, dst_d, strict=True):
        order[d] = s  # type: ignore[index]
    others = iter(d for d in range(nd) if d not in src_d)
    order = [o if o is not None else next(others) for o in order]
    return order.index(unit)


def _reduced(rest: Sequence[Any], kwargs: Mapping[str, Any], unit: int, nd_in: int,
             nd_out: int) -> int | None:
    dim = _arg(rest, kwargs, 0, "dim")
    if dim is None or not isinstance(dim, (int, tuple, list)) or isinstance(dim, bool):
        return None if nd_out != nd_in else unit  # a full reduction, or an elementwise max
    dims = {_dim(d, nd_in) for d in _as_list(dim)}
    if None in dims or unit in dims:
        return None
    if nd_out == nd_in:  # keepdim
        return unit
    return unit - sum(1 for d in dims if d is not None and d < unit)


def _indexed(index: Any, unit: int, nd_in: int, nd_out: int) -> int | None:
    """``x[...]`` with ints, slices, None and Ellipsis; tensor or list indices lose the layout."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(not (i is None or i is Ellipsis or isinstance(i, (int, slice))) or isinstance(i, bool)
           for i in items):
        return None
    consuming = sum(1 for i in items if i is not None and i is not Ellipsis)
    if items.count(Ellipsis) > 1 or consuming > nd_in:
        return None
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (nd_in - consuming)
    items += [slice(None)] * (nd_in - sum(1 for i in items if i is not None))
    out_dim = 0
    in_dim = 0
    for item in items:
        if item is None:
            out_dim += 1
            continue
        if in_dim == unit:
            return out_dim if isinstance(item, slice) and out_dim < nd_out else None
        if isinstance(item, slice):
            out_dim += 1
        in_dim += 1
    return None
