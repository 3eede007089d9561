"""Independent brute-force reference: per-unit counters computed the obvious way.

Used by the tests to check the collector's streaming, vectorised counters.
"""

from __future__ import annotations

import numpy as np
import torch


def _su_r(t, sample_axis: int, unit_axis: int) -> np.ndarray:
    a = t.detach().double().numpy()
    a = np.moveaxis(a, (sample_axis, unit_axis), (0, 1))
    return a.reshape(a.shape[0], a.shape[1], -1)  # (S, U, R)


def brute(ys, unit_axis: int, level: float = 0.0, sample_axis: int = 0,
          sat_low: float | None = None, sat_high: float | None = None,
          xs=None, input_level: float = 0.0) -> dict:
    """Counters for activation outputs ``ys`` (a tensor or a list of per-batch tensors).

    With ``xs`` (the activation's inputs, same shapes), a unit fires where its input
    is above ``input_level``, else where its output is above ``level``.
    """
    if isinstance(ys, torch.Tensor):
        ys = [ys]
    if isinstance(xs, torch.Tensor):
        xs = [xs]
    out: dict = {}
    for i, y in enumerate(ys):
        a = _su_r(y, sample_axis, unit_axis)
        on = (_su_r(xs[i], sample_axis, unit_axis) > input_level) if xs is not None else a > level
        s, u, r = a.shape
        finite = np.isfinite(a).all(axis=2)
        part = {
            "positions": s * r,
            "samples": s,
            "active": on.sum(axis=(0, 2)),
            "sample_active": on.any(axis=2).sum(axis=0),
            "sum": np.where(finite, a.sum(axis=2), 0).sum(axis=0),
            "abs_sum": np.where(finite, np.abs(a).sum(axis=2), 0).sum(axis=0),
            "max": np.where(finite, a.max(axis=2), -np.inf).max(axis=0),
            "nonfinite": (~finite).sum(axis=0),
            "saturated": np.zeros(u),
        }
        if sat_low is not None:
            part["saturated"] = part["saturated"] + (a <= sat_low).sum(axis=(0, 2))
        if sat_high is not None:
            part["saturated"] = part["saturated"] + (a >= sat_high).sum(axis=(0, 2))
        for k, v in part.items():
            if k not in out:
                out[k] = v
            elif k == "max":
                out[k] = np.maximum(out[k], v)
            else:
                out[k] = out[k] + v
    return out


def assert_matches(stats, expected: dict) -> None:
    """Exact match for counts, close match for float sums."""
    got = stats.to_dict()
    assert got["positions"] == expected["positions"]
    assert got["samples"] == expected["samples"]
    for key in ("active", "sample_active", "nonfinite", "saturated"):
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(expected[key]).astype(int), err_msg=key)
    for key in ("sum", "abs_sum", "max"):
        np.testing.assert_allclose(np.asarray(got[key]), expected[key], rtol=1e-5, atol=1e-4, err_msg=key)
