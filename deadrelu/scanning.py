"""``deadrelu.scan``: run a model over data once and return a :class:`Report`.

The one-shot function built on the long-lived :class:`~deadrelu.collector.Collector`:
it owns the model's state for the duration of the scan and restores it on every
exit path (hooks removed, train/eval flags and device restored), so calling it
twice gives identical results and the weights are never changed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deadrelu import batches
from deadrelu.analyzer import Thresholds, rule_out_rate
from deadrelu.assemble import assemble_report
from deadrelu.collector import Collector, Site, eval_mode
from deadrelu.datastats import DataStats
from deadrelu.diagnose.selection import Selection, excluding
from deadrelu.errors import ConfigError, DeadReluError, ModelError
from deadrelu.identity import PendingWeights, start_reading, unwrap
from deadrelu.report import Report
from deadrelu.wording import plural

ProgressCallback = Callable[[int, "int | None"], None]


class InsufficientDataWarning(UserWarning):
    """Too few samples for a "dead" verdict to mean much."""


def model_devices(model: nn.Module) -> list[torch.device]:
    """The devices holding the model's weights, in order of first use (offloaded
    ``meta`` weights, which hooks bring in when their layer runs, are not a device)."""
    found: dict[torch.device, None] = {}
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type != "meta":
            found.setdefault(tensor.device)
    return list(found)


def resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to scan on: ``device`` if given (``"auto"``: CUDA when available), else the model's.

    A model spread over several devices (``device_map="auto"``, layers placed by hand,
    offloaded weights) stays where it is unless a device is named explicitly: the
    inputs go to the device of its first weights, and each site's counters live on
    the device its activations are computed on.
    """
    devices = model_devices(model)
    spread = len(devices) > 1 or any(t.device.type == "meta" for t in model.parameters())
    if device is None or (str(device) == "auto" and spread):
        return devices[0] if devices else torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available",
                          "use --device cpu (or auto)")
    return dev


