"""Ways to count firing positions per channel, each timed against the ReLU itself.

Run: ``python benchmarks/bench_counting.py`` (writes benchmarks/results/counting.md).

The tensor is a ResNet-18 first-stage activation for a batch of 64 CIFAR images,
``(64, 64, 32, 32)`` float32 (16 MiB). Each variant runs right after an in-place
ReLU on the same tensor, as inside a forward pass (so it reads data another core
just wrote, which costs more than re-reading a warm tensor), and the table gives
``time(ReLU + variant) / time(ReLU) - 1``: the variant's cost in ReLUs.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _median_us(fn: Callable[[], object], n: int = 60) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 64, 32, 32)
    y3 = x.view(64, 64, -1)
    f32 = torch.empty_like(y3)
    bf16 = torch.empty(y3.shape, dtype=torch.bfloat16)
    chunk = 16  # samples per chunk: 1M elements, 4 MiB
    ones = torch.ones(y3.shape[2])

    def chunked(body: Callable[[torch.Tensor, torch.Tensor], object]) -> Callable[[], None]:
        def run() -> None:
            for i in range(0, 64, chunk):
                body(y3[i:i + chunk], f32[i:i + chunk])
        return run

    variants: dict[str, Callable[[], object]] = {
        "naive `(y > 0).sum(dim=(0, 2, 3))` (bool mask)": lambda: (x > 0).sum(dim=(0, 2, 3)),
        "`(y > 0).sum(2)` per (sample, channel)": lambda: (y3 > 0).sum(2),
        "`torch.count_nonzero(y, dim=2)`": lambda: torch.count_nonzero(y3, dim=2),
        "`vector_norm(y, ord=0, dim=2)`": lambda: torch.linalg.vector_norm(y3, 0, dim=2),
        "`gt` into a reused float32 buffer, `sum(2)`": lambda: torch.gt(y3, 0, out=f32).sum(2),
        "same, bfloat16 buffer, float32 sum": lambda: torch.gt(y3, 0, out=bf16).sum(
            2, dtype=torch.float32),
        "`sign` into a float32 buffer, `sum(2)`": lambda: torch.sign(y3, out=f32).sum(2),
        "float32 mask, counted by matmul with ones": lambda: torch.gt(y3, 0, out=f32) @ ones,
        "float32 mask, chunked by 16 samples (cache-resident)":
            chunked(lambda b, m: torch.gt(b, 0, out=m).sum(2)),
        "for scale: `y.sum(2)` (one read, no mask)": lambda: y3.sum(2),
        "for scale: `y.amax(2)`": lambda: y3.amax(2),
        "deadrelu's full update (count, sample count, sum, max, NaN check), chunked":
            _full_update(y3),
    }
    relu = _median_us(lambda: torch.relu_(x))
    rows = []
    for label, fn in variants.items():
        both = _median_us(lambda fn=fn: (torch.relu_(x), fn()))
        rows.append((label, both - relu, (both - relu) / relu))
    lines = [
        f"# Counting firing positions per channel ({platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__})", "",
        f"Tensor (64, 64, 32, 32) float32; in-place ReLU alone: {relu:.0f} µs. "
        "Run: `python benchmarks/bench_counting.py`.", "",
        "| variant | extra time (µs) | cost in ReLUs |", "|---|--:|--:|",
    ]
    lines += [f"| {label} | {us:.0f} | {ratio:.1f} |" for label, us, ratio in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "counting.md").write_text(text)


def _full_update(y3: torch.Tensor) -> Callable[[], None]:
    from deadrelu.stats import UnitStats, scratch_size

    stats = UnitStats.zeros(y3.shape[1])
    scratch = torch.empty(scratch_size(y3))
    return lambda: stats.update(y3, 2, 0.0, None, None, True, scratch)


if __name__ == "__main__":
    main()
