"""Derived views of the data statistics in ``report.meta`` (pure Python, torch-free).

:class:`deadrelu.datastats.DataStats` stores raw sums, minima and maxima under
``meta["input_stats"]`` and ``meta["output_stats"]`` (and merges them,
:func:`deadrelu.datastats.merge_data_meta`). This module turns them into means
and standard deviations for the diagnosis, and decides whether the model's
output was constant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Output elements whose range over all samples is within this share of the output's
#: magnitude count as constant (float noise of batched matmuls is ~1e-7).
CONSTANT_RTOL = 1e-5


@dataclass(frozen=True)
class InputSummary:
    """Scale of the model's input.

    Attributes:
        samples: samples the statistics cover.
        mean, std: over all finite input elements.
        min, max: smallest and largest finite element.
        features: per-feature (dim 1) ``(index, mean, std)`` when recorded, else empty.
        nonfinite: features (or, without per-feature statistics, 1 for the whole input)
            in which NaN/Inf values were seen.
    """

    samples: int
    mean: float
    std: float
    min: float
    max: float
    features: tuple[tuple[int, float, float], ...]
    nonfinite: int

    @property
    def worst_mean(self) -> tuple[int | None, float]:
        """(feature, mean) with the largest |mean| (feature ``None``: totals only)."""
        if not self.features:
            return None, self.mean
        i, m, _ = max(self.features, key=lambda f: abs(f[1]))
        return i, m

    @property
    def worst_std(self) -> tuple[int | None, float]:
        """(feature, std) with the largest std."""
        if not self.features:
            return None, self.std
        i, _, s = max(self.features, key=lambda f: f[2])
        return i, s

    def describe(self) -> str:
        """One phrase with the numbers, e.g. ``mean 50.1, std 99.8, range [-310, 412]``."""
        text = f"mean {_num(self.mean)}, std {_num(self.std)}, range [{_num(self.min)}, {_num(self.max)}]"
        if self.features:
            fm, m = self.worst_mean
            fs, s = self.worst_std
            text += f"; largest feature mean {_num(m)} (feature {fm}), largest feature std {_num(s)} (feature {fs})"
        return text

    def to_dict(self) -> dict[str, Any]:
        fm, m = self.worst_mean
        fs, s = self.worst_std
        return {"samples": self.samples, "mean": self.mean, "std": self.std, "min": self.min,
                "max": self.max, "worst_feature_mean": m, "worst_mean_feature": fm,
                "worst_feature_std": s, "worst_std_feature": fs, "nonfinite": self.nonfinite}


def _num(x: float) -> str:
    if x == 0 or math.isinf(x) or math.isnan(x):
        return f"{x:g}"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e5 else f"{x:.2e}"


def input_summary(meta: Mapping[str, Any]) -> InputSummary | None:
    """Means and standard deviations from ``meta["input_stats"]``; ``None`` if not recorded.

    Features whose sums are not finite (the input held NaN/Inf there) are left out of
    the statistics and counted in :attr:`InputSummary.nonfinite`.
    """
    raw = meta.get("input_stats")
    if not isinstance(raw, Mapping) or not raw.get("count"):
        return None
    # one vectorized pass over the features (an MLP's input has hundreds of them); the
    # same float64 operations as a loop, and the totals added in order (cumsum), so the
    # values are those of adding them one by one
    columns = [np.asarray(raw[k], dtype=np.float64) for k in ("count", "sum", "sumsq", "min", "max")]
    if len({c.shape for c in columns}) != 1:
        raise ValueError("input_stats: count, sum, sumsq, min and max differ in length")
    count, total, sq, lo, hi = columns
    good = np.isfinite(total) & np.isfinite(sq) & np.isfinite(lo) & np.isfinite(hi)
    bad = int(count.size - good.sum())
    n = _in_order(count[good])
    if n <= 0:
        return InputSummary(int(raw.get("samples", 0)), math.nan, math.nan, math.nan, math.nan,
                            (), bad)
    mean = _in_order(total[good]) / n
    var = max(_in_order(sq[good]) / n - mean * mean, 0.0)
    features: tuple[tuple[int, float, float], ...] = ()
    if raw.get("per_feature") and count.size > 1:
        (index,) = np.nonzero((count > 0) & np.isfinite(total) & np.isfinite(sq))
        m = total[index] / count[index]
        sd = np.sqrt(np.maximum(sq[index] / count[index] - m * m, 0.0))
        features = tuple(zip(index.tolist(), m.tolist(), sd.tolist(), strict=True))
    return InputSummary(
        samples=int(raw.get("samples", 0)), mean=mean, std=math.sqrt(var),
        min=float(lo[good].min()), max=float(hi[good].max()), features=features, nonfinite=bad,
    )


def _in_order(values: np.ndarray) -> float:
    """Their sum added first to last, as Python's ``sum`` adds (numpy's ``sum`` pairs them)."""
    return float(np.cumsum(values)[-1]) if values.size else 0.0


def output_range(meta: Mapping[str, Any]) -> tuple[float, float] | None:
    """(largest range over samples of any output element, largest |output|), or ``None``."""
    raw = meta.get("output_stats")
    if not isinstance(raw, Mapping) or not raw.get("min") or int(raw.get("samples", 0)) < 2:
        return None
    lo = np.asarray(raw["min"], dtype=np.float64)
    hi = np.asarray(raw["max"], dtype=np.float64)
    if lo.shape != hi.shape:
        raise ValueError("output_stats: min and max differ in length")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None
    # one vectorized pass (an output can have tens of thousands of elements); the same
    # float64 subtractions and maxima as an element-by-element loop
    spread = max(0.0, float((hi - lo).max()))
    scale = max(0.0, float(np.abs(lo).max()), float(np.abs(hi).max()))
    return spread, scale


def output_is_constant(meta: Mapping[str, Any]) -> bool:
    """Whether every recorded output element took the same value on every sample."""
    rng = output_range(meta)
    if rng is None:
        return False
    spread, scale = rng
    return spread <= CONSTANT_RTOL * scale or spread == 0.0
