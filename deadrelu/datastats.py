"""Running statistics of the data a scan feeds the model, and of what the model returns.

The diagnosis needs two facts the activation counters do not hold:

* the scale of the model's input (for ``input_scale``): per-feature (dim 1) count,
  sum, sum of squares, minimum and maximum of the first floating-point input tensor;
* whether the model's output depends on its input at all (for ``constant-output``):
  per-element minimum and maximum over samples of the first floating-point output
  tensor (its first :data:`OUTPUT_ELEMENTS` elements per sample).

Both run on every batch, so they are kept to a handful of reductions: NaN/Inf are
not masked out but make the sums (or the output range) non-finite, which the
diagnosis reads as "the input holds non-finite values".

Like :class:`deadrelu.stats.UnitStats`, :meth:`DataStats.update_input` and
:meth:`DataStats.update_output` are tensor math on the model's device with no
host sync; :meth:`DataStats.to_meta` syncs once at the end. The stored form is
raw sums, minima and maxima, so two reports over disjoint data merge exactly
(:func:`merge_data_meta`, pure Python).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from deadrelu.stats import _acc_dtype

#: Per-feature input statistics are kept for at most this many features (else totals only).
MAX_FEATURES = 1024

#: Per-sample output elements whose range over samples is tracked.
OUTPUT_ELEMENTS = 4096


def first_float_tensor(value: Any) -> Tensor | None:
    """The first floating-point tensor in a tensor, tuple/list, dict or model-output object."""
    if isinstance(value, Tensor):
        return value if value.is_floating_point() else None
    if isinstance(value, Mapping):
        items: Sequence[Any] = list(value.values())
    elif isinstance(value, (tuple, list)):
        items = value
    else:
        items = [v for v in getattr(value, "__dict__", {}).values() if isinstance(v, Tensor)]
    for item in items:
        if isinstance(item, Tensor) and item.is_floating_point():
            return item
    return None


class DataStats:
    """Accumulates input and output statistics over the batches of one scan."""

    def __init__(self, batch_dim: int = 0) -> None:
        self.batch_dim = batch_dim  # inputs and outputs hold samples on this dim
        self._in: dict[str, Tensor] = {}
        self._in_shape: tuple[int, ...] | None = None
        self._in_per_feature = False
        self._in_samples = 0
        self._in_count = 0  # elements per feature (the same for every feature)
        self._out: dict[str, Tensor] = {}
        self._out_shape: tuple[int, ...] | None = None
        self._out_samples = 0

    def update_input(self, inputs: Any) -> None:
        """Add one batch of model inputs (samples on dim 0).

        Four reductions and no mask: a NaN/Inf in the input makes the sums non-finite,
        which :func:`~deadrelu.diagnose.datameta.input_summary` reports as such.
        """
        x = self._samples_first(inputs)
        if x is None:
            return
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # squares of half-precision inputs overflow
        shape = tuple(int(s) for s in x.shape[1:])
        if self._in_shape is None:
            self._in_shape = shape
            self._in_per_feature = x.ndim >= 2 and int(x.shape[1]) <= MAX_FEATURES
        if shape != self._in_shape:
            return  # variable-size inputs: keep the statistics of the first shape only
        acc = _acc_dtype(x.device)
        dims = [d for d in range(x.ndim) if not (self._in_per_feature and d == 1)]
        # Per-batch partials in the input's dtype, accumulated in float64: reductions with
        # dtype=float64, and aminmax, take slow paths on CPU (several times a plain sum).
        parts = {
            "sum": x.sum(dim=dims).reshape(-1).to(acc),
            "sumsq": (x * x).sum(dim=dims).reshape(-1).to(acc),
            "min": x.amin(dim=dims).reshape(-1),  # exact in the input's own dtype
            "max": x.amax(dim=dims).reshape(-1),
        }
        self._merge(self._in, parts)
        self._in_samples += int(x.shape[0])
        self._in_count += x.numel() // parts["sum"].numel()

    def update_output(self, output: Any) -> None:
        """Add one batch of model outputs (samples on dim 0): one reduction."""
        y = self._samples_first(output)
        if y is None:
            return
        shape = tuple(int(s) for s in y.shape[1:])
        if self._out_shape is None:
            self._out_shape = shape
        if shape != self._out_shape:
            return
        head = y.reshape(y.shape[0], -1)[:, :OUTPUT_ELEMENTS]
        self._merge(self._out, {"min": head.amin(dim=0), "max": head.amax(dim=0)})
        self._out_samples += int(y.shape[0])

    def _samples_first(self, value: Any) -> Tensor | None:
        """The first floating-point tensor of ``value`` with its samples on dim 0, detached;
        ``None`` when there is none or it holds no sample."""
        t = first_float_tensor(value)
        if t is None or t.ndim <= self.batch_dim:
            return None
        t = t.detach().movedim(self.batch_dim, 0)
        return t if t.shape[0] else None

    @staticmethod
    def _merge(into: dict[str, Tensor], parts: Mapping[str, Tensor]) -> None:
        if not into:
            into.update(parts)
            return
        for key, value in parts.items():
            if key == "min":
                torch.minimum(into[key], value, out=into[key])
            elif key == "max":
                torch.maximum(into[key], value, out=into[key])
            else:
                into[key].add_(value)

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready raw statistics: ``{"input_stats": ..., "output_stats": ...}`` (one host sync)."""
        out: dict[str, Any] = {}
        if self._in:
            values = {k: [float(v) for v in t.detach().cpu().double().tolist()] for k, t in self._in.items()}
            features = len(values["sum"])
            out["input_stats"] = {
                "samples": self._in_samples, "shape": list(self._in_shape or ()),
                "per_feature": self._in_per_feature, "count": [self._in_count] * features, **values,
            }
        if self._out:
            values = {k: [float(v) for v in t.detach().cpu().double().tolist()] for k, t in self._out.items()}
            out["output_stats"] = {"samples": self._out_samples, "shape": list(self._out_shape or ()),
                                   **values}
        return out


def merge_data_meta(metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Exact merge of ``input_stats``/``output_stats`` (and ``tokens``) of reports over disjoint data.

    Returns the merged entries (only those every report has with the same shape).
    """
    out: dict[str, Any] = {}
    for key in ("input_stats", "output_stats"):
        parts: list[Mapping[str, Any]] = [m[key] for m in metas if isinstance(m.get(key), Mapping)]
        if not parts or len(parts) != len(metas):
            continue
        first = parts[0]
        if any(p.get("shape") != first.get("shape")
               or len(p.get("min", [])) != len(first.get("min", [])) for p in parts):
            continue
        merged = dict(first)
        merged["samples"] = sum(int(p.get("samples", 0)) for p in parts)
        for name in ("count", "sum", "sumsq"):
            if name in first:
                merged[name] = [sum(v) for v in zip(*(p[name] for p in parts), strict=True)]
        merged["min"] = [min(v) for v in zip(*(p["min"] for p in parts), strict=True)]
        merged["max"] = [max(v) for v in zip(*(p["max"] for p in parts), strict=True)]
        out[key] = merged
    if metas and all("tokens" in m for m in metas):  # real (unpadded) tokens of text data
        out["tokens"] = sum(int(m["tokens"]) for m in metas)
    return out
