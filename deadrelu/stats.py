"""Streaming per-unit counters for one activation site.

Modelled on torchmetrics' ``Metric``: the state is *declared* in
:data:`REDUCTIONS` together with how two partial states combine (``sum`` or
``max``). Streaming over batches, merging two partial scans and the distributed
all-reduce (:mod:`deadrelu.distributed`) are all the same operation over that declaration, which is why
"many small batches == one big batch == merge of shards" holds exactly.

The counters live on the model's device; :meth:`UnitStats.update` is tensor
math only (no ``.item()``, no host sync) and its memory is fixed by the number
of units, never by the number of batches.

Counter meanings (per unit; a *position* is one element of the unit's slice of
one sample, e.g. one pixel of a conv channel, one token of a sequence feature):

* ``positions`` / ``samples``: host-side integers, identical for all units.
* ``active``: positions where the unit fired (pre-activation > 0).
* ``sample_active``: samples in which the unit fired at least once.
* ``sum`` / ``abs_sum``: sum of the activation output and of its absolute value.
* ``max``: largest finite output seen (``-inf`` before any).
* ``saturated``: positions in the flat region of a bounded activation.
* ``nonfinite``: (sample, unit) slices that contained NaN or ±Inf — for Linear
  outputs, where a slice is one value, exactly the number of NaN/Inf values.
  NaN never counts as firing. Values from such slices are left out of
  ``sum``/``abs_sum``/``max`` (for Linear outputs, the unit's whole batch is left
  out: locating single bad values would cost two more full passes per call).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from deadrelu import native
from deadrelu.errors import ReportError

Reduction = Literal["sum", "max"]

#: Declared per-unit state and how two partial states combine.
REDUCTIONS: Mapping[str, Reduction] = {
    "active": "sum",
    "sample_active": "sum",
    "sum": "sum",
    "abs_sum": "sum",
    "max": "max",
    "saturated": "sum",
    "nonfinite": "sum",
}

#: Counters that hold whole numbers (stored as float64 on device, exact below 2**53).
COUNTS = ("active", "sample_active", "saturated", "nonfinite")

#: What a counter holds before any value was added (``null`` in JSON stands for it).
_EMPTY = {name: (float("-inf") if how == "max" else 0.0) for name, how in REDUCTIONS.items()}

#: Elements per chunk of a conv/sequence output (4 MiB of float32): small enough that
#: the mask and the reductions re-read it from cache, large enough to keep the Python
#: loop short. Measured on a 2-core x86 VM; see docs/performance.md.
CHUNK = 1 << 20

#: float32 holds integers exactly up to 2**24; per-slice counts above that use int64.
_FLOAT_EXACT = native.FLOAT_EXACT


def _acc_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; everything else accumulates in float64 for exact counts.
    return torch.float32 if device.type == "mps" else torch.float64


def _positions(mask: Tensor, reduce_dim: int) -> Tensor:
    """A (S, R) mask of real positions, broadcastable over a slab laid out as (S, U, R)
    (``reduce_dim=2``) or (S, R, U) (``reduce_dim=1``)."""
    return mask.unsqueeze(-1) if reduce_dim == 1 else mask.unsqueeze(1)


class CounterArena:
    """Counter blocks for many sites, carved from a few buffers of 1 MiB.

    Why: a scan discovers its sites during the first forward, between activations that
    are allocated and freed again. A block of counters allocated on its own (tens of KiB)
    lands in the memory an activation just freed and splits it, so the next activation of
    that size no longer fits there and the heap grows by about one activation per site:
    measured +512 KiB per site on a stack of Linear(512) layers at batch 256, where the
    counters are 28 KiB (benchmarks/bench_memory.py). Carved from large buffers, the
    counters split the heap once per buffer, not once per site. A block larger than a
    quarter buffer gets a buffer of its own.
    """

    SIZE = 1 << 20  # bytes per shared buffer

    def __init__(self) -> None:
        self._open: dict[tuple[torch.device, torch.dtype], tuple[Tensor, int]] = {}

    def zeros(self, rows: int, units: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """A zeroed contiguous ``(rows, units)`` block."""
        n = rows * units
        size = self.SIZE // dtype.itemsize
        if n > size // 4:
            return torch.zeros(rows, units, dtype=dtype, device=device)
        buffer, used = self._open.get((device, dtype), (None, 0))
        if buffer is None or used + n > buffer.numel():
            buffer, used = torch.empty(size, dtype=dtype, device=device), 0
        self._open[(device, dtype)] = (buffer, used + n)
        return buffer[used:used + n].view(rows, units).zero_()


@dataclass
class UnitStats:
    """Per-unit counters of one site. See the module docstring for each field."""

    units: int
    positions: int = 0
    samples: int = 0
    tensors: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def zeros(cls, units: int, device: torch.device | str = "cpu",
              arena: CounterArena | None = None) -> UnitStats:
        """Empty counters for ``units`` units on ``device`` (carved from ``arena``, if given:
        the collector's sites share a few buffers, see :class:`CounterArena`)."""
        device = torch.device(device)
        dtype = _acc_dtype(device)
        # one (7, units) block whose rows are the counters, in the order the fused
        # kernel's steady state takes them as one argument (update_view, relu_view)
        block = (arena.zeros(len(REDUCTIONS), units, dtype, device) if arena is not None
                 else torch.zeros(len(REDUCTIONS), units, dtype=dtype, device=device))
        tensors = dict(zip(REDUCTIONS, block.unbind(0), strict=True))
        tensors["max"].fill_(float("-inf"))
        stats = cls(units, 0, 0, tensors)
        stats.__dict__["_block"] = block
        return stats

    def __getattr__(self, name: str) -> Tensor:
        # Counters read as attributes (stats.active); only called for missing attributes.
        tensors = self.__dict__.get("tensors")
        if tensors is not None and name in tensors:
            return tensors[name]
        raise AttributeError(name)

    @property
    def device(self) -> torch.device:
        return self.tensors["active"].device

    # -- streaming -------------------------------------------------------------------------

    def update(
        self,
        y3: Tensor,
        reduce_dim: int,
        level: float,
        sat_low: float | None,
        sat_high: float | None,
        nonneg: bool,
        scratch: Tensor,
    ) -> None:
        """Add one batch.

        Args:
            y3: the activation output laid out as ``(S, U, R)`` (``reduce_dim=2``) or
                ``(S, R, U)`` (``reduce_dim=1``): S samples, U units, R positions each.
                ``R == 1`` (Linear outputs) takes a path with no reduction over R.
            level: the unit fires where ``y > level``.
            sat_low, sat_high: saturation bounds (see :mod:`deadrelu.kinds`).
            nonneg: the output is never negative, so ``abs_sum == sum``.
            scratch: a float32 buffer of at least :func:`scratch_size` elements, reused
                for 0/1 masks. On CPU, a comparison written into a float buffer and
                summed is several times faster than summing a bool tensor; it is exact
                while counts stay below 2**24, which :data:`_FLOAT_EXACT` guards.

        Performance: on the CPU, float32 batches go to the fused kernel of
        :mod:`deadrelu.native` when it is available (one pass instead of about four).
        Otherwise, in eager PyTorch, each full-size pass costs about as
        much as the activation itself. Conv/sequence outputs are processed in chunks
        of :data:`CHUNK` elements along the sample axis, so the mask and the three
        reductions (count, sum, max) re-read each chunk from cache: about half the
        time of whole-tensor passes. NaN/Inf handling happens on the small per-slice
        results, except for ``R == 1`` where slices are single positions.
        """
        if y3.dtype not in (torch.float32, torch.float64):
            y3 = y3.float()
        n_samples, n_pos = y3.shape[0], y3.shape[reduce_dim]
        (fused,), fused_dim = _rows_if_flat((y3,), reduce_dim)
        if native.update(self.tensors, fused, fused_dim, level, sat_low, sat_high, nonneg):
            self._count(n_samples, n_pos)
            return
        exact = (n_samples * n_pos < _FLOAT_EXACT and y3.dtype == torch.float32
                 and scratch.numel() >= scratch_size(y3))
        if n_pos == 1:
            self._update_flat(y3.squeeze(reduce_dim), level, nonneg, scratch, exact)
            y = y3.squeeze(reduce_dim)
            # each mask reuses the scratch buffer, so it is summed before the next one
            counts = [_mask_count(torch.le, y, v, scratch, exact, None).sum(0, keepdim=True)
                      for v in (sat_low,) if v is not None]
            counts += [_mask_count(torch.ge, y, v, scratch, exact, None).sum(0, keepdim=True)
                       for v in (sat_high,) if v is not None]
        else:
            counts = self._update_slices(y3, reduce_dim, level, sat_low, sat_high, nonneg,
                                         scratch, exact)
        for c in counts:
            self.tensors["saturated"].add_(c.sum(0))
        self._count(n_samples, n_pos)

    def _count(self, n_samples: int, n_pos: int) -> None:
        self.samples += n_samples
        self.positions += n_samples * n_pos

    def update_view(self, y: Tensor, view: native.KernelView, args: tuple[Any, ...]) -> bool:
        """:meth:`update` with the fused kernel on a view planned by
        :func:`deadrelu.native.kernel_view` (the collector's steady state); ``args`` as
        :func:`deadrelu.native.stats_view` takes them. False, with nothing done, where the
        counters are not one block (made by :meth:`zeros`)."""
        block = self.__dict__.get("_block")
        if block is None:
            return False
        native.stats_view(block, y, args)
        self.samples += view.samples
        self.positions += view.positions
        return True

    def relu_view(self, x: Tensor, out: Tensor, view: native.KernelView) -> bool:
        """:meth:`relu_` on a planned view: ``out = relu(x)`` and its statistics. False,
        with nothing done, where the counters are not one block."""
        block = self.__dict__.get("_block")
        if block is None:
            return False
        native.relu_view(block, x, out, view.args)
        self.samples += view.samples
        self.positions += view.positions
        return True

    def relu_(self, x3: Tensor, out3: Tensor, reduce_dim: int) -> bool:
        """Write ``relu(x3)`` into ``out3`` and add it as one batch, in one pass.

        The fused form of ``out3.copy_(x3.relu()); self.update(out3, ...)`` for ReLU
        sites on the CPU (:func:`deadrelu.native.relu_into`): the statistics then cost
        almost nothing beyond the ReLU itself. False, with nothing done, where the
        kernel does not apply; the caller then runs the ReLU and :meth:`update`.
        """
        n_samples, n_pos = x3.shape[0], x3.shape[reduce_dim]
        (x3, out3), reduce_dim = _rows_if_flat((x3, out3), reduce_dim)
        if not native.relu_into(self.tensors, x3, out3, reduce_dim):
            return False
        self._count(n_samples, n_pos)
        return True

    def add_firing(self, fired3: Tensor, reduce_dim: int, mask: Tensor | None = None) -> None:
        """Add the firing counts of one batch from a boolean mask laid out as in :meth:`update`.

        For kinds whose output does not tell whether the input was positive (PReLU,
        composite activations...): the batch's other counters come from
        :meth:`update` (or :meth:`update_masked`) over the output with an infinite level,
        which counts no firing. ``mask``: bool ``(S, R)`` of the real positions, as for
        :meth:`update_masked`; padding never fires. Counted in integers, exact at any size.
        """
        if mask is not None:
            fired3 = fired3 & _positions(mask, reduce_dim)
        if fired3.dtype == torch.bool:  # a bool reduction casts value by value: as bytes,
            # summed into int32 (a slice holds fewer than 2**31 positions), it is 2x faster
            per_slice = fired3.view(torch.uint8).sum(reduce_dim, dtype=torch.int32)  # (S, U)
        else:
            per_slice = fired3.sum(reduce_dim)
        t = self.tensors
        t["active"].add_(per_slice.sum(0).to(t["active"].dtype))
        t["sample_active"].add_((per_slice > 0).sum(0).to(t["sample_active"].dtype))

    def add_counts(self, counts: Tensor) -> None:
        """Add per-unit ``(active, sample_active)`` firing counts (float64, 2 × units) that
        the fused kernel took from an activation's input (the collector's steady state for
        kinds counted on their input; :meth:`add_firing` takes a mask instead)."""
        block = self.__dict__.get("_block")
        if block is not None and block.device == counts.device:
            block[:2].add_(counts)
        else:
            self.tensors["active"].add_(counts[0].to(self.tensors["active"]))
            self.tensors["sample_active"].add_(counts[1].to(self.tensors["sample_active"]))

    def _update_flat(self, y: Tensor, level: float, nonneg: bool, scratch: Tensor,
                     exact: bool) -> None:
        """(S, U) outputs: every slice is one position, so every pass is full-size and
        writes into the reused buffer; NaN/Inf is located per unit from the raw column
        sum, and such a unit's batch is left out of sum/abs_sum/max."""
        t = self.tensors
        buf = scratch[: y.numel()].view(y.shape) if exact else torch.empty_like(y)
        fired = _mask_count(torch.gt, y, level, scratch, exact, None).sum(0)
        t["active"].add_(fired)
        t["sample_active"].add_(fired)  # one position per sample
        raw = y.sum(0)
        if _all_finite(raw):  # no NaN/Inf anywhere: nothing to count or mask out
            t["sum"].add_(raw)
            t["abs_sum"].add_(raw if nonneg else torch.abs(y, out=buf).sum(0))
            _fold_max(t["max"], y.amax(0))
            return
        # y - y is 0 where finite and NaN where NaN/Inf: one exact nonfinite count.
        t["nonfinite"].add_(torch.ne(torch.sub(y, y, out=buf), 0, out=buf).sum(0))
        bad = torch.isnan(raw - raw)
        sum_part = raw.masked_fill(bad, 0.0)
        t["sum"].add_(sum_part)
        t["abs_sum"].add_(sum_part if nonneg else torch.abs(y, out=buf).sum(0).masked_fill(bad, 0.0))
        _fold_max(t["max"], y.amax(0).masked_fill(bad, float("-inf")))

    def _update_slices(self, y: Tensor, rd: int, level: float, sat_low: float | None,
                       sat_high: float | None, nonneg: bool, scratch: Tensor,
                       exact: bool) -> list[Tensor]:
        """(S, U, R) or (S, R, U) outputs: per-slice results, chunked along samples."""
        n_samples = y.shape[0]
        units = y.shape[3 - rd]
        def per_slice() -> Tensor:
            return torch.empty(n_samples, units, dtype=y.dtype, device=y.device)

        fired, sums, maxes = per_slice(), per_slice(), per_slice()
        abss = None if nonneg else per_slice()
        bounds = [(torch.le, v) for v in (sat_low,) if v is not None]
        bounds += [(torch.ge, v) for v in (sat_high,) if v is not None]
        sat = [per_slice() for _ in bounds]
        slab = max(1, y[0].numel())
        step = max(1, CHUNK // slab) if exact else n_samples
        flip = exact and _transpose_first(y, rd)
        for i in range(0, n_samples, step):
            blk = y[i:i + step]
            j = i + blk.shape[0]
            if flip:  # short rows: one transposing copy, then fast outer-dim reductions
                flipped = scratch[-blk.numel():].view(blk.shape[0], blk.shape[2], blk.shape[1])
                blk, rd = flipped.copy_(blk.transpose(1, 2)), 1
            fired[i:j] = _mask_count(torch.gt, blk, level, scratch, exact, rd)
            torch.sum(blk, rd, out=sums[i:j])
            torch.amax(blk, rd, out=maxes[i:j])
            if abss is not None:
                buf = scratch[: blk.numel()].view(blk.shape) if exact else torch.empty_like(blk)
                torch.sum(torch.abs(blk, out=buf), rd, out=abss[i:j])
            for (op, value), out in zip(bounds, sat, strict=True):
                out[i:j] = _mask_count(op, blk, value, scratch, exact, rd)
        self._fold_slices(fired, sums, maxes, abss)
        return sat

    def update_masked(
        self,
        y3: Tensor,
        reduce_dim: int,
        mask: Tensor,
        real: int,
        level: float,
        sat_low: float | None,
        sat_high: float | None,
        nonneg: bool,
        scratch: Tensor | None = None,
    ) -> None:
        """Add one batch of which only the positions where ``mask`` is true count.

        For sequences padded to the longest in their batch: a pad position is not a
        position a unit could fire on, so it adds to no counter (a unit that fires
        only on padding stays dead) and ``positions`` grows by ``real``, the number of
        true entries of ``mask`` (passed in, so reading it costs no host sync per site).

        Args:
            y3: as for :meth:`update`, ``(S, R, U)`` or ``(S, U, R)``.
            mask: bool ``(S, R)``: which positions of each sample are real.
            real: ``mask.sum()``.
            scratch: as for :meth:`update` (the fast path below uses it).

        Fast path, for rectifier-like kinds (output never negative, firing above a
        level ≥ 0, no saturation bound at or below 0): pad positions are set to 0,
        which there never fires, adds nothing to the sums, is no larger than any
        real output and is not saturated; the batch then goes through :meth:`update`
        (the fused kernel on the CPU) and only ``positions`` is corrected: two passes.
        Other kinds take plain tensor math: a few more full-size passes.
        """
        if y3.dtype not in (torch.float32, torch.float64):
            y3 = y3.float()
        rd = reduce_dim
        keep = _positions(mask, rd)
        if (nonneg and level >= 0 and (sat_low is None or sat_low < 0)
                and (sat_high is None or sat_high > 0)):
            filled = torch.where(keep, y3, 0.0)
            if scratch is None or scratch.numel() < scratch_size(filled):
                scratch = torch.empty(scratch_size(filled), dtype=torch.float32, device=y3.device)
            self.update(filled, rd, level, sat_low, sat_high, nonneg, scratch)
            self.positions -= int(filled.shape[0]) * int(filled.shape[rd]) - int(real)
            return
        acc = self.tensors["active"].dtype
        fired = torch.logical_and(y3 > level, keep).sum(rd, dtype=acc)
        values = torch.where(keep, y3, 0.0)
        sums = values.sum(rd)
        abss = None if nonneg else values.abs_().sum(rd)
        maxes = torch.where(keep, y3, float("-inf")).amax(rd)
        for op, bound in ((torch.le, sat_low), (torch.ge, sat_high)):
            if bound is not None:
                hit = torch.logical_and(op(y3, bound), keep).sum(rd, dtype=acc)
                self.tensors["saturated"].add_(hit.sum(0))
        self._fold_slices(fired, sums, maxes, abss)
        self.samples += int(y3.shape[0])
        self.positions += int(real)

    def _fold_slices(self, fired: Tensor, sums: Tensor, maxes: Tensor,
                     abss: Tensor | None) -> None:
        """Add per-(sample, unit) results: fire counts, sums, maxima and absolute sums.

        A slice whose sum is not finite held NaN/Inf: counted in ``nonfinite`` and left
        out of ``sum``/``abs_sum``/``max``.
        """
        t = self.tensors
        t["active"].add_(fired.sum(0))
        t["sample_active"].add_((fired > 0).sum(0))
        total = sums.sum(0)
        if _all_finite(total):  # then every slice is finite: nothing to mask out
            t["sum"].add_(total)
            t["abs_sum"].add_(total if abss is None else abss.sum(0))
            _fold_max(t["max"], maxes.amax(0))
            return
        bad = torch.isnan(sums - sums)  # the slice holds NaN or ±Inf
        t["nonfinite"].add_(bad.sum(0))
        sum_part = sums.masked_fill(bad, 0.0).sum(0)
        t["sum"].add_(sum_part)
        t["abs_sum"].add_(sum_part if abss is None else abss.masked_fill(bad, 0.0).sum(0))
        _fold_max(t["max"], maxes.masked_fill(bad, float("-inf")).amax(0))

    # -- combining ---------------------------------------------------------------------------

    def merge_(self, other: UnitStats) -> UnitStats:
        """Fold ``other`` into ``self`` exactly (sums add, maxima max); returns ``self``."""
        if other.units != self.units:
            raise ReportError(
                f"cannot merge statistics of {other.units} units into {self.units} units",
                "merge only scans of the same model",
            )
        for name, how in REDUCTIONS.items():
            mine, theirs = self.tensors[name], other.tensors[name].to(self.tensors[name])
            if how == "sum":
                mine.add_(theirs)
            else:
                torch.maximum(mine, theirs, out=mine)
        self.positions += other.positions
        self.samples += other.samples
        return self

    def copy(self, device: torch.device | str | None = None) -> UnitStats:
        """A detached copy, optionally on another device."""
        target = torch.device(device) if device is not None else self.device
        tensors = {k: v.detach().to(target, copy=True) for k, v in self.tensors.items()}
        if target.type == "cpu":
            tensors = {k: v.to(torch.float64) for k, v in tensors.items()}
        return UnitStats(self.units, self.positions, self.samples, tensors)

    def reset(self) -> None:
        """Zero all counters in place (keeps device and buffers)."""
        for name, tensor in self.tensors.items():
            tensor.fill_(float("-inf") if name == "max" else 0.0)
        self.positions = 0
        self.samples = 0

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready raw counters (whole-number counters as ints)."""
        out: dict[str, Any] = {"units": self.units, "positions": self.positions, "samples": self.samples}
        for name in REDUCTIONS:
            values = self.tensors[name].detach().cpu().double()
            if name in COUNTS:
                out[name] = values.round().long().tolist()  # Python ints
            elif bool(torch.isfinite(values).all()):
                out[name] = values.tolist()
            else:  # strict JSON has no -Infinity/NaN: a max never set is written as null
                out[name] = [float(v) if math.isfinite(v) else None for v in values.tolist()]
        return out

    def arrays(self) -> dict[str, Any]:
        """:meth:`to_dict` as float64 numpy arrays, for :func:`~deadrelu.analyzer.classify`
        without a Python list per counter: counts rounded, and a non-finite value NaN, as
        ``np.asarray(to_dict()[name], dtype=float)`` reads ``None``."""
        out: dict[str, Any] = {"units": self.units, "positions": self.positions, "samples": self.samples}
        for name in REDUCTIONS:
            values = self.tensors[name].detach().cpu().double().numpy()
            if name in COUNTS:
                out[name] = np.rint(values) + 0.0  # as int(...): no -0.0
            else:
                out[name] = np.where(np.isfinite(values), values, np.nan)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UnitStats:
        """Inverse of :meth:`to_dict`."""
        try:
            units = int(data["units"])
            tensors = {
                name: torch.tensor([_EMPTY[name] if v is None else float(v) for v in data[name]],
                                   dtype=torch.float64)
                for name in REDUCTIONS
            }
            stats = cls(units, int(data["positions"]), int(data["samples"]), tensors)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportError(
                f"report counters are incomplete or malformed ({exc})",
                "use a JSON report written by `deadrelu scan --format json` or Report.to_dict()",
            ) from exc
        for name, tensor in tensors.items():
            if tensor.numel() != units:
                raise ReportError(
                    f"report counter {name!r} has {tensor.numel()} values for {units} units",
                    "the report file is corrupt; re-run the scan",
                )
        return stats


def scratch_size(y3: Tensor) -> int:
    """Elements of float32 scratch that :meth:`UnitStats.update` needs for ``y3``."""
    if y3.dim() != 3 or 1 in (y3.shape[1], y3.shape[2]):
        return y3.numel()  # flat path: full-size masks
    slab = max(1, y3[0].numel())
    chunk = min(y3.numel(), max(1, CHUNK // slab) * slab)
    return 2 * chunk if _transpose_first(y3, 2) else chunk  # mask + transposed copy


#: Below this many positions per slice, reducing over the contiguous last dim is slow
#: on CPU (PyTorch vectorizes across outputs poorly for short rows: an ``amax`` over 16
#: values costs ten times the ReLU); copying the chunk to ``(S, R, U)`` first and
#: reducing over the outer dim is 2-3x faster overall. Measured in benchmarks/.
SHORT_ROWS = 32


def _transpose_first(y3: Tensor, rd: int) -> bool:
    return rd == 2 and 1 < y3.shape[2] < SHORT_ROWS and y3.device.type == "cpu"


def _rows_if_flat(ys: tuple[Tensor, ...], reduce_dim: int) -> tuple[tuple[Tensor, ...], int]:
    """One value per slice (Linear outputs): the kernel's rows layout ``(S, 1, U)``,
    whose rules for such outputs are the eager flat path's. Other layouts as given."""
    if ys[0].shape[reduce_dim] != 1:
        return ys, reduce_dim
    return tuple(y.squeeze(reduce_dim).unsqueeze(1) for y in ys), 1


def _mask_count(op: Any, y: Tensor, value: float, scratch: Tensor, exact: bool,
                dim: int | None) -> Tensor:
    """Counts of ``op(y, value)`` over ``dim`` (``None``: the 0/1 mask itself), exactly."""
    if exact:
        mask = op(y, value, out=scratch[: y.numel()].view(y.shape))
        return mask if dim is None else mask.sum(dim)
    mask = op(y, value).double()  # counts past 2**24: float64 is exact to 2**53
    return mask if dim is None else mask.sum(dim)


def _all_finite(totals: Tensor) -> bool:
    """True when the per-unit totals are all finite, decided on the host — CPU only.

    A total is finite exactly when every value summed into it was (NaN and ±Inf
    propagate; finite values that overflow count as non-finite, as in the masked
    path). On the CPU reading this flag costs nothing, so the common all-finite
    batch skips the masking work. On an accelerator reading it would wait for the
    device, so there the answer is always False and the sync-free masked path runs.
    """
    return totals.device.type == "cpu" and bool(torch.isfinite(totals).all())


def _fold_max(acc: Tensor, value: Tensor) -> None:
    torch.maximum(acc, value.to(acc.dtype), out=acc)
