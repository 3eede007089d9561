"""Open whatever ``--data`` names as a stream of model-input batches.

``open_data`` only dispatches and validates; each family of inputs has its own
reader (:mod:`~deadrelu.loading.images`, :mod:`~deadrelu.loading.arrays`,
:mod:`~deadrelu.loading.tables`). Two steps apply to every source and live
here: ``limit`` (stop after N samples, without reading further) and
``normalize`` (``(x - mean) / std``, per channel along dim 1 of the batch).
Every problem a user can cause is a :class:`~deadrelu.errors.DataError` naming
the path, or a :class:`~deadrelu.errors.ConfigError` naming the option value.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import ConfigError, DataError
from deadrelu.files import require_regular
from deadrelu.loading.arrays import TENSOR_SUFFIXES, open_arrays
from deadrelu.loading.audio import AUDIO_SUFFIXES, open_audio
from deadrelu.loading.images import IMAGE_SUFFIXES, list_images, open_images
from deadrelu.loading.imports import (
    exits_refused,
    extra_sys_path,
    is_object_spec,
    one_line,
    resolve_object,
)
from deadrelu.loading.source import Batch, DataSource, limited
from deadrelu.loading.tables import TABLE_SUFFIXES, open_tables

if TYPE_CHECKING:
    from deadrelu.loading.preprocess import ImageTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SUPPORTED = (
    "a folder of images, an image, .pt/.pth/.npy/.npz/.safetensors tensors, "
    ".csv/.parquet tables, .txt/.jsonl/.json text, .wav/.flac audio, or module:function"
)

__all__ = ["DataSource", "open_data", "parse_image_size", "parse_normalize"]


def open_data(
    spec: str | Path,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    image_size: int | tuple[int, int] | str | None = None,
    normalize: str | None = "none",
    target: str | None = None,
    channels: int | None = None,
    import_paths: Sequence[str | Path] = (),
    tokenizer: Any = None,
    text_column: str | None = None,
    max_length: int | None = None,
    model_max_length: int | None = None,
    transform: ImageTransform | None = None,
    feature_extractor: Any = None,
) -> DataSource:
    """Open ``spec`` as a re-iterable, streaming source of input batches.

    Args:
        spec: a path (image folder or file, tensor file or folder, CSV/Parquet
            table or folder) or ``module:function`` / ``file.py:function`` returning
            an iterable of batches (a DataLoader works) or a tensor.
        batch_size: samples per batch for file sources (a function's own batching is kept).
        limit: stop after this many samples.
        image_size: resize images to ``H`` or ``(H, W)`` (also ``"HxW"``).
        normalize: ``"none"``, ``"imagenet"``, ``"MEAN,STD"`` or per channel
            ``"m1/m2/m3,s1/s2/s3"``.
        target: table column to drop (the label).
        channels: image channels: 1 (greyscale), 3 (RGB, the default) or 4 (RGBA).
        import_paths: directories searched first when ``spec`` names a function.
        tokenizer: a ``transformers`` tokenizer for text data (``.txt``, ``.jsonl``,
            ``.json``, and tables with a text column; see :mod:`deadrelu.loading.text`).
        text_column, max_length, model_max_length: for text data, see
            :func:`deadrelu.loading.text.open_text`.
        transform: an eval transform for images (short side resized, centre crop; see
            :mod:`deadrelu.loading.preprocess`), instead of ``image_size``.
        feature_extractor: for ``.wav``/``.flac`` audio, a ``transformers`` feature
            extractor (see :mod:`deadrelu.loading.audio`).

    Returns:
        The :class:`DataSource`. Files have only been opened (headers, the first
        image); a ``module:function`` spec has been called once.

    Raises:
        DataError: missing, empty, unreadable or unsupported data.
        ConfigError: an invalid option value.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size} is not positive", "pass --batch-size 1 or more")
    if limit is not None and limit < 1:
        raise ConfigError(
            f"limit {limit} is not positive", "pass --limit 1 or more, or leave it out"
        )
    if channels not in (None, 1, 3, 4):
        raise ConfigError(
            f"--channels {channels} is not supported", "pass --channels 1 (greyscale) or 3 (RGB)"
        )
    size = parse_image_size(image_size)
    if size is not None and transform is not None:
        raise ConfigError(
            f"--image-size and {transform.source} both say how to size the images",
            "pass one of them (--image-size squashes to a size; a centre crop keeps the aspect)",
        )
    stats = parse_normalize(normalize)
    text = _text_source(spec, tokenizer, batch_size=batch_size, limit=limit,
                        text_column=text_column, max_length=max_length,
                        model_max_length=model_max_length)
    source, kind = (text, "text") if text is not None else _open(
        spec,
        batch_size=batch_size,
        limit=limit,
        image_size=size,
        channels=channels,
        target=target,
        import_paths=import_paths,
        transform=transform,
        feature_extractor=feature_extractor,
    )
    notes = list(source.notes)
    if kind != "images":
        ignored = [
            name
            for name, value in (("--image-size", image_size), ("--channels", channels))
            if value is not None
        ]
        if ignored:
            notes.append(f"{' and '.join(ignored)} ignored: the data is not images")
    if kind != "table" and target is not None:
        notes.append("--target ignored: the data is not a table")
    if stats is not None:
        _check_normalize(stats, source, normalize)
        notes.append(f"normalized with mean {_fmt(stats[0])}, std {_fmt(stats[1])}")

    def batches() -> Iterator[Batch]:
        stream = limited(iter(source), limit)
        if stats is None:
            return stream
        return (_normalized(b, stats) for b in stream)

    num = source.num_samples
    description = source.description
    if num is not None and limit is not None and limit < num:
        description += f", limited to the first {limit:,}"
        num = limit
    return DataSource(
        batches,
        description=description,
        num_samples=num,
        sample_shape=source.sample_shape,
        notes=notes,
    )


