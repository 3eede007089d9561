"""Optional fused statistics kernel for CPU scans.

The eager statistics in :mod:`deadrelu.stats` need about four passes over each
activation; the fused kernel in ``stats.cpp`` needs one, and for a ReLU it computes
the ReLU itself in the same pass, which is what keeps recording within a few percent
of a ResNet forward on CPU (docs/performance.md). It gives the same counts and
NaN/Inf handling as the eager path (sums agree up to float rounding), so it is purely
a speed-up: where it cannot be used the eager path runs and nothing else changes.

It is compiled once per machine and torch install, in the background, the first time
a CPU scan needs it (about 20 s; see :mod:`deadrelu.native.build`); that scan runs
on the eager path meanwhile. ``DEADRELU_NATIVE=0`` turns it off;
``python -m deadrelu.native`` builds it now and says whether it is in use.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from deadrelu.native import build

__all__ = ["KernelView", "available", "disabled", "ensure", "kernel_view", "loaded", "reason",
           "relu_into", "relu_view", "stats_view", "update"]

_OFF_VALUES = {"0", "off", "false", "no"}
#: float32 holds integers exactly up to 2**24: the kernel (and ``deadrelu.stats``) count
#: each slice in float32 below this.
FLOAT_EXACT = 1 << 24
#: While a build runs, how often (seconds) an update looks for its result.
_POLL = 0.5

_lock = threading.Lock()
_ops: Any = None  # torch.ops.deadrelu_native once loaded
#: the same library's direct Python bindings of the steady-state calls, where it has them
#: (see build.python_headers): about a tenth of a torch.ops call's cost
_direct: Any = None
_reason: str | None = None  # why the kernel is not in use, once that is known
_disabled = 0  # nesting depth of disabled()
_path: Path | None = None  # the library for this source, torch and CPU
_fallback: Path | None = None  # the same without the Python binding (build.python_headers)
_job = False  # this process started the background build
_building = False  # a build (ours or another process's) is under way
_next_look = 0.0  # time.monotonic() before which a pending build is not looked at again


def _env_off() -> bool:
    return os.environ.get("DEADRELU_NATIVE", "").strip().lower() in _OFF_VALUES


def reason() -> str | None:
    """Why the kernel is not in use (None when it is, or while it is being built)."""
    if _env_off():
        return "turned off by DEADRELU_NATIVE"
    return _reason


def ensure(wait: bool = True) -> bool:
    """Make the kernel ready if this machine can; True when it is in use.

    Loads the library if it is built; otherwise starts the background build. With
    ``wait`` it then blocks until the build has ended (tests, benchmarks,
    ``python -m deadrelu.native``); without, it returns False at once and a later
    call picks the library up.
    """
    global _ops, _direct, _reason, _path, _fallback, _job, _building, _next_look
    if _env_off() or _disabled:
        return False
    if _ops is not None or _reason is not None:
        return _ops is not None
    if _building and not wait and time.monotonic() < _next_look:
        return False
    with _lock:
        if _ops is not None or _reason is not None:
            return _ops is not None
        try:
            # the library with its Python binding; where that does not build, without it
            if _path is None or _fallback is None:
                _path, _fallback = build.library_path(), build.library_path(python=False)
            fallback = _fallback
            for _ in range(2):
                if not _path.exists() and not build.marker(_path).exists():
                    if not _building:
                        _job = build.start(_path, python=_path != fallback)
                        _building = True
                    if wait:
                        build.wait(_path)
                    elif build.running(_path):  # still building
                        _next_look = time.monotonic() + _POLL
                        return False
                elif wait:  # the job wrote its result and may not have unlocked yet
                    build.wait(_path)
                _building = False
                if _path.exists() or _path == fallback or not build.marker(_path).exists():
                    break
                _path = fallback
            if not _path.exists():
                note = build.marker(_path)
                raise build.BuildError(note.read_text().strip() if note.exists()
                                       else "the build did not finish")
            torch.ops.load_library(str(_path))
            _ops = torch.ops.deadrelu_native
            _direct = _python_module(_path)
        except (build.BuildError, OSError, RuntimeError) as exc:
            _reason = f"fused kernel unavailable: {' '.join(str(exc).split())}"
    return _ops is not None


def _python_module(path: Path) -> Any:
    """The library's Python extension module ``deadrelu_native_py``, or None where it was
    built without one (no Python headers): torch.ops serves then."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("deadrelu_native_py", str(path))
    spec = importlib.util.spec_from_file_location("deadrelu_native_py", path, loader=loader)
    if spec is None:
        return None
    try:
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except ImportError:  # no PyInit_deadrelu_native_py: a torch.ops library only
        return None
    return module


def available() -> bool:
    """True when the kernel is in use; builds it first if needed, waiting for that."""
    return ensure(wait=True)


