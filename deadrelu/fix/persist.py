"""Saving a pruned model, and rebuilding one from its weights and plan.

Two routes:

* the whole model, pickled with :func:`torch.save`: loads with
  ``torch.load(path, weights_only=False)`` and with deadrelu's safe loader
  (``deadrelu scan OUT``), which allows the module classes the file names. A class
  that deadrelu imported from a file (``--arch path/models.py:Net``) is recorded
  under the file's own name (``models.Net``), as if imported with its folder on
  ``sys.path`` (``--import-path path`` when loading);
* ``state-dict``: a safetensors file of the weights plus a small JSON *plan* of the
  new layer widths (also stored in the safetensors metadata), which
  :func:`load_pruned` applies to a fresh instance of the architecture.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deadrelu.errors import CheckpointError, ConfigError

PLAN_FORMAT = "deadrelu-prune-plan"
PLAN_VERSION = 1
_META_KEY = "deadrelu_prune_plan"
_USER_PREFIX = "_deadrelu_user_"


def plan_path(weights: Path) -> Path:
    """The JSON plan written beside ``weights`` (``model.safetensors`` → ``model.plan.json``)."""
    return weights.with_name(weights.stem + ".plan.json")


@contextmanager
def _importable_names(model: nn.Module) -> Iterator[list[str]]:
    """While pickling, name file-loaded classes after their file (``models.Net``)."""
    renamed: list[tuple[type, str, str, bool]] = []
    notes: list[str] = []
    try:
        for cls in {type(m) for m in model.modules()}:
            module_name = cls.__module__
            if not module_name.startswith(_USER_PREFIX):
                continue
            module = sys.modules.get(module_name)
            source = getattr(module, "__file__", None)
            if module is None or source is None:
                continue
            stem = Path(source).stem
            known = sys.modules.get(stem)
            if known is not None and known is not module:
                continue  # another module owns that name here; leave the class as it is
            renamed.append((cls, module_name, stem, known is None))
            sys.modules[stem] = module
            cls.__module__ = stem
            notes.append(f"{cls.__qualname__} is saved as {stem}.{cls.__qualname__}: load it with "
                         f"{Path(source).parent} on the import path (--import-path)")
        yield notes
    finally:
        for cls, module_name, stem, added in renamed:
            cls.__module__ = module_name
            if added:
                sys.modules.pop(stem, None)


def save_model(model: nn.Module, path: str | Path) -> list[str]:
    """Pickle the whole model to ``path``; returns notes on how to load it."""
    with _importable_names(model) as notes:
        torch.save(model, str(path))
    return notes


def save_state_dict(model: nn.Module, path: str | Path, widths: dict[str, dict[str, Any]]) -> Path:
    """Write the weights as safetensors and the plan of new widths beside them.

    Returns:
        The path of the JSON plan.

    Raises:
        ConfigError: safetensors is not installed.
    """
    try:
        from safetensors.torch import save_file
    except ImportError as exc:
        raise ConfigError("the state-dict format needs the optional package safetensors",
                          "pip install 'deadrelu[safetensors]'") from exc
    plan = {"format": PLAN_FORMAT, "version": PLAN_VERSION, "layers": widths}
    text = json.dumps(plan, indent=2, sort_keys=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={_META_KEY: text})
    target = plan_path(Path(path))
    target.write_text(text + "\n", encoding="utf-8")
    return target


def _read_plan(path: Path) -> dict[str, Any]:
    sidecar = plan_path(path)
    if sidecar.exists():
        text = sidecar.read_text(encoding="utf-8")
    else:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(_META_KEY, "")
    try:
        plan = json.loads(text)
    except json.JSONDecodeError:
        plan = None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise CheckpointError(f"{path} has no deadrelu prune plan",
                              "pass a file written by `deadrelu prune --format state-dict`")
    if plan.get("version") != PLAN_VERSION:
        raise CheckpointError(f"prune plan version {plan.get('version')} is not supported",
                              "re-run `deadrelu prune` with this version of deadrelu")
    return plan


def load_pruned(arch: nn.Module | Callable[[], nn.Module], path: str | Path) -> nn.Module:
    """Rebuild a pruned model: a fresh ``arch`` resized by the plan, then its weights loaded.

    Args:
        arch: a freshly built instance of the original architecture, or a callable
            returning one (the class itself, for a class with default arguments).
        path: the ``.safetensors`` file written by ``deadrelu prune --format state-dict``
            (the plan is read from ``<stem>.plan.json`` beside it, else from its metadata).

    Returns:
        The model with the pruned widths and weights (in the mode ``arch`` was in).

    Raises:
        CheckpointError: no plan, or weights that do not fit the resized model.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist", "check the path")
    model = arch if isinstance(arch, nn.Module) else arch()
    plan = _read_plan(path)
    state = load_file(str(path))
    for layer, changes in plan["layers"].items():
        try:
            module = model.get_submodule(layer)
        except AttributeError as exc:
            raise CheckpointError(f"the plan resizes {layer!r}, which this model does not have",
                                  "pass the architecture the model was pruned from") from exc
        for attr, value in changes.items():
            if attr not in ("type", "bias"):
                setattr(module, attr, value)
        prefix = f"{layer}." if layer else ""
        for name, tensor in list(module.named_parameters(recurse=False)) + \
                list(module.named_buffers(recurse=False)):
            saved = state.get(prefix + name)
            if saved is not None and saved.shape != tensor.shape:
                _replace(module, name, torch.empty_like(saved, device=tensor.device, dtype=tensor.dtype))
        weight = getattr(module, "weight", None)
        if changes.get("bias") and getattr(module, "bias", None) is None \
                and isinstance(weight, torch.Tensor):
            module.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype,
                                                   device=weight.device))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {path} do not fit the resized model: "
                              f"{str(exc).splitlines()[0]}",
                              "pass the architecture the model was pruned from") from exc
    return model


def _replace(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    if name in module._parameters:
        old = module._parameters[name]
        module._parameters[name] = nn.Parameter(
            tensor, requires_grad=old.requires_grad if old is not None else True)
    else:
        module._buffers[name] = tensor