def _text_source(spec: str | Path, tokenizer: Any, *, batch_size: int, limit: int | None,
                 text_column: str | None, max_length: int | None,
                 model_max_length: int | None) -> DataSource | None:
    """The text reader's source when ``spec`` is text, else None (see :mod:`.text`)."""
    from deadrelu.loading.text import is_saved_dataset, is_text_file, open_text

    path = Path(spec)
    if not (path.is_file() or is_saved_dataset(path)) or not is_text_file(
            path, tokenizer_known=tokenizer is not None, text_column=text_column):
        return None
    if tokenizer is None:
        raise DataError(
            f"--data {path} is text, which needs a tokenizer to become token ids",
            "scan the model's save_pretrained directory with its tokenizer saved beside it, "
            "or pass --tokenizer DIR",
        )
    return open_text(path, tokenizer, batch_size=batch_size, limit=limit,
                     text_column=text_column, max_length=max_length,
                     model_max_length=model_max_length)


def _open(
    spec: str | Path,
    *,
    batch_size: int,
    limit: int | None,
    image_size: tuple[int, int] | None,
    channels: int | None,
    target: str | None,
    import_paths: Sequence[str | Path],
    transform: ImageTransform | None = None,
    feature_extractor: Any = None,
) -> tuple[DataSource, str]:
    path = Path(spec)
    if isinstance(spec, str) and not path.exists() and is_object_spec(spec):
        return _open_function(spec, batch_size=batch_size, import_paths=import_paths), "function"
    if not path.exists():
        raise DataError(
            f"data path {path} does not exist",
            f"check --data (relative paths start at the working directory); it takes {_SUPPORTED}",
        )
    if path.is_dir():
        files, kind = _classify_folder(path)
    else:
        file_kind = _kind_of(path)
        if file_kind is None:
            raise DataError(
                f"data file {path} has an unsupported extension {path.suffix or '(none)'!r}",
                f"--data takes {_SUPPORTED}",
            )
        files, kind = [path], file_kind
    for file in files:  # a FIFO or device would block the first read forever
        require_regular(file, what="data file", error=DataError)
    if kind == "images":
        source = open_images(
            path,
            files=files,
            batch_size=batch_size,
            limit=limit,
            image_size=image_size,
            channels=channels,
            transform=transform,
        )
    elif kind == "audio":
        source = open_audio(path, files, batch_size=batch_size, limit=limit,
                            feature_extractor=feature_extractor)
    elif kind == "tensors":
        source = open_arrays(path, files, batch_size=batch_size)
    else:
        source = open_tables(path, files, batch_size=batch_size, limit=limit, target=target)
    return source, kind


