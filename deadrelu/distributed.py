"""Scans across ``torch.distributed`` ranks: shard the data, then reduce the counters.

Each rank scans its own share of the data; :func:`reduce_sites` then combines the
per-unit counters of all ranks by the reductions declared in
:data:`deadrelu.stats.REDUCTIONS` (sums add, maxima max), so every rank ends with
exactly the counters of one process that saw all the data.

Sites must line up before counters can be reduced: a rank whose data never reached
a branch of the model has fewer sites. The site lists of all ranks are gathered
first and merged in a fixed order (rank 0's sites in its forward order, then sites
only later ranks saw), and a rank holds zero counters for a site it never saw.

The CLI runs under ``torchrun`` as::

    torchrun --nproc-per-node 4 -m deadrelu scan model.pt --arch m.py:Net --data data/

where ``deadrelu scan`` joins the group with :func:`process_group_from_env` (or
:func:`maybe_init_from_env` ... :func:`shutdown`), scans :func:`shard` of its
batches on :func:`device_for_scan`, and prints only where :func:`is_main_process`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import torch

from deadrelu.collector import Site, SiteInfo
from deadrelu.errors import ConfigError, ModelError
from deadrelu.stats import REDUCTIONS, UnitStats

T = TypeVar("T")

#: True while this module's maybe_init_from_env() owns the process group.
_OWN_GROUP = False


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group with more than one rank is initialized."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of ranks (1 when not distributed)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, and in a plain single process: where reports are printed."""
    return get_rank() == 0