def loaded() -> bool:
    """True when the kernel is loaded and not disabled: a check cheap enough per call."""
    return _ops is not None and not _disabled


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
    float32 CPU tensor with a dense innermost dim, turned off, not built yet); the
    caller then runs the eager path. ``y3`` is laid out as in :meth:`UnitStats.update`.
    """
    if (_disabled or y3.device.type != "cpu" or y3.dtype != torch.float32
            or y3.stride(2) != 1 or not _exact(y3, reduce_dim)
            or not (_ops is not None or ensure(wait=False))):
        return False
    _ops.stats(y3, reduce_dim == 2, level, low, high, nonneg, *_counters(acc))
    return True


def relu_into(acc: dict[str, Tensor], x3: Tensor, out3: Tensor, reduce_dim: int) -> bool:
    """``out3 = relu(x3)`` and its statistics added to ``acc``, in one pass.

    ``x3`` and ``out3`` are views of the same shape (``out3`` may be ``x3``: in place)
    laid out as in :meth:`UnitStats.update`. Returns False, having done nothing,
    where the kernel does not apply.
    """
    if not loaded() or x3.stride(2) != 1 or out3.stride(2) != 1 or not _exact(x3, reduce_dim):
        return False
    _ops.relu_into(x3, out3, reduce_dim == 2, *_counters(acc))
    return True


class KernelView(NamedTuple):
    """How the kernel reads a tensor as ``(S, M, R)`` without making the view in Python.

    Worked out once per site and tensor geometry by :func:`kernel_view`; later calls
    with a tensor of the same shape and strides pass the tensor itself
    (:func:`stats_view`, :func:`relu_view`), which spares the per-call view ops.
    """

    dims: tuple[int, int, int]
    #: element strides of S and M (R's is 1)
    strides: tuple[int, int]
    #: ``(S, U, R)``, else ``(S, R, U)``
    slice_layout: bool
    #: what the counters' ``samples`` and ``positions`` grow by: S, and S times R's size
    samples: int
    positions: int
    #: ``(*dims, *strides, slice_layout)``: the kernel's arguments after the tensors
    args: tuple[int, int, int, int, int, bool]


def kernel_view(t: Tensor, t3: Tensor, reduce_dim: int) -> KernelView | None:
    """The kernel's view of ``t`` given its counter layout ``t3`` (a view of ``t``), or
    None where the kernel does not take it (not float32 on the CPU, ``t3`` a copy, a
    strided innermost dim, slices too large for float32 counts)."""
    if (t.dtype != torch.float32 or t.device.type != "cpu" or t3.dim() != 3
            or t3.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()
            or t3.storage_offset() != t.storage_offset() or not _exact(t3, reduce_dim)):
        return None
    samples, positions = int(t3.shape[0]), int(t3.shape[reduce_dim])
    if positions == 1:  # Linear outputs: the rows layout (S, 1, U), as _rows_if_flat
        t3 = t3.squeeze(reduce_dim).unsqueeze(1)
        reduce_dim = 1
    if t3.stride(2) != 1 or min(t3.stride()) < 0:
        return None
    dims = (int(t3.shape[0]), int(t3.shape[1]), int(t3.shape[2]))
    strides = (int(t3.stride(0)), int(t3.stride(1)))
    slice_layout = reduce_dim == 2
    return KernelView(dims, strides, slice_layout, samples, samples * positions,
                      (*dims, *strides, slice_layout))


def stats_view(block: Tensor, y: Tensor, args: tuple[Any, ...]) -> None:
    """:func:`update` for a tensor whose view was planned, into the counters as one
    contiguous ``(7, units)`` float64 block in :data:`COUNTERS` order (the kernel must be
    loaded). ``args``: the view's :attr:`KernelView.args` followed by the kind's
    ``(level, low, high, nonneg)``, built once per site and geometry by the caller."""
    if _direct is not None:
        _direct.stats_view(y, block, *args)
    else:
        _ops.stats_view(y, *args, block)


def relu_view(block: Tensor, x: Tensor, out: Tensor, args: tuple[Any, ...]) -> None:
    """:func:`relu_into` for tensors whose view was planned (``args``: its
    :attr:`KernelView.args`); ``out`` has ``x``'s strides."""
    if _direct is not None:
        _direct.relu_view(x, out, block, *args)
    else:
        _ops.relu_view(x, out, *args, block)


#: The counters in the order the kernel's ops take them (see stats.cpp).
COUNTERS = ("active", "sample_active", "sum", "abs_sum", "max", "saturated", "nonfinite")


def _counters(acc: dict[str, Tensor]) -> list[Tensor]:
    return [acc[name] for name in COUNTERS]


def _exact(y3: Tensor, reduce_dim: int) -> bool:
    # A Linear output's "slice" is its whole batch; bigger slices take the eager path.
    positions = y3.shape[reduce_dim]
    return positions < FLOAT_EXACT and (positions > 1 or y3.shape[0] < FLOAT_EXACT)
