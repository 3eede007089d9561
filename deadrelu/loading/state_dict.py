"""Find the weights inside a checkpoint and fit them onto a freshly built model.

Training code wraps state dicts in many ways: nested under ``state_dict`` or
``model`` next to optimizer state, prefixed by ``module.`` (DDP) or
``_orig_mod.`` (``torch.compile``), or by the attribute name a Lightning module
keeps its network under. We undo the common wrappings, say so in notes, and
refuse loudly when keys or shapes still disagree: a model that silently keeps
random weights for some layers would produce a report about the wrong network.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

# Where checkpoints commonly keep the model's weights, most specific first; EMA
# copies come last so the trained weights win when both are present.
NESTED_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "module",
    "weights",
    "ema",
    "ema_state_dict",
    "state_dict_ema",
    "model_ema",
)
_WRAPPER_PREFIXES = {"module.": "DistributedDataParallel", "_orig_mod.": "torch.compile"}
# Buffers whose absence or presence never changes the forward pass in eval mode.
_IGNORABLE_SUFFIXES = ("num_batches_tracked",)
_SHOWN = 5


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of string keys to tensors (``_extra_state`` entries excepted)."""
    import torch

    if not isinstance(obj, Mapping) or not obj:
        return False
    has_tensor = False
    for key, value in obj.items():
        if not isinstance(key, str):
            return False
        if isinstance(value, torch.Tensor):
            has_tensor = True
        elif not key.endswith("_extra_state"):
            return False
    return has_tensor


def find_nested(obj: Any, *, depth: int = 2) -> tuple[Any, str] | None:
    """Find a state dict or ``nn.Module`` inside a checkpoint container.

    Returns:
        ``(found, where)``, ``where`` being the key path (``"state_dict"``,
        ``"model.state_dict"``) or ``""`` for the object itself; ``None`` when
        nothing usable is there.
    """
    from torch import nn

    if isinstance(obj, nn.Module) or is_state_dict(obj):
        return obj, ""
    if depth == 0 or not isinstance(obj, Mapping):
        return None
    for key in NESTED_KEYS:
        if key in obj:
            found = find_nested(obj[key], depth=depth - 1)
            if found is not None:
                inner, where = found
                return inner, f"{key}.{where}" if where else key
    return None


def describe_container(obj: Any) -> str:
    """A short description of what a checkpoint holds, for 'not a model' errors."""
    import torch

    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:8]]
        more = ", ..." if len(obj) > 8 else ""
        return f"a dict with keys {', '.join(keys)}{more}" if keys else "an empty dict"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def align_keys(
    state: Mapping[str, torch.Tensor], model_keys: set[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip wrapper prefixes so the state dict's keys line up with the model's.

    Returns:
        The re-keyed state dict and notes describing what was stripped.
    """
    result = dict(state)
    notes: list[str] = []
    # Wrappers can stack (a compiled DDP model: ``module._orig_mod.``).
    while True:
        for prefix, wrapper in _WRAPPER_PREFIXES.items():
            if _all_start_with(result, prefix) and not _all_start_with(model_keys, prefix):
                result = {k[len(prefix) :]: v for k, v in result.items()}
                notes.append(f"stripped key prefix {prefix!r} (saved from a {wrapper} wrapper)")
                break
        else:
            break
    needed = {k for k in model_keys if not k.endswith(_IGNORABLE_SUFFIXES)}
    if needed and not needed <= result.keys():
        # A training wrapper (e.g. a LightningModule holding the network as
        # ``self.model``) prefixes every key with an attribute name; accept
        # that prefix only if it makes every needed key appear.
        for prefix in sorted({k.split(".", 1)[0] + "." for k in result if "." in k}):
            stripped = {k[len(prefix) :]: v for k, v in result.items() if k.startswith(prefix)}
            if needed <= stripped.keys():
                ignored = len(result) - len(stripped)
                extra = f"; {ignored} other entries ignored" if ignored else ""
                notes.append(f"used the keys under prefix {prefix!r}{extra}")
                result = stripped
                break
    return result, notes


def apply_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, path: Path, arch: str
) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Load ``state`` into ``model``, refusing on shape or key mismatches.

    Returns:
        ``(missing_keys, unexpected_keys, notes)`` for the mismatches that were
        tolerated (only ``num_batches_tracked`` buffers).

    Raises:
        CheckpointError: shapes differ, or real keys are missing or unexpected.
    """
    from torch.nn.parameter import UninitializedParameter

    own = model.state_dict(keep_vars=True)
    aligned, notes = align_keys(state, set(own))
    mismatched = [
        (key, tuple(value.shape), tuple(own[key].shape))
        for key, value in aligned.items()
        if key in own
        and not isinstance(own[key], UninitializedParameter)
        and hasattr(value, "shape")
        and tuple(value.shape) != tuple(own[key].shape)
    ]
    if mismatched:
        key, saved, built = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise CheckpointError(
            f"{path} does not fit --arch {arch}: {key} has shape {saved} in the file but "
            f"{built} in the model{more}",
            "check that --arch and --arch-kwargs (e.g. num_classes, width) build the saved model",
        )
    result = model.load_state_dict(aligned, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(_IGNORABLE_SUFFIXES)]
    unexpected = [k for k in result.unexpected_keys if not k.endswith(_IGNORABLE_SUFFIXES)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) missing from the file ({_show(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) in the file ({_show(unexpected)})")
        raise CheckpointError(
            f"{path} does not fit --arch {arch}: " + " and ".join(parts),
            "check that --arch and --arch-kwargs build the model that was saved",
        )
    tolerated_missing = tuple(result.missing_keys)
    tolerated_unexpected = tuple(result.unexpected_keys)
    if tolerated_missing or tolerated_unexpected:
        notes.append(
            f"ignored {len(tolerated_missing) + len(tolerated_unexpected)} "
            "num_batches_tracked buffer(s) that differ between file and model"
        )
    return tolerated_missing, tolerated_unexpected, notes


def _all_start_with(keys: Any, prefix: str) -> bool:
    keys = list(keys)
    return bool(keys) and all(k.startswith(prefix) for k in keys)


def _show(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (", ..." if len(keys) > _SHOWN else "")
