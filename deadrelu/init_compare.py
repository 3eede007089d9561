"""Dead at initialization, or killed by training? Scan freshly initialized copies.

A trained checkpoint alone cannot say when a unit died. Some architectures leave
units dead from the first step: with non-negative inputs and PyTorch's default
init, a share of ReLU units gets a negative pre-activation for every input and
never trains. Scanning a freshly initialized copy of the same architecture on the
same data measures that share per layer: units up to that count are *born dead*
(an init/architecture matter: He init, normalization, fewer layers), units beyond
it *died in training* (the optimizer: learning rate, weight decay).

A fresh copy is a new random draw, not the model's own initial weights (those are
gone), so the comparison is per layer and in counts: :func:`init_baseline` scans
``runs`` copies (different seeds) and keeps every run's count, and the diagnosis
treats up to the largest of them as born dead. The result goes into
``report.meta["init"]`` (``deadrelu.scan(..., init=...)``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from deadrelu.loading.checkpoint import LoadedModel
    from deadrelu.loading.options import LoadOptions
    from deadrelu.report import Report

#: Fresh copies scanned by default: enough to see the spread between draws.
RUNS = 3
#: ``check`` and ``scan`` compare by default only below these sizes (each run is a scan).
CHEAP_PARAMETERS = 5_000_000
CHEAP_SAMPLES = 20_000


def reset_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every submodule's ``reset_parameters()`` called:
    PyTorch's default init for the standard layers (a custom init in the model's own
    ``__init__`` is not reproduced; pass a factory for that)."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset) and module is not fresh:
            reset()
    return fresh


def init_baseline(
    model: nn.Module,
    scan_fresh: Callable[[nn.Module], Report],
    *,
    factory: Callable[[], nn.Module] | None = None,
    runs: int = RUNS,
    seed: int = 0,
) -> dict[str, Any]:
    """Dead units per layer in ``runs`` freshly initialized copies of ``model``.

    Args:
        model: the trained model (only copied; never changed).
        scan_fresh: scans a model on the same data as the trained one's report.
        factory: builds a new, randomly initialized instance (e.g. the ``--arch``
            class); default: :func:`reset_copy` of ``model``.
        runs: how many fresh copies.
        seed: the first seed; the caller's random state is left as it was.

    Returns:
        JSON-ready ``{"method", "runs", "layers": {site: [dead count per run]},
        "units": {site: units}}`` for ``report.meta["init"]``.
    """
    layers: dict[str, list[int]] = {}
    units: dict[str, int] = {}
    first = next(iter(model.parameters()), None)
    for run in range(runs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + run)
            fresh = factory() if factory is not None else reset_copy(model)
        if first is not None:
            fresh = fresh.to(device=first.device, dtype=first.dtype)
        report = scan_fresh(fresh)
        for rec in report.layer_records():
            layers.setdefault(rec["layer"], []).append(int(rec["dead"]))
            units[rec["layer"]] = int(rec["units"])
    method = ("a new instance of the architecture" if factory is not None
              else "a copy with reset_parameters() (PyTorch's default init)")
    return {"method": method, "runs": runs, "layers": layers, "units": units}


def is_cheap(model: nn.Module, samples: int | None) -> bool:
    """Whether scanning ``RUNS`` more copies costs little enough to do by default."""
    params = sum(p.numel() for p in model.parameters())
    return params <= CHEAP_PARAMETERS and samples is not None and samples <= CHEAP_SAMPLES


def loaded_baseline(
    loaded: LoadedModel,
    source: Any,
    opts: LoadOptions,
    *,
    explicit: bool,
    **scan_kwargs: Any,
) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`init_baseline` for a model loaded from a file, scanned on ``source``.

    Fresh copies are built the way the file was: a model directory's own class and
    config (``from_config`` draws the model's own ``_init_weights``), else the
    ``arch`` class, else :func:`reset_copy`. Only when the architecture can be
    instantiated and (unless ``explicit``) that :func:`is_cheap`.

    Args:
        loaded, source, opts: what :func:`deadrelu.loading.load_model_and_data` returned
            for ``opts``.
        explicit: the comparison was asked for (``--compare-init on``): do it whatever
            it costs, and say why when it cannot be done.
        **scan_kwargs: passed to :func:`deadrelu.scan` for every fresh copy
            (thresholds, device, selection...).

    Returns:
        ``(meta["init"] or None, a note saying why not, or None)``.
    """
    from deadrelu.scanning import scan

    if loaded.format in ("export", "torchscript"):
        return None, (f"--compare-init: a {loaded.format} program cannot be re-initialized; "
                      "scan the original nn.Module checkpoint to compare with a fresh init"
                      if explicit else None)
    samples = source.num_samples
    if samples is not None and opts.limit is not None:
        samples = min(samples, opts.limit)
    if not explicit and not is_cheap(loaded.model, samples):
        return None, None

    def scan_fresh(model: nn.Module) -> Report:
        with warnings.catch_warnings():  # the trained model's scan warns about the data
            warnings.simplefilter("ignore")
            return scan(model, source, limit=opts.limit, **scan_kwargs)

    return init_baseline(loaded.model, scan_fresh, factory=_factory(loaded, opts)), None


def _factory(loaded: LoadedModel, opts: LoadOptions) -> Callable[[], nn.Module] | None:
    """How to build a fresh instance of ``loaded``'s architecture; ``None``: reset a copy."""
    if loaded.format == "transformers":
        # the class and config the directory named; --arch there picks a head, not a
        # constructor. from_config draws the model's own initialization (_init_weights).
        cls: Any = type(loaded.model)
        config = loaded.model.config
        return lambda: cls._from_config(config)
    if opts.arch is not None:
        from deadrelu.loading.checkpoint import build_arch

        arch, arch_kwargs, paths = opts.arch, opts.arch_kwargs, opts.import_paths
        return lambda: build_arch(arch, arch_kwargs, import_paths=paths)
    return None
