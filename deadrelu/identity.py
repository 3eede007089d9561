"""Which model is this: the module behind wrappers, its architecture and its exact weights.

Used by :func:`deadrelu.scan`, :class:`deadrelu.Monitor` and :func:`deadrelu.prune`, so
that every report names its model the same way:

* :func:`unwrap` strips ``torch.compile``, DDP and DataParallel wrappers;
* :func:`model_signature` hashes parameter/buffer names and shapes (equal for the
  same architecture);
* :func:`read_weights` reads every parameter and buffer once and returns both the
  exact-bytes fingerprint (reports of different checkpoints never merge) and the
  parameters holding NaN/Inf (the diagnosis's trace of a diverged training run).

Nothing here writes to the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from deadrelu.errors import ModelError


def unwrap(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Strip ``torch.compile``, DDP and DataParallel wrappers; returns (module, notes)."""
    notes: list[str] = []
    while True:
        orig = getattr(model, "_orig_mod", None)
        if isinstance(orig, nn.Module):
            notes.append("torch.compile'd model: scanned through its original module (eager)")
            model = orig
            continue
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            notes.append(f"{type(model).__name__} wrapper: scanned its .module")
            model = model.module
            continue
        break
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelError(
            "TorchScript modules run compiled graph code that has no Python forward to observe, "
            "so their activations cannot be seen",
            "scan the original nn.Module (or a torch.export .pt2 program) instead",
        )
    return model, notes


def model_signature(model: nn.Module) -> str:
    """Hash of parameter/buffer names and shapes: equal for the same architecture."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)};".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Weights:
    """What one read of a model's weights tells.

    Attributes:
        fingerprint: :func:`weights_fingerprint` of the model.
        nonfinite: parameter name → number of NaN/Inf values, for the parameters
            that hold any (in ``named_parameters`` order; tied parameters once).
    """

    fingerprint: str
    nonfinite: dict[str, int] = field(default_factory=dict)


def read_weights(model: nn.Module) -> Weights:
    """The fingerprint and the non-finite parameters of ``model``, in one pass over its weights.

    Exact and deterministic: the same weights give the same fingerprint whatever
    the thread count, device or torch version (a float reduction, as used before,
    sums in an order that depends on the thread count). No float conversion; a CUDA
    tensor is copied to the host one at a time. The non-finite check costs one sum
    per floating-point parameter on its own device (a finite sum means every value
    is finite, as a NaN or inf makes the sum so); the exact count is taken only for
    the rare tensor whose sum is not finite.
    """
    h = hashlib.sha256()
    # named_parameters() names each tensor once (tied weights under their first name):
    # the non-finite report keeps those names, the fingerprint hashes every state_dict entry
    params = dict(model.named_parameters())
    unread = set(params)
    nonfinite: dict[str, int] = {}
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not isinstance(t, torch.Tensor):
                continue  # extra state
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            data = _raw_bytes(t)
            if data is not None:
                h.update(data)
            if name in unread:
                unread.discard(name)
                if bad := _nonfinite(t):
                    nonfinite[name] = bad
        for name in unread:  # a state_dict hook renamed it: check the parameter itself
            if bad := _nonfinite(params[name].detach()):
                nonfinite[name] = bad
    order = list(params)
    return Weights(h.hexdigest()[:16], {n: nonfinite[n] for n in order if n in nonfinite})


def weights_fingerprint(model: nn.Module) -> str:
    """Hash of the exact bytes of every parameter and buffer, to refuse merging reports
    of different checkpoints (see :func:`read_weights`)."""
    return read_weights(model).fingerprint


def _nonfinite(t: torch.Tensor) -> int:
    """NaN/Inf values in ``t``: one sum, the exact count only when the sum is not finite."""
    if not t.is_floating_point() or t.is_meta or bool(torch.isfinite(t.sum())):
        return 0
    return int((~torch.isfinite(t)).sum())


def _raw_bytes(t: torch.Tensor) -> memoryview | None:
    """The values of ``t`` in logical (row-major) order as bytes; ``None`` for meta tensors."""
    t = t.detach()
    if t.is_meta:
        return None
    if t.is_quantized:
        t = t.int_repr()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.resolve_conj().resolve_neg().cpu().contiguous()  # no copy when already so
    return t.reshape(-1).view(torch.uint8).numpy().data