def _float_dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def scan(
    model: nn.Module,
    data: Any,
    *,
    limit: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    thresholds: Thresholds | None = None,
    unit_axis: Mapping[str, int] | None = None,
    saturation_margin: float = 0.01,
    progress: ProgressCallback | bool | None = None,
    partial_on_interrupt: bool = False,
    model_name: str | None = None,
    data_name: str | None = None,
    selection: Selection | Mapping[str, Any] | None = None,
    batch_dim: int = 0,
    recipe: Mapping[str, Any] | None = None,
    init: Mapping[str, Any] | None = None,
    exclude_layers: Sequence[str] | str = (),
) -> Report:
    """Scan ``model`` over ``data`` and report per-unit firing statistics.

    Runs under ``torch.no_grad()`` with every submodule in eval mode; afterwards the
    hooks are removed and each module's train/eval flag (and the model's device, if
    ``device`` moved it) is restored, also when the forward raises.

    Under ``torch.distributed`` (an initialized group of more than one rank) this is a
    collective: each rank scans its own ``data`` and every rank returns the report of
    all ranks' data together (see :mod:`deadrelu.distributed`).

    Args:
        model: the network; ``torch.compile``/DDP wrappers are scanned through the module inside.
        data: a tensor (cut into ``batch_size`` chunks), a ``DataLoader`` or any iterable of
            batches: tensors, ``(input, label, ...)`` tuples, or dicts passed as ``model(**batch)``.
        limit: stop after this many samples (the last batch is cut).
        device: where to run (``"auto"``, ``"cpu"``, ``"cuda:1"``...); default: the model's device.
        batch_size: chunk size when ``data`` is a single tensor.
        thresholds: verdict thresholds (see :class:`~deadrelu.analyzer.Thresholds`).
        unit_axis: site-name glob → unit dimension, overriding the default rule.
        saturation_margin: band width of sigmoid/tanh saturation.
        progress: called as ``progress(samples_done, total_or_None)`` after each batch;
            ``True`` shows a bar (an HTML bar in a Jupyter notebook, rich on a terminal's
            stderr, nothing in a pipe).
        partial_on_interrupt: on Ctrl-C return the report of the batches seen so far,
            marked ``partial``, instead of raising ``KeyboardInterrupt``.
        model_name, data_name: labels for the report header.
        selection: which diagnosis rules to report (``select``/``ignore``/``per_layer_ignores``,
            see :class:`~deadrelu.diagnose.Selection`); kept in ``meta["selection"]`` so that
            re-diagnosis (``with_thresholds``, ``merge``) uses the same rules.
        batch_dim: the dim of the inputs that holds the samples: 0 (batch-first), or 1
            for time-major ``(T, N, E)`` data fed to sequence modules built with
            ``batch_first=False`` (PyTorch's default for ``nn.Transformer*``, ``nn.LSTM``...).
        recipe: how the model was trained (``deadrelu.loading.recipe.read_recipe`` of a
            training checkpoint); kept in ``meta["recipe"]``, where the diagnosis turns it
            into concrete advice (the learning rate to try, weight decay by its value).
        init: dead units of freshly initialized copies on the same data
            (``deadrelu.init_compare.init_baseline``); kept in ``meta["init"]``, where the
            diagnosis tells units dead from initialization (DR015) from units that died.
        exclude_layers: site-name globs (``fnmatch``, e.g. ``"head.*"``) whose findings are
            never reported: ``exclude-layers`` of ``[tool.deadrelu]``, the same as
            ``per_layer_ignores={glob: ["ALL"]}`` in ``selection`` (and kept with it, so
            re-diagnosis leaves them out too). Their statistics stay in the report.

    Returns:
        A :class:`~deadrelu.report.Report`.

    Raises:
        ConfigError: an invalid argument.
        ModelError: the forward pass raised (the message names the last site that ran),
            or the model has no activation sites.
    """
    _check_sizes(limit, batch_size, batch_dim)
    if isinstance(progress, bool):
        if not progress:
            progress = None
        else:
            from deadrelu.progress import progress_bar

            with progress_bar() as update:
                return scan(model, data, limit=limit, device=device, batch_size=batch_size,
                            thresholds=thresholds, unit_axis=unit_axis,
                            saturation_margin=saturation_margin, progress=update,
                            partial_on_interrupt=partial_on_interrupt, model_name=model_name,
                            data_name=data_name, selection=selection, batch_dim=batch_dim,
                            recipe=recipe, init=init, exclude_layers=exclude_layers)
    thresholds = thresholds or Thresholds()
    chosen = Selection.coerce(selection)
    if exclude_layers:
        chosen = excluding(chosen, exclude_layers)
    module, notes = unwrap(model)
    dev = resolve_device(module, device)
    home = resolve_device(module, None)
    dtype = _float_dtype(module)
    total = batches.total_samples(data, batch_dim)
    if limit is not None:
        total = min(total, limit) if total is not None else limit

    collector = Collector(module, unit_axis=unit_axis, saturation_margin=saturation_margin,
                          batch_dim=batch_dim)
    data_stats = DataStats(batch_dim)
    seen = 0
    partial = False
    start = time.perf_counter()
    moved = dev != home
    reading = PendingWeights(module, background=False)  # replaced once the model is on `dev`
    reported = False  # else the background read is stopped and joined
    try:
        if moved:
            module.to(dev)
        reading = start_reading(module)  # hashes the weights on a free core during the forwards
        with eval_mode(module), torch.no_grad(), collector:
            # `seen` counts the batches done, so that Ctrl-C keeps the count of those
            for seen in _feed(module, data, collector, data_stats, limit=limit,
                              batch_size=batch_size, batch_dim=batch_dim, device=dev, dtype=dtype):
                if progress is not None:
                    progress(seen, total)
            sites = collector.snapshot()
        reported = True
    except KeyboardInterrupt:
        if not partial_on_interrupt:
            raise
        partial = True
        sites = collector.snapshot()
        reported = True
    finally:
        if not reported:
            reading.cancel()
        collector.detach()
        if moved:
            module.to(home)
    # the weights after the scan: the background hash if the forwards left them as they were
    weights = reading.result()
    data_meta = data_stats.to_meta()
    if collector.tokens:  # text: the attention masks' real tokens (padding excluded)
        data_meta["tokens"] = collector.tokens
    from deadrelu import distributed

    if distributed.is_distributed():  # every rank scanned its share: combine them
        sites, seen, partial, data_meta = distributed.reduce_scan(sites, seen, partial, data_meta)
    seconds = time.perf_counter() - start

    _check_seen(module, sites, seen, partial)
    run = {
        "model": model_name or type(module).__name__,
        "data": data_name or type(data).__name__,
        "device": str(dev),
        "seconds": round(seconds, 4),
        "samples": seen,
        "partial": partial,
        "mode": "eval",
        "notes": notes,
    }
    measured: dict[str, Any] = dict(data_meta)
    if collector.output_producer is not None:
        producer, direct = collector.output_producer
        measured["output"] = {"producer": producer, "direct": direct}
    if chosen is not None:
        measured["selection"] = chosen.to_dict()
    if recipe:
        measured["recipe"] = dict(recipe)
    if init:
        measured["init"] = dict(init)
    return assemble_report(module, sites, thresholds, run, measured, weights)


