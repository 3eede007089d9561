"""Optional fused statistics kernel for CPU scans.

The eager statistics in :mod:`deadrelu.stats` need about four passes over each
activation; the fused kernel in ``stats.cpp`` needs one, which is what keeps
recording within a few percent of a ResNet forward on CPU (docs/performance.md).
It gives the same counts and NaN/Inf handling as the eager path (sums agree up to
float rounding), so it is purely a speed-up: where it cannot be used the eager
path runs and nothing else changes.

It is compiled on first use, once per machine and torch install (a few seconds;
see :mod:`deadrelu.native.build`). ``DEADRELU_NATIVE=0`` turns it off;
``python -m deadrelu.native`` says whether it is in use and why not.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from deadrelu.native.build import BuildError, build, library_path, supported

__all__ = ["available", "disabled", "ensure", "loaded", "needs_build", "reason", "relu_into",
           "update"]

_OFF_VALUES = {"0", "off", "false", "no"}
_FLOAT_EXACT = 1 << 24

_lock = threading.Lock()
_ops: Any = None  # torch.ops.deadrelu_native once loaded
_reason: str | None = None  # why the kernel is not in use, once that is known
_disabled = 0  # nesting depth of disabled()


def _env_off() -> bool:
    return os.environ.get("DEADRELU_NATIVE", "").strip().lower() in _OFF_VALUES


def reason() -> str | None:
    """Why the kernel is not in use (None when it is, or before the first attempt)."""
    if _env_off():
        return "turned off by DEADRELU_NATIVE"
    return _reason


def needs_build() -> bool:
    """True when the next :func:`ensure` would compile (so a CLI can say so first)."""
    if _ops is not None or _reason is not None or _env_off() or _disabled:
        return False
    path = library_path()
    return not path.exists() and not _marker(path).exists() and supported() is None


def ensure(build_if_missing: bool = True) -> bool:
    """Load the kernel, building it first if needed; True when it is ready to use."""
    global _ops, _reason
    if _env_off() or _disabled:
        return False
    if _ops is not None or _reason is not None:
        return _ops is not None
    with _lock:
        if _ops is not None or _reason is not None:
            return _ops is not None
        path = library_path()
        marker = _marker(path)
        try:
            if not path.exists():
                if marker.exists():
                    raise BuildError(marker.read_text().strip() or "an earlier build failed")
                if not build_if_missing:
                    return False
                try:
                    build(path)
                except BuildError as exc:
                    _write(marker, str(exc))
                    raise
            torch.ops.load_library(str(path))
            _ops = torch.ops.deadrelu_native
        except (BuildError, OSError, RuntimeError) as exc:
            _reason = f"fused kernel unavailable: {exc}"
    return _ops is not None


def available() -> bool:
    """True when updates will use the kernel (loads or builds it on first call)."""
    return ensure()


@contextmanager
def disabled() -> Iterator[None]:
    """Use the eager path inside this block (tests and benchmarks compare the two)."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def update(acc: dict[str, Tensor], y3: Tensor, reduce_dim: int, level: float,
           low: float | None, high: float | None, nonneg: bool) -> bool:
    """Add one batch to the float64 CPU counters ``acc`` with the fused kernel.

    Returns False, having done nothing, when the kernel does not apply (not a
    contiguous-innermost float32 CPU tensor, turned off, or unavailable); the caller
    then runs the eager path. ``y3`` is laid out as in :meth:`UnitStats.update`.
    """
    if (_disabled or y3.device.type != "cpu" or y3.dtype != torch.float32
            or y3.stride(2) != 1 or not _exact(y3, reduce_dim)
            or not (_ops is not None or ensure())):
        return False
    op = _ops.slices if reduce_dim == 2 else _ops.rows
    op(y3, level, low, high, nonneg, acc["active"], acc["sample_active"], acc["sum"],
       acc["abs_sum"], acc["max"], acc["saturated"], acc["nonfinite"])
    return True


def loaded() -> bool:
    """True when the kernel is loaded and not disabled: a check cheap enough per call.

    Unlike :func:`ensure` it never builds; :func:`update` has done that by the time
    a caller asks (the collector asks only from the second forward on).
    """
    return _ops is not None and not _disabled


def relu_into(acc: dict[str, Tensor], x3: Tensor, out3: Tensor, reduce_dim: int) -> bool:
    """``out3 = relu(x3)`` and its statistics added to ``acc``, in one pass.

    ``x3`` and ``out3`` are views of the same shape (``out3`` may be ``x3``: in place)
    laid out as in :meth:`UnitStats.update`. Returns False, having done nothing,
    where the kernel does not apply.
    """
    if not loaded() or x3.stride(2) != 1 or out3.stride(2) != 1 or not _exact(x3, reduce_dim):
        return False
    _ops.relu_into(x3, out3, reduce_dim == 2, acc["active"], acc["sample_active"], acc["sum"],
                   acc["abs_sum"], acc["max"], acc["saturated"], acc["nonfinite"])
    return True


def _exact(y3: Tensor, reduce_dim: int) -> bool:
    # The kernel counts each slice in float32, exact below 2**24 (a Linear output's
    # "slice" is its whole batch); bigger slices take the eager path.
    positions = y3.shape[reduce_dim]
    return positions < _FLOAT_EXACT and (positions > 1 or y3.shape[0] < _FLOAT_EXACT)


def _marker(path: Any) -> Any:
    return path.with_suffix(".failed")


def _write(path: Any, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    except OSError:
        pass  # an unwritable cache: the build is retried next time, nothing worse
