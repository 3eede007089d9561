"""What a "batch" is: turning user data into model calls, one batch at a time.

A batch is a tensor (``model(x)``), a tuple/list whose first item is the input
(labels and the rest are ignored), or a dict passed as ``model(**batch)``.
Samples are counted along dim 0 of the input, or along ``dim`` for time-major
data (``(T, N, E)`` for sequence modules built with ``batch_first=False``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from deadrelu.errors import ConfigError, DataError


def _as_tensor(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "__array__"):
        return torch.from_numpy(value)
    return value


def model_input(batch: Any) -> Any:
    """The part of ``batch`` the model is called with (tensor or dict)."""
    batch = _as_tensor(batch)
    if isinstance(batch, Tensor | Mapping):
        return batch
    if isinstance(batch, (tuple, list)) and batch:
        return _as_tensor(batch[0])
    raise DataError(
        f"a batch of type {type(batch).__name__} is not a tensor, tuple/list or dict",
        "yield tensors, (input, label) tuples or dicts of tensors from the data",
    )


def batch_size(inputs: Any, dim: int = 0) -> int:
    """Number of samples in ``inputs``: dim ``dim`` of the tensor, or of a dict's batched tensors.

    In a dict, the size shared by the most tensors of rank > ``dim`` is the batch
    (``input_ids`` and ``attention_mask`` agree; a lone ``bias`` vector does not count).
    """
    if isinstance(inputs, Tensor):
        return int(inputs.shape[dim]) if inputs.ndim > dim else 1
    if isinstance(inputs, Mapping):
        tensors = [t for v in inputs.values()
                   if isinstance(t := _as_tensor(v), Tensor) and t.ndim > dim]
        if tensors:
            sizes = [int(t.shape[dim]) for t in tensors]
            # most tensors agree on the batch; on a tie, a batch of vectors (rank ≥ 2) wins
            # over a lone 1-d tensor, then the first key
            best = max(range(len(tensors)), key=lambda i: (
                sizes.count(sizes[i]), tensors[i].ndim >= 2, -i))
            return sizes[best]
        if any(isinstance(_as_tensor(v), Tensor) for v in inputs.values()):
            return 1
    raise DataError("a batch holds no tensor", "each batch needs at least one tensor input")


def take(inputs: Any, n: int, dim: int = 0) -> Any:
    """The first ``n`` samples of ``inputs`` (in a dict, of the tensors that hold the batch)."""
    if isinstance(inputs, Tensor):
        return inputs.narrow(dim, 0, n)
    size = batch_size(inputs, dim)
    out = {}
    for key, value in inputs.items():
        t = _as_tensor(value)
        batched = isinstance(t, Tensor) and t.ndim > dim and int(t.shape[dim]) == size
        out[key] = t.narrow(dim, 0, n) if batched else value
    return out


def to_device(inputs: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    """Move tensors to ``device`` (non-blocking); cast floating tensors to ``dtype``."""

    def move(t: Any) -> Any:
        t = _as_tensor(t)
        if not isinstance(t, Tensor):
            return t
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            return t.to(device=device, dtype=dtype, non_blocking=True)
        return t.to(device, non_blocking=True)

    if isinstance(inputs, Mapping):
        return {k: move(v) for k, v in inputs.items()}
    return move(inputs)


def call(model: nn.Module, inputs: Any) -> Any:
    """Run the model on one batch's inputs."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def iterate(data: Any, chunk: int, dim: int = 0) -> Iterator[Any]:
    """Batches of ``data``: a tensor/array is cut into chunks of ``chunk`` samples along ``dim``."""
    data = _as_tensor(data)
    if isinstance(data, Tensor):
        if data.ndim <= dim:
            raise DataError(f"data is a {data.ndim}-d tensor",
                            f"pass a batch of samples with the batch on dim {dim}")
        for start in range(0, data.shape[dim], chunk):
            yield data.narrow(dim, start, min(chunk, data.shape[dim] - start))
        return
    if isinstance(data, Mapping):
        yield data
        return
    if not isinstance(data, Iterable):
        raise ConfigError(
            f"data of type {type(data).__name__} is not iterable",
            "pass a tensor, a DataLoader or any iterable of batches",
        )
    yield from data


def total_samples(data: Any, dim: int = 0) -> int | None:
    """The number of samples in ``data`` when it can be known without iterating."""
    data = _as_tensor(data)
    if isinstance(data, Tensor):
        return int(data.shape[dim]) if data.ndim > dim else None
    dataset = getattr(data, "dataset", None)
    if dataset is not None:
        try:
            return len(dataset)
        except TypeError:
            return None
    return getattr(data, "num_samples", None)
