"""Catch data that clearly does not fit the model before any forward pass runs.

A mismatch found here gets a message in the user's terms ("samples have shape
(64,) but fc1 expects 784 features") instead of a matmul error from deep
inside the first layer. Two checks:

* ``torch.export`` programs carry their input spec: a static batch size or
  feature dimension that the data does not have is reported with both shapes.
* Otherwise the first parameterized layer in registration order (usually, but
  not always, the first one run) is compared with the samples when it is a plain
  Linear/Conv. Registration order can differ from execution order (a head
  registered before its backbone), so before refusing, the model is run once on
  two all-zero samples of the data's shape: if that forward succeeds, the data
  fits after all and nothing is reported.

A forward pass that still fails is attributed to the layer it failed in by
:func:`deadrelu.scan`.
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


def check_fit(model: nn.Module, sample_shape: tuple[int, ...], batch_size: int | None = None,
              num_samples: int | None = None) -> None:
    """Raise when samples of ``sample_shape`` clearly cannot enter ``model``.

    Args:
        model: the model to be scanned (TorchScript modules and ``torch.export``
            programs work too).
        sample_shape: the shape of one sample, without the batch dimension.
        batch_size: the batch size the data will be read with, if known (checked
            against an exported program's static batch dimension).
        num_samples: how many samples will be read, if known (a static batch
            dimension also needs the last batch to be full).

    Raises:
        DataError: an exported program's static input shape differs from the data's;
            or the first layer is a Linear whose ``in_features`` differs from the
            samples' last dimension, or a ConvNd whose ``in_channels`` or rank differs
            from the samples', and the model indeed fails on such samples. The
            message gives both shapes.
    """
    shape = tuple(int(d) for d in sample_shape)
    if _check_export_spec(model, shape, batch_size, num_samples):
        return
    first = _first_layer(model)
    if first is None:
        return  # no parameterized layer, or a first one we cannot judge
    if first.accepts(shape):
        return
    if _runs_on(model, shape):
        return  # registration order was not execution order: the data fits
    raise DataError(
        f"data samples have shape {_fmt(shape)} but the model's first layer {first.name} "
        f"({first.kind}) expects {_expectation(first)}",
        _fix(first, shape),
    )


def _check_export_spec(model: nn.Module, shape: tuple[int, ...], batch_size: int | None,
                       num_samples: int | None) -> bool:
    """For a ``torch.export`` program: compare its traced input shape with the data.

    Returns True when the model is such a program (its spec is authoritative, so
    the layer heuristics are skipped); raises when a static dimension disagrees.
    """
    import torch.fx

    graph = getattr(model, "graph", None)
    if not isinstance(graph, torch.fx.Graph):  # TorchScript graphs are another kind
        return False
    nodes = graph.nodes
    spec = None
    for node in nodes:
        if node.op == "placeholder":
            value = node.meta.get("val")
            spec = getattr(value, "shape", None)
            break
    if spec is None:
        return False
    dims = list(spec)
    static = [d if isinstance(d, int) else None for d in dims]
    shown = "(" + ", ".join("*" if d is None else str(d) for d in static) + ")"
    if len(dims) != len(shape) + 1 or any(
            want is not None and want != got for want, got in zip(static[1:], shape, strict=False)):
        raise DataError(
            f"data samples have shape {_fmt(shape)} but the exported program was traced for "
            f"inputs of shape {shown} (batch first; * = dynamic)",
            "check --data, or re-export the program for this input shape",
        )
    if static[0] is not None and batch_size is not None and static[0] != batch_size:
        raise DataError(
            f"the exported program was traced with a fixed batch size of {static[0]} but the data "
            f"is read in batches of {batch_size}",
            f"pass --batch-size {static[0]} (and a --limit that is a multiple of it), or re-export "
            "with a dynamic batch dimension (torch.export.Dim)",
        )
    fixed = static[0]
    if fixed is not None and num_samples is not None and num_samples % fixed:
        usable = num_samples // fixed * fixed
        raise DataError(
            f"the exported program was traced with a fixed batch size of {fixed}, but the last "
            f"of the {num_samples} samples would form a smaller batch",
            f"pass --limit {usable}" if usable else "re-export with a dynamic batch dimension "
            "(torch.export.Dim)",
        )
    return True


def _runs_on(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``model`` accepts two all-zero samples of ``shape`` (eval mode, no grad)."""
    import torch

    from deadrelu.collector import eval_mode

    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros((2, *shape), dtype=dtype, device=device))
    except Exception:
        return False
    return True


def suggest_channels(model: nn.Module) -> int | None:
    """``in_channels`` of the model's first Conv2d (registration order), for image loading."""
    for _name, module in model.named_modules():
        kind = _kind(module)
        if kind == "Conv2d":
            channels = getattr(module, "in_channels", None)
            return int(channels) if isinstance(channels, int) and channels > 0 else None
    return None


def _first_layer(model: nn.Module) -> _Entry | None:
    """The first parameterized layer in registration order; None when there is none or
    it is not a plain Linear/ConvNd with a known input size (a lazy layer, for one)."""
    for name, module in model.named_modules():
        if not _has_own_parameters(module):
            continue
        kind = _kind(module)
        size = getattr(module, "in_features" if kind == "Linear" else "in_channels", None)
        lazy = type(module).__name__.startswith("Lazy")
        if kind is None or lazy or not isinstance(size, int) or size <= 0:
            return None
        return _Entry(name or "(root)", kind, size)
    return None


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
