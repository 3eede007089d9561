"""The :class:`DataSource` every data reader returns: a re-iterable stream of batches.

Readers hand over a *factory* of batch iterators rather than the batches
themselves, so a scan can iterate twice (e.g. a calibration pass, then the
measuring pass) and nothing is read before iteration starts: a directory of a
million images costs one ``listdir`` to open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import torch

Batch = Union["torch.Tensor", dict[str, "torch.Tensor"]]


class DataSource:
    """Batches of model inputs, plus what is known about them up front.

    Iterating yields batches: a float32 tensor of shape ``(n, *sample_shape)``
    (integer tensors are kept as int64, e.g. token ids), or, for dict-style data,
    a dict of tensors sharing their first dimension. Each iteration starts over.

    Attributes:
        description: one line for the report header, e.g. ``"1,000 images from data/"``.
        num_samples: how many samples iteration will yield, or ``None`` when that is
            unknown without reading everything (CSV files, user iterables).
        sample_shape: the shape of one sample (no batch dimension), or ``None`` for
            dict batches or when it cannot be known without iterating.
        notes: adjustments made while opening (columns dropped, pixels rescaled).
    """

    def __init__(
        self,
        batches: Callable[[], Iterator[Batch]],
        *,
        description: str,
        num_samples: int | None,
        sample_shape: tuple[int, ...] | None,
        notes: Sequence[str] = (),
    ) -> None:
        self._batches = batches
        self.description = description
        self.num_samples = num_samples
        self.sample_shape = sample_shape
        self.notes: tuple[str, ...] = tuple(notes)

    def __iter__(self) -> Iterator[Batch]:
        return self._batches()

    def __repr__(self) -> str:
        return (
            f"DataSource({self.description!r}, num_samples={self.num_samples}, "
            f"sample_shape={self.sample_shape})"
        )


def batch_length(batch: Batch) -> int:
    """Number of samples in a batch (first dimension; of the first value for dicts)."""
    if isinstance(batch, Mapping):
        first = next(iter(batch.values()))
        return int(first.shape[0])
    return int(batch.shape[0])


def take(batch: Batch, count: int) -> Batch:
    """The first ``count`` samples of a batch."""
    if isinstance(batch, Mapping):
        return {key: value[:count] for key, value in batch.items()}
    return batch[:count]


def limited(batches: Iterator[Batch], limit: int | None) -> Iterator[Batch]:
    """Stop after ``limit`` samples, cutting the last batch short; stops reading early too."""
    if limit is None:
        yield from batches
        return
    remaining = limit
    if remaining <= 0:
        return
    for batch in batches:
        size = batch_length(batch)
        if size > remaining:
            batch = take(batch, remaining)
            size = remaining
        remaining -= size
        yield batch
        if remaining <= 0:  # checked after yielding, so no extra batch is read
            return