def _kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "images"
    if suffix in TENSOR_SUFFIXES:
        return "tensors"
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    return None


def _classify_folder(path: Path) -> tuple[list[Path], str]:
    """Decide what a data folder holds: images win (a labels.csv beside them is common)."""
    images = list_images(path)
    if images:
        return images, "images"
    files = sorted(
        p
        for p in path.rglob("*")
        # FIFOs and devices are kept, to be refused by name below rather than skipped
        if p.exists() and not p.is_dir() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"data folder {path} is empty", f"point --data at {_SUPPORTED}")
    by_kind: dict[str, list[Path]] = {}
    for file in files:
        kind = _kind_of(file)
        if kind is not None:
            by_kind.setdefault(kind, []).append(file)
    if not by_kind:
        suffixes = sorted({f.suffix or "(none)" for f in files})
        raise DataError(
            f"data folder {path} holds no images, tensor or table files (found {', '.join(suffixes[:6])})",
            f"point --data at {_SUPPORTED}",
        )
    if len(by_kind) > 1:
        labels = {"tensors": "tensor", "table": "table", "audio": "audio"}
        counts = ", ".join(f"{len(v)} {labels[k]} file(s)" for k, v in sorted(by_kind.items()))
        raise DataError(
            f"data folder {path} mixes kinds of data ({counts})",
            "point --data at a folder (or file) holding one kind",
        )
    ((kind, kind_files),) = by_kind.items()
    return kind_files, kind


def _open_function(spec: str, *, batch_size: int, import_paths: Sequence[str | Path]) -> DataSource:
    """Call a ``module:function`` data spec and stream what it returns."""
    import torch

    function = resolve_object(spec, option="--data", error=DataError, import_paths=import_paths)
    if not callable(function):
        raise DataError(
            f"--data {spec!r} names a value of type {type(function).__name__}, which cannot be called",
            "point --data at a function returning batches (e.g. a DataLoader)",
        )

    def call() -> Any:
        kwargs = {"batch_size": batch_size} if _accepts_batch_size(function) else {}
        with exits_refused(f"--data {spec!r}", DataError):
            try:
                with extra_sys_path(import_paths):
                    return function(**kwargs)
            except Exception as exc:
                raise DataError(
                    f"--data {spec!r} raised {type(exc).__name__}: {one_line(exc)}",
                    "fix the data function, or check that it runs on its own",
                ) from exc

    result = call()
    if isinstance(result, torch.Tensor) or (
        isinstance(result, Mapping)
        and result
        and all(isinstance(v, torch.Tensor) for v in result.values())
    ):
        # A whole dataset in memory: batch it like a tensor file.
        return _in_memory(result, spec, batch_size=batch_size)
    if not isinstance(result, Iterable):
        raise DataError(
            f"--data {spec!r} returned a value of type {type(result).__name__}, which is not iterable",
            "return a DataLoader, a list of batches, a generator, or a tensor",
        )
    one_shot = isinstance(result, Iterator)
    # A one-shot iterator (a generator) serves the first pass, with its peeked
    # batch put back in front; later passes call the function again.
    pending: list[Iterable[Any]] = [result]
    sample_shape = _peek_shape(result, spec, pending)

    def batches() -> Iterator[Batch]:
        current = (pending.pop() if pending else call()) if one_shot else result
        iterator = iter(current)
        index = 0
        while True:
            with exits_refused(f"--data {spec!r}: producing batch {index}", DataError):
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                except Exception as exc:
                    raise DataError(
                        f"--data {spec!r}: producing batch {index} raised {type(exc).__name__}: "
                        f"{one_line(exc)}",
                        "fix the data function, or check that it runs on its own",
                    ) from exc
            yield _as_batch(batch, spec, index)
            index += 1

    return DataSource(
        batches,
        description=f"batches from {spec}",
        num_samples=_dataset_length(result),
        sample_shape=sample_shape,
    )


