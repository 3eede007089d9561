"""Measurements around a prune: what consuming layers read, size, cost and output change.

All functions run the model in eval mode under ``no_grad`` and restore each module's
train/eval flag afterwards (:func:`deadrelu.collector.eval_mode`); none changes weights.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from deadrelu import batches
from deadrelu.collector import eval_mode
from deadrelu.errors import ConfigError, ModelError

#: Layers whose input columns (Linear) or input channels (Conv) a prune removes.
CONSUMERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class InputRange:
    """Per input channel of one consuming layer: the smallest and largest value it read."""

    low: Tensor
    high: Tensor

    def constant(self, channels: list[int]) -> Tensor | None:
        """The values of ``channels`` if each was one constant on all data, else ``None``."""
        index = torch.as_tensor(channels, dtype=torch.long)
        low, high = self.low[index], self.high[index]
        if not bool(torch.isfinite(low).all()) or not bool((low == high).all()):
            return None
        return low


def _channel_dim(module: nn.Module, x: Tensor) -> int:
    if isinstance(module, nn.Linear):
        return x.ndim - 1
    spatial = len(getattr(module, "kernel_size", ()))
    return 0 if x.ndim == spatial + 1 else 1  # an unbatched conv input has no batch dim


def iterate_inputs(data: Any, batch_size: int, device: torch.device | None) -> Iterator[Any]:
    """Model inputs of every batch of ``data``, moved to ``device``."""
    for batch in batches.iterate(data, batch_size):
        inputs = batches.model_input(batch)
        yield inputs if device is None else batches.to_device(inputs, device, None)


def reiterable(data: Any) -> None:
    """Refuse a one-shot iterator: a prune reads the data several times."""
    if isinstance(data, Iterator):
        raise ConfigError(
            "the data is a one-shot iterator, but pruning reads it several times "
            "(measure, then verify)",
            "pass a tensor, a DataLoader or a list of batches",
        )


def model_device(model: nn.Module) -> torch.device | None:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return None


def consumer_ranges(model: nn.Module, data: Any, batch_size: int) -> tuple[dict[str, InputRange], int, Any]:
    """One pass over ``data``: per consuming layer, the range each input channel read.

    Returns:
        (layer path → :class:`InputRange`, samples seen, the first batch's inputs).
    """
    ranges: dict[str, InputRange] = {}
    names = {id(m): n for n, m in model.named_modules()}

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if not isinstance(x, Tensor) or not x.is_floating_point():
            return
        dim = _channel_dim(module, x)
        flat = x.detach().movedim(dim, 0).reshape(x.shape[dim], -1).double()
        low, high = flat.amin(1).cpu(), flat.amax(1).cpu()
        name = names[id(module)]
        known = ranges.get(name)
        if known is None:
            ranges[name] = InputRange(low, high)
            return
        if known.low.shape != low.shape:  # called with another width: no column is constant
            known.low.fill_(float("-inf"))
            return
        torch.minimum(known.low, low, out=known.low)
        torch.maximum(known.high, high, out=known.high)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, CONSUMERS)]
    first = None
    samples = 0
    device = model_device(model)
    try:
        with eval_mode(model), torch.no_grad():
            for inputs in iterate_inputs(data, batch_size, device):
                if first is None:
                    first = inputs
                samples += batches.batch_size(inputs)
                run(model, inputs)
    finally:
        for h in handles:
            h.remove()
    if first is None:
        raise ConfigError("the data is empty", "pass the data the report was scanned on")
    return ranges, samples, first


def run(model: nn.Module, inputs: Any) -> Any:
    """One forward; a failure becomes a :class:`ModelError` naming its cause."""
    try:
        return batches.call(model, inputs)
    except Exception as exc:  # the user's model raised: say so in one line
        raise ModelError(f"the model's forward raised {type(exc).__name__}: {exc}".split("\n")[0],
                         "check that the data fits the model") from exc


def leaves(output: Any) -> list[Tensor]:
    """The tensors of a model output (a tensor, tuple/list, dict or ModelOutput), in order."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in leaves(v)]
    if isinstance(output, (tuple, list)):
        return [t for v in output for t in leaves(v)]
    return []


@dataclass(frozen=True)
class OutputDifference:
    """How far the pruned model's outputs are from the original's on the data."""

    max_abs: float
    scale: float  # largest |output| of the original model
    error: str | None = None  # why the outputs could not be compared at all

    def within(self, tolerance: float) -> bool:
        """Whether the difference is at most ``tolerance`` relative to the output scale."""
        return self.error is None and self.max_abs <= tolerance * max(self.scale, 1e-12)


def compare_outputs(original: nn.Module, pruned: nn.Module, data: Any, batch_size: int) -> OutputDifference:
    """Run both models over ``data`` batch by batch and compare every output tensor."""
    worst, scale = 0.0, 0.0
    device = model_device(original)
    with eval_mode(original), eval_mode(pruned), torch.no_grad():
        for inputs in iterate_inputs(data, batch_size, device):
            a = leaves(run(original, inputs))
            try:
                b = leaves(batches.call(pruned, inputs))
            except Exception as exc:
                return OutputDifference(float("inf"), scale, f"{type(exc).__name__}: {exc}".split("\n")[0])
            if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=False)):
                return OutputDifference(float("inf"), scale, "the output's shape changed")
            for x, y in zip(a, b, strict=True):
                if not x.is_floating_point():
                    if not torch.equal(x, y):
                        return OutputDifference(float("inf"), scale, "an integer output changed")
                    continue
                scale = max(scale, float(x.detach().abs().max()) if x.numel() else 0.0)
                diff = float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
                worst = max(worst, diff)
    return OutputDifference(worst, scale)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: Any) -> int | None:
    """Multiply-adds per sample, from PyTorch's FLOP counter on one batch (``None`` if it fails)."""
    from torch.utils.flop_counter import FlopCounterMode

    n = max(batches.batch_size(inputs), 1)
    mha = torch.backends.mha
    fast = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)  # the fused attention kernels are invisible to the counter
    try:
        with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
            batches.call(model, inputs)
    except Exception:  # a counter failure must not fail the prune; the number is just absent
        return None
    finally:
        mha.set_fastpath_enabled(fast)
    total = int(counter.get_total_flops() // 2 // n)
    return total or None


def latencies(first: nn.Module, second: nn.Module, inputs: Any, repeats: int = 9) -> tuple[float, float]:
    """Median seconds of one forward of ``inputs`` through each model.

    The two models run alternately (after a warm-up of each), so that a machine
    getting busier or quieter during the measurement affects both alike.
    """
    times: tuple[list[float], list[float]] = ([], [])
    device = model_device(first)
    cuda = device is not None and device.type == "cuda"
    with eval_mode(first), eval_mode(second), torch.no_grad():
        for model in (first, second):
            batches.call(model, inputs)
        for _ in range(repeats):
            for model, out in ((first, times[0]), (second, times[1])):
                if cuda:  # kernels run asynchronously: time them to completion
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                batches.call(model, inputs)
                if cuda:
                    torch.cuda.synchronize(device)
                out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])
