"""What a loader returns (:class:`LoadedModel`) and what every loader shares: the formats,
the file suffixes torch writes, and the wording of the trust messages.

Below both :mod:`deadrelu.loading.checkpoint` and :mod:`deadrelu.loading.hf`, so that
``checkpoint`` can hand a model directory to ``hf`` without the two importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deadrelu.loading.imports import one_line

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FORMATS", "TORCH_SUFFIXES", "TRUST_FIX", "LoadedModel", "unpickling_reason"]

FORMATS = ("pickle", "state_dict", "safetensors", "torchscript", "export", "transformers")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pt2", ".tar", ".safetensors")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to scan, and how it was obtained.

    Attributes:
        model: the loaded module (not moved to eval mode; that is the scanner's job).
        format: one of :data:`FORMATS`.
        description: one line for the report header, e.g. ``"Net from model.pt (state_dict)"``.
        notes: things done to make it load (prefixes stripped, keys ignored) or caveats.
        missing_keys: keys the model expected but the file lacked, tolerated
            because they are ``num_batches_tracked`` buffers.
        unexpected_keys: likewise for keys in the file that the model lacks.
        recipe: how the model was trained, when the checkpoint says (optimizer, lr,
            schedule, step: see :mod:`deadrelu.loading.recipe`), else ``None``.
    """

    model: nn.Module
    format: str
    description: str
    notes: tuple[str, ...] = ()
    missing_keys: tuple[str, ...] = ()
    unexpected_keys: tuple[str, ...] = ()
    recipe: Mapping[str, Any] | None = None


TRUST_FIX = (
    "pass --trust-checkpoint to unpickle it fully (this runs code from the file; only do it if "
    "you trust where it came from)"
)


def unpickling_reason(exc: BaseException) -> str:
    """The informative line of torch's several-paragraph weights-only error."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest
            if index + 1 < len(lines):
                return lines[index + 1]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return one_line(exc)