def _accepts_batch_size(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "batch_size" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
    )


def _dataset_length(result: Any) -> int | None:
    dataset = getattr(result, "dataset", None)  # torch DataLoader
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def _peek_shape(result: Any, spec: str, pending: list[Iterable[Any]]) -> tuple[int, ...] | None:
    """Shape of one sample, read without consuming a one-shot iterator's batches."""
    import itertools

    import torch

    dataset = getattr(result, "dataset", None)
    if dataset is not None and hasattr(dataset, "__getitem__"):
        try:
            sample = dataset[0]
        except Exception:
            return None
        sample = sample[0] if isinstance(sample, (tuple, list)) and sample else sample
        return tuple(sample.shape) if isinstance(sample, torch.Tensor) else None
    iterator = iter(result)
    with exits_refused(f"--data {spec!r}: getting the first batch", DataError):
        try:
            first = next(iterator)
        except StopIteration:
            raise DataError(
                f"--data {spec!r} returned no batches", "return at least one batch"
            ) from None
        except Exception as exc:
            raise DataError(
                f"--data {spec!r}: getting the first batch raised {type(exc).__name__}: "
                f"{one_line(exc)}",
                "fix the data function, or check that it runs on its own",
            ) from exc
    if iterator is result:  # one-shot: put the peeked batch back in front
        pending[:] = [itertools.chain([first], iterator)]
    batch = _as_batch(first, spec, 0)
    return tuple(batch.shape[1:]) if isinstance(batch, torch.Tensor) else None


def _as_batch(batch: Any, spec: str, index: int) -> Batch:
    """Normalise what a user's iterable yields: ``(x, y)`` -> ``x``; arrays -> tensors."""
    import numpy as np
    import torch

    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            raise DataError(
                f"--data {spec!r}: batch {index} is a single number",
                "yield batches with the sample dimension first",
            )
        return batch
    if (
        isinstance(batch, Mapping)
        and batch
        and all(isinstance(v, torch.Tensor) for v in batch.values())
    ):
        return {str(k): v for k, v in batch.items()}
    raise DataError(
        f"--data {spec!r}: batch {index} is of type {type(batch).__name__}, not a tensor or a "
        "dict of tensors",
        "yield tensors, (inputs, labels) tuples, or dicts of tensors",
    )


def _in_memory(data: Any, spec: str, *, batch_size: int) -> DataSource:
    import torch

    if isinstance(data, torch.Tensor):
        length = int(data.shape[0]) if data.dim() else 0
        shape: tuple[int, ...] | None = tuple(data.shape[1:])
    else:
        lengths = {int(v.shape[0]) if v.dim() else -1 for v in data.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise DataError(
                f"--data {spec!r} returned a dict whose tensors differ in length along dim 0",
                "return tensors with one row per sample",
            )
        length, shape = lengths.pop(), None
    if length == 0:
        raise DataError(f"--data {spec!r} returned no samples", "return at least one sample")

    def batches() -> Iterator[Batch]:
        for start in range(0, length, batch_size):
            yield _as_batch(
                data[start : start + batch_size]
                if isinstance(data, torch.Tensor)
                else {k: v[start : start + batch_size] for k, v in data.items()},
                spec,
                start // batch_size,
            )

    return DataSource(
        batches,
        description=f"{length:,} samples from {spec}",
        num_samples=length,
        sample_shape=shape,
    )


def parse_image_size(
    value: int | tuple[int, int] | Sequence[int] | str | None,
) -> tuple[int, int] | None:
    """``224``, ``"224"``, ``"224x160"``, ``"224,160"`` or ``(224, 160)`` -> ``(height, width)``.

    Raises:
        ConfigError: anything else, or a non-positive size.
    """
    if value is None:
        return None
    parts: list[Any]
    if isinstance(value, int):
        parts = [value, value]
    elif isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        parts = parts * 2 if len(parts) == 1 else parts
    else:
        parts = list(value)
    try:
        height, width = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--image-size {value!r} is not a size", "pass --image-size 224 or --image-size 224x160"
        ) from None
    if height < 1 or width < 1:
        raise ConfigError(f"--image-size {value!r} is not positive", "pass e.g. --image-size 224")
    return height, width


