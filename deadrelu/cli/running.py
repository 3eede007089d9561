"""Running a scan from the command line: progress on stderr, the partial report on Ctrl-C.

:func:`load_and_scan` is the one path from a command's options to a report that
``scan`` and ``check`` share; :func:`run_scan` is :func:`deadrelu.scan` as every
command runs it (``track`` and ``prune`` too). What is loaded and how the data
fits the model is decided by the library (:mod:`deadrelu.loading`), which
findings are reported by the scan itself (selection, ``exclude-layers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.analyzer import Thresholds
    from deadrelu.cli.settings import ScanSettings
    from deadrelu.loading.options import LoadOptions
    from deadrelu.report import Report


def freeze_gc() -> None:
    """Park every object allocated so far outside the garbage collector's reach.

    For CLI processes only (call it once the model is loaded), never library code.
    ``import torch`` and a loaded model leave a few hundred thousand objects that
    live as long as the process; without this, every later full collection
    (triggered by the many small allocations of the scan, the diagnosis and the
    rendering) walks them all again, which measurably slowed ``deadrelu scan`` end
    to end. :func:`gc.freeze` moves them to a permanent generation; objects
    created afterwards are collected as usual.
    """
    import gc

    gc.freeze()


def run_scan(
    model: Any,
    data: Any,
    *,
    thresholds: Thresholds,
    progress: bool,
    quiet: bool,
    device: str | None,
    model_name: str | None,
    data_name: str | None,
    notes: Sequence[str] = (),
    **scan_kwargs: Any,
) -> Report:
    """:func:`deadrelu.scan` with a transient progress bar on stderr; partial report on Ctrl-C.

    Args:
        model, data: as for :func:`deadrelu.scan`.
        thresholds: the analyzer thresholds.
        progress: show the progress bar (ignored when ``quiet``).
        quiet: no progress bar.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``None`` (the model's device).
        model_name, data_name: labels for the report header.
        notes: loader notes, added to ``report.meta["notes"]`` for the header.
        **scan_kwargs: passed on (``limit``, ``unit_axis``, ``exclude_layers``...).

    Returns:
        The report; ``report.partial`` is true when Ctrl-C stopped the scan.
    """
    from dataclasses import replace

    from deadrelu.progress import progress_bar
    from deadrelu.scanning import scan

    scan_kwargs.setdefault("partial_on_interrupt", True)
    total = getattr(data, "num_samples", None)
    with progress_bar(total=total, enabled=progress and not quiet) as update:
        report = scan(model, data, thresholds=thresholds, device=device, model_name=model_name,
                      data_name=data_name, progress=update, **scan_kwargs)
    if notes:
        merged = list(dict.fromkeys([*notes, *report.meta.get("notes", ())]))
        report = replace(report, meta={**report.meta, "notes": merged})
    return report


def load_and_scan(
    opts: LoadOptions,
    settings: ScanSettings,
    *,
    progress: bool,
    quiet: bool,
    partial_on_interrupt: bool = True,
    sharded: bool = False,
    compare_init: bool | None = None,
) -> Report:
    """Load the model and data of ``opts``, then :func:`run_scan` them with ``settings``.

    ``sharded``: under torchrun, scan this rank's share of the batches on this
    rank's device. ``compare_init``: also scan freshly initialized copies on the same
    data (:func:`deadrelu.init_compare.loaded_baseline`); ``None``: when the
    architecture can be instantiated and that is cheap.
    """
    from deadrelu import distributed
    from deadrelu.init_compare import loaded_baseline
    from deadrelu.loading import load_model_and_data

    loaded, source = load_model_and_data(opts)
    freeze_gc()
    notes = [*loaded.notes, *source.notes]
    init = None
    if compare_init is not False and not sharded:
        init, note = loaded_baseline(loaded, source, opts, explicit=bool(compare_init),
                                     thresholds=settings.thresholds, device=settings.device,
                                     **settings.scan_kwargs())
        notes += [note] if note else []
    return run_scan(
        loaded.model, distributed.shard(source) if sharded else source,
        thresholds=settings.thresholds, progress=progress, quiet=quiet,
        device=(distributed.device_for_scan() if sharded else None) or settings.device,
        model_name=loaded.description, data_name=source.description,
        notes=notes, limit=opts.limit, recipe=loaded.recipe, init=init,
        partial_on_interrupt=partial_on_interrupt, **settings.scan_kwargs(),
    )
