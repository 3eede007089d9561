"""Which model is this: the module behind wrappers, its architecture and its exact weights.

Used by :func:`deadrelu.scan`, :class:`deadrelu.Monitor` and :func:`deadrelu.prune`, so
that every report names its model the same way:

* :func:`unwrap` strips ``torch.compile``, DDP and DataParallel wrappers;
* :func:`model_signature` hashes parameter/buffer names and shapes (equal for the
  same architecture);
* :func:`read_weights` reads every parameter and buffer once and returns both the
  exact-bytes fingerprint (reports of different checkpoints never merge) and the
  parameters holding NaN/Inf (the diagnosis's trace of a diverged training run);
  :func:`start_reading` does the same read with the hash on a background thread while
  a scan's forwards run (on CPU, with a core to spare), to the same result.

Nothing here writes to the model.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """The fingerprint and the non-finite parameters of ``model``, in one read of its weights.

    Exact and deterministic: the same weights give the same fingerprint whatever
    the thread count, device or torch version (a float reduction, as used before,
    sums in an order that depends on the thread count). No float conversion; a CUDA
    tensor is copied to the host one at a time. The non-finite check costs one sum
    per floating-point parameter on its own device (a finite sum means every value
    is finite, as a NaN or inf makes the sum so); the exact count is taken only for
    the rare tensor whose sum is not finite. :func:`start_reading` does the same
    read with the hash on a background thread.
    """
    state = model.state_dict()
    with torch.no_grad():
        fingerprint = _hash(_pieces(state))  # lazily: one CUDA tensor on the host at a time
        return Weights(fingerprint, _nonfinite_params(model, state))


#: Below this many bytes of weights :func:`start_reading` hashes nothing in the background:
#: hashing 4 MiB takes about 2.5 ms at SHA-256's 1.7 GB/s, a thread and the check of the
#: weights afterwards cost about 0.1–1 ms.
BACKGROUND_MIN_BYTES = 4 << 20


class PendingWeights:
    """A read of a model's weights started before its forwards, finished by :meth:`result`.

    Made by :func:`start_reading`. When the read may run in the background
    (:attr:`background`), a thread hashes the weights' bytes while the caller runs the
    model; :meth:`result` joins it and keeps its fingerprint only if the weights are
    still the ones hashed: the same ``state_dict`` names, each tensor at the same
    address (the tensors hashed are held until then, so no new tensor can take their
    memory), with the same dtype, shape, strides and version counter (every in-place
    write through the tensor or a view of it bumps it: ``running_mean`` updated by a
    BatchNorm in train mode, ``self.calls += 1``). Otherwise, and when the thread
    failed, it reads the weights again as :func:`read_weights` does. So the result
    always equals ``read_weights(model)`` at the time :meth:`result` is called, with
    one gap: a write through ``.data`` or a numpy view (``p.data.add_(1)``) has a version
    counter of its own, so a forward that writes its weights that way while the hash runs
    is not seen.

    The thread only hashes: its work, ``hashlib``'s ``update`` of a large buffer, runs
    without the GIL on a core of its own. The non-finite check, a torch reduction, runs
    in :meth:`result` on the calling thread: on a second thread it would open an
    OpenMP team of its own next to the forwards' team.
    """

    def __init__(self, model: nn.Module, background: bool = True) -> None:
        self._model = model
        self._state: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._thread: threading.Thread | None = None
        self._marks: list[tuple[Any, ...]] = []
        self._stop = threading.Event()
        self.seconds = 0.0
        """How long the background hash took (0 when none ran)."""
        if not background or not spare_core():
            return
        state = model.state_dict()
        if not _may_hash_behind(state):
            return
        # the tensors are contiguous CPU tensors: their byte views are taken here, without a copy
        pieces = _joined(_pieces(state))
        self._state = state
        self._marks = _marks(state)
        self._thread = threading.Thread(target=self._run, args=(pieces,), name="deadrelu-weights",
                                        daemon=True)
        self._thread.start()

    @property
    def background(self) -> bool:
        """Whether a thread hashes the weights (else :meth:`result` reads them all)."""
        return self._thread is not None

    def _run(self, pieces: list[bytes | memoryview]) -> None:
        start = time.perf_counter()
        try:
            self._fingerprint = _hash(itertools.takewhile(lambda _: not self._stop.is_set(),
                                                          pieces))
        except Exception:  # result() reads again, raising what a read raises
            self._fingerprint = None
        self.seconds = time.perf_counter() - start

    def result(self) -> Weights:
        """The weights as they are now: the background hash if they did not change, else a new read."""
        if self._thread is None:
            return read_weights(self._model)
        self._thread.join()
        try:
            state = self._model.state_dict()
            if (self._fingerprint is not None and not self._stop.is_set()
                    and _marks(state) == self._marks):
                with torch.no_grad():
                    return Weights(self._fingerprint, _nonfinite_params(self._model, state))
        finally:
            # the hashed tensors are let go: their memory may now be reused, so a second
            # call could not tell a new tensor from them and reads anew
            self._state = None
            self._fingerprint = None
        return read_weights(self._model)

    def cancel(self) -> None:
        """Stop the background hash (after the tensor it is hashing) and join its thread.

        For a caller that will not ask for :meth:`result` (its forward raised); a no-op
        once the hash is done. :meth:`result` then reads the weights anew.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._state = None