def parse_normalize(value: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``"none"`` -> None; ``"imagenet"``, ``"0.5,0.25"`` or ``"m1/m2/m3,s1/s2/s3"`` -> (mean, std).

    Raises:
        ConfigError: unparsable values, mismatched lengths, or a std of zero.
    """
    if value is None or value.strip().lower() in ("", "none"):
        return None
    if value.strip().lower() == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    fix = "pass --normalize none, imagenet, MEAN,STD or m1/m2/m3,s1/s2/s3"
    halves = value.split(",")
    if len(halves) != 2:
        raise ConfigError(f"--normalize {value!r} is not of the form MEAN,STD", fix)
    try:
        mean, std = (tuple(float(v) for v in half.split("/")) for half in halves)
    except ValueError:
        raise ConfigError(
            f"--normalize {value!r} contains a value that is not a number", fix
        ) from None
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise ConfigError(f"--normalize {value!r} has {len(mean)} means but {len(std)} stds", fix)
    if len(mean) != len(std):  # one side is a single value: share it across channels
        width = max(len(mean), len(std))
        mean, std = mean * (width // len(mean)), std * (width // len(std))
    if any(s == 0 for s in std):
        raise ConfigError(f"--normalize {value!r} has a std of 0", "every std must be non-zero")
    return mean, std


def _check_normalize(
    stats: tuple[tuple[float, ...], tuple[float, ...]], source: DataSource, value: str | None
) -> None:
    shape = source.sample_shape
    if shape is None:
        raise ConfigError(
            f"--normalize {value!r} cannot apply to {source.description}: batches are dicts or of unknown shape",
            "leave --normalize out and normalize inside the data function",
        )
    channels = len(stats[0])
    if channels > 1 and (not shape or shape[0] != channels):
        got = shape[0] if shape else 1
        raise DataError(
            f"--normalize {value!r} has {channels} per-channel values but data samples have shape "
            f"{shape}, i.e. {got} channel(s) along the first dimension",
            _normalize_fix(channels, got),
        )


def _normalize_fix(channels: int, got: int) -> str:
    """Suggest only what the loader accepts: image channels are 1, 3 or 4."""
    if channels in (3, 4):
        return f"pass --channels {channels} for images, or give one value per channel"
    values = "/".join(["0.5"] * got)
    return f"give one mean and one std per channel, e.g. --normalize {values},{values}"


def _normalized(batch: Batch, stats: tuple[tuple[float, ...], tuple[float, ...]]) -> Batch:
    import torch

    if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
        raise DataError(
            "--normalize was given but the data holds integer or dict batches",
            "leave --normalize out for this data",
        )
    mean, std = (torch.tensor(s, dtype=batch.dtype) for s in stats)
    if mean.numel() > 1:
        view = (1, -1) + (1,) * (batch.dim() - 2)
        mean, std = mean.view(view), std.view(view)
    return (batch - mean) / std


def _fmt(values: tuple[float, ...]) -> str:
    return "/".join(f"{v:g}" for v in values)
