"""Catch data that clearly does not fit the model before any forward pass runs.

A mismatch found here gets a message in the user's terms ("samples have shape
(64,) but fc1 expects 784 features") instead of a matmul error from deep
inside the first layer. The check is deliberately conservative: it looks only
at the first parameterized layer in registration order (usually, but not
always, the first one run), and says nothing when that layer is not a plain
Linear/Conv, or when another kind of layer would accept the data (a model that
registers its head before its backbone). A forward pass that still fails is
reported by the collector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deadrelu.errors import DataError

if TYPE_CHECKING:
    from torch import nn

_CONV_RANK = {"Conv1d": 1, "Conv2d": 2, "Conv3d": 3}
_SPATIAL = {"Conv1d": "L", "Conv2d": "H, W", "Conv3d": "D, H, W"}
_FIX_CONV = "check --data, or --image-size/--channels"
_FIX_LINEAR = "check --data (for a table, --target COL drops the label column)"


@dataclass(frozen=True)
class _Entry:
    """What the first layer expects: features (Linear) or channels and rank (Conv)."""

    name: str
    kind: str  # "Linear", "Conv1d", "Conv2d", "Conv3d"
    size: int  # in_features or in_channels

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Whether a forward pass *might* reshape ``shape`` into what the layer takes.

        Generous on purpose: a Linear may follow a flatten (any trailing product)
        or a pooling (any one dimension); a Conv may follow a transpose (channels
        in any position) or an unsqueeze (missing channel dim when it wants 1).
        """
        if self.kind == "Linear":
            trailing = [math.prod(shape[i:]) for i in range(len(shape))]
            return self.size in shape or self.size in trailing
        rank = _CONV_RANK[self.kind]
        if len(shape) == rank + 1:
            return self.size in shape
        return len(shape) == rank and self.size == 1


def check_fit(model: nn.Module, sample_shape: tuple[int, ...]) -> None:
    """Raise when samples of ``sample_shape`` clearly cannot enter ``model``.

    Args:
        model: the model to be scanned (TorchScript modules work too).
        sample_shape: the shape of one sample, without the batch dimension.

    Raises:
        DataError: the first layer is a Linear whose ``in_features`` differs from
            the samples' last dimension, or a ConvNd whose ``in_channels`` or rank
            differs from the samples'; the message gives both shapes.
    """
    entries = _entries(model)
    if not entries or entries[0] is None:
        return  # first parameterized layer is something we cannot judge
    first = entries[0]
    shape = tuple(int(d) for d in sample_shape)
    if first.accepts(shape):
        return
    family = "Linear" if first.kind == "Linear" else "Conv"
    if any(
        e is not None
        and ("Linear" if e.kind == "Linear" else "Conv") != family
        and e.accepts(shape)
        for e in entries[1:]
    ):
        return  # registration order may not be execution order; do not guess
    raise DataError(
        f"data samples have shape {_fmt(shape)} but the model's first layer {first.name} "
        f"({first.kind}) expects {_expectation(first)}",
        _fix(first, shape),
    )


def suggest_channels(model: nn.Module) -> int | None:
    """``in_channels`` of the model's first Conv2d (registration order), for image loading."""
    for _name, module in model.named_modules():
        kind = _kind(module)
        if kind == "Conv2d":
            channels = getattr(module, "in_channels", None)
            return int(channels) if isinstance(channels, int) and channels > 0 else None
    return None


def _entries(model: nn.Module) -> list[_Entry | None]:
    """Parameterized layers in registration order; ``None`` for ones we cannot judge."""
    entries: list[_Entry | None] = []
    for name, module in model.named_modules():
        if not _has_own_parameters(module):
            continue
        kind = _kind(module)
        size = getattr(module, "in_features" if kind == "Linear" else "in_channels", None)
        lazy = type(module).__name__.startswith("Lazy")
        if kind is None or lazy or not isinstance(size, int) or size <= 0:
            entries.append(None)
        else:
            entries.append(_Entry(name or "(root)", kind, size))
    return entries


def _kind(module: Any) -> str | None:
    from torch import nn

    if isinstance(module, nn.Linear):
        return "Linear"
    for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(module, cls):
            return cls.__name__
    # TorchScript keeps the original class name; quantized/other subclasses do not count.
    original = getattr(module, "original_name", None)
    if original in ("Linear", *_CONV_RANK) and type(module).__name__ == "RecursiveScriptModule":
        return str(original)
    return None


def _has_own_parameters(module: Any) -> bool:
    try:
        return any(True for _ in module.parameters(recurse=False))
    except Exception:  # exotic modules (e.g. some ScriptModules) may not enumerate
        return False


def _expectation(entry: _Entry) -> str:
    if entry.kind == "Linear":
        return f"{entry.size} features"
    return (
        f"samples of shape ({entry.size}, {_SPATIAL[entry.kind]}), "
        f"i.e. {entry.size} input channel{'s' if entry.size != 1 else ''}"
    )


def _fix(entry: _Entry, shape: tuple[int, ...]) -> str:
    if entry.kind == "Conv2d" and len(shape) == 3 and entry.size in (1, 3) and shape[0] in (1, 3):
        return f"pass --channels {entry.size}, or check --data"
    if entry.kind == "Linear":
        if len(shape) == 1 and shape[0] == entry.size + 1:
            return "one column too many: pass --target COL to drop the label column"
        return _FIX_LINEAR
    return _FIX_CONV


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