def start_reading(model: nn.Module) -> PendingWeights:
    """Start reading ``model``'s weights; :meth:`PendingWeights.result` gives :func:`read_weights`.

    The hash runs on a background thread while the caller runs forwards that do not
    change the weights (a scan, in eval mode under ``no_grad``) when that is safe and
    helps; if the weights changed meanwhile they are read again. In the background only when:

    * every ``state_dict`` tensor is a plain contiguous CPU tensor: a CUDA tensor would
      need device-to-host copies, whose syncs would stall the forwards' stream, and a
      copy for another layout would be torch work on the thread (read at the end instead);
    * a core is free (:func:`spare_core`): torch's intra-op threads are fewer than the
      CPUs this process may use (with every core in torch's OpenMP team, one more busy
      thread slows the team's barriers more than the hash saves), and the machine's load
      leaves about one CPU idle;
    * the weights hold at least :data:`BACKGROUND_MIN_BYTES`.

    Call :meth:`PendingWeights.cancel` on a path that will not call ``result()``.
    """
    return PendingWeights(model)


def spare_core() -> bool:
    """Whether a core is free for another busy thread besides torch's intra-op threads.

    Torch's threads must be fewer than the CPUs this process may use (:func:`usable_cpus`):
    with every core in torch's OpenMP team, one more busy thread slows the team's
    barriers. And the machine must not be busy with other work: a load average of the
    last minute under its CPU count less half a CPU (it counts this process's own
    threads when they ran; on a machine shared with other busy processes the thread
    would take CPU time from them and from the forwards, for no gain).
    """
    if torch.get_num_threads() >= usable_cpus():
        return False
    return _load() < (os.cpu_count() or 1) - 0.5


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one, capped by
    a cgroup CPU quota (a container given 2 CPUs of a 64-core host)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_cpu_quota()
    return max(1, min(cpus or 1, int(quota) if quota is not None else cpus or 1))


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us``); ``None`` when unlimited or unknown."""
    try:
        if (root / "cpu.max").is_file():
            quota, period = (root / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        for v1 in (root / "cpu", root / "cpu,cpuacct"):
            if (v1 / "cpu.cfs_quota_us").is_file():
                quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
                return None if quota_us < 0 else quota_us / int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        pass
    return None


def _load() -> float:
    """The machine's load average over the last minute (0 where the OS does not tell)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _may_hash_behind(state: dict[str, Any]) -> bool:
    """Whether :class:`PendingWeights` may hash ``state`` on a thread: plain contiguous CPU
    tensors (their bytes viewed without torch work), enough of them (see :func:`start_reading`)."""
    size = 0
    for t in state.values():
        if not isinstance(t, torch.Tensor):
            continue  # extra state: not hashed
        if (type(t) is not torch.Tensor or t.device.type != "cpu" or t.layout != torch.strided
                or t.is_quantized or t.is_inference() or t.is_conj() or t.is_neg()
                or not t.is_contiguous()):
            return False
        size += t.numel() * t.element_size()
    return size >= BACKGROUND_MIN_BYTES


def _marks(state: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What tells that a ``state_dict``'s tensors were replaced or written in place."""
    return [(name, t.data_ptr(), t._version, t.dtype, tuple(t.shape), t.stride())
            for name, t in state.items() if isinstance(t, torch.Tensor)]


def _pieces(state: dict[str, Any]) -> Iterator[bytes | memoryview]:
    """What the fingerprint hashes, in order: each tensor's name, dtype and shape, then its bytes."""
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue  # extra state
        yield f"{name}:{t.dtype}:{tuple(t.shape)};".encode()
        data = _raw_bytes(t)
        if data is not None:
            yield data


def _joined(pieces: Iterable[bytes | memoryview], small: int = 1 << 16) -> list[bytes | memoryview]:
    """``pieces`` with each run of small ones (names, biases, norm buffers) copied into one
    ``bytes``: the same bytes in the same order, so the same hash, but a thread hashing them
    takes the GIL from the forwards about twice per large tensor rather than twice per tensor."""
    out: list[bytes | memoryview] = []
    run = bytearray()
    for piece in pieces:
        if len(piece) < small:
            run += piece
            continue
        if run:
            out.append(bytes(run))
            run.clear()
        out.append(piece)
    if run:
        out.append(bytes(run))
    return out


def _hash(pieces: Iterable[bytes | memoryview]) -> str:
    """The fingerprint of ``pieces``: SHA-256, first 16 hex digits."""
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)  # without the GIL for a large buffer
    return h.hexdigest()[:16]


def _nonfinite_params(model: nn.Module, state: dict[str, Any]) -> dict[str, int]:
    """Parameter name → NaN/Inf values, in ``named_parameters`` order, read from ``state``."""
    # named_parameters() names each tensor once (tied weights under their first name):
    # the non-finite report keeps those names, the fingerprint hashes every state_dict entry
    params = dict(model.named_parameters())
    unread = set(params)
    nonfinite: dict[str, int] = {}
    for name, t in state.items():
        if name in unread and isinstance(t, torch.Tensor):
            unread.discard(name)
            if bad := _nonfinite(t):
                nonfinite[name] = bad
    for name in unread:  # a state_dict hook renamed it: check the parameter itself
        if bad := _nonfinite(params[name].detach()):
            nonfinite[name] = bad
    return {n: nonfinite[n] for n in params if n in nonfinite}


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