def _check_sizes(limit: int | None, batch_size: int, batch_dim: int) -> None:
    """Refuse a limit, batch size or batch dim that is not a count."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}", "pass e.g. limit=1000")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}", "pass e.g. 256")
    if isinstance(batch_dim, bool) or not isinstance(batch_dim, int) or batch_dim < 0:
        raise ConfigError(f"batch_dim must be a non-negative int, got {batch_dim!r}",
                          "pass 0 for batch-first data, 1 for (T, N, E) sequences")


def _feed(module: nn.Module, data: Any, collector: Collector, data_stats: DataStats, *,
          limit: int | None, batch_size: int, batch_dim: int, device: torch.device,
          dtype: torch.dtype | None) -> Iterator[int]:
    """Run ``module`` over ``data`` (cut at ``limit`` samples), yielding the samples seen
    so far after each batch."""
    seen = 0
    for index, batch in enumerate(batches.iterate(data, batch_size, batch_dim)):
        inputs = batches.model_input(batch)
        n = batches.batch_size(inputs, batch_dim)
        if limit is not None and seen + n > limit:
            n = limit - seen
            inputs = batches.take(inputs, n, batch_dim)
        if n <= 0:
            break
        inputs = batches.to_device(inputs, device, dtype)
        data_stats.update_input(inputs)
        data_stats.update_output(_forward(module, inputs, index, collector))
        seen += n
        yield seen
        if limit is not None and seen >= limit:
            break


def _forward(module: nn.Module, inputs: Any, index: int, collector: Collector) -> Any:
    """``module(inputs)``; a failure becomes a one-line :class:`ModelError` naming where."""
    try:
        return batches.call(module, inputs)
    except KeyboardInterrupt:
        raise
    except DeadReluError:
        raise
    except SystemExit as exc:  # the model's code exiting would end the caller silently
        raise ModelError(f"the model's forward called sys.exit({exc.code!r}) on batch "
                         f"{index}", "remove the sys.exit call from the model's code"
                         ) from None
    except Exception as exc:
        raise _forward_error(exc, index, collector) from exc


def _check_seen(module: nn.Module, sites: list[Site], seen: int, partial: bool) -> None:
    """Refuse a scan that saw no samples or no activation; warn when too few samples."""
    if not sites and not partial:
        if seen == 0:
            raise ConfigError("the data yielded no samples", "check the data path or iterable")
        raise ModelError(
            f"no activation sites were seen in {type(module).__name__}'s forward",
            "deadrelu watches ReLU-family, sigmoid and tanh activations (modules, F.* functions "
            "and tensor methods); this model calls none of them",
        )
    if 0 < seen < 100 and not partial:
        warnings.warn(
            f"only {plural(seen, 'sample')} scanned: a unit unseen firing may still fire on "
            f"up to {rule_out_rate(seen):.0%} of inputs (95% confidence); scan more data for a "
            "firm verdict",
            InsufficientDataWarning,
            stacklevel=3,  # scan()'s caller
        )


def _forward_error(exc: Exception, index: int, collector: Collector) -> ModelError:
    """A one-line error naming where the forward failed and what that points to."""
    where = (f"after site {collector.last_site!r}" if collector.last_site
             else "before any activation ran")
    fix = "check that the data matches the model's input (shape, dtype, device)"
    failure = collector.failure
    if failure is not None:
        path, failed, shape = failure
        received = f", which received a tensor of shape {tuple(shape)}" if shape is not None else ""
        where = f"in `{path}` ({type(failed).__name__}){received}, {where}"
        if not type(failed).__module__.startswith("torch."):
            fix = (f"the error comes from the forward code of `{path}` "
                   f"({type(failed).__name__}); if the data's shape is right, run the model on one "
                   "batch outside deadrelu to debug it")
    message = str(exc).splitlines()[0] if str(exc) else ""
    return ModelError(
        f"the model's forward raised {type(exc).__name__} on batch {index} {where}: {message}".rstrip(": "),
        fix,
    )