def maybe_init_from_env(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Does nothing (and returns False) unless ``WORLD_SIZE`` is above 1. Uses the
    ``nccl`` backend when CUDA is available (and selects the GPU ``LOCAL_RANK``),
    ``gloo`` otherwise. Already-initialized groups are kept.

    Args:
        backend: force a backend (``gloo``, ``nccl``...).

    Returns:
        True when this process is now one of several ranks.

    Raises:
        ConfigError: the environment is incomplete or the group cannot be joined.
    """
    import torch.distributed as dist

    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer",
                          "launch with torchrun, which sets it") from exc
    if world <= 1:
        return False
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE is above 1 but this torch build has no torch.distributed",
                          "run a single process, or install a torch build with distributed support")
    if dist.is_initialized():
        return dist.get_world_size() > 1
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} is not set",
                          "launch with `torchrun --nproc-per-node N -m deadrelu ...`")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend=backend)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the {backend} process group: {exc}",
                          "check the torchrun settings (MASTER_ADDR, MASTER_PORT, network)") from exc
    global _OWN_GROUP
    _OWN_GROUP = True
    return True


def shutdown() -> None:
    """Leave the process group if :func:`maybe_init_from_env` created it (else do nothing)."""
    import torch.distributed as dist

    global _OWN_GROUP
    if _OWN_GROUP and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _OWN_GROUP = False


@contextmanager
def process_group_from_env(backend: str | None = None) -> Iterator[bool]:
    """:func:`maybe_init_from_env` on entry, :func:`shutdown` on exit; yields whether distributed.

    ::

        with distributed.process_group_from_env():
            report = deadrelu.scan(model, distributed.shard(batches))
            if distributed.is_main_process():
                print(report)
    """
    maybe_init_from_env(backend)
    try:
        yield is_distributed()
    finally:
        shutdown()


def device_for_scan() -> str | None:
    """The device a rank should scan on: its own GPU under ``nccl``, else ``None`` (default)."""
    import torch.distributed as dist

    if is_distributed() and dist.get_backend() == "nccl":
        return f"cuda:{torch.cuda.current_device()}"
    return None


def shard(iterable: Iterable[T], *, rank: int | None = None,
          world_size: int | None = None) -> Iterator[T]:
    """This rank's share of ``iterable``: items ``rank, rank + world, rank + 2*world...``.

    Every rank must iterate the same items in the same order (a fixed-order data
    source), so that the shares are disjoint and together cover everything. Without a
    process group this yields every item.

    Args:
        iterable: batches (or anything else).
        rank, world_size: override this process's rank and the number of ranks.
    """
    r = get_rank() if rank is None else rank
    w = get_world_size() if world_size is None else world_size
    if w < 1 or not 0 <= r < w:
        raise ConfigError(f"rank {r} is not in a world of {w}", "pass 0 <= rank < world")
    for index, item in enumerate(iterable):
        if index % w == r:
            yield item


def reduce_sites(sites: Sequence[Site], group: Any = None) -> list[Site]:
    """Combine the counters of every rank, in place of each rank's own; a collective.

    Args:
        sites: this rank's sites (CPU counters, as from ``Collector.snapshot()``).
        group: the process group (default: the world).

    Returns:
        The union of all ranks' sites, in the same order on every rank, with counters
        summed (maxima maxed) over ranks.

    Raises:
        ModelError: two ranks saw the same site with different shapes or kinds (the
            ranks are not running the same model).
    """
    import torch.distributed as dist

    infos = [s.info.to_dict() for s in sites]
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, infos, group=group)

    union: dict[str, SiteInfo] = {}
    for rank_index, rank_infos in enumerate(gathered):
        for d in rank_infos:
            info = SiteInfo.from_dict(d)
            known = union.get(info.name)
            if known is None:
                union[info.name] = replace(info, order=len(union))
            elif (known.units, known.kind) != (info.units, info.kind):
                raise ModelError(
                    f"rank {rank_index} saw site {info.name!r} as {info.units} {info.kind} units, "
                    f"an earlier rank as {known.units} {known.kind} units",
                    "run the same model on every rank",
                )

    mine = {s.info.name: s.stats for s in sites}
    device = _reduce_device(group)
    stats = [mine[name].copy(device) if name in mine else UnitStats.zeros(info.units, device)
             for name, info in union.items()]
    _all_reduce(stats, group)
    return [Site(info, s.copy("cpu")) for info, s in zip(union.values(), stats, strict=True)]


def _reduce_device(group: Any) -> torch.device:
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(stats: Sequence[UnitStats], group: Any) -> None:
    """All-reduce many sites' counters in three collectives (sum, max, host integers)."""
    import torch.distributed as dist

    if not stats:
        return
    by_op: dict[str, list[str]] = {"sum": [], "max": []}
    for name, reduction in REDUCTIONS.items():
        by_op[reduction].append(name)
    for kind, names in by_op.items():
        if not names:
            continue
        flat = torch.cat([s.tensors[n] for s in stats for n in names])
        op = dist.ReduceOp.SUM if kind == "sum" else dist.ReduceOp.MAX
        dist.all_reduce(flat, op=op, group=group)
        offset = 0
        for s in stats:
            for n in names:
                size = s.tensors[n].numel()
                s.tensors[n].copy_(flat[offset:offset + size])
                offset += size
    device = stats[0].device
    ints = torch.tensor([[s.positions, s.samples] for s in stats], dtype=torch.int64, device=device)
    dist.all_reduce(ints, op=dist.ReduceOp.SUM, group=group)
    for s, (positions, samples) in zip(stats, ints.tolist(), strict=True):
        s.positions, s.samples = int(positions), int(samples)


def reduce_scan(
    sites: Sequence[Site], samples: int, partial: bool, data_meta: Mapping[str, Any],
    group: Any = None,
) -> tuple[list[Site], int, bool, dict[str, Any]]:
    """What :func:`deadrelu.scan` needs from all ranks after its loop; a collective.

    Args:
        sites: this rank's sites (CPU counters).
        samples: samples this rank scanned.
        partial: this rank was interrupted.
        data_meta: this rank's ``DataStats.to_meta()``.

    Returns:
        (sites of all ranks, total samples, any rank partial, merged data statistics).
    """
    import torch.distributed as dist

    from deadrelu.datastats import merge_data_meta

    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, (samples, partial, dict(data_meta)), group=group)
    metas = [m for _, _, m in gathered if m]
    merged_meta = merge_data_meta(metas) if metas else {}
    return (reduce_sites(sites, group), sum(n for n, _, _ in gathered),
            any(p for _, p, _ in gathered), merged_meta)
